//! The local APIC of the guest's CPU, in xAPIC mode (registers in the MMIO page that
//! IA32_APIC_BASE names, normally 0xFEE0_0000) or x2APIC mode (MSRs 0x800..0x8FF): enabling
//! it, EOI, IPIs and the timer's one-shot, periodic and TSC-deadline modes (Intel SDM vol.3
//! ch.11).
//!
//! The mode chosen by [`enable`] is remembered globally, so handlers can call [`eoi`] without a
//! handle. Before [`enable`], register reads return 0 and writes are dropped.

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::cpu::{cpuid, hypervisor_leaf, outb, rdmsr, wrmsr, HV_LEAF_TIMING, LEAF1_ECX_X2APIC};
use crate::mmio;

/// IA32_APIC_BASE (SDM vol.3 §11.4.4) and its bits.
pub const MSR_APIC_BASE: u32 = 0x1B;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// IA32_TSC_DEADLINE (SDM vol.3 §11.5.4.1).
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// x2APIC register `offset` is MSR `0x800 + offset / 16` (SDM vol.3 §11.12.1.2).
const MSR_X2APIC_FIRST: u32 = 0x800;
/// The 64-bit x2APIC ICR.
const MSR_X2APIC_ICR: u32 = 0x830;
/// The xAPIC page's usual address (and Bulkhead's `LAPIC_BASE`).
pub const DEFAULT_XAPIC_BASE: u64 = 0xFEE0_0000;
/// CPUID leaf 1 ECX bit 24: TSC-deadline timer mode.
pub const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Register offsets in the xAPIC page (SDM vol.3 table 11-1).
pub mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const EOI: u32 = 0xB0;
    pub const SVR: u32 = 0xF0;
    pub const ISR0: u32 = 0x100;
    pub const IRR0: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3E0;
    /// x2APIC only.
    pub const SELF_IPI: u32 = 0x3F0;
}

/// The vector the APIC uses for spurious interrupts; it needs no EOI.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
const SVR_APIC_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer mode field, bits 18:17 (SDM vol.3 figure 11-8).
const LVT_TIMER_PERIODIC: u32 = 0b01 << 17;
const LVT_TIMER_TSC_DEADLINE: u32 = 0b10 << 17;
/// Divide configuration 1011b: divide by 1 (SDM vol.3 figure 11-10).
const DIVIDE_BY_1: u32 = 0b1011;
/// ICR fields (SDM vol.3 §11.6.1): delivery status, level assert, destination shorthand.
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_SHORTHAND_SELF: u32 = 0b01 << 18;
const ICR_SHORTHAND_ALL: u32 = 0b10 << 18;
const ICR_SHORTHAND_ALL_BUT_SELF: u32 = 0b11 << 18;
/// Polls of the xAPIC delivery-status bit before giving up on an IPI.
const ICR_POLLS: u32 = 100_000;
/// Legacy 8259 data ports: writing 0xFF masks every line.
const PIC1_DATA: u16 = 0x21;
const PIC2_DATA: u16 = 0xA1;

/// How the local APIC is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    XApic,
    X2Apic,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XApic => "xapic",
            Self::X2Apic => "x2apic",
        })
    }
}

/// Why an APIC operation could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID.1:ECX[21] is clear.
    NoX2Apic,
    /// CPUID.1:ECX[24] is clear.
    NoTscDeadline,
    /// IA32_APIC_BASE did not take the mode that was written.
    ModeNotTaken { wrote: u64, reads: u64 },
    /// The xAPIC ICR still showed "send pending" after many polls.
    IcrBusy,
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoX2Apic => f.write_str("x2APIC not offered (CPUID.1:ECX[21] clear)"),
            Self::NoTscDeadline => {
                f.write_str("TSC-deadline timer not offered (CPUID.1:ECX[24] clear)")
            }
            Self::ModeNotTaken { wrote, reads } => {
                write!(f, "IA32_APIC_BASE written {wrote:#x} but reads {reads:#x}")
            }
            Self::IcrBusy => f.write_str("xAPIC ICR delivery status stayed pending"),
        }
    }
}

/// Where a fixed IPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The shorthand "self".
    SelfOnly,
    /// One APIC ID, physical destination mode.
    Physical(u32),
    AllIncludingSelf,
    AllExcludingSelf,
}

const MODE_OFF: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MODE_OFF);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(DEFAULT_XAPIC_BASE);

