//! The table self-checks against deliberately broken tables: each break is made in the raw
//! entries (as a builder bug or a stray write would), and the check must name it.

use super::super::*;
use super::hpa;
use crate::addr::{LARGE_PAGE_SIZE as M2, PAGE_SIZE as K4};

/// x86-64 entry bits the breaks flip (AMD APM vol.2 §5.3.3).
const X86_WRITABLE: u64 = 1 << 1;
const X86_NO_EXECUTE: u64 = 1 << 63;
const ADDR_4K: u64 = 0x000f_ffff_ffff_f000;

/// The table frame, index and raw value of the leaf that maps `virt`.
fn leaf<E: Entry>(mem: &ArenaTables, root: HostPhysAddr, virt: u64) -> (HostPhysAddr, usize, u64) {
    let mut table = root;
    let mut level = 4u8;
    loop {
        let index = ((virt >> (12 + 9 * u32::from(level - 1))) & 0x1FF) as usize;
        let raw = mem.read_entry(table, index);
        assert!(E::is_present(raw), "{virt:#x} is not mapped");
        if E::is_leaf(raw, level) {
            return (table, index, raw);
        }
        table = E::table_addr(raw);
        level -= 1;
    }
}

/// Text at 2 MiB (2 pages RX), data after it RW, a guest RAM block at 64 MiB (RW), and a
/// stack at 8 MiB whose guard page (the first) is left unmapped.
fn host_tables(mem: &mut ArenaTables) -> PageTable<HostEntry> {
    let mut pt = PageTable::<HostEntry>::new(mem).unwrap();
    let m = |pt: &mut PageTable<HostEntry>, mem: &mut ArenaTables, va, len, f| {
        pt.map(mem, va, hpa(va), len, f, PageSize::Size2M).unwrap()
    };
    m(&mut pt, mem, 0x20_0000, 2 * K4, MapFlags::RX);
    m(&mut pt, mem, 0x20_2000, M2 - 2 * K4, MapFlags::RW);
    m(&mut pt, mem, 0x80_1000, 16 * K4, MapFlags::RW);
    m(&mut pt, mem, 0x400_0000, 2 * M2, MapFlags::RW);
    pt
}

const GUARDS: [u64; 1] = [0x80_0000];
const GUEST_RAM: [core::ops::Range<u64>; 1] = [0x400_0000..0x440_0000];

fn layout() -> HostLayout<'static> {
    HostLayout {
        text: 0x20_0000..0x20_2000,
        guards: &GUARDS,
        guest_ram: &GUEST_RAM,
    }
}

#[test]
fn sound_host_tables_pass() {
    let mut mem = ArenaTables::new();
    let pt = host_tables(&mut mem);
    assert_eq!(check_host_tables(&pt, &mem, &layout()), Ok(()));
}

#[test]
fn writable_code_is_caught() {
    let mut mem = ArenaTables::new();
    let pt = host_tables(&mut mem);
    let (t, i, raw) = leaf::<HostEntry>(&mem, pt.root(), 0x20_1000);
    mem.write_entry(t, i, raw | X86_WRITABLE);
    let v = check_host_tables(&pt, &mem, &layout()).unwrap_err();
    assert!(matches!(v, HostTableViolation::WritableExecutable(m) if m.virt == 0x20_1000));
    assert!(v.to_string().contains("writable and executable"), "{v}");
}

#[test]
fn executable_guest_ram_is_caught() {
    let mut mem = ArenaTables::new();
    let pt = host_tables(&mut mem);
    let (t, i, raw) = leaf::<HostEntry>(&mem, pt.root(), 0x420_0000);
    mem.write_entry(t, i, raw & !X86_NO_EXECUTE & !X86_WRITABLE);
    let v = check_host_tables(&pt, &mem, &layout()).unwrap_err();
    assert!(matches!(v, HostTableViolation::GuestRamExecutable(m) if m.virt == 0x420_0000));
    assert!(v.to_string().contains("guest RAM"), "{v}");
}

#[test]
fn executable_data_outside_the_text_is_caught() {
    let mut mem = ArenaTables::new();
    let pt = host_tables(&mut mem);
    let (t, i, raw) = leaf::<HostEntry>(&mem, pt.root(), 0x80_5000);
    mem.write_entry(t, i, raw & !X86_NO_EXECUTE & !X86_WRITABLE);
    let v = check_host_tables(&pt, &mem, &layout()).unwrap_err();
    assert!(matches!(v, HostTableViolation::ExecutableOutsideText(m) if m.virt == 0x80_5000));
}

#[test]
fn a_mapped_stack_guard_is_caught() {
    let mut mem = ArenaTables::new();
    let mut pt = host_tables(&mut mem);
    pt.map(
        &mut mem,
        GUARDS[0],
        hpa(GUARDS[0]),
        K4,
        MapFlags::RW,
        PageSize::Size4K,
    )
    .unwrap();
    assert_eq!(
        check_host_tables(&pt, &mem, &layout()),
        Err(HostTableViolation::GuardMapped { guard: GUARDS[0] })
    );
}

/// A guest of 6 MiB at host 1 GiB, as NPT.
fn nested(mem: &mut ArenaTables) -> (PageTable<NptEntry>, [Region; 1]) {
    let mut pt = PageTable::<NptEntry>::new(mem).unwrap();
    pt.map(
        mem,
        0,
        hpa(1 << 30),
        3 * M2,
        MapFlags::RWX,
        PageSize::Size1G,
    )
    .unwrap();
    let ram = Region {
        virt: 0,
        phys: hpa(1 << 30),
        size_bytes: 3 * M2,
    };
    (pt, [ram])
}

#[test]
fn a_nested_table_of_exactly_the_ram_passes() {
    let mut mem = ArenaTables::new();
    let (pt, ram) = nested(&mut mem);
    assert_eq!(check_nested(&pt, &mem, &ram), Ok(()));
}

#[test]
fn a_nested_mapping_outside_the_ram_is_caught() {
    let mut mem = ArenaTables::new();
    let (mut pt, ram) = nested(&mut mem);
    // A device page passed through by mistake (the host's local APIC).
    pt.map(
        &mut mem,
        0xFEE0_0000,
        hpa(0xFEE0_0000),
        K4,
        MapFlags::RW,
        PageSize::Size4K,
    )
    .unwrap();
    let v = check_nested(&pt, &mem, &ram).unwrap_err();
    assert!(matches!(v, NestedViolation::Unexpected(m) if m.virt == 0xFEE0_0000));
    assert!(v.to_string().contains("GPA:0xfee00000"), "{v}");
}

#[test]
fn a_nested_leaf_pointing_at_other_memory_is_caught() {
    let mut mem = ArenaTables::new();
    let (pt, ram) = nested(&mut mem);
    // The last 2 MiB page redirected to host memory right after the guest's (a neighbour).
    let (t, i, raw) = leaf::<NptEntry>(&mem, pt.root(), 2 * M2);
    mem.write_entry(t, i, (raw & !ADDR_4K) | ((1 << 30) + 3 * M2));
    let v = check_nested(&pt, &mem, &ram).unwrap_err();
    assert!(matches!(v, NestedViolation::Unexpected(m) if m.virt == 2 * M2));
}

#[test]
fn a_nested_table_missing_ram_is_caught() {
    let mut mem = ArenaTables::new();
    let (mut pt, ram) = nested(&mut mem);
    pt.unmap(&mut mem, 2 * M2, M2).unwrap();
    assert_eq!(
        check_nested(&pt, &mem, &ram),
        Err(NestedViolation::Missing { gpa: 3 * M2 - K4 })
    );
}
