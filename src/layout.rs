//! The guest-physical address map every guest sees, as data in one place.
//!
//! Guest RAM starts at GPA 0. RAM beyond [`LOW_RAM_END`] continues at [`HIGH_RAM_START`], leaving
//! the 3–4 GiB window for emulated devices, as on a PC. Nothing in the device window is ever
//! backed by host memory: accesses there exit to the hypervisor.

#![forbid(unsafe_code)]

use crate::addr::GuestPhysAddr;

/// End of the RAM below the device window.
pub const LOW_RAM_END: GuestPhysAddr = GuestPhysAddr::new(0xC000_0000);
/// Where RAM continues above the device window.
pub const HIGH_RAM_START: GuestPhysAddr = GuestPhysAddr::new(0x1_0000_0000);

/// First virtio-mmio device slot; slot `n` is at `VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SLOT_SIZE`.
pub const VIRTIO_MMIO_BASE: GuestPhysAddr = GuestPhysAddr::new(0xD000_0000);
/// Size of one virtio-mmio register window (the registers use the first 0x200 bytes).
pub const VIRTIO_MMIO_SLOT_SIZE: u64 = 0x1000;
/// Number of virtio-mmio slots a guest can have.
pub const VIRTIO_MMIO_SLOTS: u32 = 16;
/// I/O APIC input (GSI) of virtio slot 0; slot `n` uses `VIRTIO_GSI_BASE + n`.
pub const VIRTIO_GSI_BASE: u32 = 16;

/// The emulated I/O APIC's register window.
pub const IOAPIC_BASE: GuestPhysAddr = GuestPhysAddr::new(0xFEC0_0000);
/// Number of I/O APIC inputs (GSIs 0..IOAPIC_PINS).
pub const IOAPIC_PINS: u32 = 32;
/// The emulated local APIC's xAPIC register window.
pub const LAPIC_BASE: GuestPhysAddr = GuestPhysAddr::new(0xFEE0_0000);

/// The emulated 16550 UART's I/O ports and interrupt line.
pub const COM1_PORT: u16 = 0x3F8;
/// ISA IRQ (and GSI) of COM1.
pub const COM1_GSI: u32 = 4;

/// Port that a guest writes a status byte to when it wants to stop (0 = success), mirroring
/// QEMU's `isa-debug-exit` so the test guests behave the same on bare QEMU and on Bulkhead.
pub const GUEST_EXIT_PORT: u16 = 0xF4;

/// Guest-physical address of virtio-mmio slot `slot`.
pub const fn virtio_slot_base(slot: u32) -> GuestPhysAddr {
    GuestPhysAddr::new(VIRTIO_MMIO_BASE.as_u64() + slot as u64 * VIRTIO_MMIO_SLOT_SIZE)
}
