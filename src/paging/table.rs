//! [`PageTable`]: map, unmap, protect, translate, visit and destroy a 4-level table tree.
//!
//! Invariant kept by every operation: no table below the root is empty (unmap frees tables it
//! empties), so a present non-leaf entry always leads to at least one mapping.

use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ops::ControlFlow;

use super::arena::{TableMemory, ENTRIES_PER_TABLE};
use super::{
    Entry, MapFlags, Mapping, PageSize, PagingError, Region, INPUT_ADDR_LIMIT, OUTPUT_ADDR_LIMIT,
};
use crate::addr::{HostPhysAddr, PAGE_SIZE};

/// Level of the root table (PML4).
const ROOT_LEVEL: u8 = 4;
/// Bits of input address translated by one table level.
const BITS_PER_LEVEL: u32 = 9;
/// Bits of page offset below the level-1 index.
const PAGE_SHIFT: u32 = 12;

/// Input bytes one entry at `level` covers.
fn entry_span(level: u8) -> u64 {
    1 << (PAGE_SHIFT + BITS_PER_LEVEL * u32::from(level - 1))
}

/// Index of `virt` in a table at `level`.
fn index(virt: u64, level: u8) -> usize {
    ((virt >> (PAGE_SHIFT + BITS_PER_LEVEL * u32::from(level - 1))) as usize)
        & (ENTRIES_PER_TABLE - 1)
}

/// Indices of the entries of a table at `level`, covering input addresses from `base`, that
/// overlap `[lo, hi)` (which must overlap the table).
fn overlapping(level: u8, base: u64, lo: u64, hi: u64) -> core::ops::RangeInclusive<usize> {
    let span = entry_span(level);
    let table_end = base + span * ENTRIES_PER_TABLE as u64;
    let first = (lo.max(base) - base) / span;
    let last = (hi.min(table_end) - 1 - base) / span;
    first as usize..=last as usize
}

/// What a range walk finds at each step.
enum Found {
    /// An unmapped stretch starting at this address.
    Hole(u64),
    /// A leaf overlapping the range.
    Leaf(Mapping),
}

/// What `modify` does to each leaf that lies inside the range.
#[derive(Clone, Copy)]
enum Change {
    Unmap,
    Protect(MapFlags),
}

/// A 4-level page-table tree in entry format `E` (host, NPT or EPT).
///
/// The tree does not own its frames' memory: every operation takes the [`TableMemory`] the
/// tree was built in, and [`PageTable::destroy`] must be called to give the frames back.
pub struct PageTable<E: Entry> {
    root: HostPhysAddr,
    format: PhantomData<E>,
}

impl<E: Entry> core::fmt::Debug for PageTable<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PageTable({} root {})", E::NAME, self.root)
    }
}

impl<E: Entry> PageTable<E> {
    /// An empty tree: one zeroed root table.
    pub fn new<M: TableMemory + ?Sized>(mem: &mut M) -> Result<Self, PagingError> {
        let root = mem.alloc_zeroed_frame().ok_or(PagingError::OutOfFrames)?;
        Ok(Self {
            root,
            format: PhantomData,
        })
    }

