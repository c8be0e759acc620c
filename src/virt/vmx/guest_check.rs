//! When a VM entry fails with "invalid guest state" (exit reason 33), these checks find the
//! field: the SDM's checks on the guest-state area (vol.3 §27.3.1), run on the VMCS contents,
//! first failure first. Guests in virtual-8086 mode are not checked beyond RFLAGS.

#![forbid(unsafe_code)]

use super::controls::*;
use super::entry_check::*;
use super::fields::*;
use super::finding::{fits_phys, is_canonical, is_valid_pat, Finding, Reader};
use super::segment_check;

const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_FIXED1: u64 = 1 << 1;
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_VM: u64 = 1 << 17;
/// RFLAGS bits 63:22, 15, 5 and 3 are reserved (SDM vol.3 §27.3.1.4).
const RFLAGS_RESERVED: u64 = !0x3F_FFFF | (1 << 15) | (1 << 5) | (1 << 3);
/// Access-rights bit 16: the segment is unusable (SDM vol.3 §25.4.1).
pub const ACCESS_UNUSABLE: u64 = 1 << 16;
const ACCESS_L: u64 = 1 << 13;
const BLOCK_STI: u64 = 1 << 0;
const BLOCK_MOV_SS: u64 = 1 << 1;
const BLOCK_SMI: u64 = 1 << 2;
const BLOCK_NMI: u64 = 1 << 3;
const ACTIVITY_HLT: u64 = 1;
/// IA32_VMX_MISC bits 8:6: activity states HLT, shutdown, wait-for-SIPI supported.
const MISC_ACTIVITY_SHIFT: u32 = 6;
const DEBUGCTL_BTF: u64 = 1 << 1;
const PENDING_DBG_BS: u64 = 1 << 14;
/// Pending debug exceptions: bits 11:4, 13, 15 and 63:17 are reserved.
const PENDING_DBG_RESERVED: u64 = 0xFF0 | (1 << 13) | (1 << 15) | !0x1_FFFF;
const PDPTE_PRESENT: u64 = 1;
/// PDPTE bits 2:1 and 8:5 are reserved.
const PDPTE_RESERVED: u64 = 0b110 | 0x1E0;

fn check(ok: bool, rule: &'static str, value: u64) -> Result<(), Finding> {
    if ok {
        Ok(())
    } else {
        Err(Finding::new(rule, value))
    }
}

/// Runs the checks; `None` means none of them failed.
pub fn check_guest(r: Reader, caps: &CapMsrs, phys_bits: u8) -> Option<Finding> {
    guest(r, caps, phys_bits).err()
}

fn guest(r: Reader, caps: &CapMsrs, phys_bits: u8) -> Result<(), Finding> {
    let entry = r(ENTRY_CONTROLS) as u32;
    let proc = r(PROC_CONTROLS) as u32;
    let proc2 = if proc & PROC_SECONDARY.mask() != 0 {
        r(PROC_CONTROLS2) as u32
    } else {
        0
    };
    let unrestricted = proc2 & PROC2_UNRESTRICTED.mask() != 0;
    let ia32e = entry & ENTRY_IA32E_GUEST.mask() != 0;
    control_registers(r, caps, phys_bits, entry, unrestricted, ia32e)?;
    let rflags = r(GUEST_RFLAGS);
    let cr0 = r(GUEST_CR0);
    if rflags & RFLAGS_VM == 0 {
        segment_check::segments(r, unrestricted, ia32e, cr0)?;
    }
    for (f, rule) in [
        (
            GUEST_GDTR_BASE,
            "guest GDTR base: must be canonical (SDM vol.3 §27.3.1.3)",
        ),
        (
            GUEST_IDTR_BASE,
            "guest IDTR base: must be canonical (SDM vol.3 §27.3.1.3)",
        ),
    ] {
        check(is_canonical(r(f)), rule, r(f))?;
    }
    for (f, rule) in [
        (
            GUEST_GDTR_LIMIT,
            "guest GDTR limit: bits 31:16 must be 0 (SDM vol.3 §27.3.1.3)",
        ),
        (
            GUEST_IDTR_LIMIT,
            "guest IDTR limit: bits 31:16 must be 0 (SDM vol.3 §27.3.1.3)",
        ),
    ] {
        check(r(f) >> 16 == 0, rule, r(f))?;
    }
    rip_and_rflags(r, ia32e, cr0, rflags)?;
    non_register_state(r, caps, phys_bits, rflags)?;
    pdptes(r, cr0, ia32e, phys_bits, proc2)
}

