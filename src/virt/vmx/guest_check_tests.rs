use alloc::collections::BTreeMap;

use super::*;
use crate::virt::vmx::fixtures::{caps, pvh_vmcs, reader};

fn run(m: &BTreeMap<u32, u64>) -> Option<Finding> {
    check_guest(&reader(m), &caps(), 39)
}

fn fails_with(m: &BTreeMap<u32, u64>, words: &[&str]) {
    let f = run(m).expect("a check must fail");
    for w in words {
        assert!(f.rule.contains(w), "{:?} does not mention {w:?}", f.rule);
    }
}

#[test]
fn the_pvh_entry_state_passes() {
    assert_eq!(run(&pvh_vmcs()), None);
}

#[test]
fn a_64bit_state_passes() {
    let mut m = pvh_vmcs();
    let ia32e = u64::from(ENTRY_IA32E_GUEST.mask());
    *m.get_mut(&ENTRY_CONTROLS.0).unwrap() |= ia32e;
    m.insert(GUEST_CR0.0, 0x8000_0031);
    m.insert(GUEST_CR4.0, 0x2020);
    m.insert(GUEST_EFER.0, 0x500);
    m.insert(GUEST_CS_ACCESS.0, 0xA09B);
    m.insert(GUEST_FS_ACCESS.0, ACCESS_UNUSABLE);
    m.insert(GUEST_FS_SELECTOR.0, 0);
    assert_eq!(run(&m), None);
}

#[test]
fn missing_ne_is_named() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_CR0.0, 0x11);
    fails_with(&m, &["guest CR0", "FIXED0"]);
}

#[test]
fn missing_vmxe_is_named() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_CR4.0, 0);
    fails_with(&m, &["guest CR4", "VMXE"]);
}

#[test]
fn efer_lma_must_match_the_entry_control() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_EFER.0, 0x500);
    fails_with(&m, &["guest IA32_EFER", "IA-32e mode guest"]);
}

#[test]
fn ia32e_without_paging_is_refused() {
    let mut m = pvh_vmcs();
    *m.get_mut(&ENTRY_CONTROLS.0).unwrap() |= u64::from(ENTRY_IA32E_GUEST.mask());
    fails_with(&m, &["CR0.PG", "CR4.PAE"]);
}

#[test]
fn segment_rules_name_the_register() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_CS_ACCESS.0, 0xC091);
    fails_with(&m, &["guest CS access rights", "type"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_DS_ACCESS.0, 0xC092);
    fails_with(&m, &["guest DS access rights", "accessed"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_ES_ACCESS.0, 0x4093);
    fails_with(&m, &["guest ES limit and access rights", "G must be 1"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_SS_ACCESS.0, 0xC09B);
    fails_with(&m, &["guest SS access rights", "type must be 3 or 7"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_GS_ACCESS.0, 0xC013);
    fails_with(&m, &["guest GS access rights", "P (bit 7)"]);
}

#[test]
fn an_unusable_data_segment_is_not_checked() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_GS_ACCESS.0, ACCESS_UNUSABLE | 0x12);
    assert_eq!(run(&m), None);
}

#[test]
fn tr_and_ldtr_rules() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_TR_ACCESS.0, 0x89);
    fails_with(&m, &["guest TR access rights", "type"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_TR_ACCESS.0, ACCESS_UNUSABLE | 0x8B);
    fails_with(&m, &["guest TR", "usable"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_LDTR_ACCESS.0, 0x83);
    fails_with(&m, &["guest LDTR access rights", "type must be 2"]);
}

#[test]
fn rflags_and_rip_rules() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_RFLAGS.0, 0);
    fails_with(&m, &["guest RFLAGS", "bit 1"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_RIP.0, 1 << 40);
    fails_with(&m, &["guest RIP", "63:32"]);
}

#[test]
fn interruptibility_rules() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_INTERRUPTIBILITY.0, 1);
    fails_with(&m, &["interruptibility", "STI", "RFLAGS.IF"]);

    let mut m = pvh_vmcs();
    m.insert(GUEST_RFLAGS.0, 0x202);
    m.insert(GUEST_INTERRUPTIBILITY.0, 1);
    m.insert(ENTRY_INTR_INFO.0, INTR_INFO_VALID | 0x20);
    fails_with(&m, &["interruptibility", "injecting"]);
}

#[test]
fn injecting_an_interrupt_with_if_clear_is_refused() {
    let mut m = pvh_vmcs();
    m.insert(ENTRY_INTR_INFO.0, INTR_INFO_VALID | 0x20);
    fails_with(&m, &["guest RFLAGS", "IF"]);
}

#[test]
fn activity_and_link_pointer() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_ACTIVITY_STATE.0, 5);
    fails_with(&m, &["activity state"]);

    let mut m = pvh_vmcs();
    m.insert(VMCS_LINK_POINTER.0, 0x1234);
    fails_with(&m, &["VMCS link pointer"]);
}

#[test]
fn pdptes_are_checked_for_pae_paging() {
    let mut m = pvh_vmcs();
    m.insert(GUEST_CR0.0, 0x8000_0031);
    m.insert(GUEST_CR4.0, 0x2020);
    m.insert(GUEST_PDPTE2.0, 0x5003);
    fails_with(&m, &["PDPTE"]);
    m.insert(GUEST_PDPTE2.0, 0x5001);
    assert_eq!(run(&m), None);
}
