//! `echo`: reads lines typed on its COM1 and prints each back as `ECHO <line>`, so a scenario
//! can see which guest typed input reached. It prints `echo: ready (...)` once it listens
//! (again after every restart), and after `lines=N` lines it passes and exits.
//!
//! With `irq=1` it sleeps in HLT and is woken by the UART's receive interrupt (IER bit 0,
//! routed from I/O APIC pin 4), otherwise it polls the line status register.
//!
//! Command line: `lines=N` (default: forever), `irq=1`.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use guest_rt::apic::{self, Mode};
use guest_rt::cpu::{cli, inb, outb, sti_hlt};
use guest_rt::idt::ExceptionFrame;
use guest_rt::ioapic::{IoApic, Polarity, Route, Trigger, DEFAULT_BASE};
use guest_rt::line::LineEcho;
use guest_rt::setup::fail_setup;
use guest_rt::{irq, println, Checks, StartInfo};

guest_rt::guest!("echo", main);

const COM1: u16 = 0x3F8;
/// Register offsets (PC16550D data sheet, table 2).
const REG_DATA: u16 = 0;
const REG_IER: u16 = 1;
const REG_LSR: u16 = 5;
const IER_RX_AVAILABLE: u8 = 1 << 0;
const LSR_DATA_READY: u8 = 1 << 0;
/// COM1's ISA interrupt, I/O APIC pin 4.
const COM1_GSI: u32 = 4;
const UART_VECTOR: u8 = 0x44;
/// Bytes the interrupt handler can hold until the main loop takes them.
const RING: usize = 256;

static RING_BYTES: [AtomicU8; RING] = [const { AtomicU8::new(0) }; RING];
static RING_HEAD: AtomicU32 = AtomicU32::new(0);
static RING_TAIL: AtomicU32 = AtomicU32::new(0);

fn read_uart() -> Option<u8> {
    // SAFETY: COM1's status and data registers belong to this guest's (emulated) UART.
    unsafe { (inb(COM1 + REG_LSR) & LSR_DATA_READY != 0).then(|| inb(COM1 + REG_DATA)) }
}

/// Drains the UART into the ring (a level-triggered line stays up while bytes wait).
fn on_uart_interrupt(_frame: &mut ExceptionFrame) {
    while let Some(b) = read_uart() {
        let head = RING_HEAD.load(Ordering::Relaxed);
        if head.wrapping_sub(RING_TAIL.load(Ordering::Acquire)) as usize >= RING {
            continue; // full: the byte is lost, and the line check will show it
        }
        RING_BYTES[head as usize % RING].store(b, Ordering::Relaxed);
        RING_HEAD.store(head.wrapping_add(1), Ordering::Release);
    }
    apic::eoi();
}

fn from_ring() -> Option<u8> {
    let tail = RING_TAIL.load(Ordering::Relaxed);
    if tail == RING_HEAD.load(Ordering::Acquire) {
        return None;
    }
    let b = RING_BYTES[tail as usize % RING].load(Ordering::Relaxed);
    RING_TAIL.store(tail.wrapping_add(1), Ordering::Release);
    Some(b)
}

fn route_interrupt() {
    if let Err(e) = apic::enable(Mode::XApic) {
        fail_setup(e);
    }
    if let Err(e) = irq::set_handler(UART_VECTOR, on_uart_interrupt) {
        fail_setup(e);
    }
    // SAFETY: the first I/O APIC's window is in the MMIO hole and only this guest programs it.
    let ioapic = unsafe { IoApic::new(DEFAULT_BASE) };
    let route = Route {
        vector: UART_VECTOR,
        trigger: Trigger::Level,
        polarity: Polarity::ActiveHigh,
        dest_apic_id: apic::id() as u8,
        is_masked: false,
    };
    if let Err(e) = ioapic.set_route(COM1_GSI, route) {
        fail_setup(e);
    }
    // SAFETY: enabling COM1's receive interrupt only affects this guest's UART.
    unsafe { outb(COM1 + REG_IER, IER_RX_AVAILABLE) };
}

/// The next typed byte, waiting for it.
fn next_byte(use_irq: bool) -> u8 {
    loop {
        if use_irq {
            cli();
            if let Some(b) = from_ring() {
                return b;
            }
            // STI;HLT: an interrupt between the check and the HLT still wakes it.
            sti_hlt();
        } else if let Some(b) = read_uart() {
            return b;
        } else {
            core::hint::spin_loop();
        }
    }
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let limit = args.get_u64("lines").unwrap_or_else(|e| fail_setup(e));
    let use_irq = args.get("irq") == Some("1");
    if use_irq {
        route_interrupt();
    }
    println!(
        "echo: ready ({})",
        if use_irq { "interrupts" } else { "polling" }
    );
    let mut echo = LineEcho::new("ECHO");
    loop {
        let Some(lines) = echo.push(next_byte(use_irq)) else {
            continue;
        };
        if limit.is_some_and(|l| lines >= l) {
            let mut checks = Checks::new("echo");
            if use_irq {
                let irqs = irq::count(UART_VECTOR);
                checks.expect("irq", irqs > 0, "no UART receive interrupt arrived");
            }
            checks.finish()
        }
    }
}
