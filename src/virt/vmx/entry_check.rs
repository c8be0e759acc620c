//! When VMLAUNCH/VMRESUME fail with "invalid control fields" (error 7) or "invalid host-state
//! fields" (error 8), these checks find which field is wrong: the SDM's checks on VMX controls
//! (vol.3 §27.2.1) and on the host-state area (§27.2.2, §27.2.3), run on the VMCS contents.
//!
//! They cover what Bulkhead writes; a check the SDM lists for a feature Bulkhead never turns on
//! is left out. `None` means no listed check failed.

#![forbid(unsafe_code)]

use super::controls::*;
use super::fields::*;
use super::finding::{fits_phys, is_canonical, is_valid_pat, Finding, Reader};

/// Interruption-information bit 31: valid (SDM vol.3 §25.8.3).
pub const INTR_INFO_VALID: u64 = 1 << 31;
/// Bit 11: deliver an error code.
pub const INTR_INFO_HAS_ERROR: u64 = 1 << 11;
/// Bits 10:8: event type.
pub const INTR_TYPE_SHIFT: u32 = 8;
pub const INTR_TYPE_EXTERNAL: u64 = 0;
pub const INTR_TYPE_NMI: u64 = 2;
pub const INTR_TYPE_HW_EXCEPTION: u64 = 3;
pub const INTR_TYPE_SW_INTERRUPT: u64 = 4;
pub const INTR_TYPE_PRIV_SW_EXCEPTION: u64 = 5;
pub const INTR_TYPE_SW_EXCEPTION: u64 = 6;
pub const INTR_TYPE_OTHER: u64 = 7;
/// IA32_VMX_MISC bit 30: injection of software events with instruction length 0 is allowed.
const MISC_ZERO_LENGTH_INJECTION: u64 = 1 << 30;
const CR0_PE_BIT: u64 = 1;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// EFER bits that exist on Intel CPUs: SCE, LME, LMA, NXE.
pub const EFER_DEFINED: u64 = (1 << 0) | EFER_LME | EFER_LMA | (1 << 11);

/// Whether exception `vector` pushes an error code (protected mode; SDM vol.3 §6.15).
pub fn exception_has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

fn word_rules(word: Word) -> (&'static str, &'static str) {
    match word {
        Word::Pin => (
            "pin-based VM-execution controls: bits the CPU requires (allowed-0 settings, IA32_VMX_[TRUE_]PINBASED_CTLS) are clear (SDM vol.3 §27.2.1.1)",
            "pin-based VM-execution controls: bits the CPU does not offer (allowed-1 settings) are set (SDM vol.3 §27.2.1.1)",
        ),
        Word::Proc => (
            "primary processor-based VM-execution controls: bits the CPU requires (allowed-0 settings, IA32_VMX_[TRUE_]PROCBASED_CTLS) are clear (SDM vol.3 §27.2.1.1)",
            "primary processor-based VM-execution controls: bits the CPU does not offer (allowed-1 settings) are set (SDM vol.3 §27.2.1.1)",
        ),
        Word::Proc2 => (
            "secondary processor-based VM-execution controls: bits the CPU requires (allowed-0 settings, IA32_VMX_PROCBASED_CTLS2) are clear (SDM vol.3 §27.2.1.1)",
            "secondary processor-based VM-execution controls: bits the CPU does not offer (allowed-1 settings) are set (SDM vol.3 §27.2.1.1)",
        ),
        Word::Exit => (
            "VM-exit controls: bits the CPU requires (allowed-0 settings, IA32_VMX_[TRUE_]EXIT_CTLS) are clear (SDM vol.3 §27.2.1.2)",
            "VM-exit controls: bits the CPU does not offer (allowed-1 settings) are set (SDM vol.3 §27.2.1.2)",
        ),
        Word::Entry => (
            "VM-entry controls: bits the CPU requires (allowed-0 settings, IA32_VMX_[TRUE_]ENTRY_CTLS) are clear (SDM vol.3 §27.2.1.3)",
            "VM-entry controls: bits the CPU does not offer (allowed-1 settings) are set (SDM vol.3 §27.2.1.3)",
        ),
    }
}

