//! The virtual machine control block (AMD APM vol.2 appendix B, "Layout of VMCB").

use core::mem::{offset_of, size_of};

/// A segment in the VMCB's state-save area (APM vol.2 table B-2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcbSegment {
    pub selector: u16,
    /// Compressed attributes: access byte in bits 7:0, flags nibble (AVL, L, D/B, G) in 11:8.
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// Control area (APM vol.2 table B-1), offsets 0x000–0x3FF.
#[repr(C)]
pub struct VmcbControl {
    pub intercept_cr: u32,
    pub intercept_dr: u32,
    pub intercept_exceptions: u32,
    pub intercept_misc1: u32,
    pub intercept_misc2: u32,
    pub intercept_misc3: u32,
    _reserved0: [u8; 0x3C - 0x18],
    pub pause_filter_threshold: u16,
    pub pause_filter_count: u16,
    pub iopm_base_pa: u64,
    pub msrpm_base_pa: u64,
    pub tsc_offset: u64,
    pub guest_asid: u32,
    pub tlb_control: u8,
    _reserved1: [u8; 3],
    pub vintr: u64,
    pub interrupt_shadow: u64,
    pub exit_code: u64,
    pub exit_info1: u64,
    pub exit_info2: u64,
    pub exit_int_info: u64,
    pub np_enable: u64,
    pub avic_apic_bar: u64,
    pub ghcb_pa: u64,
    pub event_inject: u64,
    pub n_cr3: u64,
    pub lbr_virt_enable: u64,
    pub clean_bits: u32,
    _reserved2: u32,
    pub next_rip: u64,
    pub insn_bytes_fetched: u8,
    pub insn_bytes: [u8; 15],
    _reserved3: [u8; 0x400 - 0xE0],
}

/// State-save area (APM vol.2 table B-2), offsets 0x400 onwards.
#[repr(C)]
pub struct VmcbState {
    pub es: VmcbSegment,
    pub cs: VmcbSegment,
    pub ss: VmcbSegment,
    pub ds: VmcbSegment,
    pub fs: VmcbSegment,
    pub gs: VmcbSegment,
    pub gdtr: VmcbSegment,
    pub ldtr: VmcbSegment,
    pub idtr: VmcbSegment,
    pub tr: VmcbSegment,
    _reserved0: [u8; 0xCB - 0xA0],
    pub cpl: u8,
    _reserved1: u32,
    pub efer: u64,
    _reserved2: [u8; 0x148 - 0xD8],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    _reserved3: [u8; 0x1D8 - 0x180],
    pub rsp: u64,
    pub s_cet: u64,
    pub ssp: u64,
    pub isst_addr: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    _reserved4: [u8; 0x268 - 0x248],
    pub g_pat: u64,
    pub dbgctl: u64,
    _reserved5: [u8; 0xC00 - 0x278],
}

/// One VMCB: a 4 KiB page the CPU reads on VMRUN and writes on #VMEXIT.
#[repr(C, align(4096))]
pub struct Vmcb {
    pub control: VmcbControl,
    pub state: VmcbState,
}

const _: () = assert!(size_of::<Vmcb>() == 4096);
const _: () = assert!(offset_of!(VmcbControl, iopm_base_pa) == 0x40);
const _: () = assert!(offset_of!(VmcbControl, guest_asid) == 0x58);
const _: () = assert!(offset_of!(VmcbControl, exit_code) == 0x70);
const _: () = assert!(offset_of!(VmcbControl, np_enable) == 0x90);
const _: () = assert!(offset_of!(VmcbControl, event_inject) == 0xA8);
const _: () = assert!(offset_of!(VmcbControl, n_cr3) == 0xB0);
const _: () = assert!(offset_of!(VmcbControl, clean_bits) == 0xC0);
const _: () = assert!(offset_of!(VmcbControl, next_rip) == 0xC8);
const _: () = assert!(offset_of!(VmcbControl, insn_bytes) == 0xD1);
const _: () = assert!(size_of::<VmcbControl>() == 0x400);
const _: () = assert!(offset_of!(VmcbState, cpl) == 0xCB);
const _: () = assert!(offset_of!(VmcbState, efer) == 0xD0);
const _: () = assert!(offset_of!(VmcbState, cr4) == 0x148);
const _: () = assert!(offset_of!(VmcbState, rip) == 0x178);
const _: () = assert!(offset_of!(VmcbState, rsp) == 0x1D8);
const _: () = assert!(offset_of!(VmcbState, rax) == 0x1F8);
const _: () = assert!(offset_of!(VmcbState, cr2) == 0x240);
const _: () = assert!(offset_of!(VmcbState, g_pat) == 0x268);

