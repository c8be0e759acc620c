//! The hypervisor's top level once the platform is up: read the manifest, start the guests,
//! and wait for them.

use crate::arch::x86_64::{cpu, entry};
use crate::boot::cmdline::KernelArgs;
use crate::boot::BootInfo;
use crate::virt::Caps;

/// Runs on the boot CPU after every CPU is online.
pub fn run(_info: &BootInfo, args: KernelArgs, _caps: Caps) -> ! {
    if args.test {
        entry::finish(true, "");
    }
    log::info!("nothing to run; idle");
    loop {
        cpu::wait_for_interrupt();
    }
}

/// Where application processors wait for work.
pub fn ap_idle(_index: usize) -> ! {
    loop {
        cpu::wait_for_interrupt();
    }
}
