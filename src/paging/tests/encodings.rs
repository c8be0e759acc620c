//! Entry encodings per format, and the W^X and unexpected-mapping self-checks.

use super::super::*;
use super::{all_entries, hpa};
use crate::addr::{HUGE_PAGE_SIZE as G, LARGE_PAGE_SIZE as M2, PAGE_SIZE as K4};
use alloc::vec::Vec;

#[test]
fn ept_leaf_and_table_encodings() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<EptEntry>::new(&mut mem).unwrap();
    pt.map(
        &mut mem,
        0,
        hpa(0x5000),
        K4,
        MapFlags::RWX,
        PageSize::Size1G,
    )
    .unwrap();
    pt.map(
        &mut mem,
        M2,
        hpa(0x4000_0000),
        M2,
        MapFlags::RW,
        PageSize::Size1G,
    )
    .unwrap();
    pt.map(
        &mut mem,
        G,
        hpa(0xc000_0000),
        G,
        MapFlags::R | MapFlags::UNCACHED,
        PageSize::Size1G,
    )
    .unwrap();
    let mut entries = Vec::new();
    all_entries::<EptEntry>(&mem, pt.root(), 4, &mut entries);
    let wb = EPT_MEMTYPE_WB << 3;
    assert_eq!(EPT_MEMTYPE_WB, 6);
    let leaves: Vec<_> = entries
        .iter()
        .filter(|(l, raw)| EptEntry::is_leaf(*raw, *l))
        .collect();
    assert_eq!(
        leaves,
        [
            &(1, 0x5000 | 0b111 | wb | EPT_IGNORE_PAT),
            &(2, 0x4000_0000 | 0b011 | wb | EPT_IGNORE_PAT | 1 << 7),
            &(3, 0xc000_0000 | 0b001 | EPT_IGNORE_PAT | 1 << 7), // R, UC (type 0), large
        ]
    );
    // Tables: R/W/X set, bits 7:3 clear (reserved in non-leaf EPT entries).
    for (level, raw) in entries
        .iter()
        .filter(|(l, raw)| !EptEntry::is_leaf(*raw, *l))
    {
        assert_eq!(raw & 0xfff, 0b111, "level {level} entry {raw:#x}");
    }
    assert_eq!(
        pt.translate(&mem, G + 5).unwrap().1,
        MapFlags::R | MapFlags::UNCACHED
    );
    assert_eq!(pt.translate(&mem, 0).unwrap().1, MapFlags::RWX);
    // Write without read is a misconfiguration; execute-only is expressible.
    assert!(EptEntry::check_flags(MapFlags::WRITE | MapFlags::EXEC).is_err());
    assert!(EptEntry::check_flags(MapFlags::UNCACHED).is_err());
    assert!(EptEntry::check_flags(MapFlags::EXEC).is_ok());
    assert!(!EptEntry::is_present(
        EptEntry::leaf(hpa(0x1000), MapFlags::UNCACHED, PageSize::Size4K) & !0x7
    ));
}

#[test]
fn npt_entries_are_user_at_every_level_and_host_entries_never() {
    for big in [false, true] {
        let mut mem = ArenaTables::new();
        let mut npt = PageTable::<NptEntry>::new(&mut mem).unwrap();
        let mut host = PageTable::<HostEntry>::new(&mut mem).unwrap();
        let size = if big { G + M2 + K4 } else { K4 };
        npt.map(&mut mem, G, hpa(G), size, MapFlags::RWX, PageSize::Size1G)
            .unwrap();
        host.map(&mut mem, G, hpa(G), size, MapFlags::RX, PageSize::Size1G)
            .unwrap();
        let mut entries = Vec::new();
        all_entries::<NptEntry>(&mem, npt.root(), 4, &mut entries);
        assert!(entries.len() >= 4);
        assert!(
            entries.iter().all(|(_, raw)| raw & 0b111 == 0b111),
            "{entries:x?}"
        );
        assert!(
            entries.iter().all(|(_, raw)| raw & (1 << 63) == 0),
            "RWX leaves have NX clear"
        );
        let mut entries = Vec::new();
        all_entries::<HostEntry>(&mem, host.root(), 4, &mut entries);
        assert!(
            entries.iter().all(|(_, raw)| raw & 0b100 == 0),
            "{entries:x?}"
        );
        // Read-only code: W clear, NX clear in leaves; tables writable.
        for (level, raw) in entries {
            if HostEntry::is_leaf(raw, level) {
                assert_eq!(raw & (1 << 63 | 0b11), 0b01);
                assert_eq!(raw & (1 << 7) != 0, level > 1, "PS only in large leaves");
            } else {
                assert_eq!(raw & 0xfff, 0b011);
            }
        }
    }
}

