use super::entry::{EPT_IGNORE_PAT, EPT_MEMTYPE_WB};
use super::*;
use crate::addr::{HostPhysAddr, HUGE_PAGE_SIZE as G, LARGE_PAGE_SIZE as M2, PAGE_SIZE as K4};
use alloc::vec::Vec;

fn hpa(a: u64) -> HostPhysAddr {
    HostPhysAddr::new(a)
}

fn sizes(pt: &PageTable<impl Entry>, mem: &ArenaTables) -> Vec<(u64, PageSize)> {
    pt.mappings(mem).iter().map(|m| (m.virt, m.size)).collect()
}

/// Every present entry of every table under `table`, with its level.
fn all_entries<E: Entry>(
    mem: &ArenaTables,
    table: HostPhysAddr,
    level: u8,
    out: &mut Vec<(u8, u64)>,
) {
    for i in 0..ENTRIES {
        let raw = mem.read_entry(table, i);
        if E::is_present(raw) {
            out.push((level, raw));
            if !E::is_leaf(raw, level) {
                all_entries::<E>(mem, E::table_addr(raw), level - 1, out);
            }
        }
    }
}

const ENTRIES: usize = 512;

#[test]
fn picks_largest_pages_and_small_ones_at_the_edges() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<NptEntry>::new(&mut mem).unwrap();
    let size = G + 6 * M2 / 2 + 3 * K4; // 1 GiB + 6 MiB + 12 KiB
    pt.map(&mut mem, 0, hpa(G), size, MapFlags::RWX, PageSize::Size1G)
        .unwrap();
    let got = sizes(&pt, &mem);
    let mut want = vec![(0, PageSize::Size1G)];
    want.extend((0..3).map(|i| (G + i * M2, PageSize::Size2M)));
    want.extend((0..3).map(|i| (G + 3 * M2 + i * K4, PageSize::Size4K)));
    assert_eq!(got, want);

    // Every boundary translates, with the right offset; just past the end does not.
    let bounds = [
        0,
        G - 1,
        G,
        G + M2 - 1,
        G + M2,
        G + 3 * M2 - 1,
        G + 3 * M2,
        size - K4,
        size - 1,
    ];
    for v in bounds {
        let (p, flags, _) = pt.translate(&mem, v).unwrap();
        assert_eq!(p, hpa(G + v), "at {v:#x}");
        assert_eq!(flags, MapFlags::RWX);
    }
    assert_eq!(pt.translate(&mem, size), None);
    assert_eq!(pt.translate(&mem, 1 << 47), None);
    assert_eq!(pt.translate(&mem, u64::MAX), None);
}

#[test]
fn unaligned_edges_on_both_sides() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<HostEntry>::new(&mut mem).unwrap();
    let virt = G - 2 * K4;
    let size = 2 * K4 + G + M2 + K4;
    pt.map(
        &mut mem,
        virt,
        hpa(virt),
        size,
        MapFlags::RW,
        PageSize::Size1G,
    )
    .unwrap();
    let want = vec![
        (G - 2 * K4, PageSize::Size4K),
        (G - K4, PageSize::Size4K),
        (G, PageSize::Size1G),
        (2 * G, PageSize::Size2M),
        (2 * G + M2, PageSize::Size4K),
    ];
    assert_eq!(sizes(&pt, &mem), want);
    assert_eq!(pt.translate(&mem, virt - 1), None);
    assert_eq!(pt.translate(&mem, virt + size), None);
}

#[test]
fn page_size_follows_both_alignments_and_the_cap() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<EptEntry>::new(&mut mem).unwrap();
    // Input 2 MiB aligned, output only 4 KiB aligned: 4 KiB pages throughout.
    pt.map(
        &mut mem,
        M2,
        hpa(K4),
        2 * M2,
        MapFlags::RW,
        PageSize::Size1G,
    )
    .unwrap();
    assert!(pt.mappings(&mem).iter().all(|m| m.size == PageSize::Size4K));
    assert_eq!(pt.mappings(&mem).len(), 1024);
    // Capped at 2 MiB: a whole aligned GiB still comes out as 2 MiB pages.
    pt.map(
        &mut mem,
        4 * G,
        hpa(4 * G),
        G,
        MapFlags::RW,
        PageSize::Size2M,
    )
    .unwrap();
    let big: Vec<_> = pt
        .mappings(&mem)
        .into_iter()
        .filter(|m| m.virt >= 4 * G)
        .collect();
    assert_eq!(big.len(), 512);
    assert!(big.iter().all(|m| m.size == PageSize::Size2M));
}

