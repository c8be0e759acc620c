//! An emulated local APIC per vCPU, in xAPIC (MMIO at `LAPIC_BASE`) and x2APIC (MSR) modes,
//! with its timer (Intel SDM vol.3 ch.11).
//!
//! The model is a plain state machine: the VMM feeds it register accesses, accepted interrupts
//! and the current TSC; it answers with register values, the highest deliverable vector, the
//! next timer deadline and [`ApicAction`]s (IPIs to route, EOIs to forward to the I/O APIC).
//! Routing between vCPUs and injecting into the guest are the VMM's job.

#![forbid(unsafe_code)]

mod ipi;
mod regs;
mod timer;
mod x2apic;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod timer_tests;

pub use ipi::{x2apic_logical_id, DeliveryMode, Destination, Ipi};
pub use timer::TimerMode;
pub use x2apic::{is_apic_msr, ApicFault, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST};

use ipi::logical_match;
use regs::bank_word;
use timer::Timer;

/// Size of the xAPIC register window at `layout::LAPIC_BASE`.
pub const MMIO_SIZE: u64 = 0x1000;
/// Default timer input frequency: what CPUID leaf 0x40000010 tells the guest.
pub const DEFAULT_TIMER_KHZ: u32 = crate::vmm::APIC_TIMER_KHZ;

// Register offsets in the xAPIC page (SDM Table 11-1); x2APIC MSR = 0x800 + offset / 16.
const REG_ID: u32 = 0x20;
const REG_VERSION: u32 = 0x30;
const REG_TPR: u32 = 0x80;
const REG_APR: u32 = 0x90;
const REG_PPR: u32 = 0xA0;
const REG_EOI: u32 = 0xB0;
const REG_RRD: u32 = 0xC0;
const REG_LDR: u32 = 0xD0;
const REG_DFR: u32 = 0xE0;
const REG_SVR: u32 = 0xF0;
const REG_ISR: u32 = 0x100;
const REG_TMR: u32 = 0x180;
const REG_IRR: u32 = 0x200;
const REG_ESR: u32 = 0x280;
const REG_LVT_CMCI: u32 = 0x2F0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3E0;
/// x2APIC only (MSR 0x83F).
const REG_SELF_IPI: u32 = 0x3F0;

/// Version register: version 0x14 (integrated APIC), max LVT entry 5 in bits 23:16, and bit 24
/// (EOI-broadcast suppression) clear because it is not offered.
const VERSION_VALUE: u32 = 0x14 | (5 << 16);

/// LVT registers in `lvt[]` order: CMCI, timer, thermal, performance, LINT0, LINT1, error.
const LVT_COUNT: usize = 7;
const LVT_CMCI: usize = 0;
const LVT_TIMER: usize = 1;
const LVT_ERROR: usize = 6;
/// Writable bits of each LVT (SDM §11.5.1 figure 11-8): vector 7:0, delivery mode 10:8,
/// polarity 13, trigger 15, mask 16, timer mode 18:17, where the entry has them.
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    0x1_07FF, 0x7_00FF, 0x1_07FF, 0x1_07FF, 0x1_A7FF, 0x1_A7FF, 0x1_00FF,
];
const LVT_MASKED: u32 = 1 << 16;

const SVR_SOFTWARE_ENABLE: u32 = 1 << 8;
/// Vector, software enable and focus-check bits; bit 12 stays 0 (no EOI-broadcast suppression).
const SVR_WRITABLE: u32 = 0x3FF;
const SVR_RESET: u32 = 0xFF;
const DFR_RESET: u32 = 0xFFFF_FFFF;
const XAPIC_ID_SHIFT: u32 = 24;
/// xAPIC logical id: bits 31:24 of the LDR.
const XAPIC_LDR_WRITABLE: u32 = 0xFF00_0000;

/// ICR bits (SDM §11.6.1 figure 11-12).
const ICR_LOW_WRITABLE: u32 = 0x000C_CFFF;
const ICR_DEST_LOGICAL: u32 = 1 << 11;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
const XAPIC_ICR_HIGH_WRITABLE: u32 = 0xFF00_0000;
const XAPIC_PHYSICAL_BROADCAST: u32 = 0xFF;
const X2APIC_PHYSICAL_BROADCAST: u32 = u32::MAX;

/// ESR bits (SDM §11.5.3).
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
/// Vectors 0–15 are reserved for exceptions and cannot be delivered by the APIC.
const FIRST_LEGAL_VECTOR: u8 = 16;

/// How IA32_APIC_BASE has the APIC (SDM §11.12.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// Globally disabled: no registers, no interrupts.
    Disabled,
    /// Enabled, registers in the MMIO page.
    XApic,
    /// Enabled, registers as MSRs 0x800–0x8FF.
    X2Apic,
}

