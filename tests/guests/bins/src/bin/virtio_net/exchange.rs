//! The exchange between two guests: a HELLO handshake (each repeats HELLO until it hears the
//! peer, then says so in its HELLOs, so neither sends data before the other is listening), K
//! unicast and K broadcast DATA frames each way with every received frame checked, then DONE.
//! Every phase ends by deadline, so a missing peer fails the checks instead of hanging, and
//! every HLT is bounded by a back-stop timer.

use guest_rt::apic;
use guest_rt::cpu::{hlt, rdtsc};

use crate::frame::{self, Frame, FrameError, Kind, Mac, BROADCAST, FLAG_SET};
use crate::port::{Port, PortError};

/// Highest `count=` (the size of the received-sequence bitmaps).
pub(crate) const MAX_COUNT: u32 = 256;
const HELLO_INTERVAL_MS: u64 = 20;
const DONE_INTERVAL_MS: u64 = 50;
/// How long to wait for the peer's DONE after having everything (not a check of ours).
const DONE_WAIT_MS: u64 = 2_000;

/// What the exchange is told.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub own: Mac,
    pub peer: Mac,
    pub role: u8,
    pub peer_role: u8,
    pub count: u32,
    pub tsc_hz: u64,
    /// Handshake and data must be done by then.
    pub timeout_ms: u64,
    /// With interrupts on: APIC timer count of the back-stop that bounds each HLT while
    /// waiting (0: poll instead of halting).
    pub idle_timer_count: u32,
}

/// The vector of the idle back-stop timer (only counted: the runtime EOIs it).
pub(crate) const IDLE_VECTOR: u8 = 0x52;

/// Waits a little for something to arrive: with interrupts on, HLT until the device's
/// interrupt (or the back-stop timer) wakes the CPU, as an interrupt-driven driver does;
/// otherwise a spin-loop hint, as a polling driver does.
pub(crate) fn idle(cfg: &Config) {
    if cfg.idle_timer_count == 0 {
        core::hint::spin_loop();
        return;
    }
    apic::timer_oneshot(IDLE_VECTOR, cfg.idle_timer_count);
    hlt();
}

impl Config {
    fn ms_to_tsc(&self, ms: u64) -> u64 {
        self.tsc_hz / 1000 * ms
    }
}

/// A set of sequence numbers below [`MAX_COUNT`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Seen([u64; MAX_COUNT as usize / 64]);

impl Seen {
    /// Records `seq`; false when it was already there (or out of range).
    fn insert(&mut self, seq: u32) -> bool {
        let Some(word) = self.0.get_mut(seq as usize / 64) else {
            return false;
        };
        let bit = 1u64 << (seq % 64);
        let is_new = *word & bit == 0;
        *word |= bit;
        is_new
    }

    pub(crate) fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

/// Everything received, sorted by what it says about the network.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    pub unicast: Seen,
    pub broadcast: Seen,
    pub duplicates: u64,
    pub malformed: u64,
    pub first_malformed: Option<FrameError>,
    /// DATA whose destination does not match its broadcast flag or our address.
    pub misaddressed: u64,
    /// Frames from the peer with another count or role than expected.
    pub mismatched: u64,
    /// Frames carrying our own source address: a switch must never send them back.
    pub echoes: u64,
    /// Test frames from addresses other than the peer's.
    pub foreign: u64,
    /// Frames without the test EtherType.
    pub other: u64,
    pub heard_peer: bool,
    pub peer_heard_us: bool,
    pub peer_done: bool,
    /// The peer's last HELLO said it has not heard us yet.
    hello_to_answer: bool,
    /// Past our own handshake: answer such HELLOs (before it, our periodic HELLO does).
    is_answering: bool,
}

impl Tally {
    fn record(&mut self, cfg: &Config, bytes: &[u8]) {
        if !frame::is_test_frame(bytes) {
            self.other += 1;
            return;
        }
        let f = match frame::parse(bytes) {
            Ok(f) => f,
            Err(err) => {
                self.malformed += 1;
                self.first_malformed.get_or_insert(err);
                return;
            }
        };
        if f.src == cfg.own {
            self.echoes += 1;
            return;
        }
        if f.src != cfg.peer {
            self.foreign += 1;
            return;
        }
        if f.role != cfg.peer_role || f.count != cfg.count {
            self.mismatched += 1;
            return;
        }
        self.heard_peer = true;
        match f.kind {
            Kind::Hello => {
                let has_heard_us = f.flags & FLAG_SET != 0;
                self.peer_heard_us |= has_heard_us;
                // Answering only "not heard you yet" HELLOs keeps two guests from
                // answering each other's answers forever.
                self.hello_to_answer = !has_heard_us && self.is_answering;
            }
            Kind::Done => {
                self.peer_heard_us = true;
                self.peer_done = true;
            }
            Kind::Data => {
                self.peer_heard_us = true;
                let is_broadcast = f.flags & FLAG_SET != 0;
                let expected_dst = if is_broadcast { BROADCAST } else { cfg.own };
                if f.dst != expected_dst || f.seq >= cfg.count {
                    self.misaddressed += 1;
                    return;
                }
                let seen = if is_broadcast {
                    &mut self.broadcast
                } else {
                    &mut self.unicast
                };
                if !seen.insert(f.seq) {
                    self.duplicates += 1;
                }
            }
        }
    }