/// Whether CPUID offers x2APIC mode.
pub fn has_x2apic() -> bool {
    cpuid(1, 0).ecx & LEAF1_ECX_X2APIC != 0
}

/// Whether CPUID offers the TSC-deadline timer mode.
pub fn has_tsc_deadline() -> bool {
    cpuid(1, 0).ecx & LEAF1_ECX_TSC_DEADLINE != 0
}

/// The timer's input frequency in Hz, when the hypervisor leaf 0x4000_0010 tells it (EBX, in
/// kHz: the VMware/KVM convention Bulkhead follows). QEMU and KVM clock it at 1 GHz but do not
/// say so.
pub fn timer_hz() -> Option<u64> {
    let (max_leaf, _) = hypervisor_leaf()?;
    if max_leaf < HV_LEAF_TIMING {
        return None;
    }
    let khz = cpuid(HV_LEAF_TIMING, 0).ebx;
    (khz != 0).then(|| u64::from(khz) * 1000)
}

/// Masks every line of the two legacy 8259 PICs, so that a timer a firmware left running (PIT
/// IRQ 0 through LINT0 as ExtINT) cannot arrive on an exception vector once interrupts are on.
pub fn mask_legacy_pic() {
    // SAFETY: writing the 8259 interrupt mask registers only masks their lines; where there is
    // no PIC (Bulkhead) the ports are unassigned and the writes are dropped.
    unsafe {
        outb(PIC1_DATA, 0xFF);
        outb(PIC2_DATA, 0xFF);
    }
}

/// IA32_APIC_BASE.
pub fn base_msr() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC, which x86_64 implies.
    unsafe { rdmsr(MSR_APIC_BASE) }
}

fn write_base_msr(value: u64) -> Result<(), ApicError> {
    // SAFETY: the values written keep the APIC base address and only change the mode along a
    // transition the SDM allows (vol.3 §11.12.5, figure 11-27); this runtime touches the APIC
    // only through this module, which follows the mode recorded below.
    unsafe { wrmsr(MSR_APIC_BASE, value) };
    let reads = base_msr();
    let mode_bits = APIC_BASE_ENABLE | APIC_BASE_X2APIC;
    if reads & mode_bits != value & mode_bits {
        return Err(ApicError::ModeNotTaken {
            wrote: value,
            reads,
        });
    }
    Ok(())
}

/// The mode [`enable`] put the APIC in, if any.
pub fn mode() -> Option<Mode> {
    match MODE.load(Ordering::SeqCst) {
        MODE_XAPIC => Some(Mode::XApic),
        MODE_X2APIC => Some(Mode::X2Apic),
        _ => None,
    }
}

/// Puts the local APIC in `mode` and software-enables it: spurious vector
/// [`SPURIOUS_VECTOR`], TPR 0 (accept every vector), LINT0, LINT1, error and timer LVTs
/// masked, legacy PIC masked. Going from x2APIC back to xAPIC passes through "disabled", the
/// only transition the SDM allows, which resets the APIC's registers.
pub fn enable(mode: Mode) -> Result<(), ApicError> {
    if mode == Mode::X2Apic && !has_x2apic() {
        return Err(ApicError::NoX2Apic);
    }
    let base = base_msr();
    match mode {
        Mode::XApic => {
            if base & APIC_BASE_X2APIC != 0 {
                write_base_msr(base & !(APIC_BASE_ENABLE | APIC_BASE_X2APIC))?;
            }
            if base & APIC_BASE_ENABLE == 0 || base & APIC_BASE_X2APIC != 0 {
                write_base_msr((base & !APIC_BASE_X2APIC) | APIC_BASE_ENABLE)?;
            }
            XAPIC_BASE.store(base & APIC_BASE_ADDR_MASK, Ordering::SeqCst);
            MODE.store(MODE_XAPIC, Ordering::SeqCst);
        }
        Mode::X2Apic => {
            write_base_msr(base | APIC_BASE_ENABLE | APIC_BASE_X2APIC)?;
            MODE.store(MODE_X2APIC, Ordering::SeqCst);
        }
    }
    mask_legacy_pic();
    write(reg::TPR, 0);
    for lvt in [
        reg::LVT_LINT0,
        reg::LVT_LINT1,
        reg::LVT_ERROR,
        reg::LVT_TIMER,
    ] {
        write(lvt, LVT_MASKED);
    }
    write(reg::TIMER_INITIAL, 0);
    write(reg::SVR, SVR_APIC_ENABLE | u32::from(SPURIOUS_VECTOR));
    error_status();
    Ok(())
}

