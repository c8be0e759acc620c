//! The local APIC's MSR interface: x2APIC registers (Intel SDM vol.3 §11.12.1, Table 11-6) and
//! IA32_TSC_DEADLINE (§11.5.4.1).
//!
//! Unlike the MMIO page, the MSR view refuses what it does not have: reads of write-only or
//! reserved registers, writes of read-only ones and reserved bits raise #GP, which the caller
//! injects when it gets an [`ApicFault`].

#![forbid(unsafe_code)]

use core::fmt;

use super::*;

/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// First MSR of the x2APIC range.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last MSR of the x2APIC range.
pub const MSR_X2APIC_LAST: u32 = 0x8FF;

/// Whether the local APIC model answers this MSR (the VMM routes these to [`Lapic`]).
pub fn is_apic_msr(msr: u32) -> bool {
    msr == MSR_TSC_DEADLINE || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
}

/// Why an APIC MSR access raises #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicFault {
    /// The MSR does not belong to the local APIC (a routing mistake in the caller).
    NotApicMsr(u32),
    /// An x2APIC MSR while the APIC is not in x2APIC mode.
    NotX2Apic(u32),
    /// A register x2APIC mode does not have (APR, RRD, DFR, ICR high, holes).
    Reserved(u32),
    /// A read of a write-only register (EOI, SELF IPI).
    WriteOnly(u32),
    /// A write of a read-only register.
    ReadOnly(u32),
    /// A write with reserved bits set.
    ReservedBits(u32),
}

impl fmt::Display for ApicFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotApicMsr(m) => write!(f, "local APIC: MSR {m:#x} is not an APIC register"),
            Self::NotX2Apic(m) => write!(
                f,
                "local APIC: MSR {m:#x} accessed while not in x2APIC mode"
            ),
            Self::Reserved(m) => write!(f, "local APIC: MSR {m:#x} is reserved in x2APIC mode"),
            Self::WriteOnly(m) => write!(f, "local APIC: MSR {m:#x} is write-only"),
            Self::ReadOnly(m) => write!(f, "local APIC: MSR {m:#x} is read-only"),
            Self::ReservedBits(m) => {
                write!(f, "local APIC: write to MSR {m:#x} sets reserved bits")
            }
        }
    }
}

/// Registers that exist only in the xAPIC page (Table 11-6 leaves them out).
fn is_xapic_only(offset: u32) -> bool {
    matches!(offset, REG_APR | REG_RRD | REG_DFR | REG_ICR_HIGH)
}

/// Read-only registers in x2APIC mode.
fn is_read_only(offset: u32) -> bool {
    matches!(
        offset,
        REG_ID | REG_VERSION | REG_PPR | REG_LDR | REG_TIMER_CURRENT
    ) || bank_word(offset, REG_ISR).is_some()
        || bank_word(offset, REG_TMR).is_some()
        || bank_word(offset, REG_IRR).is_some()
}

impl Lapic {
    /// x2APIC register offset of `msr`, after the mode check.
    fn x2apic_offset(&self, msr: u32) -> Result<u32, ApicFault> {
        if !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(ApicFault::NotApicMsr(msr));
        }
        if self.mode != ApicMode::X2Apic {
            return Err(ApicFault::NotX2Apic(msr));
        }
        let offset = (msr - MSR_X2APIC_FIRST) << 4;
        if is_xapic_only(offset) {
            return Err(ApicFault::Reserved(msr));
        }
        Ok(offset)
    }

    /// RDMSR of an APIC MSR (see [`is_apic_msr`]).
    pub fn msr_read(&self, msr: u32, now_tsc: u64) -> Result<u64, ApicFault> {
        if msr == MSR_TSC_DEADLINE {
            return Ok(self.timer.deadline(self.timer_mode()));
        }
        let offset = self.x2apic_offset(msr)?;
        match offset {
            REG_EOI | REG_SELF_IPI => Err(ApicFault::WriteOnly(msr)),
            REG_ICR_LOW => Ok((u64::from(self.icr_high) << 32) | u64::from(self.icr_low)),
            _ => self
                .read_reg(offset, now_tsc)
                .map(u64::from)
                .ok_or(ApicFault::Reserved(msr)),
        }
    }

    /// WRMSR of an APIC MSR (see [`is_apic_msr`]).
    pub fn msr_write(
        &mut self,
        msr: u32,
        value: u64,
        now_tsc: u64,
    ) -> Result<Option<ApicAction>, ApicFault> {
        if msr == MSR_TSC_DEADLINE {
            self.poll(now_tsc);
            self.timer.write_deadline(value, self.timer_mode());
            return Ok(None);
        }
        let offset = self.x2apic_offset(msr)?;
        if offset == REG_ICR_LOW {
            // One 64-bit register: destination in bits 63:32 (§11.12.9); no delivery status.
            self.icr_high = (value >> 32) as u32;
            self.icr_low = value as u32 & ICR_LOW_WRITABLE;
            return Ok(self.send_ipi());
        }
        let value = u32::try_from(value).map_err(|_| ApicFault::ReservedBits(msr))?;
        if is_read_only(offset) {
            return Err(ApicFault::ReadOnly(msr));
        }
        match offset {
            // §11.12.1.2: EOI and ESR take only zero in x2APIC mode.
            REG_EOI | REG_ESR if value != 0 => Err(ApicFault::ReservedBits(msr)),
            REG_SELF_IPI if value > 0xFF => Err(ApicFault::ReservedBits(msr)),
            REG_SELF_IPI => {
                // §11.12.11: a fixed, edge-triggered IPI to this APIC alone, delivered here.
                if self.accepts_interrupts() && (value as u8) < FIRST_LEGAL_VECTOR {
                    self.signal_error(ESR_SEND_ILLEGAL_VECTOR);
                } else {
                    self.accept(value as u8, false);
                }
                Ok(None)
            }
            _ if self.read_reg(offset, now_tsc).is_none() => Err(ApicFault::Reserved(msr)),
            _ => Ok(self.write_reg(offset, value, now_tsc)),
        }
    }
}
