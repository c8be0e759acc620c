use super::*;
use crate::addr::{HostPhysAddr, HUGE_PAGE_SIZE as G, LARGE_PAGE_SIZE as M2, PAGE_SIZE as K4};
use alloc::vec::Vec;

mod check;
mod encodings;

pub(super) fn hpa(a: u64) -> HostPhysAddr {
    HostPhysAddr::new(a)
}

fn sizes(pt: &PageTable<impl Entry>, mem: &ArenaTables) -> Vec<(u64, PageSize)> {
    pt.mappings(mem).iter().map(|m| (m.virt, m.size)).collect()
}

/// Every present entry of every table under `table`, with its level.
pub(super) fn all_entries<E: Entry>(
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
