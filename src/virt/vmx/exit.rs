//! VM-exit reasons (SDM vol.3 appendix C) and exit qualifications (§28.2.1), decoded into what
//! the vCPU must do: hand a [`VmExit`] to the VMM, or handle a VMX-only exit itself.

#![forbid(unsafe_code)]

use crate::addr::GuestPhysAddr;
use crate::virt::{IoAccess, VmExit};

// Basic exit reasons (SDM vol.3 appendix C, table C-1).
/// EPT-violation qualification: the guest linear address is valid (bit 7), and the access
/// was to that address rather than to a paging-structure entry (bit 8).
const EPT_LINEAR_VALID: u64 = 1 << 7;
const EPT_TRANSLATED_ACCESS: u64 = 1 << 8;

pub const EXCEPTION_OR_NMI: u16 = 0;
pub const EXTERNAL_INTERRUPT: u16 = 1;
pub const TRIPLE_FAULT: u16 = 2;
pub const INIT_SIGNAL: u16 = 3;
pub const SIPI: u16 = 4;
pub const IO_SMI: u16 = 5;
pub const OTHER_SMI: u16 = 6;
pub const INTERRUPT_WINDOW: u16 = 7;
pub const CPUID: u16 = 10;
pub const GETSEC: u16 = 11;
pub const HLT: u16 = 12;
pub const INVD: u16 = 13;
pub const VMCALL: u16 = 18;
pub const VMCLEAR: u16 = 19;
pub const VMXON: u16 = 27;
pub const CR_ACCESS: u16 = 28;
pub const IO_INSTRUCTION: u16 = 30;
pub const RDMSR: u16 = 31;
pub const WRMSR: u16 = 32;
pub const INVALID_GUEST_STATE: u16 = 33;
pub const MSR_LOADING: u16 = 34;
pub const MWAIT: u16 = 36;
pub const MONITOR: u16 = 39;
pub const MACHINE_CHECK: u16 = 41;
pub const EPT_VIOLATION: u16 = 48;
pub const EPT_MISCONFIG: u16 = 49;
pub const INVEPT: u16 = 50;
pub const PREEMPTION_TIMER: u16 = 52;
pub const INVVPID: u16 = 53;
pub const XSETBV: u16 = 55;
pub const VMFUNC: u16 = 59;

/// Exit reason bit 31: the VM entry failed (SDM vol.3 §25.9.1).
pub const REASON_ENTRY_FAILURE: u32 = 1 << 31;

/// Exit interruption information: valid, and type NMI (SDM vol.3 §25.9.2).
const INTR_VALID: u32 = 1 << 31;
const INTR_TYPE_NMI: u32 = 2;

/// What an exit asks of the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Hand this to the VMM.
    Guest(VmExit),
    /// An NMI arrived for the host: deliver it to the host's handler.
    HostNmi,
    /// An external interrupt arrived for the host; with "acknowledge interrupt on exit" the
    /// vector was taken from the APIC and must be handled (and EOIed) by the host.
    HostInterrupt { vector: Option<u8> },
    /// MOV to/from CR0/CR4 (or CLTS/LMSW) touched a bit Bulkhead owns: emulate.
    ControlRegister(CrAccess),
    /// XSETBV, which always exits: emulate.
    Xsetbv,
    /// An EPT entry the CPU rejects (a hypervisor bug): report it.
    EptMisconfig { gpa: GuestPhysAddr },
    /// VM entry failed after the checks on controls and host state.
    EntryFailed { reason: u16, qualification: u64 },
}

/// A control-register access (exit qualification of exit 28, SDM vol.3 table 28-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrAccess {
    /// Control register number.
    pub cr: u8,
    pub kind: CrAccessKind,
}

/// How the control register was accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccessKind {
    /// MOV to CR from general register `gpr` (x86 encoding order).
    MovTo { gpr: u8 },
    /// MOV from CR to general register `gpr`.
    MovFrom { gpr: u8 },
    /// CLTS.
    Clts,
    /// LMSW with this 16-bit source.
    Lmsw { source: u16 },
}

fn cr_access(q: u64) -> CrAccess {
    let gpr = ((q >> 8) & 0xF) as u8;
    let kind = match (q >> 4) & 3 {
        0 => CrAccessKind::MovTo { gpr },
        1 => CrAccessKind::MovFrom { gpr },
        2 => CrAccessKind::Clts,
        _ => CrAccessKind::Lmsw {
            source: (q >> 16) as u16,
        },
    };
    CrAccess {
        cr: (q & 0xF) as u8,
        kind,
    }
}