fn control_registers(
    r: Reader,
    caps: &CapMsrs,
    phys_bits: u8,
    entry: u32,
    unrestricted: bool,
    ia32e: bool,
) -> Result<(), Finding> {
    let (cr0, cr3, cr4) = (r(GUEST_CR0), r(GUEST_CR3), r(GUEST_CR4));
    let fixed0 = if unrestricted {
        caps.guest_cr0_fixed0()
    } else {
        caps.cr0_fixed0
    };
    check(cr0 & fixed0 == fixed0, "guest CR0: a bit IA32_VMX_CR0_FIXED0 requires is clear (PE and PG excepted with unrestricted guest) (SDM vol.3 §27.3.1.1)", cr0)?;
    check(
        cr0 & !caps.cr0_fixed1 == 0,
        "guest CR0: a bit IA32_VMX_CR0_FIXED1 forbids is set (SDM vol.3 §27.3.1.1)",
        cr0,
    )?;
    check(
        cr0 & CR0_PG == 0 || cr0 & CR0_PE != 0,
        "guest CR0: PG set without PE (SDM vol.3 §27.3.1.1)",
        cr0,
    )?;
    check(
        cr4 & caps.cr4_fixed0 == caps.cr4_fixed0,
        "guest CR4: a bit IA32_VMX_CR4_FIXED0 requires (VMXE) is clear (SDM vol.3 §27.3.1.1)",
        cr4,
    )?;
    check(
        cr4 & !caps.cr4_fixed1 == 0,
        "guest CR4: a bit IA32_VMX_CR4_FIXED1 forbids is set (SDM vol.3 §27.3.1.1)",
        cr4,
    )?;
    if entry & ENTRY_LOAD_DEBUG.mask() != 0 {
        let dr7 = r(GUEST_DR7);
        check(
            dr7 >> 32 == 0,
            "guest DR7: bits 63:32 must be 0 (SDM vol.3 §27.3.1.1)",
            dr7,
        )?;
    }
    if ia32e {
        check(cr0 & CR0_PG != 0 && cr4 & CR4_PAE != 0, "guest CR0/CR4: the \"IA-32e mode guest\" entry control needs CR0.PG and CR4.PAE (SDM vol.3 §27.3.1.1)", cr4)?;
    } else {
        check(
            cr4 & CR4_PCIDE == 0,
            "guest CR4: PCIDE must be 0 outside IA-32e mode (SDM vol.3 §27.3.1.1)",
            cr4,
        )?;
    }
    check(
        fits_phys(cr3, phys_bits),
        "guest CR3: bits beyond the physical-address width must be 0 (SDM vol.3 §27.3.1.1)",
        cr3,
    )?;
    check(
        is_canonical(r(GUEST_SYSENTER_ESP)),
        "guest IA32_SYSENTER_ESP: must be canonical (SDM vol.3 §27.3.1.1)",
        r(GUEST_SYSENTER_ESP),
    )?;
    check(
        is_canonical(r(GUEST_SYSENTER_EIP)),
        "guest IA32_SYSENTER_EIP: must be canonical (SDM vol.3 §27.3.1.1)",
        r(GUEST_SYSENTER_EIP),
    )?;
    if entry & ENTRY_LOAD_PAT.mask() != 0 {
        let pat = r(GUEST_PAT);
        check(is_valid_pat(pat), "guest IA32_PAT: every byte must be a valid memory type (0, 1, 4, 5, 6, 7) (SDM vol.3 §27.3.1.1)", pat)?;
    }
    if entry & ENTRY_LOAD_EFER.mask() != 0 {
        let efer = r(GUEST_EFER);
        check(
            efer & !EFER_DEFINED == 0,
            "guest IA32_EFER: reserved bits must be 0 (SDM vol.3 §27.3.1.1)",
            efer,
        )?;
        check((efer & EFER_LMA != 0) == ia32e, "guest IA32_EFER: LMA must equal the \"IA-32e mode guest\" entry control (SDM vol.3 §27.3.1.1)", efer)?;
        let lme_ok = cr0 & CR0_PG == 0 || (efer & EFER_LMA != 0) == (efer & EFER_LME != 0);
        check(
            lme_ok,
            "guest IA32_EFER: with CR0.PG set, LMA must equal LME (SDM vol.3 §27.3.1.1)",
            efer,
        )?;
    }
    Ok(())
}