#[test]
fn rejects_bad_ranges_and_overlaps_without_changes() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<HostEntry>::new(&mut mem).unwrap();
    let f = MapFlags::RW;
    let s = PageSize::Size1G;
    assert!(matches!(
        pt.map(&mut mem, 0x800, hpa(0), K4, f, s),
        Err(PagingError::Misaligned { .. })
    ));
    assert!(matches!(
        pt.map(&mut mem, 0, hpa(0x10), K4, f, s),
        Err(PagingError::Misaligned { .. })
    ));
    assert!(matches!(
        pt.map(&mut mem, 0, hpa(0), 0x1800, f, s),
        Err(PagingError::Misaligned { .. })
    ));
    assert_eq!(
        pt.map(&mut mem, 0, hpa(0), 0, f, s),
        Err(PagingError::EmptyRange { virt: 0 })
    );
    let top = INPUT_ADDR_LIMIT - K4;
    assert!(pt.map(&mut mem, top, hpa(0), K4, f, s).is_ok());
    assert!(matches!(
        pt.map(&mut mem, top, hpa(0), 2 * K4, f, s),
        Err(PagingError::VirtTooWide { .. })
    ));
    assert!(matches!(
        pt.map(&mut mem, u64::MAX - 0xfff, hpa(0), K4, f, s),
        Err(PagingError::VirtTooWide { .. })
    ));
    let far = hpa(OUTPUT_ADDR_LIMIT - K4);
    assert!(matches!(
        pt.map(&mut mem, 0, far, 2 * K4, f, s),
        Err(PagingError::PhysTooWide { .. })
    ));
    assert_eq!(
        pt.map(&mut mem, 0, hpa(0), K4, MapFlags::WRITE, s),
        Err(PagingError::BadFlags {
            flags: MapFlags::WRITE
        })
    );

    pt.map(&mut mem, 4 * M2, hpa(0), M2, f, s).unwrap();
    let before = pt.mappings(&mem);
    let frames = mem.live_frames();
    // Overlapping the tail of the existing mapping: reported at the first mapped address.
    let err = pt.map(&mut mem, 3 * M2, hpa(0), 2 * M2, f, s);
    assert_eq!(err, Err(PagingError::AlreadyMapped { virt: 4 * M2 }));
    let err = pt.map(&mut mem, 4 * M2 + 5 * K4, hpa(0), K4, f, s);
    assert_eq!(
        err,
        Err(PagingError::AlreadyMapped {
            virt: 4 * M2 + 5 * K4
        })
    );
    assert_eq!(pt.mappings(&mem), before);
    assert_eq!(mem.live_frames(), frames);
    assert!(err.unwrap_err().to_string().contains("already mapped"));
}

#[test]
fn protect_splits_large_pages_and_keeps_translations() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<HostEntry>::new(&mut mem).unwrap();
    pt.map(&mut mem, 0, hpa(3 * G), G, MapFlags::RW, PageSize::Size1G)
        .unwrap();
    assert_eq!(pt.table_frames(&mem), 2);
    pt.protect(&mut mem, M2 + K4, 2 * K4, MapFlags::R).unwrap();

    // 1 GiB → 512 × 2 MiB, of which the second → 512 × 4 KiB.
    assert_eq!(pt.table_frames(&mem), 4);
    let all = pt.mappings(&mem);
    assert_eq!(all.len(), 511 + 512);
    for m in &all {
        assert_eq!(m.phys, hpa(3 * G + m.virt), "{m:?}");
        let inside = m.virt >= M2 + K4 && m.virt < M2 + 3 * K4;
        let want = if inside { MapFlags::R } else { MapFlags::RW };
        assert_eq!(m.flags, want, "{m:?}");
    }
    assert_eq!(pt.translate(&mem, M2).unwrap().1, MapFlags::RW);
    assert_eq!(
        pt.translate(&mem, M2 + K4).unwrap(),
        (hpa(3 * G + M2 + K4), MapFlags::R, PageSize::Size4K)
    );
    assert_eq!(pt.translate(&mem, M2 + 3 * K4).unwrap().1, MapFlags::RW);
    assert_eq!(pt.translate(&mem, 2 * M2).unwrap().2, PageSize::Size2M);

    // Protecting a whole large page does not split it.
    pt.protect(&mut mem, 4 * M2, M2, MapFlags::RX).unwrap();
    assert_eq!(
        pt.translate(&mem, 4 * M2 + 7).unwrap(),
        (hpa(3 * G + 4 * M2 + 7), MapFlags::RX, PageSize::Size2M)
    );
    assert_eq!(pt.table_frames(&mem), 4);
}

