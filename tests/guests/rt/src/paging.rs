//! Extending the boot identity map above 4 GiB, uncacheable, for guests that probe high
//! guest-physical addresses (1 GiB pages when the CPU has them, else 2 MiB pages).

use core::fmt;

use crate::boot::pdpt_addr;
use crate::cpu::{flush_tlb, has_1g_pages};

const GIB: u64 = 1 << 30;
const TWO_MIB: u64 = 1 << 21;
const TABLE_BYTES: u64 = 4096;
const ENTRIES: u64 = 512;
/// Page-table entry bits (AMD APM vol.2 §5.3.3; Intel SDM vol.3 §4.5).
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_PWT: u64 = 1 << 3;
const PTE_PCD: u64 = 1 << 4;
const PTE_PAGE_SIZE: u64 = 1 << 7;
/// Physical-address bits of a table pointer.
const PTE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// The boot stub maps the first 4 GiB (PDPT entries 0..4).
const BOOT_MAPPED_GIB: u64 = 4;
/// One PDPT covers 512 GiB; nothing here needs more.
const MAX_END: u64 = ENTRIES * GIB;

/// Why the identity map could not be extended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    TooHigh { end: u64 },
    NotEnoughScratch { needed_bytes: u64, have_bytes: u64 },
    UnalignedScratch { base: u64 },
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooHigh { end } => {
                write!(f, "cannot map up to {end:#x}: one PDPT covers {MAX_END:#x}")
            }
            Self::NotEnoughScratch {
                needed_bytes,
                have_bytes,
            } => write!(
                f,
                "2 MiB page tables need {needed_bytes:#x} bytes of scratch RAM, have {have_bytes:#x}"
            ),
            Self::UnalignedScratch { base } => {
                write!(f, "page-table scratch at {base:#x} is not 4 KiB aligned")
            }
        }
    }
}

/// Which page size the extension used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HighMapping {
    Huge1G,
    Large2M { tables: u64 },
}

fn write_entry(table: u64, index: u64, value: u64) {
    // SAFETY: `table` is either the boot PDPT or a scratch table the caller gave us, both
    // identity-mapped; index < 512 keeps the write inside the 4 KiB table.
    unsafe { core::ptr::write_volatile((table + index * 8) as *mut u64, value) };
}

/// Identity-maps `[4 GiB, end)` uncacheable (PCD|PWT), rounding `end` up to 1 GiB.
///
/// # Safety
/// Without 1 GiB pages the page directories are built in `[scratch_base, scratch_base +
/// scratch_bytes)`, which must be RAM that nothing else uses, now or later, below 4 GiB.
pub unsafe fn map_high_uncached(
    end: u64,
    scratch_base: u64,
    scratch_bytes: u64,
) -> Result<HighMapping, PagingError> {
    if end > MAX_END {
        return Err(PagingError::TooHigh { end });
    }
    let last_gib = end.div_ceil(GIB);
    if last_gib <= BOOT_MAPPED_GIB {
        return Ok(HighMapping::Huge1G);
    }
    let attrs = PTE_PRESENT | PTE_WRITABLE | PTE_PWT | PTE_PCD;
    let pdpt = pdpt_addr();
    if has_1g_pages() {
        for gib in BOOT_MAPPED_GIB..last_gib {
            write_entry(pdpt, gib, (gib * GIB) | attrs | PTE_PAGE_SIZE);
        }
        flush_tlb();
        return Ok(HighMapping::Huge1G);
    }
    let tables = last_gib - BOOT_MAPPED_GIB;
    if !scratch_base.is_multiple_of(TABLE_BYTES) {
        return Err(PagingError::UnalignedScratch { base: scratch_base });
    }
    if tables * TABLE_BYTES > scratch_bytes {
        return Err(PagingError::NotEnoughScratch {
            needed_bytes: tables * TABLE_BYTES,
            have_bytes: scratch_bytes,
        });
    }
    for (n, gib) in (BOOT_MAPPED_GIB..last_gib).enumerate() {
        let pd = scratch_base + n as u64 * TABLE_BYTES;
        for i in 0..ENTRIES {
            write_entry(pd, i, (gib * GIB + i * TWO_MIB) | attrs | PTE_PAGE_SIZE);
        }
        write_entry(pdpt, gib, pd | attrs);
    }
    flush_tlb();
    Ok(HighMapping::Large2M { tables })
}

/// Marks the boot map's 2 MiB pages that lie wholly inside `[start, end)` (below 4 GiB)
/// uncacheable (PCD|PWT): guests probing unbacked addresses under RAM's end-of-4GiB map them
/// as MMIO, not as write-back memory the CPU may speculatively fetch.
pub fn make_uncached(start: u64, end: u64) {
    let first = start.div_ceil(TWO_MIB);
    let last = end.min(BOOT_MAPPED_GIB * GIB) / TWO_MIB;
    let pdpt = pdpt_addr();
    for page in first..last {
        let (gib, index) = (page / ENTRIES, page % ENTRIES);
        // SAFETY: the boot PDPT's first four entries point at the boot page directories, which
        // are identity-mapped tables owned by this runtime.
        let pd =
            unsafe { core::ptr::read_volatile((pdpt + gib * 8) as *const u64) } & PTE_ADDR_MASK;
        // SAFETY: `pd` is a boot page directory and index < 512.
        let entry = unsafe { core::ptr::read_volatile((pd + index * 8) as *const u64) };
        write_entry(pd, index, entry | PTE_PWT | PTE_PCD);
    }
    flush_tlb();
}
