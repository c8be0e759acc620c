//! The monitor console on the machine: reads what is typed on COM1, routes it to the focused
//! guest's UART and virtio-console or to the shell, and carries out shell commands. The logic
//! is in [`crate::monitor`]; this is the glue to the serial port, the clock and the guests.
//!
//! One CPU, [`POLL_CPU`] (the boot CPU), reads the UART, by polling its line status register:
//! from its idle loop with a timer, or, when it runs a guest, after each exit with its timer
//! capped so the guest exits at least every [`POLL_INTERVAL_MS`]. No other CPU ever waits for
//! input, and a guest on another CPU only pays for an input byte meant for it. Polling needs no
//! host I/O APIC driver, and an emulator holds back input while the UART's FIFO is full, so
//! nothing typed is lost; each byte is read from the UART exactly once.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, Once};

use super::guest::{Guest, MonitorRequest, State};
use crate::arch::x86_64::{apic, cpu, percpu, serial, time};
use crate::devices::virtio::console::ConsoleInput;
use crate::manifest::EscapeKey;
use crate::monitor::command::HELP;
use crate::monitor::{
    parse, report, Command, DeviceRow, Edit, Focus, GuestRow, LineEditor, Routed, Router,
    MONITOR_PREFIX,
};

/// The CPU that reads the serial line.
pub const POLL_CPU: usize = 0;
/// How often the UART is looked at: at 115200 baud a 16-byte FIFO fills in about 1.4 ms, and
/// an emulator waits for room anyway; a person notices nothing below tens of milliseconds.
pub const POLL_INTERVAL_MS: u64 = 2;
/// Bytes taken from the UART per poll at most, so one poll stays short.
const MAX_BYTES_PER_POLL: usize = 64;

/// Where one guest's typed input goes.
struct Inputs {
    uart: Arc<ConsoleInput>,
    console: Option<Arc<ConsoleInput>>,
}

struct Console {
    router: Router,
    editor: LineEditor,
}

struct Monitor {
    guests: Arc<Vec<Arc<Guest>>>,
    inputs: Vec<Inputs>,
    console: Mutex<Console>,
    escape: EscapeKey,
    last_poll_tsc: AtomicU64,
}

static MONITOR: Once<Monitor> = Once::new();

fn say(line: &str) {
    crate::println!("{MONITOR_PREFIX}{line}");
}

/// `Ctrl-A` for the notices (the key's byte is 1 for A … 26 for Z).
fn key_name(key: EscapeKey) -> String {
    alloc::format!("Ctrl-{}", char::from(b'@' + key.byte()))
}

/// Starts routing typed input; the first guest has the focus.
pub fn install(guests: Arc<Vec<Arc<Guest>>>, escape: EscapeKey) {
    let inputs = guests
        .iter()
        .map(|g| {
            let dev = g.devices.lock();
            Inputs {
                uart: Arc::clone(&dev.uart_input),
                console: dev.console_input.clone(),
            }
        })
        .collect();
    let router = Router::new(escape.byte(), guests.len());
    let focus = router.focus();
    let m = MONITOR.call_once(|| Monitor {
        guests,
        inputs,
        console: Mutex::new(Console {
            router,
            editor: LineEditor::new(),
        }),
        escape,
        last_poll_tsc: AtomicU64::new(0),
    });
    m.notice(focus);
}

/// Whether this CPU reads the serial line.
pub fn is_poll_cpu() -> bool {
    percpu::index() == POLL_CPU
}

/// When the poll CPU should look at the UART next (a TSC value).
pub fn next_poll_tsc() -> u64 {
    cpu::rdtsc() + time::tsc_khz() * POLL_INTERVAL_MS
}

/// Sleeps until the next interrupt; on the poll CPU, at most one poll interval, then polls.
pub fn wait() {
    if MONITOR.get().is_none() || !is_poll_cpu() {
        cpu::wait_for_interrupt();
        return;
    }
    apic::arm_timer_at(next_poll_tsc());
    cpu::wait_for_interrupt();
    poll();
}

/// Reads what was typed and acts on it. Call on [`POLL_CPU`]; cheap when nothing was typed.
pub fn poll() {
    let Some(m) = MONITOR.get() else { return };
    let now = cpu::rdtsc();
    let half_interval = time::tsc_khz() * POLL_INTERVAL_MS / 2;
    if now.wrapping_sub(m.last_poll_tsc.load(Ordering::Relaxed)) < half_interval {
        return;
    }
    m.last_poll_tsc.store(now, Ordering::Relaxed);
    let Some(mut c) = m.console.try_lock() else {
        return;
    };
    let now_ms = time::now_us() / 1000;
    let mut batch: Option<(usize, Vec<u8>)> = None;
    for _ in 0..MAX_BYTES_PER_POLL {
        let Some(byte) = serial::try_read_byte() else {
            break;
        };
        let routed = c.router.feed(byte, now_ms);
        m.act(&mut c, routed, &mut batch);
    }
    let routed = c.router.tick(now_ms);
    m.act(&mut c, routed, &mut batch);
    m.flush(&mut batch);
}

