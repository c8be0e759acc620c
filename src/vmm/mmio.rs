//! Guest accesses to guest-physical memory that is not RAM: decoded at RIP and sent to the
//! vCPU's local APIC, the guest's devices, or nowhere (reads all-ones, writes dropped).

use super::dispatch::{
    crash_report, decode_at_rip, skip, GuestDevices, Next, StopReason, VcpuState,
    UNASSIGNED_LOG_LIMIT,
};
use super::interrupts;
use crate::addr::{GuestPhysAddr, PAGE_SIZE};
use crate::devices::lapic::ApicMode;
use crate::guest_mem::GuestMemory;
use crate::layout::LAPIC_BASE;
use crate::virt::Vcpu;

/// A nested page fault: where, and what the CPU was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NptAccess {
    pub gpa: GuestPhysAddr,
    pub is_write: bool,
    pub is_fetch: bool,
    /// The CPU was reading the guest's page tables at `gpa`, not accessing `gpa` itself.
    pub is_walk: bool,
}

/// An access to guest-physical memory that is not RAM: emulated devices, or nothing (reads
/// all-ones, writes dropped, as on a bus with nothing behind it).
///
/// A fault in the guest's page-table walk (a table placed outside RAM) is not an access to
/// `gpa` by the instruction: its data must not go to whatever device lies under the table
/// entry, so it is served as unassigned memory whatever is there.
pub fn handle<V: Vcpu>(
    vcpu: &mut V,
    npf: NptAccess,
    st: &mut VcpuState,
    dev: &mut GuestDevices,
    mem: &dyn GuestMemory,
    now_tsc: u64,
) -> Next {
    let NptAccess {
        gpa,
        is_write,
        is_fetch,
        is_walk,
    } = npf;
    if is_fetch {
        return Next::Stop(StopReason::Crashed(crash_report(
            vcpu,
            &alloc::format!("instruction fetch from {gpa}, which is not RAM"),
        )));
    }
    let (insn, bytes) = match decode_at_rip(vcpu, mem) {
        Ok(d) => d,
        Err(why) => {
            return Next::Stop(StopReason::Crashed(crash_report(
                vcpu,
                &alloc::format!(
                    "{} of {gpa}: {why}",
                    if is_write { "write" } else { "read" }
                ),
            )))
        }
    };
    let Some(access) = insn.mmio else {
        return Next::Stop(StopReason::Crashed(crash_report(
            vcpu,
            &alloc::format!("unsupported instruction {insn} (bytes {bytes:02x?}) accesses {gpa}"),
        )));
    };
    let size = access.size;
    if is_walk {
        if access.write_data(&vcpu.regs().gprs).is_none() {
            access.complete_read(&mut vcpu.regs().gprs, u64::MAX);
        }
        note_unassigned_mmio(dev, gpa, size, is_write);
        skip(vcpu, insn.len);
        return Next::Resume;
    }
    let apic_offset = gpa.as_u64().wrapping_sub(LAPIC_BASE.as_u64());
    if apic_offset < PAGE_SIZE && st.lapic().mode() == ApicMode::XApic {
        // The vCPU's own local APIC (xAPIC mode): 32-bit registers.
        match access.write_data(&vcpu.regs().gprs) {
            Some(value) => {
                let action = st.lapic().mmio_write(apic_offset, value as u32, now_tsc);
                if let Some(action) = action {
                    interrupts::apply_apic_action(st, action, &mut |v| dev.ioapic_eoi(v));
                }
            }
            None => {
                let value = st.lapic().mmio_read(apic_offset, now_tsc);
                access.complete_read(&mut vcpu.regs().gprs, u64::from(value));
            }
        }
        skip(vcpu, insn.len);
        return Next::Resume;
    }
    match access.write_data(&vcpu.regs().gprs) {
        Some(value) => {
            let claimed = dev.mmio_write(gpa, size, value, mem);
            if !claimed {
                note_unassigned_mmio(dev, gpa, size, true);
            }
        }
        None => {
            let value = dev.mmio_read(gpa, size).unwrap_or_else(|| {
                note_unassigned_mmio(dev, gpa, size, false);
                u64::MAX
            });
            access.complete_read(&mut vcpu.regs().gprs, value);
        }
    }
    skip(vcpu, insn.len);
    Next::Resume
}

fn note_unassigned_mmio(dev: &mut GuestDevices, gpa: GuestPhysAddr, size: u8, is_write: bool) {
    dev.unassigned_mmio += 1;
    if dev.unassigned_mmio <= UNASSIGNED_LOG_LIMIT {
        log::debug!(
            "{} of unassigned {gpa} ({size} bytes)",
            if is_write { "write" } else { "read" }
        );
    } else if dev.unassigned_mmio == UNASSIGNED_LOG_LIMIT + 1 {
        log::info!("further unassigned memory accesses are counted, not logged");
    }
}