#[test]
fn host_leaves_encode_nx_and_uncached() {
    let data = HostEntry::leaf(hpa(0x7000), MapFlags::RW, PageSize::Size4K);
    assert_eq!(data, 0x7000 | 0b011 | 1 << 63);
    let mmio = HostEntry::leaf(
        hpa(0xfee0_0000),
        MapFlags::RW | MapFlags::UNCACHED,
        PageSize::Size2M,
    );
    assert_eq!(mmio, 0xfee0_0000 | 0b011 | 0b11 << 3 | 1 << 7 | 1 << 63);
    assert_eq!(
        HostEntry::leaf_flags(mmio, PageSize::Size2M),
        MapFlags::RW | MapFlags::UNCACHED
    );
    assert!(HostEntry::check_flags(MapFlags::EXEC).is_err());
}

#[test]
fn wx_checker_finds_a_planted_page() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<HostEntry>::new(&mut mem).unwrap();
    pt.map(
        &mut mem,
        0x20_0000,
        hpa(0x20_0000),
        0x10_0000,
        MapFlags::RX,
        PageSize::Size2M,
    )
    .unwrap();
    pt.map(
        &mut mem,
        0x30_0000,
        hpa(0x30_0000),
        0x10_0000,
        MapFlags::R,
        PageSize::Size2M,
    )
    .unwrap();
    pt.map(
        &mut mem,
        0x40_0000,
        hpa(0x40_0000),
        4 * M2,
        MapFlags::RW,
        PageSize::Size2M,
    )
    .unwrap();
    assert_eq!(pt.find_writable_executable(&mem), None);
    pt.protect(&mut mem, 0x40_0000 + 3 * M2 + 5 * K4, K4, MapFlags::RWX)
        .unwrap();
    let bad = pt.find_writable_executable(&mem).unwrap();
    assert_eq!(bad.virt, 0x40_0000 + 3 * M2 + 5 * K4);
    assert_eq!(bad.size, PageSize::Size4K);
}

#[test]
fn unexpected_mapping_checker() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<NptEntry>::new(&mut mem).unwrap();
    let low = Region {
        virt: 0,
        phys: hpa(8 * G),
        size_bytes: 3 * G,
    };
    let high = Region {
        virt: 4 * G,
        phys: hpa(11 * G),
        size_bytes: M2,
    };
    for r in [low, high] {
        pt.map(
            &mut mem,
            r.virt,
            r.phys,
            r.size_bytes,
            MapFlags::RWX,
            PageSize::Size1G,
        )
        .unwrap();
    }
    assert_eq!(pt.find_unexpected(&mem, &[low, high]), None);
    assert_eq!(
        pt.find_unexpected(&mem, &[low]).map(|m| m.virt),
        Some(4 * G)
    );
    // A page mapped at the right address but to the wrong host frame.
    pt.map(
        &mut mem,
        4 * G + M2,
        hpa(0),
        K4,
        MapFlags::R,
        PageSize::Size1G,
    )
    .unwrap();
    let wider = Region {
        size_bytes: M2 + K4,
        ..high
    };
    assert_eq!(
        pt.find_unexpected(&mem, &[low, wider]).map(|m| m.virt),
        Some(4 * G + M2)
    );
}

#[test]
fn eptp_names_root_write_back_and_four_levels() {
    assert_eq!(
        EptEntry::eptp(hpa(0x12_3456_7000)),
        0x12_3456_7000 | 6 | 3 << 3
    );
}
