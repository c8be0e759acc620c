//! Getting interrupts into vCPUs: each vCPU's local APIC (timer, IPIs between a guest's own
//! vCPUs, INIT/SIPI start-up), device lines through the I/O APIC, and the HLT/wake-up logic of
//! the run loop.

use alloc::boxed::Box;
use alloc::vec::Vec;

use spin::{Mutex, MutexGuard};

use super::dispatch::VcpuState;
use super::platform::GuestDevices;
use crate::devices::lapic::{ApicAction, DeliveryMode, Destination, Lapic};
use crate::virt::Vcpu;

/// A start-up request for a vCPU, from an INIT or SIPI another vCPU sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Startup {
    /// INIT arrived: the vCPU goes back to waiting for a SIPI.
    pub init: bool,
    /// SIPI arrived with this vector: start in real mode at `vector << 12`.
    pub sipi: Option<u8>,
}

/// What a guest's vCPUs share to reach one another: their local APICs, start-up requests, and
/// a way to wake a vCPU's physical CPU.
pub struct VcpuLinks {
    apics: Vec<Mutex<Lapic>>,
    startup: Vec<Mutex<Startup>>,
    kick: Box<dyn Fn(usize) + Send + Sync>,
}

impl core::fmt::Debug for VcpuLinks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VcpuLinks")
            .field("vcpus", &self.apics.len())
            .finish()
    }
}

impl VcpuLinks {
    /// Links for `count` vCPUs (APIC ids 0..count) whose TSC runs at `tsc_khz`; `kick(i)` wakes
    /// vCPU `i` out of guest mode or HLT.
    pub fn new(count: u32, tsc_khz: u64, kick: Box<dyn Fn(usize) + Send + Sync>) -> Self {
        let apics = (0..count.max(1))
            .map(|i| Mutex::new(Lapic::new(i, tsc_khz, super::APIC_TIMER_KHZ)))
            .collect();
        let startup = (0..count.max(1))
            .map(|_| Mutex::new(Startup::default()))
            .collect();
        Self {
            apics,
            startup,
            kick,
        }
    }

    /// Number of vCPUs.
    pub fn count(&self) -> usize {
        self.apics.len()
    }

    /// vCPU `i`'s local APIC.
    pub fn apic(&self, i: usize) -> MutexGuard<'_, Lapic> {
        self.apics[i].lock()
    }

    /// Takes vCPU `i`'s pending start-up request.
    pub fn take_startup(&self, i: usize) -> Startup {
        core::mem::take(&mut *self.startup[i].lock())
    }

    /// Resets every APIC and start-up request (guest restart).
    pub fn reset(&self, tsc_khz: u64) {
        for (i, a) in self.apics.iter().enumerate() {
            *a.lock() = Lapic::new(i as u32, tsc_khz, super::APIC_TIMER_KHZ);
        }
        for s in &self.startup {
            *s.lock() = Startup::default();
        }
    }

    /// Wakes vCPU `i`.
    pub fn kick(&self, i: usize) {
        (self.kick)(i);
    }

    /// Delivers a message to every vCPU it addresses; `sender` is the sending vCPU (for the
    /// self shorthands), `None` for the I/O APIC. Returns whether anyone took it.
    pub fn deliver(
        &self,
        sender: Option<usize>,
        dest: Destination,
        mode: DeliveryMode,
        level_triggered: bool,
    ) -> bool {
        let mut taken = false;
        for i in 0..self.apics.len() {
            let is_sender = sender == Some(i);
            let accepted = {
                let mut apic = self.apics[i].lock();
                if !apic.is_target(dest, is_sender) {
                    continue;
                }
                match mode {
                    DeliveryMode::Fixed(v) | DeliveryMode::LowestPriority(v) => {
                        apic.accept(v, level_triggered)
                    }
                    DeliveryMode::Init => {
                        log::debug!("INIT to vCPU {i} (from {sender:?}, dest {dest:?})");
                        apic.init_reset();
                        *self.startup[i].lock() = Startup {
                            init: true,
                            sipi: None,
                        };
                        true
                    }
                    DeliveryMode::Startup(page) => {
                        log::debug!("SIPI {page:#x} to vCPU {i} (from {sender:?})");
                        self.startup[i].lock().sipi = Some(page);
                        true
                    }
                    other => {
                        log::debug!("delivery mode {other:?} not supported; dropped");
                        false
                    }
                }
            };
            taken |= accepted;
            if accepted && !is_sender {
                self.kick(i);
            }
            // Lowest priority: any one target will do.
            if accepted && matches!(mode, DeliveryMode::LowestPriority(_)) {
                break;
            }
        }
        taken
    }
}

/// Before entering the guest: advance the vCPU's APIC timer and inject the highest pending
/// interrupt if the guest can take it now, else ask to exit as soon as it can. Returns the TSC
/// value at which the physical timer must next interrupt (the APIC timer deadline), if any.
pub fn before_entry<V: Vcpu>(vcpu: &mut V, st: &mut VcpuState, now_tsc: u64) -> Option<u64> {
    let mut apic = st.lapic();
    apic.poll(now_tsc);
    if let Some(vector) = apic.pending() {
        if vcpu.inject_interrupt(vector) {
            apic.ack(vector);
            vcpu.request_interrupt_window(false);
        } else {
            vcpu.request_interrupt_window(true);
        }
    } else {
        vcpu.request_interrupt_window(false);
    }
    apic.next_deadline_tsc()
}

/// Whether a halted vCPU has something to wake up for.
pub fn can_wake<V: Vcpu>(vcpu: &V, st: &mut VcpuState, now_tsc: u64) -> bool {
    let mut apic = st.lapic();
    apic.poll(now_tsc);
    apic.pending().is_some() && vcpu.interrupts_enabled()
}

/// Carries out what a write to the local APIC asked for: an IPI goes to the guest's own vCPUs
/// it addresses (and nowhere else); an EOI of a level-triggered vector goes to the I/O APIC.
pub fn apply_apic_action(st: &mut VcpuState, action: ApicAction, ioapic_eoi: &mut dyn FnMut(u8)) {
    match action {
        ApicAction::IoApicEoi(vector) => ioapic_eoi(vector),
        ApicAction::Ipi(ipi) => {
            if ipi.is_init_deassert() {
                return;
            }
            if !st.links.deliver(
                Some(st.index as usize),
                ipi.dest,
                ipi.mode,
                ipi.level_triggered,
            ) {
                log::debug!(
                    "IPI {:?} to {:?} reaches no vCPU of this guest",
                    ipi.mode,
                    ipi.dest
                );
            }
        }
    }
}

/// Hands the I/O APIC's interrupt messages to the vCPUs they address.
pub fn take_deliveries(st: &mut VcpuState, dev: &mut GuestDevices) {
    for d in dev.deliveries.drain(..) {
        if !st.links.deliver(None, d.dest, d.mode, d.level_triggered) {
            log::debug!(
                "I/O APIC message {:?} to {:?} reaches no vCPU",
                d.mode,
                d.dest
            );
        }
    }
}
