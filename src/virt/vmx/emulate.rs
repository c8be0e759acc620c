//! Exits VMX adds and the VMM never sees: control-register writes that touch bits the
//! hypervisor owns (CR0.NE, CR4.VMXE through the guest/host masks) and XSETBV, which always
//! exits (SDM vol.3 §26.1.2). Both are completed here as the instruction would have.

use super::cr::{self, CrWrite, CR4_OSXSAVE};
use super::exit::{self, CrAccess, CrAccessKind};
use super::fields::*;
use super::vcpu::{VmxVcpu, ACCESS_L, VECTOR_GP};
use crate::arch::x86_64::cpu;
use crate::virt::{reg, Vcpu, VmExit};

impl VmxVcpu<'_> {
    /// Emulates a control-register access that exited; `Some` if it cannot be handled here.
    pub(super) fn emulate_cr(&mut self, access: CrAccess) -> Option<VmExit> {
        let operand = |me: &Self, gpr: u8| {
            let v = me.regs.gpr(usize::from(gpr));
            if me.in_64bit_mode() {
                v
            } else {
                v & 0xFFFF_FFFF
            }
        };
        let efer = self.vmcs.read(GUEST_EFER);
        let result = match (access.cr, access.kind) {
            (0, kind) => {
                let old = self.visible_cr0();
                let new = match kind {
                    CrAccessKind::MovTo { gpr } => operand(self, gpr),
                    CrAccessKind::Clts => cr::clts(old),
                    CrAccessKind::Lmsw { source } => cr::lmsw(old, source),
                    CrAccessKind::MovFrom { .. } => return Some(self.unexpected_cr(access)),
                };
                let cs_long = self.vmcs.read(GUEST_CS_ACCESS) & ACCESS_L != 0;
                let w = cr::write_cr0(&self.caps, old, new, self.visible_cr4(), efer, cs_long);
                (w, GUEST_CR0, CR0_READ_SHADOW)
            }
            (4, CrAccessKind::MovTo { gpr }) => {
                let v = operand(self, gpr);
                let cr3 = self.vmcs.read(GUEST_CR3);
                let w = cr::write_cr4(&self.caps, self.visible_cr4(), v, cr3, efer);
                (w, GUEST_CR4, CR4_READ_SHADOW)
            }
            _ => return Some(self.unexpected_cr(access)),
        };
        match result {
            (CrWrite::Fault, _, _) => self.inject_exception(VECTOR_GP, Some(0)),
            (
                CrWrite::Done {
                    visible,
                    hardware,
                    efer: new_efer,
                    flush,
                },
                hw,
                shadow,
            ) => {
                self.vmcs.write(hw, hardware);
                self.vmcs.write(shadow, visible);
                if new_efer != efer {
                    self.vmcs.write(GUEST_EFER, new_efer);
                    self.sync_ia32e();
                }
                if flush {
                    self.flush_guest_tlb();
                }
                self.skip_instruction();
            }
        }
        None
    }

    fn unexpected_cr(&self, access: CrAccess) -> VmExit {
        log::error!(target: "vmx", "unexpected control-register exit: {access:?}");
        VmExit::Unknown {
            code: u64::from(exit::CR_ACCESS),
            info1: self.vmcs.read(EXIT_QUALIFICATION),
            info2: 0,
        }
    }

    /// XSETBV always exits (SDM vol.3 §26.1.2). XCR0 is per CPU and this CPU is the guest's,
    /// so a valid value is loaded for it; the host itself uses no extended state.
    pub(super) fn emulate_xsetbv(&mut self) {
        let index = self.regs.gpr(reg::RCX) as u32;
        let value = (self.regs.gpr(reg::RDX) << 32) | (self.regs.gpr(reg::RAX) & 0xFFFF_FFFF);
        if index != 0 || !cr::xcr0_valid(value, self.platform.xcr0_supported) {
            self.inject_exception(VECTOR_GP, Some(0));
            return;
        }
        let host_cr4 = cpu::read_cr4();
        if host_cr4 & CR4_OSXSAVE == 0 {
            // SAFETY: the guest could execute XSETBV, so the CPU has XSAVE; OSXSAVE only
            // enables XGETBV/XSETBV/XSAVE in the host, which it does not otherwise use.
            unsafe { cpu::write_cr4(host_cr4 | CR4_OSXSAVE) };
            self.vmcs.write(HOST_CR4, host_cr4 | CR4_OSXSAVE);
        }
        // SAFETY: CR4.OSXSAVE is set and the value passed the architectural XCR0 checks.
        unsafe { super::xsetbv(value) };
        self.skip_instruction();
    }
}
