//! AMD SVM: enabling it on a CPU and running one vCPU with a VMCB (AMD APM vol.2 ch.15).

mod run;
pub mod vmcb;

use crate::addr::GuestPhysAddr;
use crate::addr::HostPhysAddr;
use crate::arch::x86_64::cpu::{rdmsr, wrmsr, MSR_EFER};
use crate::arch::x86_64::memory;
use crate::virt::caps::SvmCaps;
use crate::virt::{EntryState, GuestRegs, IoAccess, PagingState, Segment, Vcpu, VcpuError, VmExit};
use vmcb::*;

const EFER_SVME: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
const RFLAGS_IF: u64 = 1 << 9;
/// Power-on PAT value (AMD APM vol.2 §7.8.2).
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
const PAGE: u64 = 4096;
/// EXITINFO1 of a nested page fault: the fault was on a guest page-table access.
const NPF_GUEST_TABLE_WALK: u64 = 1 << 33;
/// I/O permission map: 12 KiB (APM vol.2 §15.10.1).
const IOPM_BYTES: u64 = 3 * PAGE;
/// MSR permission map: 8 KiB (APM vol.2 §15.11).
const MSRPM_BYTES: u64 = 2 * PAGE;

/// MSRs whose state the VMCB holds and VMLOAD/VMSAVE switch, so the guest may use them directly.
const PASSTHROUGH_MSRS: [u32; 12] = [
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x277,       // PAT (G_PAT with nested paging)
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // SFMASK
    0xC000_0100, // FS_BASE
    0xC000_0101, // GS_BASE
    0xC000_0102, // KERNEL_GS_BASE
    0xC000_0103, // TSC_AUX (per-CPU; this CPU belongs to the guest)
];

/// Per-CPU SVM state: the host save area and the VMCB used to keep the host's VMSAVE state.
struct HostArea {
    host_vmcb: HostPhysAddr,
}

/// Turns on SVM on this CPU (EFER.SVME, VM_HSAVE_PA).
fn enable_on_this_cpu() -> Result<HostArea, VcpuError> {
    let hsave = memory::alloc_zeroed(PAGE, PAGE).map_err(|_| VcpuError::OutOfMemory)?;
    let host_vmcb = memory::alloc_zeroed(PAGE, PAGE).map_err(|_| VcpuError::OutOfMemory)?;
    // SAFETY: the caller checked (caps) that SVM exists and is not disabled; setting EFER.SVME
    // and pointing VM_HSAVE_PA at a fresh page owned by this CPU is the documented enable
    // sequence (APM vol.2 §15.4).
    unsafe {
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, hsave.as_u64());
    }
    Ok(HostArea { host_vmcb })
}

/// Converts the VMX-style access rights of [`Segment`] to the VMCB's compressed attributes.
fn attrib(s: &Segment) -> u16 {
    (s.access & 0xFF) | ((s.access >> 4) & 0xF00)
}

fn vmcb_segment(s: &Segment) -> VmcbSegment {
    VmcbSegment {
        selector: s.selector,
        attrib: attrib(s),
        limit: s.limit,
        base: s.base,
    }
}

/// A vCPU on AMD SVM.
pub struct SvmVcpu {
    vmcb: &'static mut Vmcb,
    vmcb_pa: HostPhysAddr,
    host: HostArea,
    regs: GuestRegs,
    nrip: bool,
    /// The hardware's next RIP for the last exit, when known.
    next_rip: Option<u64>,
}

