//! The virtio-mmio transport, "modern" layout (virtio 1.2 §4.2.2, Version 2): the register
//! file a guest driver sees, feature negotiation, the device status state machine and the
//! queue set-up registers, in front of any [`VirtioDevice`].
//!
//! The caller is a vCPU exit handler on the guest's own CPU: it decodes the access, calls
//! [`VirtioTransport::read`] or [`VirtioTransport::write`] with the offset inside the device's
//! window, and raises the device's interrupt line when the returned [`MmioEffect`] says so.

#![forbid(unsafe_code)]

pub mod reg;

use alloc::vec::Vec;

use super::queue::{GuestRange, Queue, Ring};
use super::{
    status, DeviceCtx, DeviceError, DeviceStats, VirtioDevice, F_VERSION_1, TRANSPORT_FEATURES,
};
use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;
use crate::layout::{HIGH_RAM_START, LOW_RAM_END};

/// "virt" in little-endian ASCII (§4.2.2).
pub const MAGIC: u32 = 0x7472_6976;
/// The non-legacy register layout.
pub const VERSION: u32 = 2;
/// Bulkhead's vendor ID: the bytes "BLHK" read as a little-endian u32. Drivers do not match on
/// it; it only tells a curious guest who serves the device.
pub const VENDOR_ID: u32 = 0x4B48_4C42;

/// InterruptStatus bit: a queue has new used buffers.
pub const INT_USED_BUFFER: u32 = 1;
/// InterruptStatus bit: the configuration (or NEEDS_RESET) changed.
pub const INT_CONFIG_CHANGE: u32 = 2;
/// Warnings a device logs at most; later ones are only counted.
const MAX_WARNINGS: u32 = 16;
/// What SHMLen/SHMBase read as for a region that does not exist (§4.2.2: -1).
const NO_SHM_REGION: u64 = 0xFFFF_FFFF;

/// What the caller has to do after an access.
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmioEffect {
    /// InterruptStatus gained a bit: raise the device's interrupt line (for an edge-triggered
    /// line; a level-triggered one follows [`VirtioTransport::interrupt_pending`]).
    pub interrupt: bool,
}

/// Counters of one transport and its device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// The device's own counters.
    pub device: DeviceStats,
    /// QueueNotify writes acted upon.
    pub notifies: u64,
    /// Interrupts asked of the caller.
    pub interrupts: u64,
    /// Resets by the driver.
    pub resets: u64,
    /// Times the device went into DEVICE_NEEDS_RESET.
    pub faults: u64,
    /// Register accesses ignored (wrong width, unknown register, wrong state).
    pub ignored_accesses: u64,
}

/// A virtio-mmio device as the exit handler sees it (object safe, so one guest's devices of
/// different types sit side by side on a [`super::bus::VirtioBus`]).
pub trait VirtioTransport: Send {
    /// Device name for logs and statistics.
    fn name(&self) -> &'static str;
    /// Virtio device ID.
    fn device_id(&self) -> u32;
    /// A guest read of `size` bytes at `offset` in the device window.
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// A guest write of `size` bytes of `value` at `offset` in the device window.
    fn write(&mut self, offset: u64, size: u8, value: u64, mem: &dyn GuestMemory) -> MmioEffect;
    /// Moves work that arrived from other CPUs into the guest's queues (cheap when none).
    fn poll(&mut self, mem: &dyn GuestMemory) -> MmioEffect;
    /// Whether InterruptStatus is non-zero (the level of the interrupt line).
    fn interrupt_pending(&self) -> bool;
    /// Whether work from other CPUs still waits (for example frames the guest had no receive
    /// buffer for yet): the caller should poll again soon.
    fn has_pending_work(&self) -> bool;
    /// Counters.
    fn stats(&self) -> TransportStats;
}

