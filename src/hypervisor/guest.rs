//! A running guest: its RAM, nested page table, devices, and the loop each of its vCPUs runs
//! on its own physical CPU.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

use spin::Mutex;

use super::host::MachineHost;
use crate::addr::HostPhysAddr;
use crate::arch::x86_64::guest_ram::GuestRam;
use crate::arch::x86_64::{apic, cpu, memory, percpu, smp, time};
use crate::println;
use crate::virt::svm::SvmVcpu;
use crate::virt::vmx;
use crate::virt::{Caps, EntryState, Segment, Vcpu};
use crate::vmm::dispatch::{self, GuestDevices, Next, StopReason, VcpuState};
use crate::vmm::interrupts::{self, VcpuLinks};
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
    /// The vCPUs' APICs and start-up requests.
    pub links: Arc<VcpuLinks>,
    /// Bumped at every restart: application processors go back to waiting for a SIPI.
    generation: AtomicU32,
    /// A stop an application processor ran into, for the boot vCPU to act on.
    stop_request: Mutex<Option<StopReason>>,
    has_stop_request: AtomicBool,
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
        let vcpus = cpus.len() as u32;
        let kick_cpus = cpus.clone();
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
            links: Arc::new(VcpuLinks::new(
                vcpus,
                time::tsc_khz(),
                Box::new(move |i| {
                    if let Some(&cpu) = kick_cpus.get(i) {
                        smp::kick(cpu);
                    }
                }),
            )),
            generation: AtomicU32::new(0),
            stop_request: Mutex::new(None),
            has_stop_request: AtomicBool::new(false),
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

/// The busiest ports named in the `io exits by port` line when a guest stops.
const IO_PORTS_SHOWN: usize = 8;

/// Runs vCPU `index` of `guest` on this CPU until the guest stops for good. vCPU 0 boots the
/// guest and decides about stops and restarts; the others wait for INIT-SIPI from it, as
/// application processors do. `on_stop` is called once, by vCPU 0, when the guest is done.
pub fn run_vcpu_thread(guest: &Guest, index: usize, caps: &Caps, on_stop: &dyn Fn()) {
    percpu::set_guest_name(Some(guest.name));
    let result = match caps {
        Caps::Svm(svm) => SvmVcpu::new(svm, guest.nested_root, guest.asid)
            .map_err(|e| alloc::format!("{e}"))
            .and_then(|v| run_vcpu(guest, index, v)),
        Caps::Vmx(_) => {
            vmx::with_vcpu(guest.nested_root, guest.asid, |v| run_vcpu(guest, index, v))
                .map_err(|e| alloc::format!("{e}"))
                .and_then(|r| r)
        }
    };
    if let Err(why) = result {
        log::error!("{why}");
        if index == 0 {
            guest.exit_status.store(255, Ordering::Release);
            guest.set_state(State::Crashed);
        } else {
            guest.request_stop(StopReason::Fatal(why));
        }
    }
    if index == 0 {
        // Wake the application processors so they see the guest is done.
        for i in 1..guest.links.count() {
            guest.links.kick(i);
        }
        let (stats, ports) = {
            let s = guest.stats.lock();
            (s.summary(), s.ports_summary(IO_PORTS_SHOWN))
        };
        log::info!(
            "stopped ({:?}, status {}, {} restarts); exits {}",
            guest.state(),
            guest.exit_status.load(Ordering::Acquire),
            guest.restarts.load(Ordering::Acquire),
            stats
        );
        if !ports.is_empty() {
            log::info!("io exits by port: {ports}");
        }
        percpu::set_guest_name(None);
        on_stop();
    } else {
        percpu::set_guest_name(None);
    }
}

impl Guest {
    /// An application processor hands a stop (its triple fault, say) to vCPU 0.
    fn request_stop(&self, reason: StopReason) {
        *self.stop_request.lock() = Some(reason);
        self.has_stop_request.store(true, Ordering::Release);
        self.links.kick(0);
    }

    fn take_stop_request(&self) -> Option<StopReason> {
        if !self.has_stop_request.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.stop_request.lock().take()
    }
}