#[test]
fn protect_and_unmap_refuse_holes() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<NptEntry>::new(&mut mem).unwrap();
    pt.map(&mut mem, 0, hpa(0), M2, MapFlags::RW, PageSize::Size2M)
        .unwrap();
    let before = pt.mappings(&mem);
    assert_eq!(
        pt.protect(&mut mem, M2 - K4, 2 * K4, MapFlags::R),
        Err(PagingError::NotMapped { virt: M2 })
    );
    assert_eq!(
        pt.unmap(&mut mem, 5 * G, K4),
        Err(PagingError::NotMapped { virt: 5 * G })
    );
    assert_eq!(pt.mappings(&mem), before);
    assert_eq!(pt.table_frames(&mem), 3);
}

#[test]
fn unmap_splits_edges_and_frees_emptied_tables() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<EptEntry>::new(&mut mem).unwrap();
    pt.map(&mut mem, 0, hpa(G), 2 * M2, MapFlags::RWX, PageSize::Size1G)
        .unwrap();
    pt.unmap(&mut mem, K4, 2 * M2 - 2 * K4).unwrap();
    let got = sizes(&pt, &mem);
    assert_eq!(
        got,
        vec![(0, PageSize::Size4K), (2 * M2 - K4, PageSize::Size4K)]
    );
    assert_eq!(pt.translate(&mem, K4), None);
    assert_eq!(pt.translate(&mem, 2 * M2 - K4 - 1), None);
    assert_eq!(
        pt.translate(&mem, 2 * M2 - K4).unwrap().0,
        hpa(G + 2 * M2 - K4)
    );

    pt.unmap(&mut mem, 0, K4).unwrap();
    pt.unmap(&mut mem, 2 * M2 - K4, K4).unwrap();
    assert!(pt.mappings(&mem).is_empty());
    assert_eq!(pt.table_frames(&mem), 1);
    assert_eq!(mem.live_frames(), 1);
}

#[test]
fn destroy_frees_every_frame_it_allocated() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<NptEntry>::new(&mut mem).unwrap();
    pt.map(
        &mut mem,
        0,
        hpa(0),
        3 * G + 5 * M2 + 7 * K4,
        MapFlags::RWX,
        PageSize::Size1G,
    )
    .unwrap();
    pt.map(
        &mut mem,
        1 << 40,
        hpa(0x1234_5000),
        9 * K4,
        MapFlags::R,
        PageSize::Size1G,
    )
    .unwrap();
    pt.protect(&mut mem, G + K4, K4, MapFlags::R).unwrap();
    let tables = pt.table_frames(&mem);
    assert_eq!(tables, mem.live_frames());
    pt.destroy(&mut mem);
    assert_eq!(mem.live_frames(), 0);
    assert_eq!(mem.total_frees(), mem.total_allocs());
}

#[test]
fn running_out_of_frames_undoes_a_partial_map() {
    let mut mem = ArenaTables::new();
    let mut pt = PageTable::<HostEntry>::new(&mut mem).unwrap();
    pt.map(&mut mem, 0, hpa(0), K4, MapFlags::RX, PageSize::Size1G)
        .unwrap();
    let before = pt.mappings(&mem);
    let frames = mem.live_frames();
    // Crossing into a second PD needs a new PD and a PT beyond what the limit allows.
    mem.set_limit(frames + 1);
    let err = pt.map(
        &mut mem,
        G - M2,
        hpa(0),
        M2 + K4,
        MapFlags::RW,
        PageSize::Size1G,
    );
    assert_eq!(err, Err(PagingError::OutOfFrames));
    assert_eq!(pt.mappings(&mem), before);
    assert_eq!(mem.live_frames(), frames);
    assert_eq!(
        PageTable::<HostEntry>::new(&mut ArenaTables::with_limit(0)).unwrap_err(),
        PagingError::OutOfFrames
    );

    // Protect needing a split that cannot get a frame changes nothing either.
    mem.set_limit(usize::MAX);
    pt.map(&mut mem, 4 * G, hpa(0), G, MapFlags::RW, PageSize::Size1G)
        .unwrap();
    let before = pt.mappings(&mem);
    mem.set_limit(mem.live_frames() + 1);
    assert_eq!(
        pt.protect(&mut mem, 4 * G + K4, K4, MapFlags::R),
        Err(PagingError::OutOfFrames)
    );
    for m in before {
        let (phys, flags, _) = pt.translate(&mem, m.virt).unwrap();
        assert_eq!((phys, flags), (m.phys, m.flags));
    }
    assert_eq!(pt.translate(&mem, 4 * G + K4).unwrap().1, MapFlags::RW);
}

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