/// I/O exit qualification (SDM vol.3 table 28-5): size-1 in bits 2:0, IN in bit 3, string in
/// bit 4, REP in bit 5, port in bits 31:16.
fn io_access(q: u64) -> IoAccess {
    IoAccess {
        port: (q >> 16) as u16,
        size: ((q & 7) + 1) as u8,
        is_in: q & (1 << 3) != 0,
        is_string: q & (1 << 4) != 0,
        is_rep: q & (1 << 5) != 0,
    }
}

/// What the hardware reported about one exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawExit {
    /// Exit reason (field 0x4402), with the entry-failure bit.
    pub reason: u32,
    /// Exit qualification (field 0x6400).
    pub qualification: u64,
    /// Guest-physical address (field 0x2400), meaningful for EPT exits.
    pub gpa: u64,
    /// Exit interruption information (field 0x4404).
    pub intr_info: u32,
}

/// Decodes one exit.
pub fn decode(raw: &RawExit) -> Action {
    let basic = (raw.reason & 0xFFFF) as u16;
    let q = raw.qualification;
    if raw.reason & REASON_ENTRY_FAILURE != 0 {
        return Action::EntryFailed {
            reason: basic,
            qualification: q,
        };
    }
    let exit = match basic {
        EXCEPTION_OR_NMI
            if raw.intr_info & INTR_VALID != 0 && (raw.intr_info >> 8) & 7 == INTR_TYPE_NMI =>
        {
            return Action::HostNmi
        }
        EXTERNAL_INTERRUPT => {
            let vector = (raw.intr_info & INTR_VALID != 0).then_some(raw.intr_info as u8);
            return Action::HostInterrupt { vector };
        }
        CR_ACCESS => return Action::ControlRegister(cr_access(q)),
        XSETBV => return Action::Xsetbv,
        EPT_MISCONFIG => {
            return Action::EptMisconfig {
                gpa: GuestPhysAddr::new(raw.gpa),
            }
        }
        TRIPLE_FAULT => VmExit::Shutdown,
        INIT_SIGNAL | SIPI | IO_SMI | OTHER_SMI => VmExit::HostInterrupt,
        INTERRUPT_WINDOW => VmExit::InterruptWindow,
        // The host's deadline came while the guest kept interrupts masked: the run loop decides.
        PREEMPTION_TIMER => VmExit::HostInterrupt,
        CPUID => VmExit::Cpuid,
        HLT => VmExit::Hlt,
        INVD => VmExit::Invd,
        VMCALL => VmExit::Hypercall,
        GETSEC | VMCLEAR..=VMXON | INVEPT | INVVPID | VMFUNC | MWAIT | MONITOR => {
            VmExit::VirtInstruction
        }
        IO_INSTRUCTION => VmExit::Io(io_access(q)),
        RDMSR => VmExit::MsrRead,
        WRMSR => VmExit::MsrWrite,
        // SDM vol.3 table 28-7: bit 0 read, bit 1 write, bit 2 instruction fetch; bit 7 the
        // linear address is valid, and then bit 8 clear means the access was to a
        // paging-structure entry (the guest's page-table walk), not to the translated address.
        EPT_VIOLATION => VmExit::NestedFault {
            gpa: GuestPhysAddr::new(raw.gpa),
            is_write: q & 2 != 0,
            is_fetch: q & 4 != 0,
            is_walk: q & EPT_LINEAR_VALID != 0 && q & EPT_TRANSLATED_ACCESS == 0,
        },
        _ => VmExit::Unknown {
            code: u64::from(raw.reason),
            info1: q,
            info2: u64::from(raw.intr_info),
        },
    };
    Action::Guest(exit)
}