    /// The root table: what goes into CR3, the VMCB's nCR3 or the EPTP.
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// Maps `[virt, virt + size)` to `[phys, phys + size)` with `flags`, using the largest
    /// pages up to `max_page` that both addresses' alignment and the remaining length allow
    /// (so 4 KiB pages only at unaligned edges). All or nothing: on any error the tree is as
    /// before.
    pub fn map<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        virt: u64,
        phys: HostPhysAddr,
        size: u64,
        flags: MapFlags,
        max_page: PageSize,
    ) -> Result<(), PagingError> {
        check_range(virt, phys.as_u64(), size)?;
        if phys
            .as_u64()
            .checked_add(size)
            .is_none_or(|end| end > OUTPUT_ADDR_LIMIT)
        {
            return Err(PagingError::PhysTooWide { phys, size });
        }
        E::check_flags(flags)?;
        if let Some(v) = self.first(mem, virt, virt + size, |f| match f {
            Found::Leaf(m) => Some(m.virt.max(virt)),
            Found::Hole(_) => None,
        }) {
            return Err(PagingError::AlreadyMapped { virt: v });
        }
        let mut done = 0;
        while done < size {
            let page = choose_page(virt + done, phys.as_u64() + done, size - done, max_page);
            let result = self.map_page(mem, virt + done, phys + done, page, flags);
            if let Err(e) = result {
                // Undo the pages already mapped and prune tables made for the failed one.
                let end = virt + done + page.bytes();
                modify::<E, M>(mem, self.root, ROOT_LEVEL, 0, virt, end, Change::Unmap);
                return Err(e);
            }
            done += page.bytes();
        }
        Ok(())
    }

    /// Removes every mapping in `[virt, virt + size)`, splitting large pages that straddle the
    /// edges and freeing tables left empty. Every page in the range must be mapped; on any
    /// error the translations are as before.
    pub fn unmap<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        virt: u64,
        size: u64,
    ) -> Result<(), PagingError> {
        self.change(mem, virt, size, Change::Unmap)
    }

    /// Gives every page in `[virt, virt + size)` the rights `flags`, splitting large pages that
    /// straddle the edges. Every page in the range must be mapped; on any error the
    /// translations and rights are as before.
    pub fn protect<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        virt: u64,
        size: u64,
        flags: MapFlags,
    ) -> Result<(), PagingError> {
        E::check_flags(flags)?;
        self.change(mem, virt, size, Change::Protect(flags))
    }

    /// Where `virt` maps to, with the rights and size of the leaf that maps it.
    pub fn translate<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        virt: u64,
    ) -> Option<(HostPhysAddr, MapFlags, PageSize)> {
        if virt >= INPUT_ADDR_LIMIT {
            return None;
        }
        let mut table = self.root;
        let mut level = ROOT_LEVEL;
        loop {
            let raw = mem.read_entry(table, index(virt, level));
            if !E::is_present(raw) {
                return None;
            }
            if E::is_leaf(raw, level) {
                let size = PageSize::at_level(level)?;
                let offset = virt & (size.bytes() - 1);
                return Some((
                    E::leaf_addr(raw, size) + offset,
                    E::leaf_flags(raw, size),
                    size,
                ));
            }
            table = E::table_addr(raw);
            level -= 1;
        }
    }

    /// Calls `f` with every leaf mapping, in ascending input-address order.
    pub fn for_each_mapping<M: TableMemory + ?Sized>(&self, mem: &M, mut f: impl FnMut(Mapping)) {
        self.first(mem, 0, INPUT_ADDR_LIMIT, |found| {
            if let Found::Leaf(m) = found {
                f(m);
            }
            None::<()>
        });
    }

    /// Every leaf mapping, in ascending input-address order.
    pub fn mappings<M: TableMemory + ?Sized>(&self, mem: &M) -> Vec<Mapping> {
        let mut all = Vec::new();
        self.for_each_mapping(mem, |m| all.push(m));
        all
    }

    /// The first leaf that is both writable and executable (a W^X violation), if any.
    pub fn find_writable_executable<M: TableMemory + ?Sized>(&self, mem: &M) -> Option<Mapping> {
        let wx = MapFlags::WRITE | MapFlags::EXEC;
        self.first(mem, 0, INPUT_ADDR_LIMIT, |found| match found {
            Found::Leaf(m) if m.flags.contains(wx) => Some(m),
            _ => None,
        })
    }

    /// The first leaf that does not lie wholly inside one of `expected` at that region's
    /// offset: something mapped that should not be (another guest's RAM, hypervisor memory,
    /// a device), or mapped to the wrong place.
    pub fn find_unexpected<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        expected: &[Region],
    ) -> Option<Mapping> {
        self.first(mem, 0, INPUT_ADDR_LIMIT, |found| match found {
            Found::Leaf(m) if !expected.iter().any(|r| r.covers(&m)) => Some(m),
            _ => None,
        })
    }

    /// Number of table frames in the tree, root included.
    pub fn table_frames<M: TableMemory + ?Sized>(&self, mem: &M) -> usize {
        count_tables::<E, M>(mem, self.root, ROOT_LEVEL)
    }

    /// Frees every table frame of the tree (not the pages it maps).
    pub fn destroy<M: TableMemory + ?Sized>(self, mem: &mut M) {
        free_tables::<E, M>(mem, self.root, ROOT_LEVEL);
    }

    fn change<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        virt: u64,
        size: u64,
        change: Change,
    ) -> Result<(), PagingError> {
        check_range(virt, 0, size)?;
        let end = virt + size;
        if let Some(v) = self.first(mem, virt, end, |f| match f {
            Found::Hole(start) => Some(start),
            Found::Leaf(_) => None,
        }) {
            return Err(PagingError::NotMapped { virt: v });
        }
        // Splitting keeps every translation, so failing between the two splits changes nothing
        // a walk can see.
        self.split_at(mem, virt)?;
        self.split_at(mem, end)?;
        modify::<E, M>(mem, self.root, ROOT_LEVEL, 0, virt, end, change);
        Ok(())
    }

    /// Maps one page; tables on the way are created as needed.
    fn map_page<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        virt: u64,
        phys: HostPhysAddr,
        page: PageSize,
        flags: MapFlags,
    ) -> Result<(), PagingError> {
        let mut table = self.root;
        let mut level = ROOT_LEVEL;
        while level > page.level() {
            let i = index(virt, level);
            let raw = mem.read_entry(table, i);
            table = if !E::is_present(raw) {
                let next = mem.alloc_zeroed_frame().ok_or(PagingError::OutOfFrames)?;
                mem.write_entry(table, i, E::table(next));
                next
            } else if E::is_leaf(raw, level) {
                return Err(PagingError::AlreadyMapped { virt });
            } else {
                E::table_addr(raw)
            };
            level -= 1;
        }
        let i = index(virt, level);
        if E::is_present(mem.read_entry(table, i)) {
            return Err(PagingError::AlreadyMapped { virt });
        }
        mem.write_entry(table, i, E::leaf(phys, flags, page));
        Ok(())
    }

    /// Makes `addr` a leaf boundary: splits every large leaf that covers `addr` without
    /// starting there into a full table of smaller leaves with the same translation and rights.
    fn split_at<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        addr: u64,
    ) -> Result<(), PagingError> {
        let mut table = self.root;
        let mut level = ROOT_LEVEL;
        while level > 1 && !addr.is_multiple_of(entry_span(level)) {
            let i = index(addr, level);
            let raw = mem.read_entry(table, i);
            if !E::is_present(raw) {
                return Ok(());
            }
            table = if E::is_leaf(raw, level) {
                let (Some(size), Some(smaller)) =
                    (PageSize::at_level(level), PageSize::at_level(level - 1))
                else {
                    return Ok(());
                };
                let phys = E::leaf_addr(raw, size);
                let flags = E::leaf_flags(raw, size);
                let next = mem.alloc_zeroed_frame().ok_or(PagingError::OutOfFrames)?;
                // Fill the new table before linking it, so a concurrent walk never sees holes.
                for j in 0..ENTRIES_PER_TABLE {
                    let p = phys + j as u64 * smaller.bytes();
                    mem.write_entry(next, j, E::leaf(p, flags, smaller));
                }
                mem.write_entry(table, i, E::table(next));
                next
            } else {
                E::table_addr(raw)
            };
            level -= 1;
        }
        Ok(())
    }

    /// Walks `[lo, hi)` in order, reporting holes and leaves to `f` until it returns `Some`.
    fn first<M: TableMemory + ?Sized, B>(
        &self,
        mem: &M,
        lo: u64,
        hi: u64,
        mut f: impl FnMut(Found) -> Option<B>,
    ) -> Option<B> {
        let mut step = |found| match f(found) {
            Some(b) => ControlFlow::Break(b),
            None => ControlFlow::Continue(()),
        };
        match walk::<E, M, B>(mem, self.root, ROOT_LEVEL, 0, lo, hi, &mut step) {
            ControlFlow::Break(b) => Some(b),
            ControlFlow::Continue(()) => None,
        }
    }
}

