//! virtio-mmio support shared by Bulkhead's test guests: the `virtio-drivers` HAL over the
//! runtime's DMA pool (with every register access one explicit MOV), finding a device's
//! register window from the command line or by scanning, routing its interrupt through the
//! I/O APIC, a hash for end-to-end data checks, and a seeded PRNG for the hostile guests.

#![no_std]

pub mod hal;
pub mod hash;
pub mod irq;
pub mod rng;
pub mod window;

pub use hal::GuestHal;
pub use window::Window;
