//! The guest-state checks on segment registers (SDM vol.3 §27.3.1.2), for guests outside
//! virtual-8086 mode.

#![forbid(unsafe_code)]

use super::controls::CR0_PE;
use super::fields::*;
use super::finding::{is_canonical, Finding, Reader};
use super::guest_check::ACCESS_UNUSABLE;

const ACCESS_S: u64 = 1 << 4;
const ACCESS_P: u64 = 1 << 7;
const ACCESS_L: u64 = 1 << 13;
const ACCESS_DB: u64 = 1 << 14;
const ACCESS_G: u64 = 1 << 15;
/// Bits 11:8 and 31:17 of the access rights are reserved.
const ACCESS_RESERVED: u64 = 0xF00 | 0xFFFE_0000;

/// Per-segment rule texts (the field name has to be in each static message).
struct SegRules {
    name: &'static str,
    fields: SegmentFields,
    accessed: &'static str,
    s_bit: &'static str,
    present: &'static str,
    reserved: &'static str,
    granularity: &'static str,
    dpl_rpl: &'static str,
    base_high: &'static str,
}

macro_rules! seg_rules {
    ($name:literal, $fields:expr) => {
        SegRules {
            name: $name,
            fields: $fields,
            accessed: concat!("guest ", $name, " access rights: a usable data segment must be accessed (type bit 0), and a code segment readable (SDM vol.3 §27.3.1.2)"),
            s_bit: concat!("guest ", $name, " access rights: S (bit 4) must be 1 for a code or data segment (SDM vol.3 §27.3.1.2)"),
            present: concat!("guest ", $name, " access rights: P (bit 7) must be 1 (SDM vol.3 §27.3.1.2)"),
            reserved: concat!("guest ", $name, " access rights: bits 11:8 and 31:17 are reserved and must be 0 (SDM vol.3 §27.3.1.2)"),
            granularity: concat!("guest ", $name, " limit and access rights: G must be 1 if limit bits 31:20 are not all 0, and 0 if limit bits 11:0 are not all 1 (SDM vol.3 §27.3.1.2)"),
            dpl_rpl: concat!("guest ", $name, " access rights: DPL must not be less than the selector's RPL without unrestricted guest (SDM vol.3 §27.3.1.2)"),
            base_high: concat!("guest ", $name, " base: bits 63:32 must be 0 (SDM vol.3 §27.3.1.2)"),
        }
    };
}

fn check(ok: bool, rule: &'static str, value: u64) -> Result<(), Finding> {
    if ok {
        Ok(())
    } else {
        Err(Finding::new(rule, value))
    }
}

/// One segment register as read from the VMCS.
#[derive(Clone, Copy)]
struct Seg {
    selector: u64,
    base: u64,
    limit: u64,
    access: u64,
}

impl Seg {
    fn read(r: Reader, f: &SegmentFields) -> Self {
        Self {
            selector: r(f.selector),
            base: r(f.base),
            limit: r(f.limit),
            access: r(f.access),
        }
    }
    fn usable(&self) -> bool {
        self.access & ACCESS_UNUSABLE == 0
    }
    fn kind(&self) -> u64 {
        self.access & 0xF
    }
    fn dpl(&self) -> u64 {
        (self.access >> 5) & 3
    }
    fn rpl(&self) -> u64 {
        self.selector & 3
    }
    /// G must be 1 if the limit needs more than 20 bits, 0 if it is not a multiple of 4 KiB.
    fn granularity_ok(&self) -> bool {
        let g = self.access & ACCESS_G != 0;
        (self.limit & 0xFFF == 0xFFF || !g) && (self.limit >> 20 == 0 || g)
    }
}