fn field_of(word: Word) -> Field {
    match word {
        Word::Pin => PIN_CONTROLS,
        Word::Proc => PROC_CONTROLS,
        Word::Proc2 => PROC_CONTROLS2,
        Word::Exit => EXIT_CONTROLS,
        Word::Entry => ENTRY_CONTROLS,
    }
}

fn check(ok: bool, rule: &'static str, value: u64) -> Result<(), Finding> {
    if ok {
        Ok(())
    } else {
        Err(Finding::new(rule, value))
    }
}

/// The checks on VMX controls (SDM vol.3 §27.2.1), in the SDM's order.
pub fn check_controls(r: Reader, caps: &CapMsrs, phys_bits: u8) -> Option<Finding> {
    controls(r, caps, phys_bits).err()
}

fn controls(r: Reader, caps: &CapMsrs, phys_bits: u8) -> Result<(), Finding> {
    let mut ctl = Controls::default();
    for word in [Word::Pin, Word::Proc, Word::Proc2, Word::Exit, Word::Entry] {
        let cap = word.cap(caps);
        let (allowed0, allowed1) = (cap as u32, (cap >> 32) as u32);
        let mut value = r(field_of(word)) as u32;
        if word == Word::Proc2 && ctl.proc & PROC_SECONDARY.mask() == 0 {
            // Without "activate secondary controls" the word is treated as 0 (§25.6.2).
            value = 0;
        } else {
            let (missing_rule, extra_rule) = word_rules(word);
            let missing = allowed0 & !value;
            if missing != 0 {
                return Err(Finding::bits(missing_rule, word, missing));
            }
            let extra = value & !allowed1;
            if extra != 0 {
                return Err(Finding::bits(extra_rule, word, extra));
            }
        }
        match word {
            Word::Pin => ctl.pin = value,
            Word::Proc => ctl.proc = value,
            Word::Proc2 => ctl.proc2 = value,
            Word::Exit => ctl.exit = value,
            Word::Entry => ctl.entry = value,
        }
    }
    let count = r(CR3_TARGET_COUNT);
    check(
        count <= caps.cr3_targets(),
        "CR3-target count exceeds what IA32_VMX_MISC bits 24:16 allow (SDM vol.3 §27.2.1.1)",
        count,
    )?;
    let aligned = |a: u64| a & 0xFFF == 0 && fits_phys(a, phys_bits);
    if ctl.has(PROC_IO_BITMAPS) {
        let (a, b) = (r(IO_BITMAP_A), r(IO_BITMAP_B));
        check(aligned(a), "I/O bitmap A address: must be 4 KiB aligned and within the physical-address width (SDM vol.3 §27.2.1.1)", a)?;
        check(aligned(b), "I/O bitmap B address: must be 4 KiB aligned and within the physical-address width (SDM vol.3 §27.2.1.1)", b)?;
    }
    if ctl.has(PROC_MSR_BITMAPS) {
        let a = r(MSR_BITMAP);
        check(aligned(a), "MSR-bitmap address: must be 4 KiB aligned and within the physical-address width (SDM vol.3 §27.2.1.1)", a)?;
    }
    if ctl.has(PROC_TPR_SHADOW) {
        let a = r(VIRTUAL_APIC_ADDR);
        check(aligned(a), "virtual-APIC address: must be 4 KiB aligned and within the physical-address width (SDM vol.3 §27.2.1.1)", a)?;
        if !ctl.has(PROC2_VIRTUAL_INTR_DELIVERY) {
            let t = r(TPR_THRESHOLD);
            check(t >> 4 == 0, "TPR threshold: bits 31:4 must be 0 without virtual-interrupt delivery (SDM vol.3 §27.2.1.1)", t)?;
        }
    } else {
        check(!ctl.has(PROC2_X2APIC) && !ctl.has(PROC2_VIRTUAL_INTR_DELIVERY), "secondary controls: \"virtualize x2APIC mode\" and \"virtual-interrupt delivery\" need \"use TPR shadow\" (SDM vol.3 §27.2.1.1)", u64::from(ctl.proc2))?;
    }
    check(
        ctl.has(PIN_NMI) || !ctl.has(PIN_VIRTUAL_NMIS),
        "pin-based controls: \"virtual NMIs\" needs \"NMI exiting\" (SDM vol.3 §27.2.1.1)",
        u64::from(ctl.pin),
    )?;
    check(
        ctl.has(PIN_VIRTUAL_NMIS) || !ctl.has(PROC_NMI_WINDOW),
        "primary controls: \"NMI-window exiting\" needs \"virtual NMIs\" (SDM vol.3 §27.2.1.1)",
        u64::from(ctl.proc),
    )?;
    if ctl.has(PROC2_VPID) {
        let vpid = r(VPID);
        check(
            vpid != 0,
            "VPID: must not be 0 when \"enable VPID\" is set (SDM vol.3 §27.2.1.1)",
            vpid,
        )?;
    }
    if ctl.has(PROC2_EPT) {
        let eptp = r(EPT_POINTER);
        let memtype_ok = match eptp & 7 {
            0 => caps.ept_vpid_has(EPT_CAP_UC),
            6 => caps.ept_vpid_has(EPT_CAP_WB),
            _ => false,
        };
        check(memtype_ok, "EPT pointer: bits 2:0 must be a memory type IA32_VMX_EPT_VPID_CAP offers (UC or WB) (SDM vol.3 §27.2.1.1)", eptp)?;
        check(
            (eptp >> 3) & 7 == 3,
            "EPT pointer: bits 5:3 must be 3 (a 4-level walk) (SDM vol.3 §27.2.1.1)",
            eptp,
        )?;
        check(eptp & (1 << 6) == 0 || caps.ept_vpid_has(EPT_CAP_AD), "EPT pointer: bit 6 (accessed/dirty flags) is set but the CPU does not offer them (SDM vol.3 §27.2.1.1)", eptp)?;
        check(eptp & 0xF80 == 0 && fits_phys(eptp, phys_bits), "EPT pointer: bits 11:7 and bits beyond the physical-address width must be 0 (SDM vol.3 §27.2.1.1)", eptp)?;
    }
    check(
        !ctl.has(PROC2_UNRESTRICTED) || ctl.has(PROC2_EPT),
        "secondary controls: \"unrestricted guest\" needs \"enable EPT\" (SDM vol.3 §27.2.1.1)",
        u64::from(ctl.proc2),
    )?;
    // VM-exit control fields (§27.2.1.2).
    check(!ctl.has(EXIT_SAVE_PREEMPTION) || ctl.has(PIN_PREEMPTION_TIMER), "VM-exit controls: \"save VMX-preemption timer value\" needs \"activate VMX-preemption timer\" (SDM vol.3 §27.2.1.2)", u64::from(ctl.exit))?;
    let msr_area_ok = |count: Field, addr: Field| {
        r(count) == 0 || (r(addr) & 0xF == 0 && fits_phys(r(addr), phys_bits))
    };
    check(msr_area_ok(EXIT_MSR_STORE_COUNT, EXIT_MSR_STORE_ADDR), "VM-exit MSR-store address: must be 16-byte aligned and within the physical-address width (SDM vol.3 §27.2.1.2)", r(EXIT_MSR_STORE_ADDR))?;
    check(msr_area_ok(EXIT_MSR_LOAD_COUNT, EXIT_MSR_LOAD_ADDR), "VM-exit MSR-load address: must be 16-byte aligned and within the physical-address width (SDM vol.3 §27.2.1.2)", r(EXIT_MSR_LOAD_ADDR))?;
    // VM-entry control fields (§27.2.1.3).
    check(!ctl.has(ENTRY_SMM) && !ctl.has(ENTRY_DUAL_MONITOR), "VM-entry controls: \"entry to SMM\" and \"deactivate dual-monitor treatment\" must be 0 outside SMM (SDM vol.3 §27.2.1.3)", u64::from(ctl.entry))?;
    check(msr_area_ok(ENTRY_MSR_LOAD_COUNT, ENTRY_MSR_LOAD_ADDR), "VM-entry MSR-load address: must be 16-byte aligned and within the physical-address width (SDM vol.3 §27.2.1.3)", r(ENTRY_MSR_LOAD_ADDR))?;
    entry_event(r, caps, &ctl)
}

