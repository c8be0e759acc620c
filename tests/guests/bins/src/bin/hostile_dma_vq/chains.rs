//! Random descriptor chains: addresses inside this guest's scratch buffers (with lengths that
//! fit them, or that no RAM could hold), in its indirect-table pages, or anywhere it does not
//! own; random lengths, flags and next indices; random indirect tables; random blk headers.
//!
//! A buffer inside the guest's own pages never reaches past them with a length that could be
//! served: a device writing there is doing what it was told, and the canary pages right after
//! each region stay the guest's own, so a change there is the device's fault.

use guest_virtio::rng::Rng;

use crate::dev::{write8, write_desc, DESC_BYTES, DESC_INDIRECT, DESC_NEXT, DESC_WRITE};

/// Longer than any guest's RAM here (the scenarios give 32 MiB), so never servable.
const HUGE_LEN: u32 = 0x1000_0000;
/// blk request types (virtio 1.2 §5.2.6): IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES.
const BLK_TYPES: [u32; 6] = [0, 1, 4, 8, 11, 13];

/// The regions a chain may point into, and the guest's RAM end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Regions {
    pub scratch: u64,
    pub scratch_bytes: u64,
    pub tables: u64,
    pub tables_bytes: u64,
    pub header: u64,
    pub ram_end: u64,
}

/// Addresses this guest does not own (straddling the end of RAM is done in [`buffer`]).
fn hostile_addr(rng: &mut Rng, r: &Regions) -> u64 {
    match rng.below(10) {
        0 | 1 => r.ram_end + rng.below(1 << 24),
        2 => 0xC000_0000 + rng.below(0x1000_0000),
        3 => 0xD000_0000 + rng.below(0x10000),
        4 => 0xFEC0_0000 + rng.below(0x1000),
        5 => 0xFEE0_0000 + rng.below(0x1000),
        6 => (1 << 32) - rng.below(0x1000),
        7 => (1 << 46) + rng.below(1 << 20),
        8 => 0u64.wrapping_sub(rng.below(0x1000)),
        _ => rng.next_u64(),
    }
}

/// A length for a buffer at `offset` into a region of `bytes`: one that fits, zero, or one
/// no RAM could hold.
fn len_inside(rng: &mut Rng, offset: u64, bytes: u64) -> u32 {
    match rng.below(8) {
        0 => 0,
        1 => HUGE_LEN.saturating_add(rng.next_u32() >> 4),
        _ => (1 + rng.below(bytes - offset)) as u32,
    }
}

/// One descriptor's address and length.
pub(crate) fn buffer(rng: &mut Rng, r: &Regions) -> (u64, u32) {
    match rng.below(10) {
        0..=4 => {
            let offset = rng.below(r.scratch_bytes);
            (r.scratch + offset, len_inside(rng, offset, r.scratch_bytes))
        }
        5 => {
            let offset = rng.below(16);
            (r.header + offset, len_inside(rng, offset, 32))
        }
        6 => {
            // Starts in RAM, ends past it: the whole buffer must be refused, so the length
            // always reaches beyond the end (a shorter one would be RAM the device may write).
            let inside = 1 + rng.below(64);
            let len = inside + 1 + rng.below(4096);
            (r.ram_end - inside, len as u32)
        }
        _ => {
            let len = if rng.chance(1, 2) {
                rng.next_u32()
            } else {
                rng.below(4096) as u32
            };
            (hostile_addr(rng, r), len)
        }
    }
}

/// Random flags, NEXT and WRITE common, INDIRECT rarer.
pub(crate) fn flags(rng: &mut Rng) -> u16 {
    let mut f = 0;
    if rng.chance(1, 2) {
        f |= DESC_NEXT;
    }
    if rng.chance(1, 2) {
        f |= DESC_WRITE;
    }
    if rng.chance(1, 8) {
        f |= DESC_INDIRECT;
    }
    if rng.chance(1, 32) {
        f |= rng.next_u32() as u16;
    }
    f
}

/// A random `next`: mostly inside a table of `size`, sometimes just past it or anywhere.
pub(crate) fn next(rng: &mut Rng, size: u64) -> u16 {
    match rng.below(8) {
        0 => rng.next_u32() as u16,
        1 => (size + rng.below(3)) as u16,
        _ => rng.below(size) as u16,
    }
}

/// Fills an indirect table at a random place in the table pages; returns its address and a
/// length (usually its size, sometimes not a multiple of 16, zero, or huge).
pub(crate) fn indirect_table(rng: &mut Rng, r: &Regions) -> (u64, u32) {
    let max_entries = r.tables_bytes / DESC_BYTES;
    let entries = 1 + rng.below(16.min(max_entries));
    let first = rng.below(max_entries - entries + 1);
    let at = r.tables + first * DESC_BYTES;
    for i in 0..entries {
        let (addr, len) = buffer(rng, r);
        let mut f = flags(rng);
        if rng.chance(3, 4) {
            f &= !DESC_INDIRECT;
        }
        write_desc(at, i, addr, len, f, next(rng, entries));
    }
    let len = match rng.below(8) {
        0 => 0,
        1 => rng.next_u32(),
        2 => (entries * DESC_BYTES) as u32 + 1 + rng.below(15) as u32,
        _ => (entries * DESC_BYTES) as u32,
    };
    (at, len)
}

/// Writes a random but well-formed-looking blk header at `header`: a type from the spec or
/// anything, a sector anywhere.
pub(crate) fn blk_header(rng: &mut Rng, header: u64) {
    let kind = if rng.chance(7, 8) {
        rng.pick(&BLK_TYPES)
    } else {
        rng.next_u32()
    };
    let sector = match rng.below(4) {
        0 => rng.next_u64(),
        _ => rng.below(4096),
    };
    for (i, b) in kind.to_le_bytes().into_iter().enumerate() {
        write8(header + i as u64, b);
    }
    for (i, b) in sector.to_le_bytes().into_iter().enumerate() {
        write8(header + 8 + i as u64, b);
    }
}

/// Changes one field of one of the first three descriptors of a valid request in `table`:
/// its address and length (to any buffer), its flags, or its next index.
pub(crate) fn mutate(rng: &mut Rng, r: &Regions, table: u64, size: u64) {
    let at = table + rng.below(3) * DESC_BYTES;
    match rng.below(4) {
        0 | 1 => {
            let (addr, len) = buffer(rng, r);
            for (i, b) in addr.to_le_bytes().into_iter().enumerate() {
                write8(at + i as u64, b);
            }
            for (i, b) in len.to_le_bytes().into_iter().enumerate() {
                write8(at + 8 + i as u64, b);
            }
        }
        2 => {
            for (i, b) in flags(rng).to_le_bytes().into_iter().enumerate() {
                write8(at + 12 + i as u64, b);
            }
        }
        _ => {
            for (i, b) in next(rng, size).to_le_bytes().into_iter().enumerate() {
                write8(at + 14 + i as u64, b);
            }
        }
    }
}
