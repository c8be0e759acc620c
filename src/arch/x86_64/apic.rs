//! The local APIC of the running CPU, in xAPIC (MMIO) or x2APIC (MSR) mode, whichever the
//! firmware left enabled (Intel SDM vol.3 ch.11; AMD APM vol.2 ch.16).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::cpu::{self, MSR_APIC_BASE};
use super::idt::SPURIOUS_VECTOR;

const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

// Register offsets (xAPIC MMIO); the x2APIC MSR is 0x800 + offset / 16.
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xB0;
const REG_SVR: u32 = 0xF0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const SVR_ENABLE: u32 = 1 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// ICR delivery modes and shorthands.
const ICR_FIXED: u32 = 0 << 8;
const ICR_NMI: u32 = 4 << 8;
const ICR_INIT: u32 = 5 << 8;
const ICR_STARTUP: u32 = 6 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_ALL_EXCLUDING_SELF: u32 = 3 << 18;

static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static X2APIC: AtomicBool = AtomicBool::new(false);

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on, so the APIC MSR range 0x800-0x8FF exists; reads are harmless.
        unsafe { cpu::rdmsr(0x800 + reg / 16) as u32 }
    } else {
        let addr = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(reg);
        // SAFETY: the xAPIC page is identity-mapped and owned by the hypervisor; register reads
        // have no side effects.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }
}

fn write(reg: u32, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on; the register exists and the value is a valid command.
        unsafe { cpu::wrmsr(0x800 + reg / 16, u64::from(value)) };
    } else {
        let addr = XAPIC_BASE.load(Ordering::Relaxed) + u64::from(reg);
        // SAFETY: the xAPIC page is identity-mapped and owned by the hypervisor.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
    }
}

/// Enables this CPU's local APIC with the spurious vector set.
pub fn init() {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let base = unsafe { cpu::rdmsr(MSR_APIC_BASE) };
    X2APIC.store(base & APIC_BASE_X2APIC != 0, Ordering::Relaxed);
    XAPIC_BASE.store(base & APIC_BASE_ADDR_MASK, Ordering::Relaxed);
    if base & APIC_BASE_ENABLE == 0 {
        // SAFETY: setting the global enable bit only turns on this CPU's own APIC.
        unsafe { cpu::wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE) };
    }
    write(REG_SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
}

/// This CPU's local APIC id.
pub fn id() -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    }
}

/// Signals end of interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

fn send(dest: u32, command: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: in x2APIC mode the ICR is one 64-bit MSR (0x830); the command is valid.
        unsafe { cpu::wrmsr(0x830, (u64::from(dest) << 32) | u64::from(command)) };
    } else {
        write(REG_ICR_HIGH, dest << 24);
        write(REG_ICR_LOW, command);
        while read(REG_ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
            cpu::relax();
        }
    }
}

/// Sends INIT to the CPU with APIC id `dest`.
pub fn send_init(dest: u32) {
    send(dest, ICR_INIT | ICR_LEVEL_ASSERT);
}

/// Sends a STARTUP IPI making `dest` start in real mode at `page * 4096`.
pub fn send_startup(dest: u32, page: u8) {
    send(dest, ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(page));
}

/// Sends a fixed interrupt `vector` to `dest`.
pub fn send_ipi(dest: u32, vector: u8) {
    send(dest, ICR_FIXED | u32::from(vector));
}

/// Sends an NMI to every other CPU.
pub fn nmi_all_others() {
    send(0, ICR_NMI | ICR_LEVEL_ASSERT | ICR_ALL_EXCLUDING_SELF);
}

