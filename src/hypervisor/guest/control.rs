//! The monitor's hold on a guest: `stop` and `restart` requests, how its boot vCPU acts on
//! them, and waiting for a restart once the guest has ended. Logs keep the `guest:` target of
//! the rest of the guest lifecycle.

use alloc::string::String;
use core::sync::atomic::Ordering;

use super::{restart, Guest, MachineHost, State, Stretch, IO_PORTS_SHOWN};
use crate::hypervisor::monitor;
use crate::virt::Vcpu;
use crate::vmm::dispatch::{self, VcpuState};
use crate::vmm::stats::ExitStats;

/// What the monitor asks of a guest's boot vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MonitorRequest {
    /// Stop it (it can be restarted).
    Stop = 1,
    /// Start it again from its pristine images.
    Restart = 2,
}

impl Guest {
    /// TSC when the guest last started.
    pub fn started_tsc(&self) -> u64 {
        self.started_tsc.load(Ordering::Acquire)
    }

    /// Asks the guest's boot vCPU to stop or restart the guest (from any CPU).
    pub fn request(&self, r: MonitorRequest) {
        self.monitor_request.store(r as u8, Ordering::Release);
        self.links.kick(0);
    }

    pub(super) fn take_monitor_request(&self) -> Option<MonitorRequest> {
        match self.monitor_request.swap(0, Ordering::AcqRel) {
            1 => Some(MonitorRequest::Stop),
            2 => Some(MonitorRequest::Restart),
            _ => None,
        }
    }

    /// Whether the monitor's `restart` would start the guest again now.
    pub fn is_restartable(&self) -> bool {
        self.is_restartable.load(Ordering::Acquire)
    }

    pub(super) fn has_monitor_request(&self) -> bool {
        self.monitor_request.load(Ordering::Acquire) != 0
    }
}

/// The guest has ended: wake its application processors and print its summary.
pub(super) fn report_stopped(guest: &Guest) {
    for i in 1..guest.links.count() {
        guest.links.kick(i);
    }
    let (stats, ports) = {
        let s = guest.stats.lock();
        (s.summary(), s.ports_summary(IO_PORTS_SHOWN))
    };
    log::info!(
        target: "guest",
        "stopped ({:?}, status {}, {} restarts); exits {}",
        guest.state(),
        guest.exit_status.load(Ordering::Acquire),
        guest.restarts.load(Ordering::Acquire),
        stats
    );
    if !ports.is_empty() {
        log::info!(target: "guest", "io exits by port: {ports}");
    }
}

/// vCPU 0 of an ended or held guest waits for the monitor's `restart`; the guest then counts
/// as running again.
pub(super) fn wait_for_restart(guest: &Guest) {
    guest.is_restartable.store(true, Ordering::Release);
    loop {
        match guest.take_monitor_request() {
            Some(MonitorRequest::Restart) => break,
            Some(MonitorRequest::Stop) | None => monitor::wait(),
        }
    }
    guest.is_restartable.store(false, Ordering::Release);
    crate::hypervisor::guest_resumed();
}

/// Starts the guest again from its images at the monitor's request; unlike a crash restart,
/// its time limit counts anew.
pub(super) fn restart_from_monitor<V: Vcpu>(
    guest: &Guest,
    vcpu: &mut V,
    st: &mut VcpuState,
) -> Result<(), String> {
    log::info!(
        target: "guest",
        "restarted from the monitor: starting again from its images"
    );
    restart(guest, vcpu, st)?;
    guest.arm_time_limit();
    Ok(())
}

/// vCPU 0 acts on the monitor's `stop` or `restart`.
pub(super) fn handle_monitor<V: Vcpu>(
    guest: &Guest,
    vcpu: &mut V,
    st: &mut VcpuState,
    host: &mut MachineHost,
    request: MonitorRequest,
) -> Result<Stretch, String> {
    dispatch::flush_console(&mut guest.devices.lock(), host);
    guest.stats.lock().merge(&st.stats);
    st.stats = ExitStats::default();
    if request == MonitorRequest::Restart {
        restart_from_monitor(guest, vcpu, st)?;
        return Ok(Stretch::Reset);
    }
    // Stop: application processors go back to waiting for a SIPI, this vCPU waits for
    // `restart`; the guest counts as ended meanwhile (a test run may end here).
    guest.generation.fetch_add(1, Ordering::AcqRel);
    for i in 1..guest.links.count() {
        guest.links.kick(i);
    }
    guest.set_state(State::Held);
    log::info!(target: "guest", "stopped from the monitor");
    crate::hypervisor::guest_held();
    wait_for_restart(guest);
    restart_from_monitor(guest, vcpu, st)?;
    Ok(Stretch::Reset)
}