/// The state INIT-SIPI leaves a processor in: real mode at `vector << 12` (Intel SDM vol.3
/// §9.4.4.2, table 9-1).
fn sipi_state(vector: u8) -> EntryState {
    let base = u64::from(vector) << 12;
    let data = Segment {
        selector: 0,
        base: 0,
        limit: 0xFFFF,
        access: 0x93,
    };
    EntryState {
        rip: 0,
        rflags: 2,
        cr0: 0x10,
        cs: Segment {
            selector: u16::from(vector) << 8,
            base,
            limit: 0xFFFF,
            access: 0x9B,
        },
        ds: data,
        es: data,
        ss: data,
        fs: data,
        gs: data,
        tr: Segment {
            selector: 0,
            base: 0,
            limit: 0xFFFF,
            access: 0x8B,
        },
        ldtr: Segment {
            selector: 0,
            base: 0,
            limit: 0xFFFF,
            access: 0x82,
        },
        gdtr_limit: 0xFFFF,
        idtr_limit: 0xFFFF,
        ..Default::default()
    }
}

/// How soon a vCPU comes back to devices whose work waits for guest buffers.
const DEVICE_RETRY_MS: u64 = 1;

/// How one stretch of running a vCPU ended.
enum Stretch {
    /// The guest is done (stopped or crashed for good).
    Finished,
    /// Restart, reboot or INIT: an application processor waits for a SIPI again.
    Reset,
}

/// The life of one vCPU, the same for every vendor.
fn run_vcpu<V: Vcpu>(guest: &Guest, index: usize, mut vcpu: V) -> Result<(), String> {
    let mut host = MachineHost::new(guest.name);
    // Host interrupts stay off in the run loop: a wake-up that arrives while an entry is being
    // prepared must end the next guest run at once, not be swallowed here (the vendor code
    // opens the window around guest execution).
    cpu::disable_interrupts();
    let mut st = VcpuState::new(index as u32, Arc::clone(&guest.links));
    if index == 0 {
        let prepared = guest.prepared.lock().take();
        let entry = match prepared {
            Some(e) => e,
            None => guest
                .load()
                .map_err(|e| alloc::format!("cannot load: {e}"))?,
        };
        vcpu.reset(&entry);
        guest.set_state(State::Running);
        log::info!(
            "started on cpu{} with {} MiB",
            percpu::index(),
            guest.ram.size() >> 20
        );
        while let Stretch::Reset = run_stretch(guest, &mut vcpu, &mut st, &mut host)? {}
        return Ok(());
    }
    loop {
        // An application processor: wait for INIT-SIPI (or for the guest to end).
        let generation = guest.generation.load(Ordering::Acquire);
        let vector = loop {
            if guest.is_finished() {
                return Ok(());
            }
            if let Some(v) = guest.links.take_startup(index).sipi {
                break v;
            }
            cpu::wait_for_interrupt();
        };
        if guest.generation.load(Ordering::Acquire) != generation {
            continue;
        }
        vcpu.reset(&sipi_state(vector));
        log::info!(
            "vCPU {index} started by SIPI at {:#x}",
            u32::from(vector) << 12
        );
        if let Stretch::Finished = run_stretch(guest, &mut vcpu, &mut st, &mut host)? {
            return Ok(());
        }
    }
}

/// Runs the vCPU until the guest ends or this vCPU must start over.
fn run_stretch<V: Vcpu>(
    guest: &Guest,
    vcpu: &mut V,
    st: &mut VcpuState,
    host: &mut MachineHost,
) -> Result<Stretch, String> {
    let index = st.index as usize;
    let generation = guest.generation.load(Ordering::Acquire);
    let mut armed: Option<u64> = None;
    let mut work_waiting = false;
    loop {
        if index == 0 {
            if let Some(reason) = guest.take_stop_request() {
                return handle_stop(guest, vcpu, st, host, reason);
            }
        } else {
            if guest.is_finished() {
                return Ok(Stretch::Finished);
            }
            if guest.generation.load(Ordering::Acquire) != generation
                || guest.links.take_startup(index).init
            {
                return Ok(Stretch::Reset);
            }
        }
        let mut deadline = interrupts::before_entry(vcpu, st, cpu::rdtsc());
        if work_waiting {
            // Come back soon to hand the guest what it had no buffers for.
            let retry = cpu::rdtsc() + time::tsc_khz() * DEVICE_RETRY_MS;
            deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
        }
        if deadline != armed {
            match deadline {
                Some(t) => apic::arm_timer_at(t),
                None => apic::disarm_timer(),
            }
            armed = deadline;
        }
        let exit = vcpu.run();
        log::trace!("exit {} at RIP {:#x}", exit.name(), vcpu.rip());
        let next = {
            let mut dev = guest.devices.lock();
            let next = dispatch::handle(vcpu, exit, st, &mut dev, &guest.ram, host);
            work_waiting = dev.poll_virtio(&guest.ram);
            interrupts::take_deliveries(st, &mut dev);
            next
        };
        match next {
            Next::Resume => {}
            Next::Halt => {
                // Sleep until the vCPU's own timer is due or something kicks this CPU.
                if !vcpu.interrupts_enabled() && st.lapic().next_deadline_tsc().is_none() {
                    log::info!("halted with interrupts off; only a reset wakes it");
                }
                while !interrupts::can_wake(vcpu, st, cpu::rdtsc()) {
                    if (index == 0 && guest.has_stop_request.load(Ordering::Acquire))
                        || (index != 0
                            && (guest.is_finished()
                                || guest.generation.load(Ordering::Acquire) != generation))
                    {
                        break;
                    }
                    let deadline = st.lapic().next_deadline_tsc();
                    match deadline {
                        Some(t) => apic::arm_timer_at(t),
                        None => apic::disarm_timer(),
                    }
                    armed = None;
                    cpu::wait_for_interrupt();
                }
            }
            Next::Stop(reason) if index == 0 => {
                let end = handle_stop(guest, vcpu, st, host, reason)?;
                if let Stretch::Finished = end {
                    return Ok(end);
                }
            }
            Next::Stop(reason) => {
                guest.stats.lock().merge(&st.stats);
                st.stats = ExitStats::default();
                guest.request_stop(reason);
                return Ok(Stretch::Reset);
            }
        }
    }
}

