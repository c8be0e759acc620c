//! The hypervisor's own page tables, and page-table frames on bare metal.
//!
//! Physical memory stays identity-mapped, but with rights: .text RX, .rodata R, everything
//! else (data, heap, stacks, all other RAM including guests') RW and never executable; the
//! local APIC page uncached; each stack's guard page unmapped. A self-check
//! ([`crate::paging::check_host_tables`]) walks the tables at boot and refuses to go on if any
//! page is both writable and executable, anything but the image's code is executable, or a
//! stack guard is mapped; guest set-up repeats it for each guest's RAM.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::{cpu, memory};
use crate::addr::{HostPhysAddr, PAGE_SIZE};
use crate::boot::{BootInfo, RegionKind};
use crate::paging::{
    check_host_tables, HostEntry, HostLayout, HostTableViolation, MapFlags, PageSize, PageTable,
    PagingError, TableMemory,
};

/// Page-table frames taken from the frame allocator; identity-mapped, so an entry is read and
/// written through its physical address.
pub struct FrameTables;

impl TableMemory for FrameTables {
    fn alloc_zeroed_frame(&mut self) -> Option<HostPhysAddr> {
        memory::alloc_zeroed(PAGE_SIZE, PAGE_SIZE).ok()
    }

    fn free_frame(&mut self, frame: HostPhysAddr) {
        memory::free(frame, PAGE_SIZE);
    }

    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        // SAFETY: `table` is a table frame from `alloc_zeroed_frame` (TableMemory contract),
        // identity-mapped, and `index` < 512.
        unsafe { core::ptr::read_volatile((table.as_u64() as *const u64).add(index)) }
    }

    fn write_entry(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        // SAFETY: as in `read_entry`; the frame belongs to a page table this code owns.
        unsafe { core::ptr::write_volatile((table.as_u64() as *mut u64).add(index), value) };
    }
}

static HOST_TABLES: Mutex<Option<PageTable<HostEntry>>> = Mutex::new(None);
static HOST_CR3: AtomicU64 = AtomicU64::new(0);
/// Guard pages of stacks allocated before the tables existed.
static EARLY_GUARDS: Mutex<Vec<HostPhysAddr>> = Mutex::new(Vec::new());
/// Every stack guard page (the boot stack's included), for the self-check.
static ALL_GUARDS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static boot_stack_bottom: u8;
}

/// The largest page the CPU supports for the hypervisor's and guests' tables.
pub fn max_page() -> PageSize {
    if raw_cpuid::CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|e| e.has_1gib_pages())
    {
        PageSize::Size1G
    } else {
        PageSize::Size2M
    }
}

/// Records (or, once the tables are live, unmaps) the guard page of a new stack.
pub fn guard_stack(guard: HostPhysAddr) {
    ALL_GUARDS.lock().push(guard.as_u64());
    let mut tables = HOST_TABLES.lock();
    match tables.as_mut() {
        Some(t) => {
            if let Err(e) = t.unmap(&mut FrameTables, guard.as_u64(), PAGE_SIZE) {
                panic!("cannot unmap stack guard {guard}: {e}");
            }
            // SAFETY: INVLPG only drops a translation.
            unsafe { core::arch::asm!("invlpg [{}]", in(reg) guard.as_u64(), options(nostack)) };
        }
        None => EARLY_GUARDS.lock().push(guard),
    }
}