/// Applies `change` to every leaf wholly inside `[lo, hi)` under `table`; returns whether
/// `table` is left empty. Callers split the edges first, so no leaf straddles them.
#[allow(clippy::too_many_arguments)]
fn modify<E: Entry, M: TableMemory + ?Sized>(
    mem: &mut M,
    table: HostPhysAddr,
    level: u8,
    base: u64,
    lo: u64,
    hi: u64,
    change: Change,
) -> bool {
    let span = entry_span(level);
    for i in overlapping(level, base, lo, hi) {
        let start = base + i as u64 * span;
        let raw = mem.read_entry(table, i);
        if !E::is_present(raw) {
            continue;
        }
        if !E::is_leaf(raw, level) {
            let child = E::table_addr(raw);
            let emptied = modify::<E, M>(mem, child, level - 1, start, lo, hi, change);
            if emptied {
                // Unlink before freeing, so no walk reaches a recycled frame.
                mem.write_entry(table, i, 0);
                mem.free_frame(child);
            }
            continue;
        }
        let (Some(size), true) = (PageSize::at_level(level), start >= lo && start + span <= hi)
        else {
            continue;
        };
        let new = match change {
            Change::Unmap => 0,
            Change::Protect(flags) => E::leaf(E::leaf_addr(raw, size), flags, size),
        };
        mem.write_entry(table, i, new);
    }
    matches!(change, Change::Unmap)
        && (0..ENTRIES_PER_TABLE).all(|j| !E::is_present(mem.read_entry(table, j)))
}

