//! A running guest: its RAM, nested page table, devices, and the loop each of its vCPUs runs
//! on its own physical CPU.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use spin::Mutex;

use super::host::MachineHost;
use crate::addr::HostPhysAddr;
use crate::arch::x86_64::guest_ram::GuestRam;
use crate::arch::x86_64::{apic, cpu, memory, percpu, time};
use crate::println;
use crate::virt::svm::SvmVcpu;
use crate::virt::vmx;
use crate::virt::{Caps, EntryState, Vcpu};
use crate::vmm::dispatch::{self, GuestDevices, Next, StopReason, VcpuState};
use crate::vmm::interrupts;
use crate::vmm::stats::ExitStats;

/// Lifecycle of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Starting = 0,
    Running = 1,
    Stopped = 2,
    Crashed = 3,
}

/// What to do when the guest crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPolicy {
    Stop,
    Restart { limit: u32 },
}

/// Loads the guest's images into its (zeroed) RAM and says how its boot vCPU starts.
pub type Loader = Box<dyn Fn(&GuestRam) -> Result<EntryState, String> + Send + Sync>;

/// One guest.
pub struct Guest {
    /// The guest's name (leaked once: log prefixes need `'static`).
    pub name: &'static &'static str,
    /// Physical CPUs, one per vCPU.
    pub cpus: Vec<usize>,
    pub ram: GuestRam,
    pub nested_root: HostPhysAddr,
    pub asid: u32,
    pub on_crash: CrashPolicy,
    pub loader: Loader,
    pub devices: Mutex<GuestDevices>,
    pub stats: Mutex<ExitStats>,
    state: AtomicU8,
    pub restarts: AtomicU32,
    /// Status the guest gave when it stopped, or 255 for a crash.
    pub exit_status: AtomicU8,
    /// Entry state of images loaded ahead of the first start (by [`Guest::prepare`]).
    prepared: Mutex<Option<EntryState>>,
    /// Free frames right after the first restart (every later one must match).
    frames_after_restart: spin::Once<u64>,
}

impl Guest {
    /// A guest ready to start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        cpus: Vec<usize>,
        ram: GuestRam,
        nested_root: HostPhysAddr,
        asid: u32,
        on_crash: CrashPolicy,
        loader: Loader,
        devices: GuestDevices,
    ) -> Self {
        let name: &'static &'static str =
            Box::leak(Box::new(&*Box::leak(String::from(name).into_boxed_str())));
        Self {
            name,
            cpus,
            ram,
            nested_root,
            asid,
            on_crash,
            loader,
            devices: Mutex::new(devices),
            prepared: Mutex::new(None),
            frames_after_restart: spin::Once::new(),
            stats: Mutex::new(ExitStats::default()),
            state: AtomicU8::new(State::Starting as u8),
            restarts: AtomicU32::new(0),
            exit_status: AtomicU8::new(0),
        }
    }

    /// The guest's state.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Starting,
            1 => State::Running,
            2 => State::Stopped,
            _ => State::Crashed,
        }
    }

    fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Whether the guest has stopped for good.
    pub fn is_finished(&self) -> bool {
        matches!(self.state(), State::Stopped | State::Crashed)
    }

    /// Zeroes RAM and loads the images again (boot and restart).
    fn load(&self) -> Result<EntryState, String> {
        self.ram.zero();
        (self.loader)(&self.ram)
    }

    /// Loads the images before anything starts, so a bad image is refused while no guest runs.
    pub fn prepare(&self) -> Result<(), String> {
        let entry = self.load()?;
        *self.prepared.lock() = Some(entry);
        Ok(())
    }
}

/// Runs vCPU 0 of `guest` on this CPU until the guest stops for good. `on_stop` is told when it
/// does.
pub fn run_boot_vcpu(guest: &Guest, caps: &Caps, on_stop: &dyn Fn()) {
    percpu::set_guest_name(Some(guest.name));
    let result = run_until_stopped(guest, caps);
    if let Err(why) = result {
        log::error!("{why}");
        guest.exit_status.store(255, Ordering::Release);
        guest.set_state(State::Crashed);
    }
    let stats = guest.stats.lock().summary();
    log::info!(
        "stopped ({:?}, status {}, {} restarts); exits {}",
        guest.state(),
        guest.exit_status.load(Ordering::Acquire),
        guest.restarts.load(Ordering::Acquire),
        stats
    );
    percpu::set_guest_name(None);
    on_stop();
}

fn run_until_stopped(guest: &Guest, caps: &Caps) -> Result<(), String> {
    match caps {
        Caps::Svm(svm) => run_vcpu(
            guest,
            SvmVcpu::new(svm, guest.nested_root, guest.asid).map_err(|e| alloc::format!("{e}"))?,
        ),
        Caps::Vmx(_) => vmx::with_vcpu(guest.nested_root, guest.asid, |v| run_vcpu(guest, v))
            .map_err(|e| alloc::format!("{e}"))?,
    }
}

