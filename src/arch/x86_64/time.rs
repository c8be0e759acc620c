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
