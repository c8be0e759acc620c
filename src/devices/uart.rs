//! An emulated 16550A UART for a guest's COM1 (port 0x3F8, IRQ 4).
//!
//! Transmitted bytes are gathered into lines and handed out for the hypervisor's serial line,
//! where they appear with the guest's name in front. Received bytes (when the guest has the
//! console focus) wait in a FIFO. Enough of the register set is modelled for Linux's 8250 driver
//! to detect the chip (scratch register, loopback) and to drive it by interrupts.

#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::vec::Vec;

const IER_RX_AVAILABLE: u8 = 1 << 0;
const IER_THR_EMPTY: u8 = 1 << 1;
const IIR_NONE: u8 = 0x01;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RX_AVAILABLE: u8 = 0x04;
const IIR_FIFO_ENABLED: u8 = 0xC0;
const FCR_ENABLE: u8 = 1 << 0;
const FCR_CLEAR_RX: u8 = 1 << 1;
const LCR_DLAB: u8 = 1 << 7;
const MCR_LOOPBACK: u8 = 1 << 4;
const LSR_DATA_READY: u8 = 1 << 0;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LSR_TX_EMPTY: u8 = 1 << 6;
/// A line longer than this is handed out without waiting for its newline.
const MAX_LINE: usize = 512;
/// Received bytes kept at most (older input is dropped).
const RX_CAPACITY: usize = 4096;

/// One emulated 16550A.
#[derive(Clone, Debug)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    fcr: u8,
    dll: u8,
    dlm: u8,
    thr_empty_pending: bool,
    rx: VecDeque<u8>,
    line: Vec<u8>,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// A UART after reset.
    pub fn new() -> Self {
        Self {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            fcr: 0,
            dll: 1,
            dlm: 0,
            thr_empty_pending: false,
            rx: VecDeque::new(),
            line: Vec::new(),
        }
    }

    /// Guest IN from register `offset` (0–7).
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll,
            0 => self.rx.pop_front().unwrap_or(0),
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => {
                let fifo = if self.fcr & FCR_ENABLE != 0 {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                fifo | if self.ier & IER_RX_AVAILABLE != 0 && !self.rx.is_empty() {
                    IIR_RX_AVAILABLE
                } else if self.ier & IER_THR_EMPTY != 0 && self.thr_empty_pending {
                    // Reading IIR acknowledges the THR-empty interrupt (16550 datasheet).
                    self.thr_empty_pending = false;
                    IIR_THR_EMPTY
                } else {
                    IIR_NONE
                }
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                LSR_THR_EMPTY
                    | LSR_TX_EMPTY
                    | if self.rx.is_empty() {
                        0
                    } else {
                        LSR_DATA_READY
                    }
            }
            6 => {
                if self.mcr & MCR_LOOPBACK != 0 {
                    // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
                    let m = self.mcr;
                    ((m & 1) << 5) | ((m & 2) << 3) | ((m & 4) << 4) | ((m & 8) << 4)
                } else {
                    // CTS, DSR and DCD asserted: a terminal is attached.
                    0xB0
                }
            }
            7 => self.scr,
            _ => 0xFF,
        }
    }

    /// Guest OUT to register `offset`; returns a complete line of output when one is ready.
    pub fn write(&mut self, offset: u16, value: u8) -> Option<Vec<u8>> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll = value,
            0 => {
                self.thr_empty_pending = true;
                if self.mcr & MCR_LOOPBACK != 0 {
                    self.push_rx(value);
                    return None;
                }
                return self.transmit(value);
            }
            1 if dlab => self.dlm = value,
            1 => {
                // Enabling the THR-empty interrupt with an empty THR raises it at once.
                if value & IER_THR_EMPTY != 0 && self.ier & IER_THR_EMPTY == 0 {
                    self.thr_empty_pending = true;
                }
                self.ier = value & 0x0F;
            }
            2 => {
                if value & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
                self.fcr = value;
            }
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1F,
            7 => self.scr = value,
            _ => {}
        }
        None
    }

    fn transmit(&mut self, byte: u8) -> Option<Vec<u8>> {
        match byte {
            b'\r' => None,
            b'\n' => Some(core::mem::take(&mut self.line)),
            _ => {
                self.line.push(byte);
                (self.line.len() >= MAX_LINE).then(|| core::mem::take(&mut self.line))
            }
        }
    }

    /// Output not yet ended by a newline (flushed when the guest stops).
    pub fn take_partial_line(&mut self) -> Option<Vec<u8>> {
        (!self.line.is_empty()).then(|| core::mem::take(&mut self.line))
    }

    /// Queues a byte typed on the console for the guest.
    pub fn push_rx(&mut self, byte: u8) {
        if self.rx.len() >= RX_CAPACITY {
            self.rx.pop_front();
        }
        self.rx.push_back(byte);
    }

    /// How many received bytes still fit before old input would be dropped.
    pub fn rx_room(&self) -> usize {
        RX_CAPACITY.saturating_sub(self.rx.len())
    }

    /// Whether the UART's interrupt line is asserted.
    pub fn irq_pending(&self) -> bool {
        (self.ier & IER_RX_AVAILABLE != 0 && !self.rx.is_empty())
            || (self.ier & IER_THR_EMPTY != 0 && self.thr_empty_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines() {
        let mut u = Uart::new();
        assert_eq!(u.write(0, b'h'), None);
        assert_eq!(u.write(0, b'i'), None);
        assert_eq!(u.write(0, b'\r'), None);
        assert_eq!(u.write(0, b'\n'), Some(b"hi".to_vec()));
        u.write(0, b'x');
        assert_eq!(u.take_partial_line(), Some(b"x".to_vec()));
        for _ in 0..MAX_LINE - 1 {
            assert_eq!(u.write(0, b'a'), None);
        }
        assert_eq!(u.write(0, b'a').map(|l| l.len()), Some(MAX_LINE));
    }

    #[test]
    fn linux_style_detection_works() {
        let mut u = Uart::new();
        u.write(7, 0xA5);
        assert_eq!(u.read(7), 0xA5, "scratch register");
        u.write(4, MCR_LOOPBACK | 0x0A);
        assert_eq!(u.read(6) & 0xF0, 0x90, "loopback status");
        u.write(0, b'z');
        assert_eq!(u.read(5) & LSR_DATA_READY, 1);
        assert_eq!(u.read(0), b'z');
        u.write(3, LCR_DLAB);
        u.write(0, 0x01);
        u.write(1, 0x00);
        assert_eq!((u.read(0), u.read(1)), (1, 0), "divisor latch");
    }

    #[test]
    fn interrupts_follow_ier() {
        let mut u = Uart::new();
        assert!(!u.irq_pending());
        u.write(1, IER_THR_EMPTY);
        assert!(u.irq_pending());
        assert_eq!(u.read(2) & 0x0F, IIR_THR_EMPTY);
        assert!(!u.irq_pending(), "IIR read acknowledges THRE");
        u.write(1, IER_RX_AVAILABLE);
        u.push_rx(b'k');
        assert!(u.irq_pending());
        assert_eq!(u.read(2) & 0x0F, IIR_RX_AVAILABLE);
        assert_eq!(u.read(0), b'k');
        assert!(!u.irq_pending());
    }
}