/// The run loop of one vCPU, the same for every vendor.
fn run_vcpu<V: Vcpu>(guest: &Guest, mut vcpu: V) -> Result<(), String> {
    let mut host = MachineHost::new(guest.name);
    let prepared = guest.prepared.lock().take();
    let entry = match prepared {
        Some(e) => e,
        None => guest
            .load()
            .map_err(|e| alloc::format!("cannot load: {e}"))?,
    };
    vcpu.reset(&entry);
    let mut st = VcpuState::new(0, guest.cpus.len() as u32, time::tsc_khz());
    guest.set_state(State::Running);
    log::info!(
        "started on cpu{} with {} MiB",
        percpu::index(),
        guest.ram.size() >> 20
    );
    let mut armed: Option<u64> = None;
    loop {
        let deadline = interrupts::before_entry(&mut vcpu, &mut st, cpu::rdtsc());
        if deadline != armed {
            match deadline {
                Some(t) => apic::arm_timer_at(t),
                None => apic::disarm_timer(),
            }
            armed = deadline;
        }
        let exit = vcpu.run();
        let next = {
            let mut dev = guest.devices.lock();
            let next = dispatch::handle(&mut vcpu, exit, &mut st, &mut dev, &guest.ram, &mut host);
            dev.poll_virtio(&guest.ram);
            interrupts::take_deliveries(&mut st, &mut dev);
            next
        };
        match next {
            Next::Resume => {}
            Next::Halt => {
                // Sleep until the guest's own timer is due or something kicks this CPU.
                if !vcpu.interrupts_enabled() && st.lapic.next_deadline_tsc().is_none() {
                    log::info!("halted with interrupts off; only a reset wakes it");
                }
                while !interrupts::can_wake(&vcpu, &mut st, cpu::rdtsc()) {
                    match st.lapic.next_deadline_tsc() {
                        Some(t) => apic::arm_timer_at(t),
                        None => apic::disarm_timer(),
                    }
                    armed = None;
                    cpu::wait_for_interrupt();
                }
            }
            Next::Stop(reason) => {
                dispatch::flush_console(&mut guest.devices.lock(), &mut host);
                guest.stats.lock().merge(&st.stats);
                st.stats = ExitStats::default();
                match &reason {
                    StopReason::Exited(status) => {
                        guest.exit_status.store(*status, Ordering::Release);
                        log::info!("exited with status {status}");
                        guest.set_state(State::Stopped);
                        return Ok(());
                    }
                    StopReason::PowerOff => {
                        log::info!("powered off");
                        guest.set_state(State::Stopped);
                        return Ok(());
                    }
                    StopReason::Reboot => {
                        log::info!("reboot requested: starting again from its images");
                        restart(guest, &mut vcpu, &mut st)?;
                    }
                    StopReason::Crashed(report) | StopReason::Fatal(report) => {
                        log::error!("crashed: {report}");
                        let restarts = guest.restarts.load(Ordering::Acquire);
                        match guest.on_crash {
                            CrashPolicy::Restart { limit } if restarts < limit => {
                                let n = guest.restarts.fetch_add(1, Ordering::AcqRel) + 1;
                                restart(guest, &mut vcpu, &mut st)?;
                                let free = memory::free_frames();
                                println!("RESTART {} {n}/{limit} free-frames {free}", guest.name);
                                // A restart allocates nothing, so free frames never drop below what
                                // the first restart left (they may rise as other guests stop).
                                let first = *guest.frames_after_restart.call_once(|| free);
                                if free < first {
                                    println!("FAIL restart-leak {}: {} frames after restart {n}, {first} after the first", guest.name, free);
                                } else if n == limit {
                                    println!("PASS restart-no-leak {} {n} restarts, {free} free frames each time", guest.name);
                                }
                            }
                            _ => {
                                guest.exit_status.store(255, Ordering::Release);
                                guest.set_state(State::Crashed);
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Starts `guest` again from its pristine images: RAM zeroed and reloaded, vCPU and devices
/// reset (disks keep what was written, as on a real reboot). Allocates nothing.
fn restart<V: Vcpu>(guest: &Guest, vcpu: &mut V, st: &mut VcpuState) -> Result<(), String> {
    let entry = guest
        .load()
        .map_err(|e| alloc::format!("cannot reload: {e}"))?;
    vcpu.reset(&entry);
    *st = VcpuState::new(0, guest.cpus.len() as u32, time::tsc_khz());
    guest.devices.lock().reset(&guest.ram, time::unix_now());
    Ok(())
}