/// What the VMM must do after a register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicAction {
    /// Route this IPI to the guest's vCPUs (see [`Lapic::is_target`]).
    Ipi(Ipi),
    /// The guest ended a level-triggered interrupt with this vector: pass the EOI on to the I/O
    /// APIC so it clears remote IRR.
    IoApicEoi(u8),
}

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct Lapic {
    /// Initial APIC id (the x2APIC id; its low 8 bits are the xAPIC id at reset).
    id: u32,
    mode: ApicMode,
    xapic_id: u8,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: [u32; 8],
    tmr: [u32; 8],
    irr: [u32; 8],
    /// ESR as last latched by a write, and errors seen since.
    esr: u32,
    esr_pending: u32,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; LVT_COUNT],
    timer: Timer,
}

fn test_bit(bits: &[u32; 8], vector: u8) -> bool {
    bits[usize::from(vector >> 5)] & (1 << (vector & 31)) != 0
}

fn set_bit(bits: &mut [u32; 8], vector: u8, value: bool) {
    let word = &mut bits[usize::from(vector >> 5)];
    if value {
        *word |= 1 << (vector & 31);
    } else {
        *word &= !(1 << (vector & 31));
    }
}

fn highest(bits: &[u32; 8]) -> Option<u8> {
    (0..8u8)
        .rev()
        .find(|&w| bits[usize::from(w)] != 0)
        .map(|w| w * 32 + (31 - bits[usize::from(w)].leading_zeros()) as u8)
}

impl Lapic {
    /// A local APIC after power-up, in xAPIC mode (IA32_APIC_BASE enabled, as `vmm::msr` resets
    /// it), software-disabled. `tsc_khz` is the guest TSC rate, `timer_khz` the timer's input
    /// rate before the divider (normally [`DEFAULT_TIMER_KHZ`]).
    pub fn new(apic_id: u32, tsc_khz: u64, timer_khz: u32) -> Self {
        let mut lapic = Self {
            id: apic_id,
            mode: ApicMode::XApic,
            xapic_id: apic_id as u8,
            tpr: 0,
            ldr: 0,
            dfr: DFR_RESET,
            svr: SVR_RESET,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            timer: Timer::new(tsc_khz, timer_khz),
        };
        lapic.reset_registers();
        lapic
    }

    /// Every register to its power-up value except the APIC id (SDM §11.4.7.1).
    fn reset_registers(&mut self) {
        self.tpr = 0;
        self.ldr = if self.mode == ApicMode::X2Apic {
            x2apic_logical_id(self.id)
        } else {
            0
        };
        self.dfr = DFR_RESET;
        self.svr = SVR_RESET;
        self.isr = [0; 8];
        self.tmr = [0; 8];
        self.irr = [0; 8];
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_low = 0;
        self.icr_high = 0;
        self.lvt = [LVT_MASKED; LVT_COUNT];
        self.timer.reset();
    }

    /// The initial APIC id this APIC was created with.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Current mode.
    pub fn mode(&self) -> ApicMode {
        self.mode
    }

    /// Follows a write of IA32_APIC_BASE (`vmm::msr` validates the transition, SDM §11.12.5).
    /// Disabling resets the APIC; xAPIC → x2APIC keeps its state but takes the x2APIC id and
    /// derived logical id.
    pub fn set_mode(&mut self, enabled: bool, x2apic: bool) {
        let new = match (enabled, x2apic) {
            (false, _) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
        };
        let old = self.mode;
        if new == old {
            return;
        }
        self.mode = new;
        self.xapic_id = self.id as u8;
        if old == ApicMode::XApic && new == ApicMode::X2Apic {
            self.ldr = x2apic_logical_id(self.id);
        } else {
            self.reset_registers();
        }
    }

    /// An INIT IPI arrived: registers back to power-up, id and mode kept (SDM §11.4.7.3).
    pub fn init_reset(&mut self) {
        self.reset_registers();
    }

    /// SVR bit 8: the guest turned the APIC on.
    pub fn is_software_enabled(&self) -> bool {
        self.svr & SVR_SOFTWARE_ENABLE != 0
    }

    fn accepts_interrupts(&self) -> bool {
        self.mode != ApicMode::Disabled && self.is_software_enabled()
    }

