//! Loading without RAM: [`validate`] runs the whole loader against a guest memory that only
//! checks bounds, so every image of a manifest can be judged before any guest gets memory or
//! starts. The same memory, recording what was written, is the fuzz targets' oracle.

use alloc::vec::Vec;
use core::cell::RefCell;

use crate::addr::GuestPhysAddr;
use crate::guest_mem::{GuestMemError, GuestMemory};

use super::layout::{GuestRamLayout, GuestRange};
use super::{load, BootRequest, BootSetup, LoadError};

/// Guest memory shaped like `layout` that keeps no bytes: reads give zeroes, writes are checked
/// against the layout and then dropped (and remembered when recording).
pub struct SparseMemory {
    layout: GuestRamLayout,
    writes: Option<RefCell<Vec<GuestRange>>>,
}

impl SparseMemory {
    /// Checks bounds only.
    pub fn new(layout: GuestRamLayout) -> Self {
        Self {
            layout,
            writes: None,
        }
    }

    /// Also remembers the range of every write and fill.
    pub fn recording(layout: GuestRamLayout) -> Self {
        Self {
            layout,
            writes: Some(RefCell::new(Vec::new())),
        }
    }

    /// The ranges written so far, in order (empty unless recording).
    pub fn writes(&self) -> Vec<GuestRange> {
        self.writes
            .as_ref()
            .map(|w| w.borrow().clone())
            .unwrap_or_default()
    }

    fn touch(&self, gpa: GuestPhysAddr, len: u64) -> Result<(), GuestMemError> {
        if !self.contains(gpa, len) {
            return Err(GuestMemError { gpa, len });
        }
        if let Some(w) = &self.writes {
            w.borrow_mut().push(GuestRange { start: gpa, len });
        }
        Ok(())
    }
}

impl GuestMemory for SparseMemory {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        if !self.contains(gpa, buf.len() as u64) {
            return Err(GuestMemError {
                gpa,
                len: buf.len() as u64,
            });
        }
        buf.fill(0);
        Ok(())
    }

    fn write(&self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        self.touch(gpa, data.len() as u64)
    }

    fn fill(&self, gpa: GuestPhysAddr, len: u64, _byte: u8) -> Result<(), GuestMemError> {
        self.touch(gpa, len)
    }

    fn contains(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        self.layout.contains(gpa, len)
    }
}

/// Everything [`load`] checks, without guest RAM: whether `req` would load into a guest whose
/// RAM is laid out as `ram`, and where things would go. Cheap enough to run for every guest of
/// a manifest before any is built.
pub fn validate(ram: &GuestRamLayout, req: &BootRequest<'_>) -> Result<BootSetup, LoadError> {
    load(&SparseMemory::new(*ram), ram, req)
}
