//! The [`Vcpu`] interface of a VMX vCPU: the run loop around the world switch, event
//! injection, and reset to a boot protocol's entry state.

use super::controls::*;
use super::cr::{self, CR4_OSXSAVE, EFER_LMA, EFER_LME};
use super::entry_check::*;
use super::exit::{self, Action, RawExit};
use super::fields::*;
use super::vcpu::*;
use super::{diagnose, run};
use crate::addr::PAGE_SIZE;
use crate::arch::x86_64::apic;
use crate::arch::x86_64::cpu::{self, wrmsr};
use crate::arch::x86_64::time;
use crate::virt::{reg, EntryState, GuestRegs, PagingState, Vcpu, VmExit};

/// How long a guest running with interrupts off may keep its CPU before the VMX-preemption timer
/// brings it back to the host's run loop (a cheap exit on hardware, 100 a second at most).
const IF_OFF_BACKSTOP_MS: u64 = 10;

impl Vcpu for VmxVcpu<'_> {
    fn run(&mut self) -> VmExit {
        loop {
            if let Some((field, e)) = self.vmcs.take_error() {
                log::error!(target: "vmx", "VMREAD/VMWRITE of {} ({:#x}) failed: {e}", field.name(), field.0);
                return VmExit::EntryFailed(
                    "a VMREAD/VMWRITE of the VMCS failed before entry (field named in the log)",
                );
            }
            self.vmcs.write(GUEST_RSP, self.regs.gprs[reg::RSP]);
            self.arm_preemption_timer();
            let launched = self.vmcs.is_launched();
            // SAFETY: the VMCS is current and fully set up (`new`, `reset`), its host state is
            // this CPU's and HOST_RIP is the landing pad; `launched` is its launch state.
            let failed = unsafe { run::enter(&mut self.regs, launched) };
            self.host.restore();
            if let Some(rflags) = failed {
                return self.vm_insn_failed(rflags);
            }
            self.exit_len = None;
            let raw = RawExit {
                reason: self.vmcs.read(EXIT_REASON) as u32,
                qualification: self.vmcs.read(EXIT_QUALIFICATION),
                gpa: self.vmcs.read(GUEST_PHYSICAL_ADDR),
                intr_info: self.vmcs.read(EXIT_INTR_INFO) as u32,
            };
            if raw.reason & exit::REASON_ENTRY_FAILURE == 0 {
                self.vmcs.set_launched();
                self.regs.gprs[reg::RSP] = self.vmcs.read(GUEST_RSP);
                self.reinject_idt_vectoring();
                self.sync_ia32e();
            }
            match exit::decode(&raw) {
                Action::Guest(e) => {
                    if matches!(
                        e,
                        VmExit::Cpuid
                            | VmExit::Hlt
                            | VmExit::Io(_)
                            | VmExit::MsrRead
                            | VmExit::MsrWrite
                            | VmExit::Hypercall
                            | VmExit::VirtInstruction
                            | VmExit::Invd
                    ) {
                        self.exit_len = u8::try_from(self.vmcs.read(EXIT_INSN_LEN))
                            .ok()
                            .filter(|l| (1..=15).contains(l));
                    }
                    return e;
                }
                Action::HostNmi => {
                    // SAFETY: vector 2 is the host's NMI handler, which ends with IRET.
                    unsafe { run::raise(VECTOR_NMI) };
                    return VmExit::HostInterrupt;
                }
                Action::HostInterrupt { vector } => {
                    match vector {
                        // SAFETY: the exit acknowledged this interrupt vector (≥ 32) at the
                        // local APIC; its host handler runs and sends the EOI.
                        Some(v) if v >= FIRST_INTERRUPT_VECTOR => unsafe { run::raise(v) },
                        Some(v) => {
                            log::warn!(target: "vmx", "host interrupt with vector {v} (< 32) dropped");
                            apic::eoi();
                        }
                        None => {}
                    }
                    return VmExit::HostInterrupt;
                }
                Action::ControlRegister(access) => {
                    if let Some(e) = self.emulate_cr(access) {
                        return e;
                    }
                }
                Action::Xsetbv => self.emulate_xsetbv(),
                Action::EptMisconfig { gpa } => {
                    log::error!(target: "vmx", "EPT misconfiguration at {gpa} (EPTP {:#x}): an EPT entry on this walk has bits the CPU rejects (SDM vol.3 §29.3.3.1)", self.eptp);
                    return VmExit::Unknown {
                        code: u64::from(exit::EPT_MISCONFIG),
                        info1: gpa.as_u64(),
                        info2: self.eptp,
                    };
                }
                Action::EntryFailed {
                    reason,
                    qualification,
                } => {
                    return diagnose::entry_failure(
                        &self.vmcs,
                        &self.platform,
                        reason,
                        qualification,
                    );
                }
            }
        }
    }

    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }

    fn rip(&self) -> u64 {
        self.vmcs.read(GUEST_RIP)
    }

    fn set_rip(&mut self, rip: u64) {
        self.vmcs.write(GUEST_RIP, rip);
        // Blocking by STI or MOV SS ends once the instruction after it is done (§27.3.1.5).
        let intr = self.vmcs.read(GUEST_INTERRUPTIBILITY);
        if intr & BLOCK_STI_MOV_SS != 0 {
            self.vmcs
                .write(GUEST_INTERRUPTIBILITY, intr & !BLOCK_STI_MOV_SS);
        }
    }

    fn exit_insn_len(&self) -> Option<u8> {
        self.exit_len
    }

    fn paging(&self) -> PagingState {
        let cs = self.vmcs.read(GUEST_CS_ACCESS);
        let code_bits = if self.in_64bit_mode() {
            64
        } else if cs & ACCESS_DB != 0 {
            32
        } else {
            16
        };
        PagingState {
            cr0: self.visible_cr0(),
            cr3: self.vmcs.read(GUEST_CR3),
            cr4: self.visible_cr4(),
            efer: self.vmcs.read(GUEST_EFER),
            cs_base: self.vmcs.read(GUEST_CS_BASE),
            code_bits,
        }
    }

    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        let mut info =
            INTR_INFO_VALID | (INTR_TYPE_HW_EXCEPTION << INTR_TYPE_SHIFT) | u64::from(vector);
        // VM entry demands an error code exactly where the CPU would push one (§27.2.1.3).
        let protected = self.visible_cr0() & CR0_PE != 0;
        if protected && exception_has_error_code(u64::from(vector)) {
            info |= INTR_INFO_HAS_ERROR;
            let code = u64::from(error_code.unwrap_or(0) & 0xFFFF);
            self.vmcs.write(ENTRY_EXCEPTION_ERROR_CODE, code);
        }
        self.vmcs.write(ENTRY_INTR_INFO, info);
    }

    fn inject_interrupt(&mut self, vector: u8) -> bool {
        if !self.interrupts_enabled() || self.vmcs.read(ENTRY_INTR_INFO) & INTR_INFO_VALID != 0 {
            return false;
        }
        let info = INTR_INFO_VALID | (INTR_TYPE_EXTERNAL << INTR_TYPE_SHIFT) | u64::from(vector);
        self.vmcs.write(ENTRY_INTR_INFO, info);
        true
    }

    fn request_interrupt_window(&mut self, enable: bool) {
        let proc = if enable {
            self.proc | PROC_INTERRUPT_WINDOW.mask()
        } else {
            self.proc & !PROC_INTERRUPT_WINDOW.mask()
        };
        if proc != self.proc {
            self.proc = proc;
            self.vmcs.write(PROC_CONTROLS, u64::from(proc));
        }
    }

    fn interrupts_enabled(&self) -> bool {
        self.vmcs.read(GUEST_RFLAGS) & RFLAGS_IF != 0
            && self.vmcs.read(GUEST_INTERRUPTIBILITY) & BLOCK_STI_MOV_SS == 0
    }

    fn efer(&self) -> u64 {
        self.vmcs.read(GUEST_EFER)
    }

    fn set_efer(&mut self, efer: u64) {
        let old = self.vmcs.read(GUEST_EFER);
        // LMA is the CPU's; LME cannot change while paging is on (it would #GP natively).
        let mut keep = EFER_LMA;
        if self.visible_cr0() & CR0_PG != 0 {
            keep |= EFER_LME;
        }
        self.vmcs.write(GUEST_EFER, (efer & !keep) | (old & keep));
    }

    fn reset(&mut self, st: &EntryState) {
        if let Err(e) = self.vmcs.relaunch() {
            log::error!(target: "vmx", "VMCLEAR/VMPTRLD on reset failed: {e}");
        }
        self.regs = st.regs;
        for (f, s) in [
            (GUEST_ES, st.es),
            (GUEST_CS, st.cs),
            (GUEST_SS, st.ss),
            (GUEST_DS, st.ds),
            (GUEST_FS, st.fs),
            (GUEST_GS, st.gs),
            (GUEST_LDTR, st.ldtr),
            (GUEST_TR, st.tr),
        ] {
            self.write_segment(&f, &s);
        }
        let v = &mut self.vmcs;
        v.write(GUEST_GDTR_BASE, st.gdtr_base);
        v.write(GUEST_GDTR_LIMIT, u64::from(st.gdtr_limit));
        v.write(GUEST_IDTR_BASE, st.idtr_base);
        v.write(GUEST_IDTR_LIMIT, u64::from(st.idtr_limit));
        v.write(GUEST_CR0, cr::cr0_hardware(&self.caps, st.cr0));
        v.write(CR0_READ_SHADOW, st.cr0);
        v.write(GUEST_CR3, st.cr3);
        v.write(GUEST_CR4, cr::cr4_hardware(&self.caps, st.cr4));
        v.write(CR4_READ_SHADOW, st.cr4);
        let mut efer = st.efer & !EFER_LMA;
        if st.cr0 & CR0_PG != 0 && st.efer & EFER_LME != 0 {
            efer |= EFER_LMA;
        }
        v.write(GUEST_EFER, efer);
        v.write(GUEST_PAT, DEFAULT_PAT);
        v.write(GUEST_DEBUGCTL, 0);
        v.write(GUEST_DR7, DR7_RESET);
        v.write(GUEST_SYSENTER_CS, 0);
        v.write(GUEST_SYSENTER_ESP, 0);
        v.write(GUEST_SYSENTER_EIP, 0);
        v.write(GUEST_RSP, st.regs.gprs[reg::RSP]);
        v.write(GUEST_RIP, st.rip);
        v.write(GUEST_RFLAGS, st.rflags | 2);
        v.write(GUEST_ACTIVITY_STATE, 0);
        v.write(GUEST_INTERRUPTIBILITY, 0);
        v.write(GUEST_PENDING_DBG_EXCEPTIONS, 0);
        v.write(ENTRY_INTR_INFO, 0);
        v.write(VMCS_LINK_POINTER, u64::MAX);
        if st.cr0 & CR0_PG != 0 && st.cr4 & cr::CR4_PAE != 0 && efer & EFER_LMA == 0 {
            log::warn!(target: "vmx", "reset into PAE paging without long mode: PDPTEs are not loaded");
        }
        self.sync_ia32e();
        self.request_interrupt_window(false);
        self.exit_len = None;
        // SAFETY: this CPU runs only this guest; the MSRs VMX does not switch (see
        // PASSTHROUGH_MSRS) and CR2 are the guest's and go back to their reset values. The
        // virtual-APIC page is this vCPU's own.
        unsafe {
            for msr in [
                MSR_STAR,
                MSR_LSTAR,
                MSR_CSTAR,
                MSR_SFMASK,
                MSR_KERNEL_GS_BASE,
            ] {
                wrmsr(msr, 0);
            }
            if self.controls.has(PROC2_RDTSCP) {
                wrmsr(MSR_TSC_AUX, 0);
            }
            core::arch::asm!("mov cr2, {}", in(reg) 0u64, options(nostack, preserves_flags));
            core::ptr::write_bytes(self.virtual_apic.as_u64() as *mut u8, 0, PAGE_SIZE as usize);
            if cpu::read_cr4() & CR4_OSXSAVE != 0 {
                super::xsetbv(1);
            }
        }
        self.flush_ept();
        self.flush_guest_tlb();
    }

    fn set_host_deadline(&mut self, tsc: Option<u64>) {
        self.host_deadline = tsc;
    }
}

