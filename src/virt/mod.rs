//! Hardware virtualization behind one seam.
//!
//! The seam's types (this file) are pure and build on the host, so the VMM's exit dispatch can be
//! tested against a fake vCPU; the vendor back ends exist only in the bare-metal build.
//!
//! [`caps`] finds out what the CPU offers; `svm` and `vmx` implement [`Vcpu`] for their
//! vendor. Everything above this module (the VMM's exit dispatch, devices, lifecycle) sees only
//! [`Vcpu`], [`VmExit`] and [`GuestRegs`], so it never knows which vendor it runs on.

#[cfg(target_os = "none")]
pub mod caps;
#[cfg(target_os = "none")]
pub mod svm;
pub mod vmx;

#[cfg(target_os = "none")]
pub use caps::{probe, Caps, VirtError};

use core::fmt;

use crate::addr::GuestPhysAddr;

/// The guest's general-purpose registers, in x86 encoding order (RAX = 0 … R15 = 15) so that a
/// decoded register number indexes [`GuestRegs::gpr`] directly. RSP is kept here too; the vendor
/// code copies RAX/RSP in and out of the VMCB/VMCS around each entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    pub gprs: [u64; 16],
}

/// Register numbers in x86 encoding order.
pub mod reg {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

impl GuestRegs {
    /// Register `n` (x86 encoding order).
    pub fn gpr(&self, n: usize) -> u64 {
        self.gprs[n & 15]
    }

    /// Sets register `n`.
    pub fn set_gpr(&mut self, n: usize, v: u64) {
        self.gprs[n & 15] = v;
    }
}

/// A guest I/O port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    pub is_in: bool,
    /// INS/OUTS.
    pub is_string: bool,
    pub is_rep: bool,
}

/// Why the guest stopped running, without vendor detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// CPUID (leaf in EAX, subleaf in ECX).
    Cpuid,
    /// HLT.
    Hlt,
    /// IN/OUT/INS/OUTS.
    Io(IoAccess),
    /// RDMSR (index in ECX).
    MsrRead,
    /// WRMSR (index in ECX, value in EDX:EAX).
    MsrWrite,
    /// An access to guest-physical memory that the nested page table does not allow.
    NestedFault {
        gpa: GuestPhysAddr,
        is_write: bool,
        is_fetch: bool,
        /// The CPU was reading the guest's own page tables (at `gpa`) for the access, not
        /// making the access itself.
        is_walk: bool,
    },
    /// The guest triple-faulted (shutdown).
    Shutdown,
    /// VMMCALL / VMCALL.
    Hypercall,
    /// A virtualization instruction the guest may not use (VMRUN, VMLOAD, VMXON, …): #UD.
    VirtInstruction,
    /// INVD (would discard the hypervisor's cached writes): emulated as WBINVD.
    Invd,
    /// A physical interrupt, NMI or INIT arrived for the hypervisor; nothing to do for the guest.
    HostInterrupt,
    /// The guest can now take an interrupt (requested window opened).
    InterruptWindow,
    /// The hardware refused to enter the guest; the text says which check failed.
    EntryFailed(&'static str),
    /// Anything else, with the vendor's raw exit information for the report.
    Unknown { code: u64, info1: u64, info2: u64 },
}

impl VmExit {
    /// A short, stable name for statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cpuid => "cpuid",
            Self::Hlt => "hlt",
            Self::Io(_) => "io",
            Self::MsrRead => "rdmsr",
            Self::MsrWrite => "wrmsr",
            Self::NestedFault { .. } => "npf",
            Self::Shutdown => "shutdown",
            Self::Hypercall => "hypercall",
            Self::VirtInstruction => "virt-insn",
            Self::Invd => "invd",
            Self::HostInterrupt => "host-intr",
            Self::InterruptWindow => "intr-window",
            Self::EntryFailed(_) => "entry-failed",
            Self::Unknown { .. } => "unknown",
        }
    }
}

/// The guest's paging and code-segment state, for decoding the instruction at RIP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs_base: u64,
    /// Code size: 16, 32 or 64.
    pub code_bits: u8,
}

/// A segment register as both vendors describe it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    /// Access rights: type (bits 3:0), S (4), DPL (6:5), P (7), AVL (12), L (13), D/B (14), G (15)
    /// — the VMX layout; SVM's compressed form is derived from it.
    pub access: u16,
}

/// The initial state of a vCPU (what a boot protocol prescribes at the guest's entry point).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryState {
    pub regs: GuestRegs,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub ss: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr_base: u64,
    pub gdtr_limit: u16,
    pub idtr_base: u64,
    pub idtr_limit: u16,
}

/// A failure to create or enter a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuError {
    /// No memory for the VMCB/VMCS or bitmaps.
    OutOfMemory,
    /// Enabling virtualization on this CPU failed.
    EnableFailed(&'static str),
}

impl fmt::Display for VcpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory => f.write_str("virt: out of memory for vCPU control structures"),
            Self::EnableFailed(why) => {
                write!(f, "virt: cannot enable virtualization on this CPU: {why}")
            }
        }
    }
}

/// One virtual CPU, bound to the physical CPU that created it.
pub trait Vcpu {
    /// Enters the guest until the next exit.
    fn run(&mut self) -> VmExit;
    /// The general-purpose registers.
    fn regs(&mut self) -> &mut GuestRegs;
    /// The guest's RIP.
    fn rip(&self) -> u64;
    /// Sets the guest's RIP.
    fn set_rip(&mut self, rip: u64);
    /// Length of the instruction that caused the last exit, when the hardware reports it
    /// (SVM nRIP, VMX exit instruction length); `None` means it must be decoded.
    fn exit_insn_len(&self) -> Option<u8>;
    /// Paging state for fetching and decoding guest instructions.
    fn paging(&self) -> PagingState;
    /// Queues exception `vector` (with `error_code` where the exception has one) for the next entry.
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>);
    /// Queues external interrupt `vector`; false if the guest cannot take it now (IF=0 or shadow).
    fn inject_interrupt(&mut self, vector: u8) -> bool;
    /// Asks for an exit as soon as the guest can take an interrupt.
    fn request_interrupt_window(&mut self, enable: bool);
    /// Whether the guest has interrupts enabled (RFLAGS.IF and no interrupt shadow).
    fn interrupts_enabled(&self) -> bool;
    /// The guest's EFER as the guest sees it.
    fn efer(&self) -> u64;
    /// Sets the guest's EFER (already validated by the caller).
    fn set_efer(&mut self, efer: u64);
    /// Resets the vCPU to `state` (boot or restart), flushing the guest's TLB.
    fn reset(&mut self, state: &EntryState);
    /// The TSC value by which the host needs its CPU back (its armed timer), if any. The host
    /// timer's interrupt normally ends guest execution; a backend whose CPU may hold that
    /// interrupt back (see VMX) also bounds the run by other means.
    fn set_host_deadline(&mut self, _tsc: Option<u64>) {}
}
