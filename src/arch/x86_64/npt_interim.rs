//! Interim nested page tables (2 MiB pages only) until the generic `paging` builder lands.

use crate::addr::HostPhysAddr;
use crate::arch::x86_64::guest_ram::GuestRam;
use crate::arch::x86_64::memory;

const P_W_U: u64 = 0b111;
const LARGE: u64 = 1 << 7;
const TWO_MIB: u64 = 2 << 20;

fn table_at(pa: u64) -> *mut u64 {
    pa as *mut u64
}

fn next(table: u64, index: usize) -> u64 {
    // SAFETY: `table` is a table frame this module allocated; index < 512.
    let e = unsafe { table_at(table).add(index).read_volatile() };
    if e & 1 != 0 {
        return e & 0x000F_FFFF_FFFF_F000;
    }
    let t = memory::alloc_zeroed(4096, 4096)
        .expect("NPT table frame")
        .as_u64();
    // SAFETY: as above.
    unsafe { table_at(table).add(index).write_volatile(t | P_W_U) };
    t
}

/// Builds an NPT mapping exactly `ram`'s regions, RWX for the guest, with 2 MiB pages.
pub fn build(ram: &GuestRam) -> HostPhysAddr {
    let root = memory::alloc_zeroed(4096, 4096).expect("NPT root").as_u64();
    for r in ram.regions() {
        let mut off = 0;
        while off < r.len {
            let gpa = r.gpa.as_u64() + off;
            let pdpt = next(root, ((gpa >> 39) & 511) as usize);
            let pd = next(pdpt, ((gpa >> 30) & 511) as usize);
            // SAFETY: `pd` is a table frame this module allocated.
            unsafe {
                table_at(pd)
                    .add(((gpa >> 21) & 511) as usize)
                    .write_volatile((r.hpa.as_u64() + off) | P_W_U | LARGE)
            };
            off += TWO_MIB;
        }
    }
    HostPhysAddr::new(root)
}
