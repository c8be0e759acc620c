//! Virtio devices served from inside the hypervisor (virtio 1.2, virtio-mmio transport, split
//! virtqueues).
//!
//! A device ([`VirtioDevice`]) only knows its own requests; the [`mmio::MmioTransport`] owns the
//! register file, feature negotiation and the queues, and turns guest register accesses into
//! calls on the device. Everything a guest hands us (indices, lengths, addresses) is checked by
//! [`queue`]; a violation puts the device into DEVICE_NEEDS_RESET instead of panicking.
//!
//! Devices run on the guest's own CPU, inside its exit handler: guest memory is only touched
//! there. Work that arrives from other CPUs (switch frames, console input) waits in a shared
//! inbox until the guest's CPU calls [`mmio::VirtioTransport::poll`].

#![forbid(unsafe_code)]

pub mod blk;
pub mod bus;
pub mod chain;
pub mod console;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod testing;

#[cfg(test)]
mod tests;

use core::fmt;

use crate::guest_mem::{GuestMemError, GuestMemory};
use queue::{Queue, QueueError};

/// Device ID of a network card (virtio 1.2 §5).
pub const DEVICE_ID_NET: u32 = 1;
/// Device ID of a block device.
pub const DEVICE_ID_BLK: u32 = 2;
/// Device ID of a console.
pub const DEVICE_ID_CONSOLE: u32 = 3;

/// Descriptors may point to indirect descriptor tables (§2.7.5.3).
pub const F_RING_INDIRECT_DESC: u64 = 1 << 28;
/// used_event / avail_event notification suppression (§2.7.7, §2.7.10).
pub const F_RING_EVENT_IDX: u64 = 1 << 29;
/// The driver speaks virtio 1.x (§6.1); required by this transport.
pub const F_VERSION_1: u64 = 1 << 32;
/// Features the transport offers for every device.
pub const TRANSPORT_FEATURES: u64 = F_VERSION_1 | F_RING_INDIRECT_DESC | F_RING_EVENT_IDX;

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is set up and ready to drive the device.
    pub const DRIVER_OK: u32 = 4;
    /// The driver accepted the features it wrote.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// What went wrong while serving a device's queues. Any of these puts the device into
/// DEVICE_NEEDS_RESET; the transport logs the message with the device's name in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The guest broke the virtqueue rules.
    Queue(QueueError),
    /// A validated buffer could not be accessed after all.
    Memory(GuestMemError),
    /// A request chain the device cannot answer at all (e.g. no room for the status byte).
    Malformed {
        /// Queue index.
        queue: u16,
        /// Head descriptor of the chain.
        head: u16,
        /// What is wrong with it.
        what: &'static str,
    },
}

impl From<QueueError> for DeviceError {
    fn from(e: QueueError) -> Self {
        Self::Queue(e)
    }
}

impl From<GuestMemError> for DeviceError {
    fn from(e: GuestMemError) -> Self {
        Self::Memory(e)
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queue(e) => write!(f, "{e}"),
            Self::Memory(e) => write!(f, "guest memory access failed: {e}"),
            Self::Malformed { queue, head, what } => {
                write!(f, "queue {queue} chain at descriptor {head}: {what}")
            }
        }
    }
}

/// Counters every device keeps, for the hypervisor's `stats` command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Requests (chains) completed.
    pub requests: u64,
    /// Bytes the device wrote into guest buffers.
    pub bytes_to_guest: u64,
    /// Bytes the device read from guest buffers.
    pub bytes_from_guest: u64,
    /// Requests answered with an error status, or malformed.
    pub errors: u64,
    /// Frames or bytes dropped for lack of room.
    pub dropped: u64,
}

/// What a device gets while it serves its queues: the guest's RAM and the queues the transport
/// owns.
pub struct DeviceCtx<'a> {
    /// The guest's RAM.
    pub mem: &'a dyn GuestMemory,
    queues: &'a mut [Queue],
}

impl<'a> DeviceCtx<'a> {
    /// Wraps the transport's queues for one call into the device.
    pub fn new(mem: &'a dyn GuestMemory, queues: &'a mut [Queue]) -> Self {
        Self { mem, queues }
    }

    /// The next available chain of queue `queue`, fully validated, or `None` if the driver has
    /// not made one available (or the queue is not enabled).
    pub fn pop(&mut self, queue: u16) -> Result<Option<chain::DescChain>, DeviceError> {
        match self.queues.get_mut(usize::from(queue)) {
            Some(q) => Ok(q.pop(self.mem)?),
            None => Ok(None),
        }
    }

    /// Returns `chain` to the driver with `len` bytes written into it.
    pub fn add_used(
        &mut self,
        queue: u16,
        chain: chain::DescChain,
        len: u32,
    ) -> Result<(), DeviceError> {
        match self.queues.get_mut(usize::from(queue)) {
            Some(q) => Ok(q.add_used(self.mem, chain, len)?),
            None => Ok(()),
        }
    }
}

/// One virtio device type (block, net, console) behind a transport.
pub trait VirtioDevice: Send {
    /// Name for log lines, e.g. `virtio-blk`.
    fn name(&self) -> &'static str;

    /// Virtio device ID (§5).
    fn device_id(&self) -> u32;

    /// Device-specific feature bits offered; the transport adds [`TRANSPORT_FEATURES`].
    fn features(&self) -> u64;

    /// Largest size of each queue; the slice's length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];

    /// Reads `data.len()` bytes of the device configuration space at `offset` (bytes beyond the
    /// end read as zero).
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// A driver write into the configuration space; ignored unless the device has writable
    /// fields.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    /// The driver set DRIVER_OK with `features` accepted.
    fn activate(&mut self, _features: u64) {}

    /// The driver notified queue `queue` (already known to exist and be enabled).
    fn notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError>;

    /// Whether work from outside the guest is waiting (a cheap check, done on every exit).
    fn has_pending_work(&self) -> bool {
        false
    }

    /// Moves work from outside the guest (frames, input) into the guest's queues.
    fn poll(&mut self, _ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        Ok(())
    }

    /// Back to the state after creation (the driver wrote 0 to Status, or NEEDS_RESET).
    fn reset(&mut self);

    /// The device's counters.
    fn stats(&self) -> DeviceStats;
}

/// Copies `data.len()` bytes of the configuration image `image` from `offset`, zero beyond.
pub fn copy_config(image: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = image.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}