/// The virtio-mmio register file in front of device `D`.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    /// The driver set a feature bit in a word above the 64 we know: refuse FEATURES_OK.
    has_unknown_driver_features: bool,
    queue_sel: u32,
    interrupt_status: u32,
    forbidden: Option<GuestRange>,
    last_fault: Option<DeviceError>,
    warnings: u32,
    stats: TransportStats,
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// Puts `device` behind a fresh register file. Buffers in the guest's device window
    /// (`layout::LOW_RAM_END..HIGH_RAM_START`) are refused.
    pub fn new(device: D) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .enumerate()
            .map(|(i, &max)| Queue::new(i as u16, max))
            .collect();
        Self {
            device,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            has_unknown_driver_features: false,
            queue_sel: 0,
            interrupt_status: 0,
            forbidden: Some(GuestRange {
                base: LOW_RAM_END,
                len: HIGH_RAM_START - LOW_RAM_END,
            }),
            last_fault: None,
            warnings: 0,
            stats: TransportStats::default(),
        }
    }

    /// Replaces the range that no buffer may touch (`None`: rely on guest RAM bounds alone).
    pub fn with_forbidden_range(mut self, range: Option<GuestRange>) -> Self {
        self.forbidden = range;
        self
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, e.g. to flush a console's partial line.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The Status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Why the device last went into DEVICE_NEEDS_RESET (kept across resets, for `stats`).
    pub fn last_fault(&self) -> Option<DeviceError> {
        self.last_fault
    }

    /// Features offered to the driver.
    pub fn offered_features(&self) -> u64 {
        self.device.features() | TRANSPORT_FEATURES
    }

    /// Features the driver accepted (meaningful once FEATURES_OK is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Logs a guest mistake, at most [`MAX_WARNINGS`] times per device so that a guest looping
    /// over reset and error cannot flood the hypervisor's serial line.
    fn warn(&mut self, what: core::fmt::Arguments<'_>) {
        self.warnings += 1;
        if self.warnings <= MAX_WARNINGS {
            log::warn!("{}: {what}", self.device.name());
        }
        if self.warnings == MAX_WARNINGS {
            log::warn!("{}: further warnings suppressed", self.device.name());
        }
    }

    fn ignore(&mut self, what: &str, offset: u64, size: u8) {
        self.stats.ignored_accesses += 1;
        log::debug!(
            "{}: ignored {what} at offset {offset:#x} size {size}",
            self.device.name()
        );
    }

    fn read_register(&mut self, offset: u64) -> Option<u32> {
        let v = match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.is_ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::SHM_LEN_LOW..=reg::SHM_BASE_HIGH => NO_SHM_REGION as u32,
            // The configuration never changes under the driver, so one generation suffices.
            reg::CONFIG_GENERATION => 0,
            _ => return None,
        };
        Some(v)
    }

    fn write_register(&mut self, offset: u64, v: u32, mem: &dyn GuestMemory) -> Option<MmioEffect> {
        let none = MmioEffect::default();
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => {
                if self.status & status::FEATURES_OK != 0 {
                    return None;
                }
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xFFFF_FFFF) | u64::from(v)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xFFFF_FFFF) | (u64::from(v) << 32)
                    }
                    _ => self.has_unknown_driver_features |= v != 0,
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                let q = self.selected_queue().filter(|q| !q.is_ready())?;
                // Too large for any queue: keep an invalid size so enabling fails loudly.
                q.set_size(u16::try_from(v).unwrap_or(0));
            }
            reg::QUEUE_DESC_LOW..=reg::QUEUE_DEVICE_HIGH => {
                return self.write_queue_addr(offset, v).then_some(none)
            }
            reg::QUEUE_READY => return self.write_queue_ready(v, mem),
            reg::QUEUE_NOTIFY => return self.notify(v, mem),
            reg::INTERRUPT_ACK => self.interrupt_status &= !v,
            reg::STATUS => return self.write_status(v, mem),
            // No shared memory regions: the selector has nothing to select.
            reg::SHM_SEL => {}
            _ => return None,
        }
        Some(none)
    }

    fn write_queue_addr(&mut self, offset: u64, v: u32) -> bool {
        let (ring, is_high) = match offset {
            reg::QUEUE_DESC_LOW => (Ring::Descriptors, false),
            reg::QUEUE_DESC_HIGH => (Ring::Descriptors, true),
            reg::QUEUE_DRIVER_LOW => (Ring::Available, false),
            reg::QUEUE_DRIVER_HIGH => (Ring::Available, true),
            reg::QUEUE_DEVICE_LOW => (Ring::Used, false),
            reg::QUEUE_DEVICE_HIGH => (Ring::Used, true),
            _ => return false,
        };
        let Some(q) = self.selected_queue().filter(|q| !q.is_ready()) else {
            return false;
        };
        let old = q.ring_addr(ring).as_u64();
        let new = if is_high {
            (old & 0xFFFF_FFFF) | (u64::from(v) << 32)
        } else {
            (old & !0xFFFF_FFFF) | u64::from(v)
        };
        q.set_ring_addr(ring, GuestPhysAddr::new(new));
        true
    }

    fn write_queue_ready(&mut self, v: u32, mem: &dyn GuestMemory) -> Option<MmioEffect> {
        // Queues are set up after feature negotiation (§3.1.1 step 7): before it we would not
        // know whether EVENT_IDX or INDIRECT_DESC apply.
        if self.status & status::FEATURES_OK == 0 || self.status & status::DEVICE_NEEDS_RESET != 0 {
            return None;
        }
        let (features, forbidden) = (self.driver_features, self.forbidden);
        let q = self.selected_queue()?;
        match (v, q.is_ready()) {
            (0, _) => q.disable(),
            (1, false) => {
                if let Err(e) = q.enable(mem, features, forbidden) {
                    return Some(self.fault(e.into()));
                }
            }
            (1, true) => {}
            _ => return None,
        }
        Some(MmioEffect::default())
    }

    fn notify(&mut self, v: u32, mem: &dyn GuestMemory) -> Option<MmioEffect> {
        let ready = status::FEATURES_OK | status::DRIVER_OK;
        if self.status & ready != ready || self.status & status::DEVICE_NEEDS_RESET != 0 {
            return None;
        }
        // Without VIRTIO_F_NOTIFICATION_DATA the value is just the queue index.
        let queue = u16::try_from(v).ok()?;
        if !self.queues.get(usize::from(queue))?.is_ready() {
            log::debug!(
                "{}: notify of queue {queue} that is not enabled",
                self.device.name()
            );
            return None;
        }
        self.stats.notifies += 1;
        Some(self.run_device(mem, |d, ctx| d.notify(queue, ctx)))
    }

    fn write_status(&mut self, v: u32, mem: &dyn GuestMemory) -> Option<MmioEffect> {
        const STATUS_BITS: u32 = 0xFF;
        if v == 0 {
            self.reset();
            return Some(MmioEffect::default());
        }
        let old = self.status;
        // The device status field is 8 bits (virtio 1.2 §2.1); NEEDS_RESET is the device's to
        // set; a driver may only add bits until it resets.
        let v = v & STATUS_BITS;
        let mut new = (v & !status::DEVICE_NEEDS_RESET) | (old & status::DEVICE_NEEDS_RESET);
        if old & !new != 0 {
            self.warn(format_args!(
                "driver cleared status bits {:#x}; ignored",
                old & !new
            ));
            return None;
        }
        let added = new & !old;
        if added & status::FEATURES_OK != 0 && !self.features_acceptable() {
            let (accepted, offered) = (self.driver_features, self.offered_features());
            self.warn(format_args!(
                "refusing FEATURES_OK for driver features {accepted:#x} (offered {offered:#x}, \
                 VERSION_1 required)"
            ));
            new &= !status::FEATURES_OK;
        }
        if added & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            self.warn(format_args!("DRIVER_OK before FEATURES_OK; ignored"));
            new &= !status::DRIVER_OK;
        }
        self.status = new;
        if new & !old & status::DRIVER_OK == 0 || new & status::DEVICE_NEEDS_RESET != 0 {
            return Some(MmioEffect::default());
        }
        self.device.activate(self.driver_features);
        // Notifications before DRIVER_OK were not acted upon (§3.1.1): look at every queue now.
        let count = self.queues.len() as u16;
        Some(self.run_device(mem, |d, ctx| {
            for q in 0..count {
                d.notify(q, ctx)?;
            }
            Ok(())
        }))
    }

    fn features_acceptable(&self) -> bool {
        self.driver_features & !self.offered_features() == 0
            && self.driver_features & F_VERSION_1 != 0
            && !self.has_unknown_driver_features
    }

    /// Status = 0 (§4.2.3.1): everything back to the state after creation.
    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.has_unknown_driver_features = false;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.stats.resets += 1;
    }

    /// Calls into the device, then decides on an interrupt for whatever it used.
    fn run_device(
        &mut self,
        mem: &dyn GuestMemory,
        f: impl FnOnce(&mut D, &mut DeviceCtx<'_>) -> Result<(), DeviceError>,
    ) -> MmioEffect {
        let mut ctx = DeviceCtx::new(mem, &mut self.queues);
        let mut result = f(&mut self.device, &mut ctx);
        // Chains used before an error still belong to the driver: signal them too.
        let mut is_wanted = false;
        for q in &mut self.queues {
            match q.needs_interrupt(mem) {
                Ok(wanted) => is_wanted |= wanted,
                Err(e) => result = result.and(Err(e.into())),
            }
        }
        if let Err(e) = result {
            return self.fault(e);
        }
        if is_wanted {
            self.interrupt_status |= INT_USED_BUFFER;
            self.stats.interrupts += 1;
        }
        MmioEffect {
            interrupt: is_wanted,
        }
    }

    /// The guest broke the protocol: stop serving until it resets the device (§2.1.2).
    fn fault(&mut self, e: DeviceError) -> MmioEffect {
        self.warn(format_args!("{e}; device needs reset"));
        self.status |= status::DEVICE_NEEDS_RESET;
        self.last_fault = Some(e);
        self.interrupt_status |= INT_CONFIG_CHANGE;
        self.stats.faults += 1;
        self.stats.interrupts += 1;
        MmioEffect { interrupt: true }
    }
}

