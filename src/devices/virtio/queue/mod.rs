//! Split virtqueues (virtio 1.2 §2.7), device side: taking chains from the available ring,
//! walking and checking their descriptors, returning them through the used ring, and deciding
//! whether the driver wants an interrupt (EVENT_IDX or VIRTQ_AVAIL_F_NO_INTERRUPT).
//!
//! The rings live in guest memory the guest may rewrite at any moment, so every field is copied
//! in once and checked before use: ring addresses when the queue is enabled, the available index
//! against the queue size, each descriptor index against its table, each buffer against guest
//! RAM. Nothing here panics on what the guest wrote.

#![forbid(unsafe_code)]

mod error;
mod walk;

pub use error::{DescLoc, GuestRange, QueueError, Ring};

use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

use super::chain::{DescChain, Segment};
use super::{F_RING_EVENT_IDX, F_RING_INDIRECT_DESC};
use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;

/// Bytes per descriptor.
const DESC_SIZE: u64 = 16;
/// The driver asks for no used-buffer interrupts (§2.7.7; only without EVENT_IDX).
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Bytes per used ring element (`id: le32, len: le32`).
const USED_ELEM_SIZE: u64 = 8;
/// Most descriptors an indirect table may hold. The spec sets no limit; Linux sizes tables
/// by its scatter-gather lists (well under this), so anything larger is a hostile guest.
pub const MAX_INDIRECT_DESCRIPTORS: u32 = 1024;

/// One split virtqueue's device-side state.
#[derive(Debug)]
pub struct Queue {
    index: u16,
    max_size: u16,
    size: u16,
    is_ready: bool,
    desc: GuestPhysAddr,
    avail: GuestPhysAddr,
    used: GuestPhysAddr,
    next_avail: u16,
    next_used: u16,
    signalled_used: u16,
    is_used_since_check: bool,
    has_event_idx: bool,
    has_indirect: bool,
    forbidden: Option<GuestRange>,
    spare: Vec<Segment>,
}

impl Queue {
    /// Queue number `index` that the driver may size up to `max_size`.
    pub fn new(index: u16, max_size: u16) -> Self {
        Self {
            index,
            max_size,
            size: max_size,
            is_ready: false,
            desc: GuestPhysAddr::ZERO,
            avail: GuestPhysAddr::ZERO,
            used: GuestPhysAddr::ZERO,
            next_avail: 0,
            next_used: 0,
            signalled_used: 0,
            is_used_since_check: false,
            has_event_idx: false,
            has_indirect: false,
            forbidden: None,
            spare: Vec::new(),
        }
    }

    /// Back to the state after creation (device reset).
    pub fn reset(&mut self) {
        let spare = core::mem::take(&mut self.spare);
        *self = Self::new(self.index, self.max_size);
        self.spare = spare;
    }

    /// QueueNumMax.
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// QueueNum as last written.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// QueueReady.
    pub fn is_ready(&self) -> bool {
        self.is_ready
    }

    /// Records a QueueNum write (checked when the queue is enabled).
    pub fn set_size(&mut self, size: u16) {
        self.size = size;
    }

    /// Address of one of the areas.
    pub fn ring_addr(&self, ring: Ring) -> GuestPhysAddr {
        match ring {
            Ring::Descriptors => self.desc,
            Ring::Available => self.avail,
            Ring::Used => self.used,
        }
    }

    /// Records a QueueDesc/QueueDriver/QueueDevice write (checked when the queue is enabled).
    pub fn set_ring_addr(&mut self, ring: Ring, gpa: GuestPhysAddr) {
        match ring {
            Ring::Descriptors => self.desc = gpa,
            Ring::Available => self.avail = gpa,
            Ring::Used => self.used = gpa,
        }
    }

    /// QueueReady = 1: checks size and ring placement, then starts from index 0.
    pub fn enable(
        &mut self,
        mem: &dyn GuestMemory,
        features: u64,
        forbidden: Option<GuestRange>,
    ) -> Result<(), QueueError> {
        let queue = self.index;
        if self.size == 0 || !self.size.is_power_of_two() || self.size > self.max_size {
            return Err(QueueError::BadSize {
                queue,
                size: self.size,
                max: self.max_size,
            });
        }
        self.forbidden = forbidden;
        for ring in [Ring::Descriptors, Ring::Available, Ring::Used] {
            let gpa = self.ring_addr(ring);
            let len = ring.bytes(self.size);
            if !gpa.is_aligned(ring.align()) {
                return Err(QueueError::RingMisaligned { queue, ring, gpa });
            }
            if !self.is_buffer_ok(mem, gpa, len) {
                return Err(QueueError::RingOutsideRam {
                    queue,
                    ring,
                    gpa,
                    len,
                });
            }
        }
        self.has_event_idx = features & F_RING_EVENT_IDX != 0;
        self.has_indirect = features & F_RING_INDIRECT_DESC != 0;
        self.next_avail = 0;
        self.next_used = 0;
        self.signalled_used = 0;
        self.is_used_since_check = false;
        self.is_ready = true;
        Ok(())
    }