impl SvmVcpu {
    /// Creates a vCPU on this CPU for a guest whose nested page table root is `npt_root`,
    /// tagged with `asid` (≥ 1).
    pub fn new(caps: &SvmCaps, npt_root: HostPhysAddr, asid: u32) -> Result<Self, VcpuError> {
        let host = enable_on_this_cpu()?;
        let vmcb_pa = memory::alloc_zeroed(PAGE, PAGE).map_err(|_| VcpuError::OutOfMemory)?;
        let iopm = memory::alloc_zeroed(IOPM_BYTES, PAGE).map_err(|_| VcpuError::OutOfMemory)?;
        let msrpm = memory::alloc_zeroed(MSRPM_BYTES, PAGE).map_err(|_| VcpuError::OutOfMemory)?;
        // SAFETY: the three ranges were just allocated for this vCPU alone and are identity-mapped;
        // the VMCB page is 4 KiB aligned and zeroed, a valid `Vmcb`.
        let vmcb = unsafe {
            core::ptr::write_bytes(iopm.as_u64() as *mut u8, 0xFF, IOPM_BYTES as usize);
            let pm =
                core::slice::from_raw_parts_mut(msrpm.as_u64() as *mut u8, MSRPM_BYTES as usize);
            pm.fill(0xFF);
            for msr in PASSTHROUGH_MSRS {
                allow_msr(pm, msr);
            }
            &mut *(vmcb_pa.as_u64() as *mut Vmcb)
        };
        let c = &mut vmcb.control;
        c.intercept_misc1 = INTERCEPT_INTR
            | INTERCEPT_NMI
            | INTERCEPT_INIT
            | INTERCEPT_CPUID
            | INTERCEPT_INVD
            | INTERCEPT_HLT
            | INTERCEPT_INVLPGA
            | INTERCEPT_IOIO
            | INTERCEPT_MSR
            | INTERCEPT_SHUTDOWN;
        c.intercept_misc2 = INTERCEPT_VMRUN
            | INTERCEPT_VMMCALL
            | INTERCEPT_VMLOAD
            | INTERCEPT_VMSAVE
            | INTERCEPT_STGI
            | INTERCEPT_CLGI
            | INTERCEPT_SKINIT
            | INTERCEPT_MONITOR
            | INTERCEPT_MWAIT;
        c.iopm_base_pa = iopm.as_u64();
        c.msrpm_base_pa = msrpm.as_u64();
        c.guest_asid = asid.max(1);
        c.tlb_control = TLB_FLUSH_ALL;
        c.np_enable = 1;
        c.n_cr3 = npt_root.as_u64();
        c.vintr = VINTR_MASKING;
        Ok(Self {
            vmcb,
            vmcb_pa,
            host,
            regs: GuestRegs::default(),
            nrip: caps.nrip,
            next_rip: None,
        })
    }

    /// The raw exit information of the last exit, for reports.
    pub fn raw_exit(&self) -> (u64, u64, u64) {
        let c = &self.vmcb.control;
        (c.exit_code, c.exit_info1, c.exit_info2)
    }

    fn decode_exit(&mut self) -> VmExit {
        let c = &self.vmcb.control;
        let (code, info1, info2) = (c.exit_code, c.exit_info1, c.exit_info2);
        self.next_rip = if self.nrip && c.next_rip != 0 {
            Some(c.next_rip)
        } else {
            None
        };
        if code as u32 == EXIT_INVALID_LOW32 {
            return VmExit::EntryFailed("VMRUN refused the guest state (VMEXIT_INVALID): a VMCB consistency check failed (AMD APM vol.2 §15.5.1)");
        }
        match code {
            EXIT_CPUID => VmExit::Cpuid,
            EXIT_HLT => VmExit::Hlt,
            EXIT_IOIO => {
                // EXITINFO2 holds the next RIP for IOIO intercepts (APM vol.2 §15.10.2).
                self.next_rip = Some(info2);
                let size = if info1 & (1 << 4) != 0 {
                    1
                } else if info1 & (1 << 5) != 0 {
                    2
                } else {
                    4
                };
                VmExit::Io(IoAccess {
                    port: (info1 >> 16) as u16,
                    size,
                    is_in: info1 & 1 != 0,
                    is_string: info1 & (1 << 2) != 0,
                    is_rep: info1 & (1 << 3) != 0,
                })
            }
            EXIT_MSR if info1 == 0 => VmExit::MsrRead,
            EXIT_MSR => VmExit::MsrWrite,
            // AMD APM vol.2 §15.25.6: EXITINFO1 bit 33 says the fault hit the guest's page
            // tables during the walk, bit 32 that it hit the final translation.
            EXIT_NPF => VmExit::NestedFault {
                gpa: GuestPhysAddr::new(info2),
                is_write: info1 & 2 != 0,
                is_fetch: info1 & 16 != 0,
                is_walk: info1 & NPF_GUEST_TABLE_WALK != 0,
            },
            EXIT_SHUTDOWN => VmExit::Shutdown,
            EXIT_VMMCALL => VmExit::Hypercall,
            EXIT_VMRUN | EXIT_VMLOAD | EXIT_VMSAVE | EXIT_STGI | EXIT_CLGI | EXIT_SKINIT
            | EXIT_INVLPGA | EXIT_MONITOR | EXIT_MWAIT => VmExit::VirtInstruction,
            EXIT_INVD => VmExit::Invd,
            EXIT_INTR | EXIT_NMI | EXIT_SMI | EXIT_INIT => VmExit::HostInterrupt,
            EXIT_VINTR => VmExit::InterruptWindow,
            _ => VmExit::Unknown { code, info1, info2 },
        }
    }
}