/// Reads register `offset` (an xAPIC page offset; in x2APIC mode the matching MSR).
pub fn read(offset: u32) -> u32 {
    match mode() {
        // SAFETY: the xAPIC page is below 4 GiB in the boot stub's uncacheable MMIO hole;
        // reading registers has no side effects (SDM vol.3 §11.4.1).
        Some(Mode::XApic) => unsafe {
            mmio::read32(XAPIC_BASE.load(Ordering::SeqCst) + u64::from(offset))
        },
        // SAFETY: in x2APIC mode the MSRs 0x800.. are the APIC's registers; reading a
        // write-only one raises #GP, which the caller's choice of `offset` rules out.
        Some(Mode::X2Apic) => unsafe { rdmsr(MSR_X2APIC_FIRST + offset / 16) as u32 },
        None => 0,
    }
}

/// Writes register `offset`.
pub fn write(offset: u32, value: u32) {
    match mode() {
        // SAFETY: as for `read`; the caller chooses what the write does to this CPU's APIC.
        Some(Mode::XApic) => unsafe {
            mmio::write32(XAPIC_BASE.load(Ordering::SeqCst) + u64::from(offset), value)
        },
        // SAFETY: as above, through the x2APIC MSR of the same register.
        Some(Mode::X2Apic) => unsafe { wrmsr(MSR_X2APIC_FIRST + offset / 16, u64::from(value)) },
        None => {}
    }
}

/// Ends the interrupt in service (the EOI register takes 0; x2APIC raises #GP otherwise).
pub fn eoi() {
    write(reg::EOI, 0);
}

/// This CPU's APIC ID: bits 31:24 of the ID register in xAPIC mode, all 32 in x2APIC mode.
pub fn id() -> u32 {
    match mode() {
        Some(Mode::X2Apic) => read(reg::ID),
        _ => read(reg::ID) >> 24,
    }
}

/// The error status register after latching it (a write before the read; SDM §11.5.3).
pub fn error_status() -> u32 {
    write(reg::ESR, 0);
    read(reg::ESR)
}

/// Whether `vector`'s bit is set in the in-service (`ISR0`) or request (`IRR0`) bank.
pub fn bank_bit(bank: u32, vector: u8) -> bool {
    let word = read(bank + u32::from(vector / 32) * 0x10);
    word & (1 << (vector % 32)) != 0
}

/// Sends a fixed-mode IPI with `vector` through the ICR.
pub fn send_fixed_ipi(vector: u8, dest: Destination) -> Result<(), ApicError> {
    let (shorthand, dest_id) = match dest {
        Destination::SelfOnly => (ICR_SHORTHAND_SELF, 0),
        Destination::Physical(id) => (0, id),
        Destination::AllIncludingSelf => (ICR_SHORTHAND_ALL, 0),
        Destination::AllExcludingSelf => (ICR_SHORTHAND_ALL_BUT_SELF, 0),
    };
    // SAFETY: fixed delivery only raises `vector`, which the IDT handles like any interrupt.
    unsafe { send_icr(ICR_LEVEL_ASSERT | shorthand | u32::from(vector), dest_id) }
}

/// Writes the ICR with `low` (vector, delivery mode, destination mode, shorthand) and
/// destination `dest`, in whichever mode the APIC is in: one 64-bit MSR write in x2APIC mode
/// (SDM §11.12.9), ICR high then low in xAPIC mode (`dest` is the 8-bit ID, SDM §11.6.1),
/// waiting for the delivery status to clear. A disabled APIC sends nothing.
///
/// # Safety
/// The IPI must not reach this CPU with a delivery mode that takes it away from the running
/// code (INIT, start-up, SMI), nor an NMI that the caller has not prepared for.
pub unsafe fn send_icr(low: u32, dest: u32) -> Result<(), ApicError> {
    match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: one write of the x2APIC ICR sends the IPI; the caller vouches for where
            // it goes.
            unsafe { wrmsr(MSR_X2APIC_ICR, (u64::from(dest) << 32) | u64::from(low)) };
            Ok(())
        }
        Some(Mode::XApic) => {
            write(reg::ICR_HIGH, dest << 24);
            write(reg::ICR_LOW, low);
            for _ in 0..ICR_POLLS {
                if read(reg::ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
                    return Ok(());
                }
                core::hint::spin_loop();
            }
            Err(ApicError::IcrBusy)
        }
        None => Ok(()),
    }
}