/// Checks every segment register; the first failure is returned.
pub(super) fn segments(
    r: Reader,
    unrestricted: bool,
    ia32e: bool,
    cr0: u64,
) -> Result<(), Finding> {
    let cs = Seg::read(r, &GUEST_CS);
    let ss = Seg::read(r, &GUEST_SS);
    let tr = Seg::read(r, &GUEST_TR);
    let ldtr = Seg::read(r, &GUEST_LDTR);
    check(
        tr.selector & 4 == 0,
        "guest TR selector: TI (bit 2) must be 0 (SDM vol.3 §27.3.1.2)",
        tr.selector,
    )?;
    check(
        !ldtr.usable() || ldtr.selector & 4 == 0,
        "guest LDTR selector: TI (bit 2) must be 0 when LDTR is usable (SDM vol.3 §27.3.1.2)",
        ldtr.selector,
    )?;
    check(unrestricted || ss.rpl() == cs.rpl(), "guest SS selector: RPL must equal CS's RPL without unrestricted guest (SDM vol.3 §27.3.1.2)", ss.selector)?;
    for (f, rule) in [
        (
            GUEST_TR_BASE,
            "guest TR base: must be canonical (SDM vol.3 §27.3.1.2)",
        ),
        (
            GUEST_FS_BASE,
            "guest FS base: must be canonical (SDM vol.3 §27.3.1.2)",
        ),
        (
            GUEST_GS_BASE,
            "guest GS base: must be canonical (SDM vol.3 §27.3.1.2)",
        ),
    ] {
        check(is_canonical(r(f)), rule, r(f))?;
    }
    check(
        !ldtr.usable() || is_canonical(ldtr.base),
        "guest LDTR base: must be canonical when LDTR is usable (SDM vol.3 §27.3.1.2)",
        ldtr.base,
    )?;
    // CS.
    let cs_kinds_ok = matches!(cs.kind(), 9 | 11 | 13 | 15) || (unrestricted && cs.kind() == 3);
    check(cs_kinds_ok, "guest CS access rights: type must be 9, 11, 13 or 15 (accessed code), or 3 with unrestricted guest (SDM vol.3 §27.3.1.2)", cs.access)?;
    check(
        cs.usable(),
        "guest CS access rights: CS must be usable (bit 16 clear) (SDM vol.3 §27.3.1.2)",
        cs.access,
    )?;
    let dpl_ok = match cs.kind() {
        3 => cs.dpl() == 0,
        9 | 11 => cs.dpl() == ss.dpl(),
        _ => cs.dpl() <= ss.dpl(),
    };
    check(dpl_ok, "guest CS access rights: DPL must be 0 for type 3, equal SS's DPL for non-conforming code, at most SS's DPL for conforming code (SDM vol.3 §27.3.1.2)", cs.access)?;
    check(!(ia32e && cs.access & ACCESS_L != 0 && cs.access & ACCESS_DB != 0), "guest CS access rights: D/B must be 0 for a 64-bit code segment (L=1) (SDM vol.3 §27.3.1.2)", cs.access)?;
    check(
        cs.base >> 32 == 0,
        "guest CS base: bits 63:32 must be 0 (SDM vol.3 §27.3.1.2)",
        cs.base,
    )?;
    // SS.
    if ss.usable() {
        check(
            matches!(ss.kind(), 3 | 7),
            "guest SS access rights: type must be 3 or 7 (writable data) (SDM vol.3 §27.3.1.2)",
            ss.access,
        )?;
    }
    check(unrestricted || ss.dpl() == ss.rpl(), "guest SS access rights: DPL must equal the selector's RPL without unrestricted guest (SDM vol.3 §27.3.1.2)", ss.access)?;
    check(!(cs.kind() == 3 || cr0 & CR0_PE == 0) || ss.dpl() == 0, "guest SS access rights: DPL must be 0 when CS has type 3 or CR0.PE is 0 (SDM vol.3 §27.3.1.2)", ss.access)?;
    // The code and data segments' common rules.
    let data = [
        seg_rules!("CS", GUEST_CS),
        seg_rules!("SS", GUEST_SS),
        seg_rules!("DS", GUEST_DS),
        seg_rules!("ES", GUEST_ES),
        seg_rules!("FS", GUEST_FS),
        seg_rules!("GS", GUEST_GS),
    ];
    for rules in &data {
        let s = Seg::read(r, &rules.fields);
        if !s.usable() {
            continue;
        }
        let is_cs = rules.name == "CS";
        if !is_cs && rules.name != "SS" {
            let accessed = s.access & 1 != 0 && (s.access & 8 == 0 || s.access & 2 != 0);
            check(accessed, rules.accessed, s.access)?;
            check(
                unrestricted || s.kind() > 11 || s.dpl() >= s.rpl(),
                rules.dpl_rpl,
                s.access,
            )?;
        }
        check(s.access & ACCESS_S != 0, rules.s_bit, s.access)?;
        check(s.access & ACCESS_P != 0, rules.present, s.access)?;
        check(s.access & ACCESS_RESERVED == 0, rules.reserved, s.access)?;
        check(s.granularity_ok(), rules.granularity, s.limit)?;
        if matches!(rules.name, "SS" | "DS" | "ES") {
            check(s.base >> 32 == 0, rules.base_high, s.base)?;
        }
    }
    // TR.
    let tr_kind_ok = if ia32e {
        tr.kind() == 11
    } else {
        matches!(tr.kind(), 3 | 11)
    };
    check(tr_kind_ok, "guest TR access rights: type must be 11 (busy 64-bit TSS) in IA-32e mode, else 3 or 11 (SDM vol.3 §27.3.1.2)", tr.access)?;
    check(
        tr.access & ACCESS_S == 0,
        "guest TR access rights: S (bit 4) must be 0 (SDM vol.3 §27.3.1.2)",
        tr.access,
    )?;
    check(
        tr.access & ACCESS_P != 0,
        "guest TR access rights: P (bit 7) must be 1 (SDM vol.3 §27.3.1.2)",
        tr.access,
    )?;
    check(tr.access & ACCESS_RESERVED == 0, "guest TR access rights: bits 11:8 and 31:17 are reserved and must be 0 (SDM vol.3 §27.3.1.2)", tr.access)?;
    check(tr.granularity_ok(), "guest TR limit and access rights: G must be 1 if limit bits 31:20 are not all 0, and 0 if limit bits 11:0 are not all 1 (SDM vol.3 §27.3.1.2)", tr.limit)?;
    check(
        tr.usable(),
        "guest TR access rights: TR must be usable (bit 16 clear) (SDM vol.3 §27.3.1.2)",
        tr.access,
    )?;
    // LDTR.
    if ldtr.usable() {
        check(
            ldtr.kind() == 2,
            "guest LDTR access rights: type must be 2 (LDT) (SDM vol.3 §27.3.1.2)",
            ldtr.access,
        )?;
        check(
            ldtr.access & ACCESS_S == 0,
            "guest LDTR access rights: S (bit 4) must be 0 (SDM vol.3 §27.3.1.2)",
            ldtr.access,
        )?;
        check(
            ldtr.access & ACCESS_P != 0,
            "guest LDTR access rights: P (bit 7) must be 1 (SDM vol.3 §27.3.1.2)",
            ldtr.access,
        )?;
        check(ldtr.access & ACCESS_RESERVED == 0, "guest LDTR access rights: bits 11:8 and 31:17 are reserved and must be 0 (SDM vol.3 §27.3.1.2)", ldtr.access)?;
        check(ldtr.granularity_ok(), "guest LDTR limit and access rights: G must be 1 if limit bits 31:20 are not all 0, and 0 if limit bits 11:0 are not all 1 (SDM vol.3 §27.3.1.2)", ldtr.limit)?;
    }
    Ok(())
}
