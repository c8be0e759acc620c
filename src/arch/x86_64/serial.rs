//! The hypervisor's serial line (COM1) and the `log` backend that writes to it.
//!
//! Every line carries the physical CPU and, while a CPU runs a guest, the guest's name:
//! `[cpu1 web] INFO  virtio-net: link up`. One lock serialises whole lines so output from
//! several CPUs never interleaves mid-line.

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::LSR;
use uart_16550::{BaudRate, Config, Uart16550};

type SerialPort = Uart16550<PioBackend>;

use super::percpu;

/// I/O base of COM1.
const COM1: u16 = 0x3F8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);

/// Initialises COM1 (115200 8N1, FIFOs on).
pub fn init() {
    // SAFETY: COM1 at 0x3F8 is the platform's first UART; the hypervisor owns it and no guest
    // is ever given access to it.
    let Ok(mut port) = (unsafe { SerialPort::new_port(COM1) }) else {
        return;
    };
    let config = Config {
        baud_rate: BaudRate::Baud115200,
        ..Config::DEFAULT
    };
    if port.init(config).is_ok() {
        *PORT.lock() = Some(port);
    }
}

/// A handle that writes while holding the serial lock; one `Line` per output line.
pub struct Line<'a>(spin::MutexGuard<'a, Option<SerialPort>>);

impl Write for Line<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(port) = self.0.as_mut() {
            for chunk in s.split_inclusive('\n') {
                match chunk.strip_suffix('\n') {
                    Some(body) => {
                        port.send_bytes_exact(body.as_bytes());
                        port.send_bytes_exact(b"\r\n");
                    }
                    None => port.send_bytes_exact(chunk.as_bytes()),
                }
            }
        }
        Ok(())
    }
}

/// Locks the serial line for one line of output.
pub fn line() -> Line<'static> {
    Line(PORT.lock())
}

/// Writes raw bytes to the serial line (guest console output).
pub fn write_bytes(bytes: &[u8]) {
    let mut guard = PORT.lock();
    if let Some(port) = guard.as_mut() {
        port.send_bytes_exact(bytes);
    }
}

/// Waits (boundedly) until every byte written has left the UART, so output is not cut off when
/// the machine stops right after (Bochs ends at the magic breakpoint with the FIFO still full).
pub fn flush() {
    const MAX_POLLS: u32 = 1_000_000;
    if let Some(port) = PORT.lock().as_mut() {
        for _ in 0..MAX_POLLS {
            if port.lsr().contains(LSR::TRANSMITTER_EMPTY) {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// Reads one byte if the UART has received one (LSR data-ready, then RBR). Never waits: if
/// another CPU is printing a line, returns `None` and the caller polls again later (the byte
/// stays in the UART's receive FIFO, and an emulator holds further input back meanwhile).
pub fn try_read_byte() -> Option<u8> {
    PORT.try_lock()?
        .as_mut()
        .and_then(|p| p.try_receive_byte().ok())
}

/// Breaks the serial lock after a panic so the panic report can still be printed.
///
/// # Safety
/// Only for the panic path, after every other CPU has been told to stop.
pub unsafe fn force_unlock() {
    // SAFETY: the caller guarantees no other CPU will use the port concurrently any more.
    unsafe { PORT.force_unlock() };
}

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = record.target();
        let short = target.rsplit("::").next().unwrap_or(target);
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let mut out = line();
        let _ = write!(out, "[cpu{}", percpu::index());
        if let Some(name) = percpu::guest_name() {
            let _ = write!(out, " {name}");
        }
        let _ = writeln!(out, "] {level} {short}: {}", record.args());
    }

    fn flush(&self) {}
}

/// Installs the serial logger with `level`.
pub fn init_logger(level: LevelFilter) {
    // Only fails if a logger is already set, which only happens on a second call.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// `println!` for the hypervisor's own unprefixed output (markers, reports).
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut line = $crate::arch::x86_64::serial::line();
        let _ = writeln!(line, $($arg)*);
    }};
}
