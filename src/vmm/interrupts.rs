//! Getting interrupts into a vCPU: its local APIC's timer and IPIs, device lines through the
//! I/O APIC, and the HLT/wake-up logic of the run loop.

use super::dispatch::VcpuState;
use super::platform::GuestDevices;
use crate::devices::lapic::{ApicAction, DeliveryMode, Ipi};
use crate::virt::Vcpu;

/// Before entering the guest: advance its APIC timer and inject the highest pending interrupt if
/// the guest can take it now, else ask to exit as soon as it can. Returns the TSC value at which
/// the physical timer must next interrupt (the guest's APIC timer deadline), if any.
pub fn before_entry<V: Vcpu>(vcpu: &mut V, st: &mut VcpuState, now_tsc: u64) -> Option<u64> {
    st.lapic.poll(now_tsc);
    if let Some(vector) = st.lapic.pending() {
        if vcpu.inject_interrupt(vector) {
            st.lapic.ack(vector);
            vcpu.request_interrupt_window(false);
        } else {
            vcpu.request_interrupt_window(true);
        }
    } else {
        vcpu.request_interrupt_window(false);
    }
    st.lapic.next_deadline_tsc()
}

/// Whether a halted vCPU has something to wake up for.
pub fn can_wake<V: Vcpu>(vcpu: &V, st: &mut VcpuState, now_tsc: u64) -> bool {
    st.lapic.poll(now_tsc);
    st.lapic.pending().is_some() && vcpu.interrupts_enabled()
}

/// Carries out what a write to the local APIC asked for. Only the vCPU's own APIC is reachable
/// today; IPIs for other vCPUs of the guest are routed by the VMM's multi-vCPU support and go
/// nowhere else.
pub fn apply_apic_action(st: &mut VcpuState, action: ApicAction, ioapic_eoi: &mut dyn FnMut(u8)) {
    match action {
        ApicAction::IoApicEoi(vector) => ioapic_eoi(vector),
        ApicAction::Ipi(ipi) => deliver_ipi(st, ipi),
    }
}

fn deliver_ipi(st: &mut VcpuState, ipi: Ipi) {
    if ipi.is_init_deassert() {
        return;
    }
    if !st.lapic.is_target(ipi.dest, true) {
        log::debug!(
            "IPI {:?} to {:?} reaches no vCPU of this guest",
            ipi.mode,
            ipi.dest
        );
        return;
    }
    match ipi.mode {
        DeliveryMode::Fixed(v) | DeliveryMode::LowestPriority(v) => {
            st.lapic.accept(v, ipi.level_triggered);
        }
        other => log::debug!("self-IPI {other:?} ignored"),
    }
}

/// Hands the I/O APIC's interrupt messages to this vCPU's local APIC when it is their target.
pub fn take_deliveries(st: &mut VcpuState, dev: &mut GuestDevices) {
    for d in dev.deliveries.drain(..) {
        if !st.lapic.is_target(d.dest, false) {
            log::debug!(
                "I/O APIC message {:?} to {:?} reaches no vCPU",
                d.mode,
                d.dest
            );
            continue;
        }
        match d.mode {
            DeliveryMode::Fixed(v) | DeliveryMode::LowestPriority(v) => {
                st.lapic.accept(v, d.level_triggered);
            }
            other => log::debug!("I/O APIC delivery mode {other:?} not supported"),
        }
    }
}
