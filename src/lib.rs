//! Bulkhead: a Type-1 partitioning hypervisor for x86_64.
//!
//! The crate builds twice: for `x86_64-unknown-none` as the hypervisor itself, and for the
//! host so that `cargo test` exercises every module that does not need a CPU of its own.
//! Modules that execute privileged instructions live under `arch` and `virt` and exist only
//! in the bare-metal build.

#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod addr;
pub mod boot;
pub mod decode;
pub mod devices;
pub mod guest_mem;
pub mod layout;
pub mod loader;
pub mod manifest;
pub mod mm;
pub mod monitor;
pub mod paging;
pub mod virt;
pub mod vmm;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod hypervisor;
