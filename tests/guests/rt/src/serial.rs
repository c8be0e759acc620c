//! COM1 output (16550 UART at port 0x3F8) and the `print!`/`println!` macros.
//!
//! The writer holds no state and no lock, so the exception and panic handlers can print even
//! when they interrupted a print in progress (interleaved text beats a deadlock).

use core::fmt;

use crate::cpu::{inb, outb};

const COM1: u16 = 0x3F8;
/// Register offsets from the base port (PC16550D data sheet, table 2).
const REG_DATA: u16 = 0;
const REG_IER: u16 = 1;
const REG_FCR: u16 = 2;
const REG_LCR: u16 = 3;
const REG_MCR: u16 = 4;
const REG_LSR: u16 = 5;
const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
const FCR_ENABLE_CLEAR: u8 = 0x07;
const MCR_DTR_RTS_OUT2: u8 = 0x0B;
const LSR_THR_EMPTY: u8 = 0x20;
/// Divisor 1 = 115200 baud.
const DIVISOR_115200: u8 = 1;
/// How long to wait for the transmitter before dropping a byte: an absent or wedged UART (its
/// LSR reading 0) must not hang the guest.
const MAX_TX_POLLS: u32 = 100_000;

/// Programs COM1 for 115200 8N1 with interrupts off.
pub fn init() {
    // SAFETY: these ports belong to COM1, which the guest owns (or which the hypervisor
    // emulates for it); programming it has no effect beyond the UART.
    unsafe {
        outb(COM1 + REG_IER, 0);
        outb(COM1 + REG_LCR, LCR_DLAB);
        outb(COM1 + REG_DATA, DIVISOR_115200);
        outb(COM1 + REG_IER, 0);
        outb(COM1 + REG_LCR, LCR_8N1);
        outb(COM1 + REG_FCR, FCR_ENABLE_CLEAR);
        outb(COM1 + REG_MCR, MCR_DTR_RTS_OUT2);
    }
}

fn write_byte(byte: u8) {
    for _ in 0..MAX_TX_POLLS {
        // SAFETY: reading COM1's line status register has no side effect on other devices.
        if unsafe { inb(COM1 + REG_LSR) } & LSR_THR_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: writing the COM1 data register only transmits the byte.
    unsafe { outb(COM1 + REG_DATA, byte) };
}

/// A handle on COM1 for `core::fmt`.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                write_byte(b'\r');
            }
            write_byte(byte);
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // Serial::write_str never fails.
    let _ = fmt::Write::write_fmt(&mut Serial, args);
}

/// Prints to COM1.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

/// Prints a line to COM1.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
