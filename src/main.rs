//! The hypervisor binary. All of its code lives in the library; this file only names the
//! entry point that `boot/entry.S` jumps to, so the library stays testable on the host.

#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
use bulkhead as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("bulkhead runs on bare metal: build it with `cargo xtask build`, boot it with `cargo xtask run`");
    std::process::exit(2);
}