    fn has_all(&self, cfg: &Config) -> bool {
        self.unicast.len() == cfg.count && self.broadcast.len() == cfg.count
    }
}

/// How far the exchange got.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub is_handshake_done: bool,
    pub data_sent: u32,
}

fn send(
    port: &mut Port,
    cfg: &Config,
    kind: Kind,
    dst: Mac,
    flags: u8,
    seq: u32,
) -> Result<(), PortError> {
    let f = Frame {
        dst,
        src: cfg.own,
        kind,
        flags,
        role: cfg.role,
        seq,
        count: cfg.count,
    };
    port.send(|buf| frame::build(&f, buf))
}

fn poll(port: &mut Port, cfg: &Config, tally: &mut Tally) -> Result<(), PortError> {
    port.poll(|bytes| tally.record(cfg, bytes))?;
    if tally.hello_to_answer {
        tally.hello_to_answer = false;
        let flags = if tally.heard_peer { FLAG_SET } else { 0 };
        send(port, cfg, Kind::Hello, cfg.peer, flags, 0)?;
    }
    Ok(())
}

/// Runs the whole exchange with the peer.
pub(crate) fn run(port: &mut Port, cfg: &Config, tally: &mut Tally) -> Result<Outcome, PortError> {
    let mut outcome = Outcome::default();
    let start = rdtsc();
    let deadline = cfg.ms_to_tsc(cfg.timeout_ms);
    let is_late = || rdtsc().wrapping_sub(start) > deadline;
    let hello_every = cfg.ms_to_tsc(HELLO_INTERVAL_MS);
    let mut last_hello: Option<u64> = None;
    while !tally.peer_heard_us {
        if is_late() {
            return Ok(outcome);
        }
        if last_hello.is_none_or(|t| rdtsc().wrapping_sub(t) > hello_every) {
            let flags = if tally.heard_peer { FLAG_SET } else { 0 };
            send(port, cfg, Kind::Hello, cfg.peer, flags, 0)?;
            last_hello = Some(rdtsc());
        }
        poll(port, cfg, tally)?;
        idle(cfg);
    }
    outcome.is_handshake_done = true;
    tally.is_answering = true;
    // The peer may be waiting to hear that we heard it.
    send(port, cfg, Kind::Hello, cfg.peer, FLAG_SET, 0)?;
    for seq in 0..cfg.count {
        send(port, cfg, Kind::Data, cfg.peer, 0, seq)?;
        poll(port, cfg, tally)?;
        send(port, cfg, Kind::Data, BROADCAST, FLAG_SET, seq)?;
        poll(port, cfg, tally)?;
        outcome.data_sent += 2;
    }
    while !tally.has_all(cfg) && !is_late() {
        poll(port, cfg, tally)?;
        if !tally.has_all(cfg) {
            idle(cfg);
        }
    }
    if tally.has_all(cfg) {
        let done_start = rdtsc();
        let mut last_done: Option<u64> = None;
        while !tally.peer_done && rdtsc().wrapping_sub(done_start) < cfg.ms_to_tsc(DONE_WAIT_MS) {
            if last_done.is_none_or(|t| rdtsc().wrapping_sub(t) > cfg.ms_to_tsc(DONE_INTERVAL_MS)) {
                send(port, cfg, Kind::Done, cfg.peer, 0, 0)?;
                last_done = Some(rdtsc());
            }
            poll(port, cfg, tally)?;
            if !tally.peer_done {
                idle(cfg);
            }
        }
        // One last DONE, in case the peer's arrived before it had heard ours.
        send(port, cfg, Kind::Done, cfg.peer, 0, 0)?;
    }
    Ok(outcome)
}

/// For a guest on another switch: sends what `run` would send, then listens for `listen_ms`.
pub(crate) fn run_isolated(
    port: &mut Port,
    cfg: &Config,
    tally: &mut Tally,
    listen_ms: u64,
) -> Result<Outcome, PortError> {
    let mut outcome = Outcome::default();
    send(port, cfg, Kind::Hello, cfg.peer, 0, 0)?;
    send(port, cfg, Kind::Hello, BROADCAST, 0, 0)?;
    for seq in 0..cfg.count {
        send(port, cfg, Kind::Data, cfg.peer, 0, seq)?;
        send(port, cfg, Kind::Data, BROADCAST, FLAG_SET, seq)?;
        outcome.data_sent += 2;
        port.poll(|bytes| tally.record(cfg, bytes))?;
    }
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cfg.ms_to_tsc(listen_ms) {
        port.poll(|bytes| tally.record(cfg, bytes))?;
        idle(cfg);
    }
    Ok(outcome)
}
