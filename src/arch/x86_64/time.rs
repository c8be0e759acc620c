//! Time: the TSC, calibrated once against the PIT, and busy-wait delays built on it.

use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu::{inb, outb, rdtsc, relax};

/// PIT input clock (Hz).
const PIT_HZ: u64 = 1_193_182;
const PIT_CH2_DATA: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
const PORT_B: u16 = 0x61;
/// Calibration window.
const CALIBRATION_MS: u64 = 10;

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// Measures the TSC frequency with PIT channel 2 (gate via port 0x61) and records it.
pub fn calibrate() -> u64 {
    let ticks = PIT_HZ * CALIBRATION_MS / 1000;
    // SAFETY: the PIT and port B (0x61) belong to the hypervisor, which has no other use for
    // channel 2; the speaker output stays off (bit 1 clear).
    let khz = unsafe {
        let b = inb(PORT_B);
        outb(PORT_B, (b & !0x02) | 0x01); // gate on, speaker off
        outb(PIT_COMMAND, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        outb(PIT_CH2_DATA, (ticks & 0xFF) as u8);
        outb(PIT_CH2_DATA, (ticks >> 8) as u8);
        // Restart the count by toggling the gate.
        let b = inb(PORT_B);
        outb(PORT_B, b & !0x01);
        outb(PORT_B, b | 0x01);
        let start = rdtsc();
        while inb(PORT_B) & 0x20 == 0 {
            relax();
        }
        let end = rdtsc();
        outb(PORT_B, b & !0x03);
        (end - start) / CALIBRATION_MS
    };
    let khz = khz.max(1);
    TSC_KHZ.store(khz, Ordering::Relaxed);
    khz
}

/// The TSC frequency in kHz (after [`calibrate`]).
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed).max(1)
}

/// Microseconds since an arbitrary origin.
pub fn now_us() -> u64 {
    rdtsc() / (tsc_khz() / 1000).max(1)
}

/// Busy-waits at least `us` microseconds.
pub fn delay_us(us: u64) {
    let start = rdtsc();
    let ticks = us * tsc_khz() / 1000;
    while rdtsc().wrapping_sub(start) < ticks {
        relax();
    }
}

/// Wall-clock time (Unix seconds) at the moment the TSC read `WALL_TSC`.
static WALL_UNIX: AtomicU64 = AtomicU64::new(0);
static WALL_TSC: AtomicU64 = AtomicU64::new(0);

/// Reads the machine's CMOS clock once (after [`calibrate`]) so guests' RTCs start from the
/// real time; later readings advance with the TSC.
pub fn init_wall_clock() {
    const INDEX: u16 = 0x70;
    const DATA: u16 = 0x71;
    const STATUS_A: u8 = 0x0A;
    const STATUS_B: u8 = 0x0B;
    const UPDATE_IN_PROGRESS: u8 = 0x80;
    const BINARY: u8 = 0x04;
    const HOURS_24: u8 = 0x02;
    const NMI_DISABLE: u8 = 0x80;
    // SAFETY: the CMOS index/data ports belong to the hypervisor; guests never reach them (they
    // get an emulated RTC), and only reads of time registers are made.
    let read = |reg: u8| unsafe {
        outb(INDEX, NMI_DISABLE | reg);
        inb(DATA)
    };
    let deadline = rdtsc() + tsc_khz() * 20;
    while read(STATUS_A) & UPDATE_IN_PROGRESS != 0 && rdtsc() < deadline {
        relax();
    }
    let regs = [0x00u8, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(read);
    let b = read(STATUS_B);
    let bcd = |v: u8| {
        if b & BINARY != 0 {
            v
        } else {
            (v >> 4) * 10 + (v & 0x0F)
        }
    };
    let mut hour = bcd(regs[2] & 0x7F);
    if b & HOURS_24 == 0 && regs[2] & 0x80 != 0 {
        hour = hour % 12 + 12;
    }
    let century = match bcd(regs[6]) {
        c @ 19..=21 => i64::from(c),
        _ => 20,
    };
    let dt = crate::devices::rtc::DateTime {
        year: century * 100 + i64::from(bcd(regs[5])),
        month: bcd(regs[4]).clamp(1, 12),
        day: bcd(regs[3]).clamp(1, 31),
        hour: hour.min(23),
        minute: bcd(regs[1]).min(59),
        second: bcd(regs[0]).min(59),
    };
    WALL_UNIX.store(u64::try_from(dt.to_unix()).unwrap_or(0), Ordering::Relaxed);
    WALL_TSC.store(rdtsc(), Ordering::Relaxed);
    log::info!(target: "time", "wall clock {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second);
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    let elapsed =
        rdtsc().wrapping_sub(WALL_TSC.load(Ordering::Relaxed)) / (tsc_khz() * 1000).max(1);
    WALL_UNIX.load(Ordering::Relaxed) + elapsed
}