fn walk<E: Entry, M: TableMemory + ?Sized, B>(
    mem: &M,
    table: HostPhysAddr,
    level: u8,
    base: u64,
    lo: u64,
    hi: u64,
    f: &mut impl FnMut(Found) -> ControlFlow<B>,
) -> ControlFlow<B> {
    let span = entry_span(level);
    for i in overlapping(level, base, lo, hi) {
        let start = base + i as u64 * span;
        let raw = mem.read_entry(table, i);
        if !E::is_present(raw) {
            f(Found::Hole(start.max(lo)))?;
        } else if E::is_leaf(raw, level) {
            if let Some(size) = PageSize::at_level(level) {
                f(Found::Leaf(Mapping {
                    virt: start,
                    phys: E::leaf_addr(raw, size),
                    size,
                    flags: E::leaf_flags(raw, size),
                }))?;
            }
        } else {
            walk::<E, M, B>(mem, E::table_addr(raw), level - 1, start, lo, hi, f)?;
        }
    }
    ControlFlow::Continue(())
}

fn count_tables<E: Entry, M: TableMemory + ?Sized>(
    mem: &M,
    table: HostPhysAddr,
    level: u8,
) -> usize {
    let mut n = 1;
    if level > 1 {
        for i in 0..ENTRIES_PER_TABLE {
            let raw = mem.read_entry(table, i);
            if E::is_present(raw) && !E::is_leaf(raw, level) {
                n += count_tables::<E, M>(mem, E::table_addr(raw), level - 1);
            }
        }
    }
    n
}

fn free_tables<E: Entry, M: TableMemory + ?Sized>(mem: &mut M, table: HostPhysAddr, level: u8) {
    if level > 1 {
        for i in 0..ENTRIES_PER_TABLE {
            let raw = mem.read_entry(table, i);
            if E::is_present(raw) && !E::is_leaf(raw, level) {
                free_tables::<E, M>(mem, E::table_addr(raw), level - 1);
            }
        }
    }
    mem.free_frame(table);
}

/// Checks alignment, emptiness and the 48-bit input limit of a range.
fn check_range(virt: u64, phys: u64, size: u64) -> Result<(), PagingError> {
    if !(virt | phys | size).is_multiple_of(PAGE_SIZE) {
        return Err(PagingError::Misaligned { virt, phys, size });
    }
    if size == 0 {
        return Err(PagingError::EmptyRange { virt });
    }
    if virt
        .checked_add(size)
        .is_none_or(|end| end > INPUT_ADDR_LIMIT)
    {
        return Err(PagingError::VirtTooWide { virt, size });
    }
    Ok(())
}

/// The largest page up to `max` that fits at `virt`→`phys` with `left` bytes to go.
fn choose_page(virt: u64, phys: u64, left: u64, max: PageSize) -> PageSize {
    [PageSize::Size1G, PageSize::Size2M]
        .into_iter()
        .find(|&s| s <= max && (virt | phys).is_multiple_of(s.bytes()) && left >= s.bytes())
        .unwrap_or(PageSize::Size4K)
}