impl VmxVcpu<'_> {
    /// Loads the VMX-preemption timer with the time left until the host's deadline.
    /// External-interrupt exiting should already end guest execution when the host timer fires
    /// or another CPU kicks this one, but Bochs 2.7 holds interrupts back from a guest that
    /// entered with IF=0 and never executes CLI/STI again. The preemption timer counts
    /// regardless of the guest's IF (SDM vol.3 §26.5.1), so such a guest still gives its CPU
    /// back at the host's deadline (`time_limit_ms`, device retries, the monitor's polling)
    /// and, within [`IF_OFF_BACKSTOP_MS`], for kicks (stop requests, injected interrupts).
    fn arm_preemption_timer(&mut self) {
        if !self.controls.has(PIN_PREEMPTION_TIMER) {
            return;
        }
        let now = cpu::rdtsc();
        let mut until = self.host_deadline;
        if !self.interrupts_enabled() {
            let backstop = now + time::tsc_khz() * IF_OFF_BACKSTOP_MS;
            until = Some(until.map_or(backstop, |d| d.min(backstop)));
        }
        let ticks = match until {
            Some(deadline) => (deadline.saturating_sub(now) >> self.caps.preemption_timer_shift())
                .min(u64::from(u32::MAX)),
            None => u64::from(u32::MAX),
        };
        self.vmcs.write(PREEMPTION_TIMER_VALUE, ticks);
    }
}
