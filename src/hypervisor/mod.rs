//! The hypervisor's top level once the platform is up: read the manifest, build every guest,
//! start each on its own CPUs, and (in test mode) end the run when they have all stopped.

mod guest;
mod host;
mod monitor;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::arch::x86_64::{entry, memory, smp};
use crate::boot::cmdline::KernelArgs;
use crate::boot::BootInfo;
use crate::virt::Caps;

pub use guest::{CrashPolicy, Guest, State};

static GUESTS_RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Every guest, for the end-of-run report when the last one stops from the monitor.
static ALL_GUESTS: spin::Once<Arc<Vec<Arc<Guest>>>> = spin::Once::new();
static TEST_MODE: AtomicBool = AtomicBool::new(false);

/// A block of hypervisor memory filled with a known pattern before guests start and checked
/// when they have all stopped: a guest that reached hypervisor memory would likely trample it.
static CANARY: spin::Once<spin::Mutex<&'static mut [u8]>> = spin::Once::new();
const CANARY_BYTES: u64 = 256 << 10;

fn canary_byte(i: usize) -> u8 {
    (i as u32).wrapping_mul(0x9E37_79B1).rotate_left(7) as u8 ^ 0xA5
}

fn plant_canary() {
    match memory::alloc_owned_bytes(CANARY_BYTES) {
        Ok(bytes) => {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = canary_byte(i);
            }
            CANARY.call_once(|| spin::Mutex::new(bytes));
        }
        Err(e) => log::warn!("no memory for the hypervisor canary: {e}"),
    }
}

fn check_canary() {
    if let Some(c) = CANARY.get() {
        let bytes = c.lock();
        match bytes
            .iter()
            .enumerate()
            .find(|(i, b)| **b != canary_byte(*i))
        {
            None => crate::println!("PASS hypervisor-canary ({} KiB intact)", bytes.len() >> 10),
            Some((i, b)) => crate::println!(
                "FAIL hypervisor-canary: byte {i} is {b:#04x}, expected {:#04x}",
                canary_byte(i)
            ),
        }
    }
}

/// Runs on the boot CPU after every CPU is online.
pub fn run(info: &BootInfo, args: KernelArgs, caps: Caps) -> ! {
    let (guests, escape) = match setup::build_guests(info, &caps) {
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
    plant_canary();
    GUESTS_RUNNING.store(guests.len(), Ordering::Release);
    let test = args.test;
    let all: Arc<Vec<Arc<Guest>>> = Arc::new(guests);
    connect_switch_ports(&all);
    ALL_GUESTS.call_once(|| Arc::clone(&all));
    TEST_MODE.store(test, Ordering::Release);
    monitor::install(Arc::clone(&all), escape);
    let mut on_boot_cpu = None;
    for g in all.iter() {
        for (index, &cpu) in g.cpus.iter().enumerate() {
            let guest = Arc::clone(g);
            let everyone = Arc::clone(&all);
            let job: alloc::boxed::Box<dyn FnOnce() + Send> = alloc::boxed::Box::new(move || {
                guest::run_vcpu_thread(&guest, index, &caps, &|| guest_finished(&everyone, test));
            });
            if cpu == 0 {
                on_boot_cpu = Some(job);
            } else {
                smp::post_job(cpu, job);
            }
        }
    }
    if let Some(job) = on_boot_cpu {
        job();
    }
    idle()
}

/// Lets a sending guest's CPU put frames straight into its peers' receive queues: each port's
/// deliverer serves its own guest's pending virtio work under that guest's device lock.
fn connect_switch_ports(all: &[Arc<Guest>]) {
    for g in all {
        let ports = g.devices.lock().switch_ports.clone();
        for (switch, id) in ports {
            let guest = Arc::downgrade(g);
            switch.set_deliverer(
                id,
                Arc::new(move || {
                    if let Some(g) = guest.upgrade() {
                        g.devices.lock().poll_virtio(&g.ram);
                    }
                }),
            );
        }
    }
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
            State::Held => "held",
            _ => "stopped",
        };
        crate::println!(
            "GUEST {} {state} status {} restarts {}",
            g.name,
            g.exit_status.load(Ordering::Acquire),
            g.restarts.load(Ordering::Acquire)
        );
    }
    check_canary();
    log::info!(
        "all guests stopped; {} MiB free, {} free frames",
        memory::free_bytes() >> 20,
        memory::free_frames()
    );
    if test {
        entry::finish(true, "");
    }
}

/// A guest was stopped from the monitor: it counts as ended until it is restarted.
fn guest_held() {
    if let Some(all) = ALL_GUESTS.get() {
        guest_finished(all, TEST_MODE.load(Ordering::Acquire));
    }
}

/// A guest stopped from the monitor runs again.
fn guest_resumed() {
    GUESTS_RUNNING.fetch_add(1, Ordering::AcqRel);
}

fn idle() -> ! {
    loop {
        // The boot CPU keeps reading the serial line for the monitor while it has nothing else.
        monitor::wait();
    }
}

/// Where application processors wait for work.
pub fn ap_idle(index: usize) -> ! {
    smp::run_jobs(index)
}

mod setup;
mod storage;