fn rip_and_rflags(r: Reader, ia32e: bool, cr0: u64, rflags: u64) -> Result<(), Finding> {
    let rip = r(GUEST_RIP);
    let long_cs = ia32e && r(GUEST_CS_ACCESS) & ACCESS_L != 0;
    if long_cs {
        check(
            is_canonical(rip),
            "guest RIP: must be canonical in 64-bit mode (SDM vol.3 §27.3.1.4)",
            rip,
        )?;
    } else {
        check(
            rip >> 32 == 0,
            "guest RIP: bits 63:32 must be 0 outside 64-bit mode (SDM vol.3 §27.3.1.4)",
            rip,
        )?;
    }
    check(rflags & RFLAGS_RESERVED == 0 && rflags & RFLAGS_FIXED1 != 0, "guest RFLAGS: reserved bits (63:22, 15, 5, 3) must be 0 and bit 1 must be 1 (SDM vol.3 §27.3.1.4)", rflags)?;
    check(
        rflags & RFLAGS_VM == 0 || (!ia32e && cr0 & CR0_PE != 0),
        "guest RFLAGS: VM must be 0 in IA-32e mode or with CR0.PE clear (SDM vol.3 §27.3.1.4)",
        rflags,
    )?;
    let info = r(ENTRY_INTR_INFO);
    let injects_external =
        info & INTR_INFO_VALID != 0 && (info >> INTR_TYPE_SHIFT) & 7 == INTR_TYPE_EXTERNAL;
    check(
        !injects_external || rflags & RFLAGS_IF != 0,
        "guest RFLAGS: IF must be 1 when an external interrupt is injected (SDM vol.3 §27.3.1.4)",
        rflags,
    )
}

