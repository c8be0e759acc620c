//! Hardware virtualization: what the CPU offers, and (per vendor) how guests are run.
//! Nothing outside this module knows whether it runs on AMD SVM or Intel VMX.

pub mod caps;

pub use caps::{probe, Caps, VirtError};