// Intercept bits (APM vol.2 table B-1, offsets 0x0C and 0x10).
pub const INTERCEPT_INTR: u32 = 1 << 0;
pub const INTERCEPT_NMI: u32 = 1 << 1;
pub const INTERCEPT_INIT: u32 = 1 << 3;
pub const INTERCEPT_VINTR: u32 = 1 << 4;
pub const INTERCEPT_CPUID: u32 = 1 << 18;
pub const INTERCEPT_INVD: u32 = 1 << 22;
pub const INTERCEPT_HLT: u32 = 1 << 24;
pub const INTERCEPT_INVLPGA: u32 = 1 << 26;
pub const INTERCEPT_IOIO: u32 = 1 << 27;
pub const INTERCEPT_MSR: u32 = 1 << 28;
pub const INTERCEPT_SHUTDOWN: u32 = 1 << 31;
pub const INTERCEPT_VMRUN: u32 = 1 << 0;
pub const INTERCEPT_VMMCALL: u32 = 1 << 1;
pub const INTERCEPT_VMLOAD: u32 = 1 << 2;
pub const INTERCEPT_VMSAVE: u32 = 1 << 3;
pub const INTERCEPT_STGI: u32 = 1 << 4;
pub const INTERCEPT_CLGI: u32 = 1 << 5;
pub const INTERCEPT_SKINIT: u32 = 1 << 6;
pub const INTERCEPT_MONITOR: u32 = 1 << 10;
pub const INTERCEPT_MWAIT: u32 = 1 << 11;

// Exit codes (APM vol.2 appendix C).
pub const EXIT_INTR: u64 = 0x60;
pub const EXIT_NMI: u64 = 0x61;
pub const EXIT_SMI: u64 = 0x62;
pub const EXIT_INIT: u64 = 0x63;
pub const EXIT_VINTR: u64 = 0x64;
pub const EXIT_CPUID: u64 = 0x72;
pub const EXIT_INVD: u64 = 0x76;
pub const EXIT_HLT: u64 = 0x78;
pub const EXIT_INVLPGA: u64 = 0x7A;
pub const EXIT_IOIO: u64 = 0x7B;
pub const EXIT_MSR: u64 = 0x7C;
pub const EXIT_SHUTDOWN: u64 = 0x7F;
pub const EXIT_VMRUN: u64 = 0x80;
pub const EXIT_VMMCALL: u64 = 0x81;
pub const EXIT_VMLOAD: u64 = 0x82;
pub const EXIT_VMSAVE: u64 = 0x83;
pub const EXIT_STGI: u64 = 0x84;
pub const EXIT_CLGI: u64 = 0x85;
pub const EXIT_SKINIT: u64 = 0x86;
pub const EXIT_MONITOR: u64 = 0x8A;
pub const EXIT_MWAIT: u64 = 0x8B;
pub const EXIT_NPF: u64 = 0x400;
/// VMEXIT_INVALID (-1). QEMU TCG writes it as 0x00000000FFFFFFFF, so compare the low 32 bits.
pub const EXIT_INVALID_LOW32: u32 = 0xFFFF_FFFF;

// EVENTINJ (APM vol.2 §15.20).
pub const EVENT_VALID: u64 = 1 << 31;
pub const EVENT_HAS_ERROR: u64 = 1 << 11;
pub const EVENT_TYPE_INTR: u64 = 0 << 8;
pub const EVENT_TYPE_EXCEPTION: u64 = 3 << 8;

/// VINTR fields (offset 0x60).
pub const VINTR_V_IRQ: u64 = 1 << 8;
pub const VINTR_IGN_TPR: u64 = 1 << 20;
pub const VINTR_MASKING: u64 = 1 << 24;

/// TLB_CONTROL: flush this guest's (ASID's) entries on the next VMRUN.
pub const TLB_FLUSH_ALL: u8 = 1;
pub const TLB_NOTHING: u8 = 0;
