//! The hypervisor's top level once the platform is up: read the manifest, build every guest,
//! start each on its own CPUs, and (in test mode) end the run when they have all stopped.

mod guest;
mod host;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::x86_64::{cpu, entry, memory, smp};
use crate::boot::cmdline::KernelArgs;
use crate::boot::BootInfo;
use crate::virt::Caps;

pub use guest::{CrashPolicy, Guest, State};

static GUESTS_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Runs on the boot CPU after every CPU is online.
pub fn run(info: &BootInfo, args: KernelArgs, caps: Caps) -> ! {
    let guests = match setup::build_guests(info, &caps) {
        Ok(g) => g,
        Err(why) => {
            log::error!("{why}");
            log::error!("no guest started");
            if args.test {
                entry::finish(false, "manifest or guest set-up failed");
            }
            idle();
        }
    };
    if guests.is_empty() {
        log::info!("no guests to run");
        if args.test {
            entry::finish(true, "");
        }
        idle();
    }
    GUESTS_RUNNING.store(guests.len(), Ordering::Release);
    let test = args.test;
    let all: Arc<Vec<Arc<Guest>>> = Arc::new(guests);
    let mut on_boot_cpu = None;
    for g in all.iter() {
        let cpu = g.cpus[0];
        let guest = Arc::clone(g);
        let everyone = Arc::clone(&all);
        let job = alloc::boxed::Box::new(move || {
            guest::run_boot_vcpu(&guest, &caps, &|| guest_finished(&everyone, test));
        });
        if cpu == 0 {
            on_boot_cpu = Some(job);
        } else {
            smp::post_job(cpu, job);
        }
    }
    if let Some(job) = on_boot_cpu {
        job();
    }
    idle()
}

/// Called on a guest's CPU when it stops for good; the last one ends a test run. Guests' own
/// verdicts are in their output and in the `GUEST` lines; the run itself succeeded if the
/// hypervisor kept every guest apart and survived them all.
fn guest_finished(all: &[Arc<Guest>], test: bool) {
    if GUESTS_RUNNING.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    for g in all {
        let state = match g.state() {
            State::Crashed => "crashed",
            _ => "stopped",
        };
        crate::println!(
            "GUEST {} {state} status {} restarts {}",
            g.name,
            g.exit_status.load(Ordering::Acquire),
            g.restarts.load(Ordering::Acquire)
        );
    }
    log::info!(
        "all guests stopped; {} MiB free, {} free frames",
        memory::free_bytes() >> 20,
        memory::free_frames()
    );
    if test {
        entry::finish(true, "");
    }
}

fn idle() -> ! {
    loop {
        cpu::wait_for_interrupt();
    }
}

/// Where application processors wait for work.
pub fn ap_idle(index: usize) -> ! {
    smp::run_jobs(index)
}

mod setup;
mod storage;