/// The checks on the event to inject (VM-entry interruption-information field, §27.2.1.3).
fn entry_event(r: Reader, caps: &CapMsrs, ctl: &Controls) -> Result<(), Finding> {
    let info = r(ENTRY_INTR_INFO);
    if info & INTR_INFO_VALID == 0 {
        return Ok(());
    }
    let (vector, kind) = (info & 0xFF, (info >> INTR_TYPE_SHIFT) & 7);
    check(
        kind != 1,
        "VM-entry interruption information: type 1 is reserved (SDM vol.3 §27.2.1.3)",
        info,
    )?;
    let mtf = (caps.proc >> 32) & u64::from(PROC_MONITOR_TRAP.mask()) != 0;
    check(kind != INTR_TYPE_OTHER || mtf, "VM-entry interruption information: type 7 (other event) needs monitor-trap-flag support (SDM vol.3 §27.2.1.3)", info)?;
    check(
        kind != INTR_TYPE_NMI || vector == 2,
        "VM-entry interruption information: an NMI must have vector 2 (SDM vol.3 §27.2.1.3)",
        info,
    )?;
    check(kind != INTR_TYPE_HW_EXCEPTION || vector <= 31, "VM-entry interruption information: a hardware exception must have a vector of at most 31 (SDM vol.3 §27.2.1.3)", info)?;
    check(kind != INTR_TYPE_OTHER || vector == 0, "VM-entry interruption information: an \"other event\" must have vector 0 (SDM vol.3 §27.2.1.3)", info)?;
    let pe = r(GUEST_CR0) & CR0_PE_BIT != 0 || !ctl.has(PROC2_UNRESTRICTED);
    let needs_code = pe && kind == INTR_TYPE_HW_EXCEPTION && exception_has_error_code(vector);
    let has_code = info & INTR_INFO_HAS_ERROR != 0;
    check(has_code == needs_code, "VM-entry interruption information: \"deliver error code\" (bit 11) must be set exactly for protected-mode #DF, #TS, #NP, #SS, #GP, #PF, #AC and #CP (SDM vol.3 §27.2.1.3)", info)?;
    check(info & 0x7FFF_F000 == 0, "VM-entry interruption information: bits 30:12 are reserved and must be 0 (SDM vol.3 §27.2.1.3)", info)?;
    if has_code {
        let code = r(ENTRY_EXCEPTION_ERROR_CODE);
        check(
            code >> 16 == 0,
            "VM-entry exception error code: bits 31:16 must be 0 (SDM vol.3 §27.2.1.3)",
            code,
        )?;
    }
    if matches!(
        kind,
        INTR_TYPE_SW_INTERRUPT | INTR_TYPE_PRIV_SW_EXCEPTION | INTR_TYPE_SW_EXCEPTION
    ) {
        let len = r(ENTRY_INSN_LEN);
        let min = if caps.misc & MISC_ZERO_LENGTH_INJECTION != 0 {
            0
        } else {
            1
        };
        check((min..=15).contains(&len), "VM-entry instruction length: must be 1 to 15 for software interrupts and exceptions (SDM vol.3 §27.2.1.3)", len)?;
    }
    Ok(())
}

