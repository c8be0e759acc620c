//! The vendor-neutral virtual machine monitor: what each exit means for the guest.
//!
//! Everything here is pure and tested on the host: CPUID filtering, the MSR policy, exit
//! statistics and the dispatcher, which runs against any [`crate::virt::Vcpu`].

#![forbid(unsafe_code)]

pub mod cpuid;
pub mod dispatch;
pub mod interrupts;
pub mod mmio;
pub mod msr;
pub mod platform;
pub mod stats;

/// Frequency of the emulated local APIC timer in kHz (what the guest is told it counts at).
pub const APIC_TIMER_KHZ: u32 = 1_000_000;
