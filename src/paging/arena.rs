//! Where page tables live: the [`TableMemory`] trait, and [`ArenaTables`] for host tests.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::addr::{HostPhysAddr, PAGE_SIZE};

/// Entries in one page table.
pub const ENTRIES_PER_TABLE: usize = 512;

/// The frames that hold page tables. On bare metal these are identity-mapped physical frames;
/// in tests, an [`ArenaTables`].
///
/// `table` is always a frame this memory handed out, and `index` is below
/// [`ENTRIES_PER_TABLE`]; [`super::PageTable`] never passes anything else.
pub trait TableMemory {
    /// A zero-filled, 4 KiB-aligned frame, or `None` when memory is exhausted.
    fn alloc_zeroed_frame(&mut self) -> Option<HostPhysAddr>;
    /// Returns a frame from [`TableMemory::alloc_zeroed_frame`].
    fn free_frame(&mut self, frame: HostPhysAddr);
    /// Entry `index` of the table in `table`.
    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64;
    /// Sets entry `index` of the table in `table`.
    fn write_entry(&mut self, table: HostPhysAddr, index: usize, value: u64);
}

/// Page-table frames in a `Vec`, at fake host-physical addresses, for host tests.
///
/// Misuse (freeing a frame twice, touching a frame that is not allocated) is a bug in the
/// table code under test and panics with a message saying which frame.
pub struct ArenaTables {
    base: u64,
    frames: Vec<Option<Box<[u64; ENTRIES_PER_TABLE]>>>,
    free_slots: Vec<usize>,
    limit: usize,
    allocs: usize,
    frees: usize,
}

/// Where the arena's fake frames start: far from any address a test maps, so a table frame
/// mistaken for a data page stands out.
const ARENA_BASE: u64 = 0x7f00_0000_0000;

impl ArenaTables {
    /// An arena that hands out any number of frames.
    pub fn new() -> Self {
        Self::with_limit(usize::MAX)
    }

    /// An arena that refuses to hold more than `limit` frames at once.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            base: ARENA_BASE,
            frames: Vec::new(),
            free_slots: Vec::new(),
            limit,
            allocs: 0,
            frees: 0,
        }
    }

    /// Frames currently allocated.
    pub fn live_frames(&self) -> usize {
        self.allocs - self.frees
    }

    /// Frames ever allocated.
    pub fn total_allocs(&self) -> usize {
        self.allocs
    }

    /// Frames ever freed.
    pub fn total_frees(&self) -> usize {
        self.frees
    }

    /// Changes how many frames may be live at once (to provoke running out mid-operation).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Whether `frame` is a live table frame of this arena.
    pub fn is_live(&self, frame: HostPhysAddr) -> bool {
        self.slot(frame)
            .is_some_and(|s| self.frames.get(s).is_some_and(|f| f.is_some()))
    }

    fn slot(&self, frame: HostPhysAddr) -> Option<usize> {
        let offset = frame.as_u64().checked_sub(self.base)?;
        if !offset.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        usize::try_from(offset / PAGE_SIZE).ok()
    }

    fn table(&self, frame: HostPhysAddr) -> &[u64; ENTRIES_PER_TABLE] {
        match self.slot(frame).and_then(|s| self.frames.get(s)) {
            Some(Some(t)) => t,
            _ => panic!("arena: {frame} is not a live table frame"),
        }
    }

    fn table_mut(&mut self, frame: HostPhysAddr) -> &mut [u64; ENTRIES_PER_TABLE] {
        match self.slot(frame).and_then(|s| self.frames.get_mut(s)) {
            Some(Some(t)) => t,
            _ => panic!("arena: {frame} is not a live table frame"),
        }
    }
}

impl Default for ArenaTables {
    fn default() -> Self {
        Self::new()
    }
}

impl TableMemory for ArenaTables {
    fn alloc_zeroed_frame(&mut self) -> Option<HostPhysAddr> {
        if self.live_frames() >= self.limit {
            return None;
        }
        let table = Box::new([0u64; ENTRIES_PER_TABLE]);
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.frames[s] = Some(table);
                s
            }
            None => {
                self.frames.push(Some(table));
                self.frames.len() - 1
            }
        };
        self.allocs += 1;
        Some(HostPhysAddr::new(self.base + slot as u64 * PAGE_SIZE))
    }

    fn free_frame(&mut self, frame: HostPhysAddr) {
        let Some(slot) = self
            .slot(frame)
            .filter(|&s| self.is_live(frame) && s < self.frames.len())
        else {
            panic!("arena: freeing {frame}, which is not a live table frame");
        };
        self.frames[slot] = None;
        self.free_slots.push(slot);
        self.frees += 1;
    }

    fn read_entry(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.table(table)[index]
    }

    fn write_entry(&mut self, table: HostPhysAddr, index: usize, value: u64) {
        self.table_mut(table)[index] = value;
    }
}
