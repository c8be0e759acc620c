//! The data checks: write every sector with a pattern and read it back, hash what a pre-made
//! disk holds, and see that a read-only disk refuses a write and keeps its data.

use guest_rt::{println, Checks};
use guest_virtio::hash::Fnv1a;

use crate::disk::{Disk, DiskError, SECTOR_BYTES};

/// The pattern's 8-byte word at byte `offset` of the disk: distinct per offset and per seed, so
/// a block written to the wrong place, a stale block or a shifted buffer all show.
fn pattern_word(seed: u64, offset: u64) -> u64 {
    // The splitmix64 finaliser: a bijective mix, so every word differs from its neighbours.
    let mut z = seed ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern for the disk bytes starting at sector `sector`.
pub(crate) fn fill_pattern(buf: &mut [u8], seed: u64, sector: u64) {
    let base = sector * SECTOR_BYTES;
    for (i, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&pattern_word(seed, base + i as u64 * 8).to_le_bytes());
    }
}

/// The first byte offset in `buf` (holding the disk from `sector` on) that differs from the
/// pattern.
fn first_mismatch(buf: &[u8], seed: u64, sector: u64) -> Option<u64> {
    let base = sector * SECTOR_BYTES;
    buf.chunks_exact(8).enumerate().find_map(|(i, word)| {
        let offset = base + i as u64 * 8;
        (word != pattern_word(seed, offset).to_le_bytes()).then_some(offset)
    })
}

/// Chunks of at most `buf_sectors` sectors covering `sectors`: (first sector, count).
fn chunks(sectors: u64, buf_sectors: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..sectors)
        .step_by(buf_sectors.max(1) as usize)
        .map(move |s| (s, buf_sectors.min(sectors - s)))
}

/// `write-pattern` then `read-verify` over the first `sectors` sectors.
pub(crate) fn check_write_read(
    checks: &mut Checks,
    disk: &mut Disk,
    buf: &mut [u8],
    sectors: u64,
    seed: u64,
) -> Result<(), DiskError> {
    let buf_sectors = buf.len() as u64 / SECTOR_BYTES;
    let mut written = Fnv1a::new();
    for (sector, count) in chunks(sectors, buf_sectors) {
        let part = &mut buf[..(count * SECTOR_BYTES) as usize];
        fill_pattern(part, seed, sector);
        written.update(part);
        if let Err(err) = disk.write(sector, part) {
            checks.fail("write-pattern", err);
            return Err(err);
        }
    }
    checks.pass("write-pattern");
    let mut read = Fnv1a::new();
    let mut mismatch = None;
    for (sector, count) in chunks(sectors, buf_sectors) {
        let part = &mut buf[..(count * SECTOR_BYTES) as usize];
        part.fill(0);
        if let Err(err) = disk.read(sector, part) {
            checks.fail("read-verify", err);
            return Err(err);
        }
        read.update(part);
        if mismatch.is_none() {
            mismatch = first_mismatch(part, seed, sector);
        }
    }
    println!(
        "virtio-blk: wrote and read {sectors} sectors, hash {:#018x}",
        read.finish()
    );
    checks.expect(
        "read-verify",
        mismatch.is_none() && read.finish() == written.finish(),
        format_args!(
            "read back hash {:#018x}, written {:#018x}; first differing byte at disk offset \
             {mismatch:#x?}",
            read.finish(),
            written.finish()
        ),
    );
    Ok(())
}

/// FNV-1a of the first `sectors` sectors.
pub(crate) fn hash_disk(disk: &mut Disk, buf: &mut [u8], sectors: u64) -> Result<u64, DiskError> {
    let mut hash = Fnv1a::new();
    for (sector, count) in chunks(sectors, buf.len() as u64 / SECTOR_BYTES) {
        let part = &mut buf[..(count * SECTOR_BYTES) as usize];
        disk.read(sector, part)?;
        hash.update(part);
    }
    Ok(hash.finish())
}

/// `readonly-write-refused`: a write to the first 4 KiB must fail with an I/O error status and
/// leave the data as it was.
pub(crate) fn check_readonly(
    checks: &mut Checks,
    disk: &mut Disk,
    buf: &mut [u8],
    seed: u64,
) -> Result<(), DiskError> {
    const NAME: &str = "readonly-write-refused";
    const PROBE_BYTES: usize = 4096;
    let probe_bytes = PROBE_BYTES.min((disk.sectors() * SECTOR_BYTES) as usize);
    if probe_bytes == 0 || buf.len() < 2 * probe_bytes {
        checks.fail(NAME, "disk or buffer too small to probe");
        return Ok(());
    }
    let (before, rest) = buf.split_at_mut(probe_bytes);
    let attempt = &mut rest[..probe_bytes];
    disk.read(0, before)?;
    fill_pattern(attempt, seed, 0);
    if attempt == before {
        // The disk already holds this seed's pattern: a write could not be told from none.
        fill_pattern(attempt, !seed, 0);
    }
    let outcome = disk.write(0, attempt);
    if let Err(err @ DiskError::Timeout { .. }) = outcome {
        return Err(err);
    }
    disk.read(0, attempt)?;
    let is_unchanged = attempt == before;
    match outcome {
        Err(err) if err.is_io_error() => {
            checks.expect(
                NAME,
                is_unchanged,
                "the write failed with an I/O error but the data changed",
            );
        }
        Err(err) => checks.fail(
            NAME,
            format_args!("expected an I/O error status, got: {err}"),
        ),
        Ok(()) => checks.fail(
            NAME,
            format_args!(
                "the write succeeded (data {})",
                if is_unchanged { "unchanged" } else { "changed" }
            ),
        ),
    };
    Ok(())
}
