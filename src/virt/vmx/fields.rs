//! VMCS field encodings (Intel SDM vol.3 appendix B) as typed constants.
//!
//! The encoding's bits 14:13 give the width and bits 11:10 the kind (control, read-only exit
//! information, guest state, host state) (SDM vol.3 §25.11.2); [`Field::name`] names a field for
//! error reports.

#![forbid(unsafe_code)]

/// One VMCS field encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field(pub u32);

macro_rules! fields {
    ($($name:ident = $enc:expr;)*) => {
        $(pub const $name: Field = Field($enc);)*

        impl Field {
            /// The field's name (as used in this module), or "unknown field".
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($enc => stringify!($name),)*
                    _ => "unknown field",
                }
            }
        }
    };
}

fields! {
    // 16-bit control fields.
    VPID = 0x0000;
    // 16-bit guest-state fields.
    GUEST_ES_SELECTOR = 0x0800;
    GUEST_CS_SELECTOR = 0x0802;
    GUEST_SS_SELECTOR = 0x0804;
    GUEST_DS_SELECTOR = 0x0806;
    GUEST_FS_SELECTOR = 0x0808;
    GUEST_GS_SELECTOR = 0x080A;
    GUEST_LDTR_SELECTOR = 0x080C;
    GUEST_TR_SELECTOR = 0x080E;
    // 16-bit host-state fields.
    HOST_ES_SELECTOR = 0x0C00;
    HOST_CS_SELECTOR = 0x0C02;
    HOST_SS_SELECTOR = 0x0C04;
    HOST_DS_SELECTOR = 0x0C06;
    HOST_FS_SELECTOR = 0x0C08;
    HOST_GS_SELECTOR = 0x0C0A;
    HOST_TR_SELECTOR = 0x0C0C;
    // 64-bit control fields.
    IO_BITMAP_A = 0x2000;
    IO_BITMAP_B = 0x2002;
    MSR_BITMAP = 0x2004;
    EXIT_MSR_STORE_ADDR = 0x2006;
    EXIT_MSR_LOAD_ADDR = 0x2008;
    ENTRY_MSR_LOAD_ADDR = 0x200A;
    TSC_OFFSET = 0x2010;
    VIRTUAL_APIC_ADDR = 0x2012;
    APIC_ACCESS_ADDR = 0x2014;
    EPT_POINTER = 0x201A;
    XSS_EXITING_BITMAP = 0x202C;
    // 64-bit read-only data fields.
    GUEST_PHYSICAL_ADDR = 0x2400;
    // 64-bit guest-state fields.
    VMCS_LINK_POINTER = 0x2800;
    GUEST_DEBUGCTL = 0x2802;
    GUEST_PAT = 0x2804;
    GUEST_EFER = 0x2806;
    GUEST_PDPTE0 = 0x280A;
    GUEST_PDPTE1 = 0x280C;
    GUEST_PDPTE2 = 0x280E;
    GUEST_PDPTE3 = 0x2810;
    // 64-bit host-state fields.
    HOST_PAT = 0x2C00;
    HOST_EFER = 0x2C02;
    // 32-bit control fields.
    PIN_CONTROLS = 0x4000;
    PROC_CONTROLS = 0x4002;
    EXCEPTION_BITMAP = 0x4004;
    PF_ERROR_CODE_MASK = 0x4006;
    PF_ERROR_CODE_MATCH = 0x4008;
    CR3_TARGET_COUNT = 0x400A;
    EXIT_CONTROLS = 0x400C;
    EXIT_MSR_STORE_COUNT = 0x400E;
    EXIT_MSR_LOAD_COUNT = 0x4010;
    ENTRY_CONTROLS = 0x4012;
    ENTRY_MSR_LOAD_COUNT = 0x4014;
    ENTRY_INTR_INFO = 0x4016;
    ENTRY_EXCEPTION_ERROR_CODE = 0x4018;
    ENTRY_INSN_LEN = 0x401A;
    TPR_THRESHOLD = 0x401C;
    PROC_CONTROLS2 = 0x401E;
    // 32-bit read-only data fields.
    VM_INSN_ERROR = 0x4400;
    EXIT_REASON = 0x4402;
    EXIT_INTR_INFO = 0x4404;
    EXIT_INTR_ERROR_CODE = 0x4406;
    IDT_VECTORING_INFO = 0x4408;
    IDT_VECTORING_ERROR_CODE = 0x440A;
    EXIT_INSN_LEN = 0x440C;
    EXIT_INSN_INFO = 0x440E;
    // 32-bit guest-state fields.
    GUEST_ES_LIMIT = 0x4800;
    GUEST_CS_LIMIT = 0x4802;
    GUEST_SS_LIMIT = 0x4804;
    GUEST_DS_LIMIT = 0x4806;
    GUEST_FS_LIMIT = 0x4808;
    GUEST_GS_LIMIT = 0x480A;
    GUEST_LDTR_LIMIT = 0x480C;
    GUEST_TR_LIMIT = 0x480E;
    GUEST_GDTR_LIMIT = 0x4810;
    GUEST_IDTR_LIMIT = 0x4812;
    GUEST_ES_ACCESS = 0x4814;
    GUEST_CS_ACCESS = 0x4816;
    GUEST_SS_ACCESS = 0x4818;
    GUEST_DS_ACCESS = 0x481A;
    GUEST_FS_ACCESS = 0x481C;
    GUEST_GS_ACCESS = 0x481E;
    GUEST_LDTR_ACCESS = 0x4820;
    GUEST_TR_ACCESS = 0x4822;
    GUEST_INTERRUPTIBILITY = 0x4824;
    GUEST_ACTIVITY_STATE = 0x4826;
    PREEMPTION_TIMER_VALUE = 0x482E;
    GUEST_SYSENTER_CS = 0x482A;
    // 32-bit host-state field.
    HOST_SYSENTER_CS = 0x4C00;
    // Natural-width control fields.
    CR0_GUEST_HOST_MASK = 0x6000;
    CR4_GUEST_HOST_MASK = 0x6002;
    CR0_READ_SHADOW = 0x6004;
    CR4_READ_SHADOW = 0x6006;
    // Natural-width read-only data fields.
    EXIT_QUALIFICATION = 0x6400;
    GUEST_LINEAR_ADDR = 0x640A;
    // Natural-width guest-state fields.
    GUEST_CR0 = 0x6800;
    GUEST_CR3 = 0x6802;
    GUEST_CR4 = 0x6804;
    GUEST_ES_BASE = 0x6806;
    GUEST_CS_BASE = 0x6808;
    GUEST_SS_BASE = 0x680A;
    GUEST_DS_BASE = 0x680C;
    GUEST_FS_BASE = 0x680E;
    GUEST_GS_BASE = 0x6810;
    GUEST_LDTR_BASE = 0x6812;
    GUEST_TR_BASE = 0x6814;
    GUEST_GDTR_BASE = 0x6816;
    GUEST_IDTR_BASE = 0x6818;
    GUEST_DR7 = 0x681A;
    GUEST_RSP = 0x681C;
    GUEST_RIP = 0x681E;
    GUEST_RFLAGS = 0x6820;
    GUEST_PENDING_DBG_EXCEPTIONS = 0x6822;
    GUEST_SYSENTER_ESP = 0x6824;
    GUEST_SYSENTER_EIP = 0x6826;
    // Natural-width host-state fields.
    HOST_CR0 = 0x6C00;
    HOST_CR3 = 0x6C02;
    HOST_CR4 = 0x6C04;
    HOST_FS_BASE = 0x6C06;
    HOST_GS_BASE = 0x6C08;
    HOST_TR_BASE = 0x6C0A;
    HOST_GDTR_BASE = 0x6C0C;
    HOST_IDTR_BASE = 0x6C0E;
    HOST_SYSENTER_ESP = 0x6C10;
    HOST_SYSENTER_EIP = 0x6C12;
    HOST_RSP = 0x6C14;
    HOST_RIP = 0x6C16;
}

