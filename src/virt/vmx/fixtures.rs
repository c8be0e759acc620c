//! Shared test fixtures: a Skylake-like CPU and a VMCS as Bulkhead fills it for a PVH guest.

use alloc::collections::BTreeMap;

use super::controls::*;
use super::fields::*;

/// Capabilities like a Skylake's: TRUE controls, CR0 PE/NE/PG and CR4 VMXE fixed.
pub fn caps() -> CapMsrs {
    CapMsrs {
        basic: BASIC_TRUE_CONTROLS | (4096 << 32) | 4,
        pin: 0x0000_007F_0000_0016,
        proc: 0xFFF9_FFFE_0400_6172,
        proc2: 0x0053_7FFF_0000_0000,
        exit: 0x01FF_FFFF_0003_6DFB,
        entry: 0x0003_FFFF_0000_11FB,
        misc: (4 << 16) | (7 << 6),
        cr0_fixed0: 0x8000_0021,
        cr0_fixed1: 0xFFFF_FFFF,
        cr4_fixed0: 0x2000,
        cr4_fixed1: 0x0037_27FF,
        ept_vpid: 0x0000_0F01_0633_4141,
    }
}

/// A VMCS as Bulkhead sets it up for a PVH guest: 32-bit protected mode, paging off.
pub fn pvh_vmcs() -> BTreeMap<u32, u64> {
    let c = Controls::compute(&caps()).unwrap();
    let mut m = BTreeMap::new();
    let mut set = |f: Field, v: u64| {
        m.insert(f.0, v);
    };
    set(PIN_CONTROLS, u64::from(c.pin));
    set(PROC_CONTROLS, u64::from(c.proc));
    set(PROC_CONTROLS2, u64::from(c.proc2));
    set(EXIT_CONTROLS, u64::from(c.exit));
    set(ENTRY_CONTROLS, u64::from(c.entry));
    set(GUEST_CR0, 0x31);
    set(GUEST_CR4, 0x2000);
    set(GUEST_RFLAGS, 2);
    set(GUEST_RIP, 0x10_0000);
    set(GUEST_PAT, 0x0007_0406_0007_0406);
    set(GUEST_DR7, 0x400);
    set(VMCS_LINK_POINTER, u64::MAX);
    for (f, sel, access) in [
        (GUEST_CS, 0x10, 0xC09B),
        (GUEST_SS, 0x18, 0xC093),
        (GUEST_DS, 0x18, 0xC093),
        (GUEST_ES, 0x18, 0xC093),
        (GUEST_FS, 0x18, 0xC093),
        (GUEST_GS, 0x18, 0xC093),
    ] {
        set(f.selector, sel);
        set(f.limit, 0xFFFF_FFFF);
        set(f.access, access);
    }
    set(GUEST_TR_SELECTOR, 0x20);
    set(GUEST_TR_LIMIT, 0x67);
    set(GUEST_TR_ACCESS, 0x8B);
    set(GUEST_LDTR_ACCESS, 0x82);
    for (f, v) in [
        (HOST_CR0, 0x8000_0033),
        (HOST_CR3, 0x1000),
        (HOST_CR4, 0x2020),
        (HOST_CS_SELECTOR, 0x08),
        (HOST_SS_SELECTOR, 0x10),
        (HOST_DS_SELECTOR, 0x10),
        (HOST_ES_SELECTOR, 0x10),
        (HOST_TR_SELECTOR, 0x18),
        (HOST_TR_BASE, 0x20_0000),
        (HOST_GDTR_BASE, 0x20_1000),
        (HOST_IDTR_BASE, 0x20_2000),
        (HOST_PAT, 0x0007_0406_0007_0406),
        (HOST_EFER, 0x500),
        (HOST_RIP, 0x20_3000),
        (MSR_BITMAP, 0x30_0000),
        (VIRTUAL_APIC_ADDR, 0x30_1000),
        (EPT_POINTER, 0x30_2000 | 0x1E),
        (VPID, 1),
    ] {
        set(f, v);
    }
    m
}

/// Reads a field from a fixture table (absent fields read as 0).
pub fn reader(m: &BTreeMap<u32, u64>) -> impl Fn(Field) -> u64 + '_ {
    |f: Field| m.get(&f.0).copied().unwrap_or(0)
}
