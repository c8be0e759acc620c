//! Measuring the TSC rate against the 8254 PIT, for machines whose CPUID does not tell it
//! (QEMU's TCG): channel 2 counts down once in mode 0 while the TSC runs, and its OUT pin,
//! readable in port 0x61 bit 5, says when the count reached zero (8254 datasheet, mode 0).
//!
//! Bulkhead has no PIT; its CPUID gives the TSC rate, and a missing PIT is detected here
//! (OUT2 already high, or never going high) rather than trusted.

use crate::cpu::{inb, outb, rdtsc};

/// The PIT's input clock (Hz).
pub const PIT_HZ: u64 = 1_193_182;
const PORT_CHANNEL2: u16 = 0x42;
const PORT_COMMAND: u16 = 0x43;
/// NMI status and control: bit 0 gates channel 2, bit 1 drives the speaker, bit 5 is OUT2.
const PORT_CONTROL: u16 = 0x61;
const CONTROL_GATE2: u8 = 1 << 0;
const CONTROL_SPEAKER: u8 = 1 << 1;
const CONTROL_OUT2: u8 = 1 << 5;
/// Channel 2, lobyte/hibyte access, mode 0 (interrupt on terminal count), binary.
const COMMAND_CH2_MODE0: u8 = 0b1011_0000;
/// Bound on polls of port 0x61, so a PIT that never counts cannot hang the guest (each port
/// read exits to the hypervisor or emulator and takes well over 100 ns).
const MAX_POLLS_PER_MS: u64 = 100_000;
/// TSC rates outside this range mean the measurement went wrong.
const PLAUSIBLE_HZ: core::ops::RangeInclusive<u64> = 10_000_000..=100_000_000_000;

/// The TSC rate in Hz, measured over `ms` milliseconds (at most 50, the PIT's 16-bit reach),
/// or `None` when there is no PIT that counts.
pub fn calibrate_tsc_hz(ms: u64) -> Option<u64> {
    let ms = ms.clamp(1, 50);
    let count = u16::try_from(PIT_HZ * ms / 1000).ok()?;
    // SAFETY: ports 0x42, 0x43 and 0x61 drive PIT channel 2 and the speaker gate; the speaker
    // stays off, and no interrupt comes from channel 2.
    unsafe {
        let control = inb(PORT_CONTROL);
        outb(PORT_CONTROL, (control & !CONTROL_SPEAKER) | CONTROL_GATE2);
        outb(PORT_COMMAND, COMMAND_CH2_MODE0);
        outb(PORT_CHANNEL2, count as u8);
        outb(PORT_CHANNEL2, (count >> 8) as u8);
        // Mode 0 drives OUT low once the count is written; high already means no PIT.
        if inb(PORT_CONTROL) & CONTROL_OUT2 != 0 {
            return None;
        }
        let start = rdtsc();
        let mut polls: u64 = 0;
        while inb(PORT_CONTROL) & CONTROL_OUT2 == 0 {
            polls += 1;
            if polls > ms * MAX_POLLS_PER_MS {
                return None;
            }
        }
        let hz = rdtsc().wrapping_sub(start) * 1000 / ms;
        outb(PORT_CONTROL, control & !(CONTROL_SPEAKER | CONTROL_GATE2));
        PLAUSIBLE_HZ.contains(&hz).then_some(hz)
    }
}