fn non_register_state(
    r: Reader,
    caps: &CapMsrs,
    phys_bits: u8,
    rflags: u64,
) -> Result<(), Finding> {
    let activity = r(GUEST_ACTIVITY_STATE);
    let supported = activity == 0
        || (activity <= 3 && (caps.misc >> (MISC_ACTIVITY_SHIFT + activity as u32 - 1)) & 1 != 0);
    check(supported, "guest activity state: must be 0 (active) or a state IA32_VMX_MISC bits 8:6 offer (SDM vol.3 §27.3.1.5)", activity)?;
    if activity == ACTIVITY_HLT {
        let ss_dpl = (r(GUEST_SS_ACCESS) >> 5) & 3;
        check(
            ss_dpl == 0,
            "guest activity state: HLT needs SS.DPL 0 (SDM vol.3 §27.3.1.5)",
            activity,
        )?;
    }
    let intr = r(GUEST_INTERRUPTIBILITY);
    check(
        intr >> 5 == 0,
        "guest interruptibility state: bits 31:5 are reserved and must be 0 (SDM vol.3 §27.3.1.5)",
        intr,
    )?;
    check(intr & (BLOCK_STI | BLOCK_MOV_SS) != (BLOCK_STI | BLOCK_MOV_SS), "guest interruptibility state: blocking by STI and by MOV SS must not both be set (SDM vol.3 §27.3.1.5)", intr)?;
    check(
        rflags & RFLAGS_IF != 0 || intr & BLOCK_STI == 0,
        "guest interruptibility state: blocking by STI needs RFLAGS.IF set (SDM vol.3 §27.3.1.5)",
        intr,
    )?;
    let info = r(ENTRY_INTR_INFO);
    let kind = (info >> INTR_TYPE_SHIFT) & 7;
    let injects = info & INTR_INFO_VALID != 0;
    check(!(injects && matches!(kind, INTR_TYPE_EXTERNAL | INTR_TYPE_NMI)) || intr & (BLOCK_STI | BLOCK_MOV_SS) == 0, "guest interruptibility state: no STI or MOV SS blocking when injecting an external interrupt or NMI (SDM vol.3 §27.3.1.5)", intr)?;
    check(
        intr & BLOCK_SMI == 0,
        "guest interruptibility state: blocking by SMI must be 0 outside SMM (SDM vol.3 §27.3.1.5)",
        intr,
    )?;
    let virtual_nmis = r(PIN_CONTROLS) as u32 & PIN_VIRTUAL_NMIS.mask() != 0;
    check(!(injects && kind == INTR_TYPE_NMI && virtual_nmis) || intr & BLOCK_NMI == 0, "guest interruptibility state: blocking by NMI must be 0 when injecting an NMI with virtual NMIs (SDM vol.3 §27.3.1.5)", intr)?;
    let pending = r(GUEST_PENDING_DBG_EXCEPTIONS);
    check(pending & PENDING_DBG_RESERVED == 0, "guest pending debug exceptions: reserved bits (11:4, 13, 15, 63:17) must be 0 (SDM vol.3 §27.3.1.5)", pending)?;
    if intr & (BLOCK_STI | BLOCK_MOV_SS) != 0 || activity == ACTIVITY_HLT {
        let single_step = rflags & RFLAGS_TF != 0 && r(GUEST_DEBUGCTL) & DEBUGCTL_BTF == 0;
        check(single_step == (pending & PENDING_DBG_BS != 0), "guest pending debug exceptions: BS (bit 14) must be set exactly when RFLAGS.TF is set and DEBUGCTL.BTF clear, while blocked by STI/MOV SS or halted (SDM vol.3 §27.3.1.5)", pending)?;
    }
    let link = r(VMCS_LINK_POINTER);
    check(link == u64::MAX || (link & 0xFFF == 0 && fits_phys(link, phys_bits)), "VMCS link pointer: must be all ones (no shadow VMCS) or a 4 KiB-aligned physical address (SDM vol.3 §27.3.1.5)", link)?;
    Ok(())
}

fn pdptes(r: Reader, cr0: u64, ia32e: bool, phys_bits: u8, proc2: u32) -> Result<(), Finding> {
    let ept = proc2 & PROC2_EPT.mask() != 0;
    if !(ept && cr0 & CR0_PG != 0 && r(GUEST_CR4) & CR4_PAE != 0 && !ia32e) {
        return Ok(());
    }
    for f in [GUEST_PDPTE0, GUEST_PDPTE1, GUEST_PDPTE2, GUEST_PDPTE3] {
        let e = r(f);
        let ok =
            e & PDPTE_PRESENT == 0 || (e & PDPTE_RESERVED == 0 && fits_phys(e & !0xFFF, phys_bits));
        check(ok, "guest PDPTEs (PAE paging with EPT): a present PDPTE has reserved bits set (SDM vol.3 §27.3.1.6)", e)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "guest_check_tests.rs"]
mod tests;
