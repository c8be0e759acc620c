//! Throughput: sequential reads of the disk in 1 MiB requests against the guest's own memcpy
//! over the same number of bytes, both timed with the TSC.

use guest_rt::cpu::rdtsc;
use guest_rt::{println, time, Checks};

use crate::disk::{Disk, DiskError, SECTOR_BYTES};

const MIB: u64 = 1 << 20;

/// MB/s (10^6 bytes per second) for `bytes` in `ticks` at `hz`.
fn mb_per_s(bytes: u64, ticks: u64, hz: u64) -> u64 {
    let us = time::ticks_to_us(ticks, hz).max(1);
    bytes / us
}

/// Reads `total_mib` MiB (or the whole disk if smaller) from sector 0 on, one `buf.len()`
/// request at a time, then copies `src` to `dst` as many bytes; prints both rates.
pub(crate) fn check_throughput(
    checks: &mut Checks,
    disk: &mut Disk,
    buf: &mut [u8],
    copy_to: &mut [u8],
    total_mib: u64,
    tsc_hz: Option<u64>,
) -> Result<(), DiskError> {
    let disk_bytes = disk.sectors() * SECTOR_BYTES;
    let total = (total_mib * MIB).min(disk_bytes);
    let request = (buf.len() as u64).min(total) / SECTOR_BYTES * SECTOR_BYTES;
    if request == 0 {
        checks.fail("throughput", "disk smaller than one sector");
        return Ok(());
    }
    let start = rdtsc();
    let mut done = 0;
    while done < total {
        let len = request.min(total - done);
        if let Err(err) = disk.read(done / SECTOR_BYTES, &mut buf[..len as usize]) {
            checks.fail("throughput", err);
            return Err(err);
        }
        done += len;
    }
    let read_ticks = rdtsc().wrapping_sub(start);

    let copy_len = (request as usize).min(copy_to.len());
    let start = rdtsc();
    let mut copied = 0;
    while copied < total {
        copy_to[..copy_len].copy_from_slice(&buf[..copy_len]);
        core::hint::black_box(&mut *copy_to);
        copied += copy_len as u64;
    }
    let copy_ticks = rdtsc().wrapping_sub(start);

    match tsc_hz {
        Some(hz) => {
            let ms = time::ticks_to_us(read_ticks, hz) / 1000;
            println!(
                "virtio-blk: read {} MiB in {ms} ms = {} MB/s",
                total / MIB,
                mb_per_s(total, read_ticks, hz)
            );
            println!(
                "virtio-blk: memcpy {} MB/s",
                mb_per_s(copied, copy_ticks, hz)
            );
        }
        None => println!(
            "virtio-blk: read {} MiB in {read_ticks} TSC ticks, memcpy {copied} bytes in \
             {copy_ticks} ticks (TSC rate unknown)",
            total / MIB
        ),
    }
    if total < MIB {
        println!("virtio-blk: (the disk is only {total} bytes)");
    }
    checks.pass("throughput");
    Ok(())
}
