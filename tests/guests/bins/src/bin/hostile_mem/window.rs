//! The guest's own page tables, bent: a 4 KiB window whose leaf can point at any
//! guest-physical address, and table entries at every level that can point at memory that is
//! not there. Built at PML4 slot 2 (virtual 0x100_0000_0000), away from the boot identity map.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::boot::pml4_addr;
use guest_rt::cpu::flush_tlb;

const ENTRIES: usize = 512;
/// Page-table entry bits (AMD APM vol.2 §5.3.3, Intel SDM vol.3 §4.5).
const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const TABLE: u64 = P | RW;
const PML4_SLOT: usize = 2;
/// PML4 slot whose entry is pointed at absent memory (the level-4 case).
const PML4_BAD_SLOT: usize = 3;
/// Virtual bases: each PML4 slot covers 512 GiB, each PDPT slot 1 GiB, each PD slot 2 MiB.
const SLOT4: u64 = 1 << 39;
const SLOT3: u64 = 1 << 30;
const SLOT2: u64 = 1 << 21;
pub(crate) const WINDOW_VA: u64 = PML4_SLOT as u64 * SLOT4;

#[repr(C, align(4096))]
struct Table([AtomicU64; ENTRIES]);

impl Table {
    const fn new() -> Self {
        Self([const { AtomicU64::new(0) }; ENTRIES])
    }

    fn addr(&self) -> u64 {
        // Identity-mapped: the address of the static is its guest-physical address.
        self as *const Self as u64
    }

    fn set(&self, index: usize, value: u64) {
        self.0[index].store(value, Ordering::SeqCst);
    }
}

static PDPT: Table = Table::new();
static PD: Table = Table::new();
static PT: Table = Table::new();

fn pml4_set(index: usize, value: u64) {
    // SAFETY: the boot PML4 is identity-mapped RAM owned by the runtime; slots 2 and 3 are
    // unused by the boot map (it uses slot 0), and index < 512.
    unsafe { core::ptr::write_volatile((pml4_addr() as *mut u64).add(index), value) };
}

/// Installs the window's tables. Idempotent.
pub(crate) fn init() {
    PD.set(0, PT.addr() | TABLE);
    PDPT.set(0, PD.addr() | TABLE);
    pml4_set(PML4_SLOT, PDPT.addr() | TABLE);
    flush_tlb();
}

/// Points the window at `gpa` (4 KiB aligned; the low 12 bits are ignored), uncacheable,
/// and returns the virtual address of `gpa`'s byte in it.
pub(crate) fn map(gpa: u64) -> u64 {
    PT.set(0, (gpa & !0xFFF) | P | RW | PWT | PCD);
    flush_tlb();
    WINDOW_VA + (gpa & 0xFFF)
}

/// Which table level a case bends.
#[derive(Clone, Copy)]
pub(crate) enum Level {
    /// A page directory entry pointing at a page table that is not RAM.
    Pd,
    /// A PDPT entry pointing at a page directory that is not RAM.
    Pdpt,
    /// A PML4 entry pointing at a PDPT that is not RAM.
    Pml4,
}

/// Points an entry of `level` at `gpa` as if it held the next table, and returns a virtual
/// address whose walk goes through it.
pub(crate) fn bend(level: Level, gpa: u64) -> u64 {
    let entry = (gpa & !0xFFF) | TABLE;
    let va = match level {
        Level::Pd => {
            PD.set(1, entry);
            WINDOW_VA + SLOT2
        }
        Level::Pdpt => {
            PDPT.set(1, entry);
            WINDOW_VA + SLOT3
        }
        Level::Pml4 => {
            pml4_set(PML4_BAD_SLOT, entry);
            PML4_BAD_SLOT as u64 * SLOT4
        }
    };
    flush_tlb();
    va
}

/// Undoes every [`bend`].
pub(crate) fn straighten() {
    PD.set(1, 0);
    PDPT.set(1, 0);
    pml4_set(PML4_BAD_SLOT, 0);
    flush_tlb();
}
