//! A running guest: its RAM, nested page table, devices, and the loop each of its vCPUs runs
//! on its own physical CPU.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use spin::Mutex;

use super::host::MachineHost;
use super::monitor;

mod control;

use crate::addr::HostPhysAddr;
use crate::arch::x86_64::guest_ram::GuestRam;
use crate::arch::x86_64::{apic, cpu, memory, percpu, smp, time};
use crate::println;
use crate::virt::svm::SvmVcpu;
use crate::virt::vmx;
use crate::virt::{Caps, EntryState, Segment, Vcpu, VmExit};
use crate::vmm::dispatch::{self, GuestDevices, Next, StopReason, VcpuState};
use crate::vmm::interrupts::{self, VcpuLinks};
use crate::vmm::stats::ExitStats;
pub use control::MonitorRequest;
use control::{handle_monitor, report_stopped, restart_from_monitor, wait_for_restart};

/// Lifecycle of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Starting = 0,
    Running = 1,
    Stopped = 2,
    Crashed = 3,
    /// Stopped from the monitor; `restart` brings it back.
    Held = 4,
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
    /// The generation whose restart has finished (start-up mailboxes cleared): a SIPI taken
    /// while this equals `generation` was sent by the guest as it now runs.
    ready_generation: AtomicU32,
    /// A stop an application processor ran into, for the boot vCPU to act on.
    stop_request: Mutex<Option<StopReason>>,
    has_stop_request: AtomicBool,
    /// The manifest's `time_limit_ms`, if any.
    time_limit_ms: Option<u64>,
    /// TSC at which the time limit ends the guest (0: none, or not started yet).
    deadline_tsc: AtomicU64,
    /// A [`MonitorRequest`] not yet acted on (0: none).
    monitor_request: AtomicU8,
    /// TSC when the guest last (re)started, for its uptime.
    started_tsc: AtomicU64,
    /// vCPU 0 waits for the monitor's `restart` (the guest ended or was stopped).
    is_restartable: AtomicBool,
}

