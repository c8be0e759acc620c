use alloc::collections::BTreeMap;

use super::*;
use crate::virt::vmx::fixtures::{caps, pvh_vmcs, reader};

fn controls_of(m: &BTreeMap<u32, u64>) -> Option<Finding> {
    check_controls(&reader(m), &caps(), 39)
}

fn host_of(m: &BTreeMap<u32, u64>) -> Option<Finding> {
    check_host(&reader(m), &caps(), 39)
}

#[test]
fn bulkheads_vmcs_passes() {
    let m = pvh_vmcs();
    assert_eq!(controls_of(&m), None);
    assert_eq!(host_of(&m), None);
}

#[test]
fn a_required_control_bit_that_is_clear_is_named() {
    let mut m = pvh_vmcs();
    // Pin-based bit 1 is a default-1 bit this CPU insists on.
    *m.get_mut(&PIN_CONTROLS.0).unwrap() &= !2;
    let f = controls_of(&m).unwrap();
    assert!(f.rule.starts_with("pin-based"), "{}", f.rule);
    assert_eq!(f.value, 2);
    assert_eq!(f.bits_of, Some(Word::Pin));
}

#[test]
fn an_unoffered_control_bit_is_named() {
    let mut m = pvh_vmcs();
    *m.get_mut(&PROC_CONTROLS2.0).unwrap() |= 1 << 31;
    let f = controls_of(&m).unwrap();
    assert!(f.rule.starts_with("secondary"), "{}", f.rule);
    assert!(f.rule.contains("does not offer"), "{}", f.rule);
    let text = alloc::format!("{f}");
    assert!(text.contains("bit 31"), "{text}");
}

#[test]
fn eptp_rules() {
    let mut m = pvh_vmcs();
    m.insert(EPT_POINTER.0, 0x30_2000 | (3 << 3) | 1);
    assert!(controls_of(&m).unwrap().rule.contains("memory type"));
    m.insert(EPT_POINTER.0, 0x30_2000 | (2 << 3) | 6);
    assert!(controls_of(&m).unwrap().rule.contains("4-level"));
    m.insert(EPT_POINTER.0, 0x30_2000 | (1 << 8) | 0x1E);
    assert!(controls_of(&m).unwrap().rule.contains("11:7"));
    m.insert(EPT_POINTER.0, (1 << 45) | 0x1E);
    assert!(controls_of(&m)
        .unwrap()
        .rule
        .contains("physical-address width"));
}

#[test]
fn vpid_zero_is_refused() {
    let mut m = pvh_vmcs();
    m.insert(VPID.0, 0);
    assert!(controls_of(&m).unwrap().rule.starts_with("VPID"));
}

#[test]
fn misaligned_bitmaps_are_refused() {
    let mut m = pvh_vmcs();
    m.insert(MSR_BITMAP.0, 0x30_0800);
    assert!(controls_of(&m).unwrap().rule.starts_with("MSR-bitmap"));
    let mut m = pvh_vmcs();
    m.insert(VIRTUAL_APIC_ADDR.0, 0x30_0010);
    assert!(controls_of(&m).unwrap().rule.starts_with("virtual-APIC"));
}

#[test]
fn injected_events_are_checked() {
    let mut m = pvh_vmcs();
    // #GP in protected mode needs "deliver error code".
    m.insert(ENTRY_INTR_INFO.0, INTR_INFO_VALID | (3 << 8) | 13);
    assert!(controls_of(&m).unwrap().rule.contains("deliver error code"));
    m.insert(
        ENTRY_INTR_INFO.0,
        INTR_INFO_VALID | INTR_INFO_HAS_ERROR | (3 << 8) | 13,
    );
    assert_eq!(controls_of(&m), None);
    // #UD has no error code.
    m.insert(
        ENTRY_INTR_INFO.0,
        INTR_INFO_VALID | INTR_INFO_HAS_ERROR | (3 << 8) | 6,
    );
    assert!(controls_of(&m).unwrap().rule.contains("deliver error code"));
    // In real mode (PE clear, unrestricted guest) #GP has none either.
    m.insert(GUEST_CR0.0, 0x30);
    m.insert(ENTRY_INTR_INFO.0, INTR_INFO_VALID | (3 << 8) | 13);
    assert_eq!(controls_of(&m), None);
    // An NMI must use vector 2; a software interrupt needs a length.
    m.insert(ENTRY_INTR_INFO.0, INTR_INFO_VALID | (2 << 8) | 3);
    assert!(controls_of(&m).unwrap().rule.contains("vector 2"));
    m.insert(ENTRY_INTR_INFO.0, INTR_INFO_VALID | (4 << 8) | 0x80);
    assert!(controls_of(&m).unwrap().rule.contains("instruction length"));
}

#[test]
fn host_state_rules() {
    let mut m = pvh_vmcs();
    m.insert(HOST_CR4.0, 0x20);
    assert!(host_of(&m).unwrap().rule.starts_with("host CR4"));

    let mut m = pvh_vmcs();
    m.insert(HOST_DS_SELECTOR.0, 0x13);
    assert!(host_of(&m).unwrap().rule.starts_with("host DS selector"));

    let mut m = pvh_vmcs();
    m.insert(HOST_TR_SELECTOR.0, 0);
    assert!(host_of(&m).unwrap().rule.starts_with("host TR selector"));

    let mut m = pvh_vmcs();
    m.insert(HOST_GDTR_BASE.0, 0x0000_8000_0000_0000);
    assert!(host_of(&m).unwrap().rule.starts_with("host GDTR base"));

    let mut m = pvh_vmcs();
    m.insert(HOST_EFER.0, 0x100);
    assert!(host_of(&m).unwrap().rule.starts_with("host IA32_EFER"));

    let mut m = pvh_vmcs();
    m.insert(HOST_PAT.0, 0x0007_0406_0007_0408);
    assert!(host_of(&m).unwrap().rule.starts_with("host IA32_PAT"));
}