impl<D: VirtioDevice> VirtioTransport for MmioTransport<D> {
    fn name(&self) -> &'static str {
        self.device.name()
    }

    fn device_id(&self) -> u32 {
        self.device.device_id()
    }

    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if offset >= reg::CONFIG {
            let mut buf = [0u8; 8];
            let Some(data) = config_access(&mut buf, size) else {
                self.ignore("config read", offset, size);
                return 0;
            };
            self.device.read_config(offset - reg::CONFIG, data);
            return u64::from_le_bytes(buf);
        }
        // §4.2.2.2: control registers are accessed 32 bits wide and aligned only.
        if size != 4 || !offset.is_multiple_of(4) {
            self.ignore("read of wrong width", offset, size);
            return 0;
        }
        match self.read_register(offset) {
            Some(v) => u64::from(v),
            None => {
                self.ignore("read of a write-only or unknown register", offset, size);
                0
            }
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64, mem: &dyn GuestMemory) -> MmioEffect {
        if offset >= reg::CONFIG {
            let mut buf = value.to_le_bytes();
            match config_access(&mut buf, size) {
                Some(data) => self.device.write_config(offset - reg::CONFIG, data),
                None => self.ignore("config write", offset, size),
            }
            return MmioEffect::default();
        }
        if size != 4 || !offset.is_multiple_of(4) {
            self.ignore("write of wrong width", offset, size);
            return MmioEffect::default();
        }
        match self.write_register(offset, value as u32, mem) {
            Some(effect) => effect,
            None => {
                self.ignore("write refused", offset, size);
                MmioEffect::default()
            }
        }
    }

    fn poll(&mut self, mem: &dyn GuestMemory) -> MmioEffect {
        let ready = status::FEATURES_OK | status::DRIVER_OK;
        if self.status & ready != ready
            || self.status & status::DEVICE_NEEDS_RESET != 0
            || !self.device.has_pending_work()
        {
            return MmioEffect::default();
        }
        self.run_device(mem, |d, ctx| d.poll(ctx))
    }

    fn interrupt_pending(&self) -> bool {
        self.interrupt_status != 0
    }

    fn has_pending_work(&self) -> bool {
        self.device.has_pending_work()
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            device: self.device.stats(),
            ..self.stats
        }
    }
}

/// The bytes of an access to the configuration space, if `size` is one the spec allows.
fn config_access(buf: &mut [u8; 8], size: u8) -> Option<&mut [u8]> {
    match size {
        1 | 2 | 4 | 8 => Some(&mut buf[..usize::from(size)]),
        _ => None,
    }
}