/// The four fields of one guest segment register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFields {
    /// Register name for reports ("CS", "TR", …).
    pub name: &'static str,
    pub selector: Field,
    pub base: Field,
    pub limit: Field,
    pub access: Field,
}

const fn seg(
    name: &'static str,
    selector: Field,
    base: Field,
    limit: Field,
    access: Field,
) -> SegmentFields {
    SegmentFields {
        name,
        selector,
        base,
        limit,
        access,
    }
}

pub const GUEST_ES: SegmentFields = seg(
    "ES",
    GUEST_ES_SELECTOR,
    GUEST_ES_BASE,
    GUEST_ES_LIMIT,
    GUEST_ES_ACCESS,
);
pub const GUEST_CS: SegmentFields = seg(
    "CS",
    GUEST_CS_SELECTOR,
    GUEST_CS_BASE,
    GUEST_CS_LIMIT,
    GUEST_CS_ACCESS,
);
pub const GUEST_SS: SegmentFields = seg(
    "SS",
    GUEST_SS_SELECTOR,
    GUEST_SS_BASE,
    GUEST_SS_LIMIT,
    GUEST_SS_ACCESS,
);
pub const GUEST_DS: SegmentFields = seg(
    "DS",
    GUEST_DS_SELECTOR,
    GUEST_DS_BASE,
    GUEST_DS_LIMIT,
    GUEST_DS_ACCESS,
);
pub const GUEST_FS: SegmentFields = seg(
    "FS",
    GUEST_FS_SELECTOR,
    GUEST_FS_BASE,
    GUEST_FS_LIMIT,
    GUEST_FS_ACCESS,
);
pub const GUEST_GS: SegmentFields = seg(
    "GS",
    GUEST_GS_SELECTOR,
    GUEST_GS_BASE,
    GUEST_GS_LIMIT,
    GUEST_GS_ACCESS,
);
pub const GUEST_LDTR: SegmentFields = seg(
    "LDTR",
    GUEST_LDTR_SELECTOR,
    GUEST_LDTR_BASE,
    GUEST_LDTR_LIMIT,
    GUEST_LDTR_ACCESS,
);
pub const GUEST_TR: SegmentFields = seg(
    "TR",
    GUEST_TR_SELECTOR,
    GUEST_TR_BASE,
    GUEST_TR_LIMIT,
    GUEST_TR_ACCESS,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_table() {
        assert_eq!(GUEST_CS_ACCESS.name(), "GUEST_CS_ACCESS");
        assert_eq!(VM_INSN_ERROR.name(), "VM_INSN_ERROR");
        assert_eq!(Field(0x7FFE).name(), "unknown field");
    }

    #[test]
    fn widths_follow_the_encoding() {
        // Bits 14:13: 0 = 16-bit, 1 = 64-bit, 2 = 32-bit, 3 = natural width.
        for (f, width) in [
            (GUEST_TR_SELECTOR, 0),
            (EPT_POINTER, 1),
            (GUEST_EFER, 1),
            (EXIT_REASON, 2),
            (GUEST_INTERRUPTIBILITY, 2),
            (GUEST_RIP, 3),
            (HOST_RIP, 3),
        ] {
            assert_eq!((f.0 >> 13) & 3, width, "{}", f.name());
        }
    }
}