/// The entry-failure reasons in words.
pub fn entry_failure_text(reason: u16) -> &'static str {
    match reason {
        INVALID_GUEST_STATE => "VM entry failed: invalid guest state (exit reason 33)",
        MSR_LOADING => "VM entry failed while loading MSRs (exit reason 34)",
        MACHINE_CHECK => "VM entry failed: machine-check event during entry (exit reason 41)",
        _ => "VM entry failed with an unexpected exit reason",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(reason: u32, qualification: u64) -> Action {
        decode(&RawExit {
            reason,
            qualification,
            ..RawExit::default()
        })
    }

    #[test]
    fn io_qualification() {
        // OUT DX, AL to 0x3F8; IN EAX, 0x71 (immediate); REP OUTSW to 0x1F0.
        let out = exit(30, 0x03F8_0000);
        assert_eq!(
            out,
            Action::Guest(VmExit::Io(IoAccess {
                port: 0x3F8,
                size: 1,
                is_in: false,
                is_string: false,
                is_rep: false
            }))
        );
        let Action::Guest(VmExit::Io(io)) = exit(30, 0x0071_0000 | (1 << 6) | 8 | 3) else {
            panic!()
        };
        assert_eq!((io.port, io.size, io.is_in), (0x71, 4, true));
        let Action::Guest(VmExit::Io(io)) = exit(30, 0x01F0_0000 | 0x30 | 1) else {
            panic!()
        };
        assert_eq!((io.size, io.is_string, io.is_rep), (2, true, true));
    }

    #[test]
    fn ept_violation_takes_the_gpa_and_access() {
        let a = decode(&RawExit {
            reason: 48,
            qualification: 0x182, // write, linear address valid
            gpa: 0xFEE0_0300,
            intr_info: 0,
        });
        assert_eq!(
            a,
            Action::Guest(VmExit::NestedFault {
                gpa: GuestPhysAddr::new(0xFEE0_0300),
                is_write: true,
                is_fetch: false,
                is_walk: false,
            })
        );
        // Linear address valid but not the translated access: the guest's page-table walk.
        let Action::Guest(VmExit::NestedFault { is_walk, .. }) = exit(48, 0x81) else {
            panic!()
        };
        assert!(is_walk);
        let Action::Guest(VmExit::NestedFault { is_fetch, .. }) = exit(48, 4) else {
            panic!()
        };
        assert!(is_fetch);
    }

    #[test]
    fn vmx_instructions_are_virt_instructions() {
        for reason in [11, 19, 20, 21, 22, 23, 24, 25, 26, 27, 36, 39, 50, 53, 59] {
            assert_eq!(
                exit(reason, 0),
                Action::Guest(VmExit::VirtInstruction),
                "{reason}"
            );
        }
        assert_eq!(exit(18, 0), Action::Guest(VmExit::Hypercall));
    }

    #[test]
    fn host_events() {
        let nmi = decode(&RawExit {
            reason: 0,
            intr_info: 0x8000_0202,
            ..RawExit::default()
        });
        assert_eq!(nmi, Action::HostNmi);
        let irq = decode(&RawExit {
            reason: 1,
            intr_info: 0x8000_00F0,
            ..RawExit::default()
        });
        assert_eq!(irq, Action::HostInterrupt { vector: Some(0xF0) });
        assert_eq!(exit(1, 0), Action::HostInterrupt { vector: None });
        assert_eq!(exit(3, 0), Action::Guest(VmExit::HostInterrupt));
        assert_eq!(exit(2, 0), Action::Guest(VmExit::Shutdown));
    }

    #[test]
    fn entry_failures_keep_the_reason() {
        assert_eq!(
            exit(0x8000_0021, 3),
            Action::EntryFailed {
                reason: 33,
                qualification: 3
            }
        );
        assert!(entry_failure_text(34).contains("MSRs"));
    }

    #[test]
    fn control_register_accesses() {
        // MOV CR0, RAX; MOV RBX, CR4 (not exiting here, but decoded); LMSW 0x11; CLTS.
        assert_eq!(
            exit(28, 0x000),
            Action::ControlRegister(CrAccess {
                cr: 0,
                kind: CrAccessKind::MovTo { gpr: 0 }
            })
        );
        assert_eq!(
            exit(28, 0x314),
            Action::ControlRegister(CrAccess {
                cr: 4,
                kind: CrAccessKind::MovFrom { gpr: 3 }
            })
        );
        assert_eq!(
            exit(28, 0x0011_0030),
            Action::ControlRegister(CrAccess {
                cr: 0,
                kind: CrAccessKind::Lmsw { source: 0x11 }
            })
        );
        assert_eq!(
            exit(28, 0x20),
            Action::ControlRegister(CrAccess {
                cr: 0,
                kind: CrAccessKind::Clts
            })
        );
    }

    #[test]
    fn unknown_exits_keep_the_raw_data() {
        assert_eq!(
            exit(9, 0x28),
            Action::Guest(VmExit::Unknown {
                code: 9,
                info1: 0x28,
                info2: 0
            })
        );
    }
}