/// The status a guest stopped by its time limit ends with.
pub const TIME_LIMIT_STATUS: u8 = 254;

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
            ready_generation: AtomicU32::new(0),
            stop_request: Mutex::new(None),
            has_stop_request: AtomicBool::new(false),
            time_limit_ms: None,
            deadline_tsc: AtomicU64::new(0),
            monitor_request: AtomicU8::new(0),
            started_tsc: AtomicU64::new(0),
            is_restartable: AtomicBool::new(false),
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
            4 => State::Held,
            _ => State::Crashed,
        }
    }

    fn set_state(&self, s: State) {
        if s == State::Running {
            self.started_tsc.store(cpu::rdtsc(), Ordering::Release);
        }
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

    /// Stops the guest `ms` milliseconds after it first starts, whatever it is doing.
    pub fn with_time_limit(mut self, ms: Option<u64>) -> Self {
        self.time_limit_ms = ms;
        self
    }

    /// Starts the time limit's clock (at the first start and at a restart from the monitor;
    /// crash restarts keep counting).
    fn arm_time_limit(&self) {
        if let Some(ms) = self.time_limit_ms {
            let end = cpu::rdtsc().saturating_add(ms.saturating_mul(time::tsc_khz()));
            self.deadline_tsc.store(end.max(1), Ordering::Release);
        }
    }

    /// The TSC at which the time limit ends the guest, once it has started.
    fn deadline(&self) -> Option<u64> {
        match self.deadline_tsc.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    /// Loads the images before anything starts, so a bad image is refused while no guest runs.
    pub fn prepare(&self) -> Result<(), String> {
        let entry = self.load()?;
        *self.prepared.lock() = Some(entry);
        Ok(())
    }
}

/// The busiest ports named in the `io exits by port` line when a guest stops.
pub(super) const IO_PORTS_SHOWN: usize = 8;

/// Runs vCPU `index` of `guest` on this CPU until the guest stops for good. vCPU 0 boots the
/// guest and decides about stops and restarts; the others wait for INIT-SIPI from it, as
/// application processors do. `on_stop` is called once, by vCPU 0, when the guest is done.
pub fn run_vcpu_thread(guest: &Guest, index: usize, caps: &Caps, on_stop: &dyn Fn()) {
    percpu::set_guest_name(Some(guest.name));
    let result = match caps {
        Caps::Svm(svm) => SvmVcpu::new(svm, guest.nested_root, guest.asid)
            .map_err(|e| alloc::format!("{e}"))
            .and_then(|v| run_vcpu(guest, index, v, on_stop)),
        Caps::Vmx(_) => vmx::with_vcpu(guest.nested_root, guest.asid, |v| {
            run_vcpu(guest, index, v, on_stop)
        })
        .map_err(|e| alloc::format!("{e}"))
        .and_then(|r| r),
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
    // A vCPU only gets here when it failed: vCPU 0 otherwise waits for the monitor's restart.
    if index == 0 {
        report_stopped(guest);
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
/// How often a vCPU adds its exit counts to the guest's (what the monitor's `stats` shows).
const STATS_MERGE_MS: u64 = 10;

/// How one stretch of running a vCPU ended.
enum Stretch {
    /// The guest is done (stopped or crashed for good).
    Finished,
    /// Restart, reboot or INIT: an application processor waits for a SIPI again.
    Reset,
}

/// The life of one vCPU, the same for every vendor.
fn run_vcpu<V: Vcpu>(
    guest: &Guest,
    index: usize,
    mut vcpu: V,
    on_stop: &dyn Fn(),
) -> Result<(), String> {
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
        guest.arm_time_limit();
        log::info!(
            "started on cpu{} with {} MiB",
            percpu::index(),
            guest.ram.size() >> 20
        );
        loop {
            while let Stretch::Reset = run_stretch(guest, &mut vcpu, &mut st, &mut host)? {}
            report_stopped(guest);
            on_stop();
            // Ended for good, unless the monitor starts it again (a test run may end first).
            wait_for_restart(guest);
            restart_from_monitor(guest, &mut vcpu, &mut st)?;
        }
    }
    loop {
        // An application processor: wait for INIT-SIPI (also while the guest has ended: the
        // monitor may restart it). A SIPI is the current guest's only if no restart was under
        // way when it was taken: one taken mid-restart was sent before it (the mailboxes are
        // cleared as the restart ends) and is dropped. Comparing with a generation read
        // before the wait instead would drop the new guest's SIPI whenever the restart
        // happened during the wait.
        let vector = loop {
            let ready = guest.ready_generation.load(Ordering::Acquire);
            if let Some(v) = guest.links.take_startup(index).sipi {
                if ready == guest.generation.load(Ordering::Acquire) {
                    break v;
                }
                continue;
            }
            monitor::wait();
        };
        vcpu.reset(&sipi_state(vector));
        log::info!(
            "vCPU {index} started by SIPI at {:#x}",
            u32::from(vector) << 12
        );
        if let Stretch::Finished = run_stretch(guest, &mut vcpu, &mut st, &mut host)? {
            // The guest has ended: this CPU no longer runs any of its code (a scenario checks
            // that a vCPU spinning with interrupts off is taken off its CPU too).
            log::info!(
                "vCPU {index} off cpu{}: its guest has ended",
                percpu::index()
            );
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
    let polls_input = monitor::is_poll_cpu();
    let mut stats_merged_tsc = cpu::rdtsc();
    // Fixed at set-up: the ports this guest's frames leave by.
    let ports = guest.devices.lock().switch_ports.clone();
    loop {
        if index == 0 {
            if let Some(reason) = guest.take_stop_request() {
                return handle_stop(guest, vcpu, st, host, reason);
            }
            if guest.deadline().is_some_and(|end| cpu::rdtsc() >= end) {
                return Ok(time_up(guest, st, host));
            }
            if let Some(request) = guest.take_monitor_request() {
                return handle_monitor(guest, vcpu, st, host, request);
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
        // The physical timer ends the guest's run at its time limit even if the guest never
        // exits by itself (a loop with interrupts off exits only for host interrupts).
        let limit = if index == 0 { guest.deadline() } else { None };
        deadline = earliest(deadline, limit);
        if work_waiting {
            // Come back soon to hand the guest what it had no buffers for.
            let retry = cpu::rdtsc() + time::tsc_khz() * DEVICE_RETRY_MS;
            deadline = earliest(deadline, Some(retry));
        }
        if polls_input {
            // This CPU reads the serial line: come out of the guest often enough to look.
            monitor::poll();
            deadline = earliest(deadline, Some(monitor::next_poll_tsc()));
        }
        vcpu.set_host_deadline(deadline);
        if deadline != armed {
            match deadline {
                Some(t) => apic::arm_timer_at(t),
                None => apic::disarm_timer(),
            }
            armed = deadline;
        }
        let exit = vcpu.run();
        log::trace!("exit {} at RIP {:#x}", exit.name(), vcpu.rip());
        // A queue notification (MMIO) may have sent frames to other guests.
        let may_have_sent = matches!(exit, VmExit::NestedFault { .. });
        let next = {
            let mut dev = guest.devices.lock();
            let next = dispatch::handle(vcpu, exit, st, &mut dev, &guest.ram, host);
            work_waiting = dev.poll_virtio(&guest.ram);
            interrupts::take_deliveries(st, &mut dev);
            next
        };
        if may_have_sent {
            // Hand those frames over now, with this guest's devices unlocked (see switch.rs).
            for (switch, id) in &ports {
                switch.deliver_pending(*id);
            }
        }
        if cpu::rdtsc().wrapping_sub(stats_merged_tsc) > time::tsc_khz() * STATS_MERGE_MS {
            // Publish this vCPU's exit counts for the monitor's `stats`.
            guest.stats.lock().merge(&st.stats);
            st.stats = ExitStats::default();
            stats_merged_tsc = cpu::rdtsc();
        }
        match next {
            Next::Resume => {}
            Next::Halt => {
                // Sleep until the vCPU's own timer is due or something kicks this CPU.
                if !vcpu.interrupts_enabled() && st.lapic().next_deadline_tsc().is_none() {
                    log::info!("halted with interrupts off; only a reset wakes it");
                }
                while !interrupts::can_wake(vcpu, st, cpu::rdtsc()) {
                    if limit.is_some_and(|end| cpu::rdtsc() >= end) {
                        break;
                    }
                    if (index == 0
                        && (guest.has_stop_request.load(Ordering::Acquire)
                            || guest.has_monitor_request()))
                        || (index != 0
                            && (guest.is_finished()
                                || guest.generation.load(Ordering::Acquire) != generation))
                    {
                        break;
                    }
                    let mut deadline = earliest(st.lapic().next_deadline_tsc(), limit);
                    if polls_input {
                        deadline = earliest(deadline, Some(monitor::next_poll_tsc()));
                    }
                    match deadline {
                        Some(t) => apic::arm_timer_at(t),
                        None => apic::disarm_timer(),
                    }
                    armed = None;
                    cpu::wait_for_interrupt();
                    if polls_input {
                        monitor::poll();
                    }
                    // Input or frames from other CPUs may be what wakes the guest: take them
                    // in now, their interrupts end the halt.
                    let mut dev = guest.devices.lock();
                    work_waiting = dev.poll_virtio(&guest.ram);
                    interrupts::take_deliveries(st, &mut dev);
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

/// The earlier of two optional TSC deadlines.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// vCPU 0 ends the guest at its time limit: stopped (not crashed), `on_crash` does not apply.
fn time_up(guest: &Guest, st: &mut VcpuState, host: &mut MachineHost) -> Stretch {
    dispatch::flush_console(&mut guest.devices.lock(), host);
    guest.stats.lock().merge(&st.stats);
    st.stats = ExitStats::default();
    log::warn!(
        "stopped: time limit of {} ms reached",
        guest.time_limit_ms.unwrap_or(0)
    );
    guest
        .exit_status
        .store(TIME_LIMIT_STATUS, Ordering::Release);
    guest.set_state(State::Stopped);
    Stretch::Finished
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
    let generation = guest.generation.fetch_add(1, Ordering::AcqRel) + 1;
    for i in 1..guest.links.count() {
        guest.links.kick(i);
    }
    let entry = guest
        .load()
        .map_err(|e| alloc::format!("cannot reload: {e}"))?;
    guest.links.reset(time::tsc_khz());
    guest.ready_generation.store(generation, Ordering::Release);
    vcpu.reset(&entry);
    *st = VcpuState::new(0, Arc::clone(&guest.links));
    guest.devices.lock().reset(&guest.ram, time::unix_now());
    guest.set_state(State::Running);
    Ok(())
}
