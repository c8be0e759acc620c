//! Devices the hypervisor emulates or serves for its guests.

pub mod ioapic;
pub mod lapic;
pub mod rtc;
pub mod switch;
pub mod uart;
pub mod virtio;
