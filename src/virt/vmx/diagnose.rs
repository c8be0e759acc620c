//! Turning a refused VM entry into words: the VM-instruction error or the entry-failure exit
//! reason, then the first SDM check the VMCS contents fail, naming the field.

use super::entry_check::{check_controls, check_host};
use super::exit::{entry_failure_text, INVALID_GUEST_STATE};
use super::fields::Field;
use super::finding::{insn_error_text, Finding, InsnFailure};
use super::guest_check::check_guest;
use super::vmcs::ActiveVmcs;
use super::Platform;
use crate::virt::VmExit;

/// VM-instruction error 7: invalid control fields.
const ERROR_CONTROLS: u64 = 7;
/// VM-instruction error 8: invalid host-state fields.
const ERROR_HOST_STATE: u64 = 8;

fn report(finding: Option<Finding>, general: &'static str) -> VmExit {
    match finding {
        Some(f) => {
            log::error!(target: "vmx", "first failed check: {f}");
            VmExit::EntryFailed(f.rule)
        }
        None => {
            log::error!(target: "vmx", "none of Bulkhead's checks of the VMCS failed; the CPU found something they do not cover");
            VmExit::EntryFailed(general)
        }
    }
}

/// VMLAUNCH/VMRESUME failed as an instruction (VMfailInvalid/VMfailValid).
pub fn insn_failure(vmcs: &ActiveVmcs, p: &Platform, failure: InsnFailure) -> VmExit {
    let read = |f: Field| vmcs.read(f);
    match failure {
        InsnFailure::Invalid => {
            VmExit::EntryFailed("VMLAUNCH/VMRESUME: VMfailInvalid (no current VMCS on this CPU)")
        }
        InsnFailure::Valid(ERROR_CONTROLS) => report(
            check_controls(&read, vmcs.caps(), p.phys_bits),
            "VM entry with invalid control fields (VM-instruction error 7)",
        ),
        InsnFailure::Valid(ERROR_HOST_STATE) => report(
            check_host(&read, vmcs.caps(), p.phys_bits),
            "VM entry with invalid host-state fields (VM-instruction error 8)",
        ),
        InsnFailure::Valid(n) => VmExit::EntryFailed(insn_error_text(n)),
    }
}

/// The VM entry failed while loading guest state (exit reason with bit 31 set).
pub fn entry_failure(vmcs: &ActiveVmcs, p: &Platform, reason: u16, qualification: u64) -> VmExit {
    log::error!(target: "vmx", "{} (exit qualification {qualification:#x})", entry_failure_text(reason));
    if reason != INVALID_GUEST_STATE {
        return VmExit::EntryFailed(entry_failure_text(reason));
    }
    let read = |f: Field| vmcs.read(f);
    report(
        check_guest(&read, vmcs.caps(), p.phys_bits),
        entry_failure_text(reason),
    )
}