    /// Task priority (also CR8 << 4, for a VMM that syncs CR8).
    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// Sets the task priority (from a CR8 write: `cr8 << 4`).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr;
    }

    /// Processor priority (SDM §11.8.3.1): the TPR, or the class of the highest in-service
    /// vector when that is higher.
    pub fn ppr(&self) -> u8 {
        let isrv = highest(&self.isr).unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// Arbitration priority (SDM §11.6.2.4), xAPIC only.
    fn apr(&self) -> u8 {
        let isrv = highest(&self.isr).unwrap_or(0) >> 4;
        let irrv = highest(&self.irr).unwrap_or(0) >> 4;
        let tpr = self.tpr >> 4;
        if tpr >= irrv && tpr > isrv {
            self.tpr
        } else {
            tpr.max(isrv).max(irrv) << 4
        }
    }

    /// Records an error in the ESR and raises the error LVT's vector if it is unmasked.
    fn signal_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        let vector = lvt as u8;
        if lvt & LVT_MASKED == 0 && vector >= FIRST_LEGAL_VECTOR && self.accepts_interrupts() {
            set_bit(&mut self.irr, vector, true);
            set_bit(&mut self.tmr, vector, false);
        }
    }

    /// A fixed or lowest-priority interrupt arrived for this APIC: sets its IRR bit (and the TMR
    /// bit for level-triggered ones). Returns whether it was accepted: vectors below 16 only
    /// set "receive illegal vector" in the ESR, and a disabled APIC drops them.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) -> bool {
        if !self.accepts_interrupts() {
            return false;
        }
        if vector < FIRST_LEGAL_VECTOR {
            self.signal_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        set_bit(&mut self.irr, vector, true);
        set_bit(&mut self.tmr, vector, level_triggered);
        true
    }

    /// The vector to inject now: the highest requested one whose priority class is above the
    /// processor priority (SDM §11.8.3), while the APIC is enabled.
    pub fn pending(&self) -> Option<u8> {
        if !self.accepts_interrupts() {
            return None;
        }
        let vector = highest(&self.irr)?;
        (vector & 0xF0 > self.ppr() & 0xF0).then_some(vector)
    }

    /// The VMM injected `vector`: it moves from IRR to ISR (SDM §11.8.4).
    pub fn ack(&mut self, vector: u8) {
        if test_bit(&self.irr, vector) {
            set_bit(&mut self.irr, vector, false);
            set_bit(&mut self.isr, vector, true);
        }
    }

    /// End of interrupt: retire the highest in-service vector (SDM §11.8.5).
    fn eoi(&mut self) -> Option<ApicAction> {
        let vector = highest(&self.isr)?;
        set_bit(&mut self.isr, vector, false);
        test_bit(&self.tmr, vector).then_some(ApicAction::IoApicEoi(vector))
    }

    /// Whether a message for `dest` is for this APIC. `is_sender` says whether this APIC sent it
    /// (for the self shorthands). A disabled APIC receives nothing.
    pub fn is_target(&self, dest: Destination, is_sender: bool) -> bool {
        let is_x2apic = self.mode == ApicMode::X2Apic;
        match dest {
            _ if self.mode == ApicMode::Disabled => false,
            Destination::Physical(id) if is_x2apic => id == self.id,
            Destination::Physical(id) => id == u32::from(self.xapic_id),
            Destination::Logical(mda) => logical_match(mda, self.ldr, self.dfr >> 28, is_x2apic),
            Destination::SelfOnly => is_sender,
            Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => !is_sender,
        }
    }

    /// Decodes the ICR into an IPI; `None` (with an ESR error for illegal vectors) when the
    /// message cannot be sent.
    fn send_ipi(&mut self) -> Option<ApicAction> {
        let low = self.icr_low;
        let is_x2apic = self.mode == ApicMode::X2Apic;
        let (dest_field, broadcast) = if is_x2apic {
            (self.icr_high, X2APIC_PHYSICAL_BROADCAST)
        } else {
            (self.icr_high >> XAPIC_ID_SHIFT, XAPIC_PHYSICAL_BROADCAST)
        };
        // ExtINT is reserved in the ICR, as is 011b (which decode refuses).
        let mode =
            DeliveryMode::decode(low >> 8, low as u8).filter(|m| *m != DeliveryMode::ExtInt)?;
        if mode.vector().is_some_and(|v| v < FIRST_LEGAL_VECTOR) {
            self.signal_error(ESR_SEND_ILLEGAL_VECTOR);
            return None;
        }
        let dest = match (low >> ICR_SHORTHAND_SHIFT) & 0b11 {
            0b00 if low & ICR_DEST_LOGICAL != 0 => Destination::Logical(dest_field),
            0b00 if dest_field == broadcast => Destination::AllIncludingSelf,
            0b00 => Destination::Physical(dest_field),
            0b01 => Destination::SelfOnly,
            0b10 => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        Some(ApicAction::Ipi(Ipi {
            dest,
            mode,
            level: low & ICR_LEVEL_ASSERT != 0,
            level_triggered: low & ICR_TRIGGER_LEVEL != 0,
        }))
    }

    fn timer_mode(&self) -> TimerMode {
        TimerMode::from_lvt(self.lvt[LVT_TIMER])
    }

    /// Advances the timer to `now_tsc`, raising its vector if it fired and is unmasked. Returns
    /// whether an interrupt was raised.
    pub fn poll(&mut self, now_tsc: u64) -> bool {
        let lvt = self.lvt[LVT_TIMER];
        self.timer.poll(TimerMode::from_lvt(lvt), now_tsc)
            && lvt & LVT_MASKED == 0
            && self.accept(lvt as u8, false)
    }

    /// When the VMM must call [`Lapic::poll`] next (program the physical timer for it): `None`
    /// when the timer is stopped or masked.
    pub fn next_deadline_tsc(&self) -> Option<u64> {
        if self.mode == ApicMode::Disabled || self.lvt[LVT_TIMER] & LVT_MASKED != 0 {
            return None;
        }
        self.timer.next_expiry(self.timer_mode())
    }
}