/// The checks on the host-state area (SDM vol.3 §27.2.2, §27.2.3).
pub fn check_host(r: Reader, caps: &CapMsrs, phys_bits: u8) -> Option<Finding> {
    host(r, caps, phys_bits).err()
}

fn host(r: Reader, caps: &CapMsrs, phys_bits: u8) -> Result<(), Finding> {
    let (cr0, cr3, cr4) = (r(HOST_CR0), r(HOST_CR3), r(HOST_CR4));
    check(
        cr0 & caps.cr0_fixed0 == caps.cr0_fixed0,
        "host CR0: a bit IA32_VMX_CR0_FIXED0 requires is clear (SDM vol.3 §27.2.2)",
        cr0,
    )?;
    check(
        cr0 & !caps.cr0_fixed1 == 0,
        "host CR0: a bit IA32_VMX_CR0_FIXED1 forbids is set (SDM vol.3 §27.2.2)",
        cr0,
    )?;
    check(
        cr4 & caps.cr4_fixed0 == caps.cr4_fixed0,
        "host CR4: a bit IA32_VMX_CR4_FIXED0 requires (VMXE) is clear (SDM vol.3 §27.2.2)",
        cr4,
    )?;
    check(
        cr4 & !caps.cr4_fixed1 == 0,
        "host CR4: a bit IA32_VMX_CR4_FIXED1 forbids is set (SDM vol.3 §27.2.2)",
        cr4,
    )?;
    check(
        fits_phys(cr3 & !(1 << 63), phys_bits),
        "host CR3: bits beyond the physical-address width must be 0 (SDM vol.3 §27.2.2)",
        cr3,
    )?;
    for (f, rule) in [
        (
            HOST_SYSENTER_ESP,
            "host IA32_SYSENTER_ESP: must be canonical (SDM vol.3 §27.2.2)",
        ),
        (
            HOST_SYSENTER_EIP,
            "host IA32_SYSENTER_EIP: must be canonical (SDM vol.3 §27.2.2)",
        ),
        (
            HOST_FS_BASE,
            "host FS base: must be canonical (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_GS_BASE,
            "host GS base: must be canonical (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_TR_BASE,
            "host TR base: must be canonical (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_GDTR_BASE,
            "host GDTR base: must be canonical (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_IDTR_BASE,
            "host IDTR base: must be canonical (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_RIP,
            "host RIP: must be canonical with a 64-bit host (SDM vol.3 §27.2.4)",
        ),
    ] {
        check(is_canonical(r(f)), rule, r(f))?;
    }
    let exit = r(EXIT_CONTROLS) as u32;
    let host64 = exit & EXIT_HOST_64BIT.mask() != 0;
    if exit & EXIT_LOAD_PAT.mask() != 0 {
        let pat = r(HOST_PAT);
        check(is_valid_pat(pat), "host IA32_PAT: every byte must be a valid memory type (0, 1, 4, 5, 6, 7) (SDM vol.3 §27.2.2)", pat)?;
    }
    if exit & EXIT_LOAD_EFER.mask() != 0 {
        let efer = r(HOST_EFER);
        check(
            efer & !EFER_DEFINED == 0,
            "host IA32_EFER: reserved bits must be 0 (SDM vol.3 §27.2.2)",
            efer,
        )?;
        let lma = efer & EFER_LMA != 0;
        let lme = efer & EFER_LME != 0;
        check(lma == host64 && lme == host64, "host IA32_EFER: LMA and LME must equal the \"host address-space size\" exit control (SDM vol.3 §27.2.2)", efer)?;
    }
    for (f, rule) in [
        (
            HOST_ES_SELECTOR,
            "host ES selector: RPL and TI must be 0 (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_CS_SELECTOR,
            "host CS selector: RPL and TI must be 0 (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_SS_SELECTOR,
            "host SS selector: RPL and TI must be 0 (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_DS_SELECTOR,
            "host DS selector: RPL and TI must be 0 (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_FS_SELECTOR,
            "host FS selector: RPL and TI must be 0 (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_GS_SELECTOR,
            "host GS selector: RPL and TI must be 0 (SDM vol.3 §27.2.3)",
        ),
        (
            HOST_TR_SELECTOR,
            "host TR selector: RPL and TI must be 0 (SDM vol.3 §27.2.3)",
        ),
    ] {
        check(r(f) & 7 == 0, rule, r(f))?;
    }
    check(
        r(HOST_CS_SELECTOR) != 0,
        "host CS selector: must not be 0 (SDM vol.3 §27.2.3)",
        0,
    )?;
    check(
        r(HOST_TR_SELECTOR) != 0,
        "host TR selector: must not be 0 (SDM vol.3 §27.2.3)",
        0,
    )?;
    check(
        host64 || r(HOST_SS_SELECTOR) != 0,
        "host SS selector: must not be 0 with a 32-bit host (SDM vol.3 §27.2.3)",
        0,
    )?;
    check(host64, "VM-exit controls: \"host address-space size\" must be 1 on a 64-bit host (SDM vol.3 §27.2.4)", u64::from(exit))?;
    check(
        cr4 & CR4_PAE != 0,
        "host CR4: PAE must be 1 with \"host address-space size\" set (SDM vol.3 §27.2.4)",
        cr4,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "entry_check_tests.rs"]
mod tests;