/// Clears the read and write intercept bits of `msr` in an MSR permission map.
fn allow_msr(pm: &mut [u8], msr: u32) {
    // APM vol.2 §15.11: three 2 KiB blocks, two bits per MSR (read, write).
    let (block, index) = match msr {
        0..=0x1FFF => (0, msr),
        0xC000_0000..=0xC000_1FFF => (1, msr - 0xC000_0000),
        0xC001_0000..=0xC001_1FFF => (2, msr - 0xC001_0000),
        _ => return,
    };
    let bit = index as usize * 2;
    let byte = block * 0x800 + bit / 8;
    pm[byte] &= !(0b11 << (bit % 8));
}

impl Vcpu for SvmVcpu {
    fn run(&mut self) -> VmExit {
        self.vmcb.state.rax = self.regs.gprs[0];
        self.vmcb.state.rsp = self.regs.gprs[4];
        // The run loop calls this with host interrupts off, so a wake-up IPI that arrives while
        // it prepares the entry stays pending. With V_INTR_MASKING the host's RFLAGS.IF decides
        // whether a physical interrupt ends guest execution (AMD APM vol.2 §15.21.1), so IF is
        // set inside the CLGI window: a pending interrupt then exits the guest at once, and
        // after STGI it is taken here before IF is cleared again.
        // SAFETY: this vCPU was created on this CPU, which enabled SVM; the VMCB and the host
        // VMCB are ours and initialised; GIF is cleared around VMRUN as the APM requires; the
        // IDT is loaded and its handlers only acknowledge the interrupt.
        unsafe {
            run::clgi();
            core::arch::asm!("sti", options(nomem, nostack));
            run::vmrun(
                &mut self.regs,
                self.vmcb_pa.as_u64(),
                self.host.host_vmcb.as_u64(),
            );
            run::stgi();
            core::arch::asm!("nop", "cli", options(nomem, nostack));
        }
        self.regs.gprs[0] = self.vmcb.state.rax;
        self.regs.gprs[4] = self.vmcb.state.rsp;
        let c = &mut self.vmcb.control;
        c.tlb_control = TLB_NOTHING;
        // An event whose delivery the exit interrupted must be delivered again (APM vol.2 §15.7.2).
        c.event_inject = if c.exit_int_info & EVENT_VALID != 0 {
            c.exit_int_info
        } else {
            0
        };
        self.decode_exit()
    }

    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }

    fn rip(&self) -> u64 {
        self.vmcb.state.rip
    }

    fn set_rip(&mut self, rip: u64) {
        self.vmcb.state.rip = rip;
        // The instruction shadow (MOV SS / STI) ends once the instruction is skipped.
        self.vmcb.control.interrupt_shadow &= !1;
    }

    fn exit_insn_len(&self) -> Option<u8> {
        self.next_rip
            .and_then(|n| u8::try_from(n.wrapping_sub(self.vmcb.state.rip)).ok())
            .filter(|&l| (1..=15).contains(&l))
    }

    fn paging(&self) -> PagingState {
        let s = &self.vmcb.state;
        let long = s.efer & EFER_LMA != 0 && s.cs.attrib & (1 << 9) != 0;
        let code_bits = if long {
            64
        } else if s.cs.attrib & (1 << 10) != 0 {
            32
        } else {
            16
        };
        PagingState {
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer & !EFER_SVME,
            cs_base: s.cs.base,
            code_bits,
        }
    }

    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        let mut ev = EVENT_VALID | EVENT_TYPE_EXCEPTION | u64::from(vector);
        if let Some(code) = error_code {
            ev |= EVENT_HAS_ERROR | (u64::from(code) << 32);
        }
        self.vmcb.control.event_inject = ev;
    }

    fn inject_interrupt(&mut self, vector: u8) -> bool {
        if !self.interrupts_enabled() || self.vmcb.control.event_inject & EVENT_VALID != 0 {
            return false;
        }
        self.vmcb.control.event_inject = EVENT_VALID | EVENT_TYPE_INTR | u64::from(vector);
        true
    }

    fn request_interrupt_window(&mut self, enable: bool) {
        let c = &mut self.vmcb.control;
        if enable {
            c.vintr |= VINTR_V_IRQ | VINTR_IGN_TPR | (0xF << 16);
            c.intercept_misc1 |= INTERCEPT_VINTR;
        } else {
            c.vintr &= !(VINTR_V_IRQ | VINTR_IGN_TPR | (0xF << 16));
            c.intercept_misc1 &= !INTERCEPT_VINTR;
        }
    }

    fn interrupts_enabled(&self) -> bool {
        self.vmcb.state.rflags & RFLAGS_IF != 0 && self.vmcb.control.interrupt_shadow & 1 == 0
    }

    fn efer(&self) -> u64 {
        self.vmcb.state.efer & !EFER_SVME
    }

    fn set_efer(&mut self, efer: u64) {
        // The guest's EFER must keep SVME for VMRUN to accept it; the guest never sees the bit.
        let lma = self.vmcb.state.efer & EFER_LMA;
        self.vmcb.state.efer = (efer & !EFER_LMA) | lma | EFER_SVME;
    }

    fn reset(&mut self, st: &EntryState) {
        self.regs = st.regs;
        let s = &mut self.vmcb.state;
        s.es = vmcb_segment(&st.es);
        s.cs = vmcb_segment(&st.cs);
        s.ss = vmcb_segment(&st.ss);
        s.ds = vmcb_segment(&st.ds);
        s.fs = vmcb_segment(&st.fs);
        s.gs = vmcb_segment(&st.gs);
        s.tr = vmcb_segment(&st.tr);
        s.ldtr = vmcb_segment(&st.ldtr);
        s.gdtr = VmcbSegment {
            selector: 0,
            attrib: 0,
            limit: u32::from(st.gdtr_limit),
            base: st.gdtr_base,
        };
        s.idtr = VmcbSegment {
            selector: 0,
            attrib: 0,
            limit: u32::from(st.idtr_limit),
            base: st.idtr_base,
        };
        s.cpl = 0;
        s.efer = st.efer | EFER_SVME;
        s.cr0 = st.cr0;
        s.cr3 = st.cr3;
        s.cr4 = st.cr4;
        s.cr2 = 0;
        s.dr7 = 0x400;
        s.dr6 = 0xFFFF_0FF0;
        s.rflags = st.rflags | 2;
        s.rip = st.rip;
        s.rsp = st.regs.gprs[4];
        s.rax = st.regs.gprs[0];
        s.g_pat = DEFAULT_PAT;
        s.star = 0;
        s.lstar = 0;
        s.cstar = 0;
        s.sfmask = 0;
        s.kernel_gs_base = 0;
        s.sysenter_cs = 0;
        s.sysenter_esp = 0;
        s.sysenter_eip = 0;
        let c = &mut self.vmcb.control;
        c.event_inject = 0;
        c.interrupt_shadow = 0;
        c.tlb_control = TLB_FLUSH_ALL;
        self.request_interrupt_window(false);
        self.next_rip = None;
    }
}