impl Monitor {
    fn act(&self, c: &mut Console, routed: Routed, batch: &mut Option<(usize, Vec<u8>)>) {
        match routed {
            Routed::Nothing => {}
            Routed::Guest { index, byte } => {
                if batch.as_ref().is_some_and(|(i, _)| *i != index) {
                    self.flush(batch);
                }
                batch
                    .get_or_insert_with(|| (index, Vec::new()))
                    .1
                    .push(byte);
            }
            Routed::Shell(byte) => {
                self.flush(batch);
                self.shell_byte(c, byte);
            }
            Routed::Switched(focus) => {
                self.flush(batch);
                c.editor.clear();
                self.notice(focus);
            }
            Routed::SwitchedThen(focus, byte) => {
                self.act(c, Routed::Switched(focus), batch);
                let again = match focus {
                    Focus::Guest(index) => Routed::Guest { index, byte },
                    Focus::Shell => Routed::Shell(byte),
                };
                self.act(c, again, batch);
            }
        }
    }

    /// Hands the bytes gathered for one guest to its UART and virtio-console (each wakes the
    /// guest's CPU, which takes them after its next exit).
    fn flush(&self, batch: &mut Option<(usize, Vec<u8>)>) {
        let Some((index, bytes)) = batch.take() else {
            return;
        };
        let Some(inputs) = self.inputs.get(index) else {
            return;
        };
        let fitted = inputs.uart.push(&bytes);
        if fitted < bytes.len() {
            log::warn!(
                target: "monitor",
                "{} bytes for {} dropped: its UART input is full",
                bytes.len() - fitted,
                self.name(index)
            );
        }
        if let Some(console) = &inputs.console {
            console.push(&bytes);
        }
    }

    fn name(&self, index: usize) -> &'static str {
        self.guests.get(index).map_or("?", |g| *g.name)
    }

    fn notice(&self, focus: Focus) {
        let key = key_name(self.escape);
        match focus {
            Focus::Guest(i) => say(&alloc::format!(
                "-- focus: {} ({key} to switch)",
                self.name(i)
            )),
            Focus::Shell => say(&alloc::format!(
                "-- focus: monitor shell (type `help`; {key} to switch)"
            )),
        }
        log::debug!(target: "monitor", "focus moved to {focus:?}");
    }

    fn shell_byte(&self, c: &mut Console, byte: u8) {
        match c.editor.feed(byte) {
            Edit::Nothing => {}
            Edit::Echo(bytes) => serial::write_bytes(&bytes),
            Edit::Line(line) => {
                serial::write_bytes(b"\r\n");
                self.run(&line);
            }
        }
    }

    fn guest(&self, name: &str) -> Option<&Arc<Guest>> {
        let found = self.guests.iter().find(|g| *g.name == name);
        if found.is_none() {
            let names: Vec<&str> = self.guests.iter().map(|g| *g.name).collect();
            say(&alloc::format!(
                "error: no guest named `{name}` (guests: {})",
                names.join(", ")
            ));
        }
        found
    }

    fn run(&self, line: &str) {
        log::debug!(target: "monitor", "command `{line}`");
        let command = match parse(line) {
            Ok(c) => c,
            Err(e) => return say(&alloc::format!("error: {e}")),
        };
        match command {
            Command::Empty => {}
            Command::Help => HELP.iter().for_each(|l| say(l)),
            Command::List => {
                let rows: Vec<GuestRow<'_>> = self.guests.iter().map(|g| row(g)).collect();
                report::list(&rows).iter().for_each(|l| say(l));
            }
            Command::Stats(name) => {
                let Some(g) = self.guest(name) else { return };
                for l in stats(g) {
                    say(&l);
                }
            }
            Command::Stop(name) => {
                let Some(g) = self.guest(name) else { return };
                match g.state() {
                    State::Running | State::Starting => {
                        g.request(MonitorRequest::Stop);
                        say(&alloc::format!("stopping {name}"));
                    }
                    _ => say(&alloc::format!("error: {name} is not running")),
                }
            }
            Command::Restart(name) => {
                let Some(g) = self.guest(name) else { return };
                if g.is_restartable() || matches!(g.state(), State::Running | State::Starting) {
                    g.request(MonitorRequest::Restart);
                    say(&alloc::format!("restarting {name} from its images"));
                } else {
                    say(&alloc::format!(
                        "error: {name} cannot be restarted now (it failed to set up or is \
                         already restarting)"
                    ));
                }
            }
            Command::Log(level) => {
                log::set_max_level(level.to_level_filter());
                say(&alloc::format!("log level is now {level}"));
            }
        }
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Starting => "starting",
        State::Running => "running",
        State::Held => "stopped",
        State::Stopped => "exited",
        State::Crashed => "crashed",
    }
}

fn row(g: &Guest) -> GuestRow<'_> {
    let state = g.state();
    GuestRow {
        name: g.name,
        state: state_name(state),
        cpus: &g.cpus,
        memory_bytes: g.ram.size(),
        uptime_ms: (state == State::Running)
            .then(|| cpu::rdtsc().saturating_sub(g.started_tsc()) / time::tsc_khz()),
        restarts: g.restarts.load(Ordering::Acquire),
    }
}

fn stats(g: &Guest) -> Vec<String> {
    let exits = g.stats.lock().clone();
    let (devices, unassigned) = {
        let dev = g.devices.lock();
        let rows: Vec<DeviceRow> = dev
            .virtio
            .devices()
            .filter_map(|d| {
                Some(DeviceRow {
                    slot: d.slot,
                    name: d.name,
                    stats: dev.virtio.stats(d.slot)?,
                })
            })
            .collect();
        (rows, (dev.unassigned_io, dev.unassigned_mmio))
    };
    report::stats(&row(g), &exits, &devices, unassigned)
}
