//! One guest's virtio-mmio slots: routes accesses in the virtio window to the device in that
//! slot and names the interrupt line (GSI) each slot raises (`layout::VIRTIO_*`).

#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use super::mmio::{TransportStats, VirtioTransport};
use crate::addr::GuestPhysAddr;
use crate::guest_mem::GuestMemory;
use crate::layout::{
    virtio_slot_base, VIRTIO_GSI_BASE, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SLOTS, VIRTIO_MMIO_SLOT_SIZE,
};

/// A device could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The slot number is beyond `VIRTIO_MMIO_SLOTS`.
    NoSuchSlot(u32),
    /// The slot already holds a device.
    SlotTaken(u32),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchSlot(s) => {
                write!(f, "virtio slot {s} does not exist (0..{VIRTIO_MMIO_SLOTS})")
            }
            Self::SlotTaken(s) => write!(f, "virtio slot {s} is already taken"),
        }
    }
}

/// A device on the bus, as listed for ACPI tables, command lines and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot number.
    pub slot: u32,
    /// Base of the register window.
    pub base: GuestPhysAddr,
    /// Size of the register window.
    pub size: u64,
    /// I/O APIC input the device raises.
    pub gsi: u32,
    /// Virtio device ID.
    pub device_id: u32,
    /// Device name.
    pub name: &'static str,
}

/// The virtio devices of one guest.
pub struct VirtioBus {
    slots: Vec<Option<Box<dyn VirtioTransport>>>,
}

impl Default for VirtioBus {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtioBus {
    /// A bus with every slot empty.
    pub fn new() -> Self {
        Self {
            slots: (0..VIRTIO_MMIO_SLOTS).map(|_| None).collect(),
        }
    }

    /// Puts `device` into `slot`.
    pub fn attach(&mut self, slot: u32, device: Box<dyn VirtioTransport>) -> Result<(), BusError> {
        let entry = self
            .slots
            .get_mut(slot as usize)
            .ok_or(BusError::NoSuchSlot(slot))?;
        if entry.is_some() {
            return Err(BusError::SlotTaken(slot));
        }
        *entry = Some(device);
        Ok(())
    }

    /// The slot and offset of `gpa`, if it lies in the virtio window.
    fn locate(gpa: GuestPhysAddr) -> Option<(usize, u64)> {
        let rel = gpa.as_u64().checked_sub(VIRTIO_MMIO_BASE.as_u64())?;
        let slot = rel / VIRTIO_MMIO_SLOT_SIZE;
        (slot < u64::from(VIRTIO_MMIO_SLOTS))
            .then_some((slot as usize, rel % VIRTIO_MMIO_SLOT_SIZE))
    }

    /// Resets every device as if the driver had written 0 to its Status register (virtio 1.2
    /// §4.2.2.1), for a guest restart: no device may keep queue addresses from the old run.
    pub fn reset_all(&mut self, mem: &dyn GuestMemory) {
        /// Offset of the Status register (virtio 1.2 §4.2.2, table "MMIO Device Register Layout").
        const STATUS: u64 = 0x070;
        for dev in self.slots.iter_mut().flatten() {
            let _ = dev.write(STATUS, 4, 0, mem);
        }
    }

    /// Whether any device still has work from other CPUs waiting (see [`VirtioTransport`]).
    pub fn has_pending_work(&self) -> bool {
        self.slots.iter().flatten().any(|d| d.has_pending_work())
    }

    /// The interrupt line (GSI) of the slot that `gpa` falls in.
    pub fn gsi_of(&self, gpa: GuestPhysAddr) -> Option<u32> {
        Self::locate(gpa).map(|(slot, _)| VIRTIO_GSI_BASE + slot as u32)
    }

    /// Whether `gpa` lies in the virtio window (occupied slot or not).
    pub fn contains(gpa: GuestPhysAddr) -> bool {
        Self::locate(gpa).is_some()
    }

    /// A guest read; `None` if `gpa` is outside the virtio window. An empty slot reads as zero
    /// (no magic value, so drivers see no device).
    pub fn read(&mut self, gpa: GuestPhysAddr, size: u8) -> Option<u64> {
        let (slot, offset) = Self::locate(gpa)?;
        Some(match self.slots.get_mut(slot) {
            Some(Some(dev)) => dev.read(offset, size),
            _ => 0,
        })
    }

    /// A guest write; `raise(gsi)` is called if the device wants its interrupt raised. Returns
    /// `false` if `gpa` is outside the virtio window.
    pub fn write(
        &mut self,
        gpa: GuestPhysAddr,
        size: u8,
        value: u64,
        mem: &dyn GuestMemory,
        mut raise: impl FnMut(u32),
    ) -> bool {
        let Some((slot, offset)) = Self::locate(gpa) else {
            return false;
        };
        if let Some(Some(dev)) = self.slots.get_mut(slot) {
            if dev.write(offset, size, value, mem).interrupt {
                raise(VIRTIO_GSI_BASE + slot as u32);
            }
        }
        true
    }

    /// Lets every device take in work from other CPUs; `raise(gsi)` for each that wants an
    /// interrupt. Call on the guest's CPU after exits and when kicked.
    pub fn poll(&mut self, mem: &dyn GuestMemory, mut raise: impl FnMut(u32)) {
        for (slot, dev) in self.slots.iter_mut().enumerate() {
            if let Some(dev) = dev {
                if dev.poll(mem).interrupt {
                    raise(VIRTIO_GSI_BASE + slot as u32);
                }
            }
        }
    }

    /// Level of interrupt line `gsi` (for a level-triggered I/O APIC pin).
    pub fn line_level(&self, gsi: u32) -> bool {
        let Some(slot) = gsi.checked_sub(VIRTIO_GSI_BASE) else {
            return false;
        };
        matches!(self.slots.get(slot as usize), Some(Some(dev)) if dev.interrupt_pending())
    }

    /// The attached devices.
    pub fn devices(&self) -> impl Iterator<Item = SlotInfo> + '_ {
        self.slots.iter().enumerate().filter_map(|(slot, dev)| {
            let dev = dev.as_ref()?;
            let slot = slot as u32;
            Some(SlotInfo {
                slot,
                base: virtio_slot_base(slot),
                size: VIRTIO_MMIO_SLOT_SIZE,
                gsi: VIRTIO_GSI_BASE + slot,
                device_id: dev.device_id(),
                name: dev.name(),
            })
        })
    }

    /// Counters of the device in `slot`.
    pub fn stats(&self, slot: u32) -> Option<TransportStats> {
        Some(self.slots.get(slot as usize)?.as_ref()?.stats())
    }

    /// The device in `slot`, e.g. to reach a console's output buffer.
    pub fn device_mut(&mut self, slot: u32) -> Option<&mut (dyn VirtioTransport + 'static)> {
        self.slots.get_mut(slot as usize)?.as_deref_mut()
    }
}