/// Remaps the legacy 8259 PICs away from the exception vectors (to 0x20–0x2F) and masks every
/// line: the firmware leaves IRQ0 (the PIT) on vector 8, where it would look like a double fault.
pub fn disable_legacy_pic() {
    const PIC1_CMD: u16 = 0x20;
    const PIC1_DATA: u16 = 0x21;
    const PIC2_CMD: u16 = 0xA0;
    const PIC2_DATA: u16 = 0xA1;
    const ICW1_INIT_ICW4: u8 = 0x11;
    const ICW4_8086: u8 = 0x01;
    // SAFETY: the 8259 pair belongs to the hypervisor (no guest reaches real ports); the ICW
    // sequence is the standard initialisation, ending with every line masked.
    unsafe {
        cpu::outb(PIC1_CMD, ICW1_INIT_ICW4);
        cpu::outb(PIC2_CMD, ICW1_INIT_ICW4);
        cpu::outb(PIC1_DATA, 0x20);
        cpu::outb(PIC2_DATA, 0x28);
        cpu::outb(PIC1_DATA, 4);
        cpu::outb(PIC2_DATA, 2);
        cpu::outb(PIC1_DATA, ICW4_8086);
        cpu::outb(PIC2_DATA, ICW4_8086);
        cpu::outb(PIC1_DATA, 0xFF);
        cpu::outb(PIC2_DATA, 0xFF);
    }
}

const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3E0;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TSC_DEADLINE: u32 = 2 << 17;
const DIVIDE_BY_1: u32 = 0b1011;
const MSR_TSC_DEADLINE: u32 = 0x6E0;

/// How this CPU's timer is driven: TSC-deadline mode, or one-shot counts at a measured rate.
static TIMER_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
static TSC_DEADLINE: AtomicBool = AtomicBool::new(false);

/// Prepares the local APIC timer (call on each CPU after [`init`] and TSC calibration): uses
/// TSC-deadline mode where CPUID offers it, otherwise measures the timer's rate against the TSC.
pub fn init_timer(vector: u8) {
    let has_deadline = raw_cpuid::CpuId::new()
        .get_feature_info()
        .is_some_and(|f| f.has_tsc_deadline());
    TSC_DEADLINE.store(has_deadline, Ordering::Relaxed);
    if has_deadline {
        write(REG_LVT_TIMER, LVT_TSC_DEADLINE | u32::from(vector));
        return;
    }
    write(REG_TIMER_DIVIDE, DIVIDE_BY_1);
    write(REG_LVT_TIMER, LVT_MASKED | u32::from(vector));
    if TIMER_TICKS_PER_MS.load(Ordering::Relaxed) == 0 {
        write(REG_TIMER_INITIAL, u32::MAX);
        super::time::delay_us(1000);
        let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
        write(REG_TIMER_INITIAL, 0);
        TIMER_TICKS_PER_MS.store(u64::from(elapsed.max(1)), Ordering::Relaxed);
    }
    write(REG_LVT_TIMER, u32::from(vector));
}

/// Arms this CPU's timer to interrupt at TSC value `deadline` (or soon, if it has passed).
pub fn arm_timer_at(deadline: u64) {
    if TSC_DEADLINE.load(Ordering::Relaxed) {
        // SAFETY: TSC-deadline mode is configured (CPUID said the MSR exists).
        unsafe { cpu::wrmsr(MSR_TSC_DEADLINE, deadline.max(1)) };
        return;
    }
    let now = cpu::rdtsc();
    let tsc_per_ms = super::time::tsc_khz();
    let ticks = deadline
        .saturating_sub(now)
        .saturating_mul(TIMER_TICKS_PER_MS.load(Ordering::Relaxed))
        / tsc_per_ms.max(1);
    write(
        REG_TIMER_INITIAL,
        ticks.clamp(1, u64::from(u32::MAX)) as u32,
    );
}

/// Cancels a pending timer interrupt.
pub fn disarm_timer() {
    if TSC_DEADLINE.load(Ordering::Relaxed) {
        // SAFETY: as in `arm_timer_at`; zero disarms.
        unsafe { cpu::wrmsr(MSR_TSC_DEADLINE, 0) };
    } else {
        write(REG_TIMER_INITIAL, 0);
    }
}

/// Physical address of the xAPIC register page.
pub fn base() -> crate::addr::HostPhysAddr {
    crate::addr::HostPhysAddr::new(XAPIC_BASE.load(Ordering::Relaxed))
}