    /// QueueReady = 0: the queue stops; its addresses and size stay for the driver to reuse.
    pub fn disable(&mut self) {
        self.is_ready = false;
    }

    fn is_buffer_ok(&self, mem: &dyn GuestMemory, gpa: GuestPhysAddr, len: u64) -> bool {
        mem.contains(gpa, len) && !self.forbidden.is_some_and(|w| w.overlaps(gpa, len))
    }

    fn read_u16(
        &self,
        mem: &dyn GuestMemory,
        ring: Ring,
        gpa: GuestPhysAddr,
    ) -> Result<u16, QueueError> {
        mem.read_u16(gpa).map_err(|_| QueueError::RingAccess {
            queue: self.index,
            ring,
            gpa,
        })
    }

    fn write_u16(
        &self,
        mem: &dyn GuestMemory,
        ring: Ring,
        gpa: GuestPhysAddr,
        v: u16,
    ) -> Result<(), QueueError> {
        mem.write_u16(gpa, v).map_err(|_| QueueError::RingAccess {
            queue: self.index,
            ring,
            gpa,
        })
    }

    /// The driver's available index (`avail->idx`).
    fn avail_idx(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        self.read_u16(mem, Ring::Available, self.avail + 2)
    }

    /// Takes the next available chain, checked end to end, or `None` if there is none.
    ///
    /// With EVENT_IDX, finding the ring empty also publishes `avail_event` so the driver
    /// notifies as soon as it adds the next chain (§2.7.10).
    pub fn pop(&mut self, mem: &dyn GuestMemory) -> Result<Option<DescChain>, QueueError> {
        if !self.is_ready {
            return Ok(None);
        }
        let mut avail_idx = self.avail_idx(mem)?;
        if avail_idx == self.next_avail {
            if !self.has_event_idx {
                return Ok(None);
            }
            let avail_event = self.used + 4 + USED_ELEM_SIZE * u64::from(self.size);
            self.write_u16(mem, Ring::Used, avail_event, self.next_avail)?;
            // The driver may have added a chain before it could see avail_event: look again
            // after our store is visible (x86 may reorder a store with a later load).
            fence(Ordering::SeqCst);
            avail_idx = self.avail_idx(mem)?;
            if avail_idx == self.next_avail {
                return Ok(None);
            }
        }
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIndexJump {
                queue: self.index,
                last: self.next_avail,
                now: avail_idx,
                size: self.size,
            });
        }
        // Ring entries are read only after the index that published them.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = self.read_u16(mem, Ring::Available, self.avail + 4 + 2 * slot)?;
        let chain = self.walk(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    /// Puts `chain` in the used ring with `len` bytes written, and publishes the used index.
    pub fn add_used(
        &mut self,
        mem: &dyn GuestMemory,
        chain: DescChain,
        len: u32,
    ) -> Result<(), QueueError> {
        let head = chain.head;
        let mut segs = chain.segs;
        segs.clear();
        self.spare = segs;
        if !self.is_ready {
            return Ok(());
        }
        let slot = u64::from(self.next_used % self.size);
        let elem = self.used + 4 + USED_ELEM_SIZE * slot;
        let mut raw = [0u8; USED_ELEM_SIZE as usize];
        raw[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        raw[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(elem, &raw).map_err(|_| QueueError::RingAccess {
            queue: self.index,
            ring: Ring::Used,
            gpa: elem,
        })?;
        // The element must be visible before the index that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        self.write_u16(mem, Ring::Used, self.used + 2, self.next_used)?;
        self.is_used_since_check = true;
        Ok(())
    }

    /// Whether the driver wants an interrupt for the chains used since the last call
    /// (§2.7.7.2 with `used_event`, else the available ring's NO_INTERRUPT flag).
    pub fn needs_interrupt(&mut self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        if !self.is_used_since_check || !self.is_ready {
            return Ok(false);
        }
        self.is_used_since_check = false;
        // Our used index store must be visible before we read the driver's wish.
        fence(Ordering::SeqCst);
        let new = self.next_used;
        let old = core::mem::replace(&mut self.signalled_used, new);
        if self.has_event_idx {
            let used_event_gpa = self.avail + 4 + 2 * u64::from(self.size);
            let used_event = self.read_u16(mem, Ring::Available, used_event_gpa)?;
            // vring_need_event: interrupt iff used_event lies in [old, new).
            Ok(new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old))
        } else {
            let flags = self.read_u16(mem, Ring::Available, self.avail)?;
            Ok(flags & AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}