/// Sends `vector` to this CPU through the x2APIC SELF IPI register (SDM §11.12.11); in xAPIC
/// mode, which has no such register, through the ICR's "self" shorthand.
pub fn self_ipi(vector: u8) -> Result<(), ApicError> {
    match mode() {
        Some(Mode::X2Apic) => {
            write(reg::SELF_IPI, u32::from(vector));
            Ok(())
        }
        _ => send_fixed_ipi(vector, Destination::SelfOnly),
    }
}

/// Starts the timer counting down once from `initial_count` (at the timer's input frequency,
/// divided by 1), then raising `vector`.
pub fn timer_oneshot(vector: u8, initial_count: u32) {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, u32::from(vector));
    write(reg::TIMER_INITIAL, initial_count);
}

/// Starts the timer raising `vector` every `initial_count` input ticks (divided by 1).
pub fn timer_periodic(vector: u8, initial_count: u32) {
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, LVT_TIMER_PERIODIC | u32::from(vector));
    write(reg::TIMER_INITIAL, initial_count);
}

/// Arms the TSC-deadline timer: `vector` when the TSC reaches `deadline_tsc`.
pub fn timer_tsc_deadline(vector: u8, deadline_tsc: u64) -> Result<(), ApicError> {
    if !has_tsc_deadline() {
        return Err(ApicError::NoTscDeadline);
    }
    write(reg::LVT_TIMER, LVT_TIMER_TSC_DEADLINE | u32::from(vector));
    // SDM §11.5.4.1: without a fence, the xAPIC LVT write (a memory write) may be ordered after
    // the WRMSR, which would arm the deadline in the old mode.
    // SAFETY: MFENCE only orders memory accesses.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
    // SAFETY: IA32_TSC_DEADLINE exists (CPUID checked above); writing it arms the timer.
    unsafe { wrmsr(MSR_TSC_DEADLINE, deadline_tsc) };
    Ok(())
}

/// IA32_TSC_DEADLINE (0 once it fired or was disarmed).
pub fn tsc_deadline() -> Option<u64> {
    // SAFETY: the MSR exists when CPUID offers the mode.
    has_tsc_deadline().then(|| unsafe { rdmsr(MSR_TSC_DEADLINE) })
}

/// Stops the timer in whichever mode: masks its LVT, zeroes the initial count and disarms the
/// deadline.
pub fn timer_stop() {
    let lvt = read(reg::LVT_TIMER);
    if lvt & LVT_TIMER_TSC_DEADLINE != 0 && has_tsc_deadline() {
        // SAFETY: as for `tsc_deadline`; 0 disarms the timer.
        unsafe { wrmsr(MSR_TSC_DEADLINE, 0) };
    }
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::TIMER_INITIAL, 0);
}

/// The timer's current count (0 when stopped or expired in one-shot mode).
pub fn timer_current_count() -> u32 {
    read(reg::TIMER_CURRENT)
}

/// Bound on timer reads while measuring, so a timer that does not count cannot hang the guest
/// (each read exits to the hypervisor or emulator and takes well over 100 ns).
const MAX_CALIBRATION_READS_PER_MS: u64 = 100_000;

/// Measures the TSC rate against the timer, whose input clock is taken to run at `timer_hz`,
/// over about `ms` milliseconds; `None` when the timer does not count. Enables the xAPIC if no
/// mode was chosen yet. The timer's LVT stays masked, so no interrupt comes of it.
pub fn calibrate_tsc_hz(timer_hz: u64, ms: u64) -> Option<u64> {
    if mode().is_none() {
        enable(Mode::XApic).ok()?;
    }
    let span = timer_hz / 1000 * ms.max(1);
    write(reg::TIMER_DIVIDE, DIVIDE_BY_1);
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::TIMER_INITIAL, u32::MAX);
    let (start_count, start_tsc) = (timer_current_count(), crate::cpu::rdtsc());
    let mut elapsed = 0;
    for _ in 0..ms.max(1) * MAX_CALIBRATION_READS_PER_MS {
        elapsed = u64::from(start_count.wrapping_sub(timer_current_count()));
        if elapsed >= span {
            break;
        }
    }
    let ticks = crate::cpu::rdtsc().wrapping_sub(start_tsc);
    write(reg::TIMER_INITIAL, 0);
    if elapsed < span {
        return None;
    }
    Some((u128::from(ticks) * u128::from(timer_hz) / u128::from(elapsed)) as u64)
}