/// vCPU 0 acts on a stop: the guest ends, or starts again from its images.
fn handle_stop<V: Vcpu>(
    guest: &Guest,
    vcpu: &mut V,
    st: &mut VcpuState,
    host: &mut MachineHost,
    reason: StopReason,
) -> Result<Stretch, String> {
    dispatch::flush_console(&mut guest.devices.lock(), host);
    guest.stats.lock().merge(&st.stats);
    st.stats = ExitStats::default();
    match &reason {
        StopReason::Exited(status) => {
            guest.exit_status.store(*status, Ordering::Release);
            log::info!("exited with status {status}");
            guest.set_state(State::Stopped);
            Ok(Stretch::Finished)
        }
        StopReason::PowerOff => {
            log::info!("powered off");
            guest.set_state(State::Stopped);
            Ok(Stretch::Finished)
        }
        StopReason::Reboot => {
            log::info!("reboot requested: starting again from its images");
            restart(guest, vcpu, st)?;
            Ok(Stretch::Reset)
        }
        StopReason::Crashed(report) | StopReason::Fatal(report) => {
            log::error!("crashed: {report}");
            let restarts = guest.restarts.load(Ordering::Acquire);
            match guest.on_crash {
                CrashPolicy::Restart { limit } if restarts < limit => {
                    let n = guest.restarts.fetch_add(1, Ordering::AcqRel) + 1;
                    restart(guest, vcpu, st)?;
                    let free = memory::free_frames();
                    println!("RESTART {} {n}/{limit} free-frames {free}", guest.name);
                    // A restart allocates nothing, so free frames never drop below what the
                    // first restart left (they may rise as other guests stop).
                    let first = *guest.frames_after_restart.call_once(|| free);
                    if free < first {
                        println!("FAIL restart-leak {}: {} frames after restart {n}, {first} after the first", guest.name, free);
                    } else if n == limit {
                        println!(
                            "PASS restart-no-leak {} {n} restarts, {free} free frames each time",
                            guest.name
                        );
                    }
                    Ok(Stretch::Reset)
                }
                _ => {
                    guest.exit_status.store(255, Ordering::Release);
                    guest.set_state(State::Crashed);
                    Ok(Stretch::Finished)
                }
            }
        }
    }
}

/// Starts `guest` again from its pristine images: application processors back to waiting for
/// a SIPI, RAM zeroed and reloaded, vCPU, APICs and devices reset (disks keep what was written,
/// as on a real reboot). Allocates nothing.
fn restart<V: Vcpu>(guest: &Guest, vcpu: &mut V, st: &mut VcpuState) -> Result<(), String> {
    guest.generation.fetch_add(1, Ordering::AcqRel);
    for i in 1..guest.links.count() {
        guest.links.kick(i);
    }
    let entry = guest
        .load()
        .map_err(|e| alloc::format!("cannot reload: {e}"))?;
    guest.links.reset(time::tsc_khz());
    vcpu.reset(&entry);
    *st = VcpuState::new(0, Arc::clone(&guest.links));
    guest.devices.lock().reset(&guest.ram, time::unix_now());
    Ok(())
}