fn build(info: &BootInfo) -> Result<PageTable<HostEntry>, PagingError> {
    let mem = &mut FrameTables;
    let mut t = PageTable::<HostEntry>::new(mem)?;
    let big = max_page();
    let page = |a: u64| a & !(PAGE_SIZE - 1);
    let up = |a: u64| (a + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    let text = (
        page(core::ptr::addr_of!(__text_start) as u64),
        up(core::ptr::addr_of!(__text_end) as u64),
    );
    let rodata = (
        page(core::ptr::addr_of!(__rodata_start) as u64),
        up(core::ptr::addr_of!(__rodata_end) as u64),
    );
    // All RAM and firmware tables, RW and not executable; the image's code and constants are
    // carved out below and remapped with their own rights.
    let mut ranges: Vec<(u64, u64)> = info
        .memory
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                RegionKind::Usable | RegionKind::AcpiReclaimable | RegionKind::AcpiNvs
            )
        })
        .map(|r| (page(r.start.as_u64()), up(r.end().as_u64())))
        .collect();
    // The hypervisor image and the first MiB (where firmware tables and the AP trampoline live).
    let (ks, ke) = memory::kernel_image();
    ranges.push((0, 0x10_0000));
    ranges.push((page(ks.as_u64()), up(ke.as_u64())));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    for (s, e) in merged {
        for (a, b) in subtract(s, e, &[text, rodata]) {
            t.map(mem, a, HostPhysAddr::new(a), b - a, MapFlags::RW, big)?;
        }
    }
    t.map(
        mem,
        text.0,
        HostPhysAddr::new(text.0),
        text.1 - text.0,
        MapFlags::RX,
        PageSize::Size4K,
    )?;
    t.map(
        mem,
        rodata.0,
        HostPhysAddr::new(rodata.0),
        rodata.1 - rodata.0,
        MapFlags::R,
        PageSize::Size4K,
    )?;
    let apic = super::apic::base();
    if t.translate(mem, apic.as_u64()).is_none() {
        t.map(
            mem,
            apic.as_u64(),
            apic,
            PAGE_SIZE,
            MapFlags::RW | MapFlags::UNCACHED,
            PageSize::Size4K,
        )?;
    }
    // The boot stack's guard: the page below it.
    let boot_guard = core::ptr::addr_of!(boot_stack_bottom) as u64 - PAGE_SIZE;
    t.unmap(mem, boot_guard, PAGE_SIZE)?;
    ALL_GUARDS.lock().push(boot_guard);
    for g in EARLY_GUARDS.lock().drain(..) {
        t.unmap(mem, g.as_u64(), PAGE_SIZE)?;
    }
    Ok(t)
}

/// `[s, e)` minus the given holes.
fn subtract(s: u64, e: u64, holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = alloc::vec![(s, e)];
    for &(hs, he) in holes {
        out = out
            .into_iter()
            .flat_map(|(a, b)| {
                let mut v = Vec::new();
                if hs >= b || he <= a {
                    v.push((a, b));
                } else {
                    if a < hs {
                        v.push((a, hs));
                    }
                    if he < b {
                        v.push((he, b));
                    }
                }
                v
            })
            .collect();
    }
    out
}

/// Builds the hypervisor's tables, checks them and switches the boot CPU to them.
pub fn init(info: &BootInfo) {
    let tables = match build(info) {
        Ok(t) => t,
        Err(e) => panic!("cannot build the hypervisor's page tables: {e}"),
    };
    if let Err(v) = check_tables(&tables, &[]) {
        panic!("hypervisor page tables refused: {v}");
    }
    let frames = tables.table_frames(&FrameTables);
    HOST_CR3.store(tables.root().as_u64(), Ordering::Release);
    *HOST_TABLES.lock() = Some(tables);
    load();
    log::info!(target: "mm", "own page tables live: W^X, code-only-in-text and stack guards checked, {frames} table frames");
}

/// Switches this CPU to the hypervisor's tables (APs call this first thing).
pub fn load() {
    let cr3 = HOST_CR3.load(Ordering::Acquire);
    if cr3 != 0 {
        // SAFETY: the tables identity-map all RAM, the image with its rights and this CPU's
        // stack, so execution continues unchanged after the switch.
        unsafe { cpu::write_cr3(cr3) };
    }
}

/// The image's code, page-rounded: the only range the hypervisor may execute.
fn text_range() -> core::ops::Range<u64> {
    let start = core::ptr::addr_of!(__text_start) as u64 & !(PAGE_SIZE - 1);
    let end = (core::ptr::addr_of!(__text_end) as u64 + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    start..end
}

fn check_tables(
    tables: &PageTable<HostEntry>,
    guest_ram: &[core::ops::Range<u64>],
) -> Result<(), HostTableViolation> {
    let guards = ALL_GUARDS.lock().clone();
    let layout = HostLayout {
        text: text_range(),
        guards: &guards,
        guest_ram,
    };
    check_host_tables(tables, &FrameTables, &layout)
}

/// Checks the live tables: no page writable and executable, nothing executable but the
/// image's code (so none of `guest_ram`), every stack guard unmapped.
pub fn check(guest_ram: &[core::ops::Range<u64>]) -> Result<(), HostTableViolation> {
    match HOST_TABLES.lock().as_ref() {
        Some(t) => check_tables(t, guest_ram),
        None => Ok(()),
    }
}

/// Whether `addr` is mapped in the hypervisor's tables (for self-tests).
pub fn is_mapped(addr: u64) -> bool {
    HOST_TABLES
        .lock()
        .as_ref()
        .is_some_and(|t| t.translate(&FrameTables, addr).is_some())
}
