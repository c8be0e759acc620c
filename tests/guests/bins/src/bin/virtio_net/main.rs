//! `virtio-net`: two guests on one switch exchange frames both ways through the
//! `virtio-drivers` raw net driver. After a HELLO handshake each sends `count` frames to the
//! peer's MAC and `count` to the broadcast address, and checks that all of the peer's arrive
//! once, addressed right, with intact payloads (sequence numbers, lengths, data, checksum). With
//! `isolated=1` it is on another switch than the peer and must receive nothing at all.
//!
//! With `irq=1` the device's interrupt is routed through the I/O APIC and the guest waits for
//! frames in HLT (bounded by a 10 ms APIC timer back-stop), as an interrupt-driven driver does;
//! without it the guest polls the used ring, as a busy-polling driver does.
//!
//! With `role=pong ip=A.B.C.D` it is instead a tiny IPv4 host that answers ARP and ping (see
//! `pong.rs`), for `replies=N` pings (default 0: forever); it always waits for interrupts.
//!
//! Command line: `role=a|b|pong`, `peer=MAC`, `count=K` (default 32, at most 256), `isolated=1`,
//! `irq=1`, `mac=MAC` (expected own address), `timeout_ms=N` (default 30000), `listen_ms=N`
//! (isolated, default 2000), `virtio=ADDR[@GSI]`.

#![no_std]
#![no_main]

mod exchange;
mod frame;
mod pong;
mod port;

use guest_rt::apic::{self, Mode};
use guest_rt::cmdline::Cmdline;
use guest_rt::cpu::{cli, is_bulkhead, sti};
use guest_rt::setup::{fail_setup, number};
use guest_rt::{dma, println, time, Checks, StartInfo};
use guest_virtio::irq::DeviceIrq;
use guest_virtio::window::{self, reg, Window, DEVICE_NET};

use crate::exchange::{Config, Outcome, Tally, MAX_COUNT};
use crate::frame::{parse_mac, Mac, MacFmt};
use crate::port::{Net, Port};

guest_rt::guest!("virtio-net", main);

const NET_VECTOR: u8 = 0x51;
/// With `irq=1`, the longest HLT while waiting for a frame.
const IDLE_BACKSTOP_US: u64 = 10_000;
/// Stand-in peer for an isolated guest given no `peer=`.
const NOBODY: Mac = [0x52, 0x54, 0x00, 0xFF, 0xFF, 0xFE];
const F_VERSION_1: u64 = 1 << 32;
const STATUS_DRIVER_READY: u32 = 0xF;

fn mac_arg(args: &Cmdline<'_>, key: &str) -> Option<Mac> {
    let text = args.get(key)?;
    Some(parse_mac(text).unwrap_or_else(|| {
        fail_setup(format_args!(
            "command line {key}={text:?}: expected a MAC like 52:54:00:12:34:56"
        ))
    }))
}

fn check_features(checks: &mut Checks, w: &Window, args: &Cmdline<'_>, own: Mac) {
    w.write(reg::DEVICE_FEATURES_SEL, 1);
    let high = u64::from(w.read(reg::DEVICE_FEATURES));
    w.write(reg::DEVICE_FEATURES_SEL, 0);
    let offered = (high << 32) | u64::from(w.read(reg::DEVICE_FEATURES));
    let (version, status) = (w.version(), w.read(reg::STATUS));
    println!(
        "virtio-net: window {:#x} version {version}, device features {offered:#x}, status \
         {status:#x}, MAC {}",
        w.base(),
        MacFmt(own)
    );
    let is_modern = version == 2 && offered & F_VERSION_1 != 0;
    checks.expect(
        "features",
        status == STATUS_DRIVER_READY && (is_modern || !is_bulkhead()),
        format_args!(
            "status {status:#x} (expected {STATUS_DRIVER_READY:#x}); version {version}, \
             VERSION_1 {}",
            offered & F_VERSION_1 != 0
        ),
    );
    if let Some(expected) = mac_arg(args, "mac") {
        checks.expect(
            "mac",
            own == expected,
            format_args!("device MAC {}, expected {}", MacFmt(own), MacFmt(expected)),
        );
    }
}

fn route_irq(checks: &mut Checks, w: &Window) -> Option<DeviceIrq> {
    let routed = match apic::mode() {
        Some(_) => Ok(()),
        None => apic::enable(Mode::XApic),
    };
    if let Err(err) = routed {
        checks.fail("irq", err);
        return None;
    }
    match guest_virtio::irq::route(w, NET_VECTOR) {
        Ok(irq) => Some(irq),
        Err(err) => {
            checks.fail("irq", err);
            None
        }
    }
}

fn judge_exchange(checks: &mut Checks, cfg: &Config, outcome: &Outcome, t: &Tally) {
    println!(
        "virtio-net: got {} unicast and {} broadcast of {} each; {} duplicates, {} malformed, \
         {} misaddressed, {} mismatched, {} echoes, {} foreign, {} other",
        t.unicast.len(),
        t.broadcast.len(),
        cfg.count,
        t.duplicates,
        t.malformed,
        t.misaddressed,
        t.mismatched,
        t.echoes,
        t.foreign,
        t.other
    );
    checks.expect(
        "handshake",
        outcome.is_handshake_done,
        format_args!(
            "peer {} not heard within {} ms (heard it: {})",
            MacFmt(cfg.peer),
            cfg.timeout_ms,
            t.heard_peer
        ),
    );
    if !outcome.is_handshake_done {
        return;
    }
    let expect_received = |checks: &mut Checks, name, got: u32| {
        checks.expect(
            name,
            got == cfg.count,
            format_args!("{got} of {} frames within {} ms", cfg.count, cfg.timeout_ms),
        );
    };
    expect_received(checks, "receive-unicast", t.unicast.len());
    expect_received(checks, "receive-broadcast", t.broadcast.len());
    let is_clean = t.duplicates == 0
        && t.malformed == 0
        && t.misaddressed == 0
        && t.mismatched == 0
        && t.echoes == 0;
    checks.expect(
        "integrity",
        is_clean,
        format_args!(
            "{} duplicates, {} malformed (first: {:?}), {} misaddressed, {} with another role \
             or count, {} of our own frames echoed back",
            t.duplicates, t.malformed, t.first_malformed, t.misaddressed, t.mismatched, t.echoes
        ),
    );
}

/// `role=pong`: answer ARP and ping on the switch.
fn pong_main(args: &Cmdline<'_>) -> ! {
    let own_ip = args
        .get("ip")
        .and_then(pong::parse_ipv4)
        .unwrap_or_else(|| fail_setup("role=pong needs ip=A.B.C.D"));
    let replies = number(args, "replies", 0);
    let tsc_hz = time::tsc_rate().map_or(3_000_000_000, |(hz, _)| hz);
    let w = window::find(args, DEVICE_NET).unwrap_or_else(|err| fail_setup(err));
    let transport = w.transport().unwrap_or_else(|err| fail_setup(err));
    let net = Net::new(transport).unwrap_or_else(|err| fail_setup(err));
    let own = net.mac_address();
    let mut checks = Checks::new("virtio-net/pong");
    let mut port = Port::new(net, tsc_hz).unwrap_or_else(|err| fail_setup(err));
    if route_irq(&mut checks, &w).is_none() {
        checks.finish()
    }
    let timer_hz = apic::timer_hz().unwrap_or(time::QEMU_APIC_TIMER_HZ);
    let cfg = Config {
        own,
        peer: NOBODY,
        role: b'p',
        peer_role: b'p',
        count: 1,
        tsc_hz,
        timeout_ms: 0,
        idle_timer_count: u32::try_from(time::us_to_ticks(IDLE_BACKSTOP_US, timer_hz))
            .unwrap_or(u32::MAX),
    };
    let mut tally = pong::PongTally::default();
    sti();
    let result = pong::run(&mut port, &cfg, own, own_ip, replies, &mut tally);
    cli();
    apic::timer_stop();
    println!(
        "virtio-net: pong: {} ARP replies, {} echo replies, {} frames ignored",
        tally.arp_replies, tally.echo_replies, tally.ignored
    );
    if let Err(err) = result {
        checks.fail("pong", err);
    }
    checks.expect(
        "pong",
        tally.echo_replies >= replies,
        format_args!("{} of {replies} echo replies", tally.echo_replies),
    );
    checks.finish()
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    if let Err(err) = dma::init(info) {
        fail_setup(err);
    }
    guest_rt::cpu::enable_write_back_default();
    if args.get("role") == Some("pong") {
        pong_main(&args);
    }
    let is_isolated = args.get("isolated") == Some("1");
    let (role, peer_role) = match args.get("role").unwrap_or("a") {
        "a" => (b'a', b'b'),
        "b" => (b'b', b'a'),
        other => fail_setup(format_args!("command line role={other:?}: expected a or b")),
    };
    let peer = match (mac_arg(&args, "peer"), is_isolated) {
        (Some(mac), _) => mac,
        (None, true) => NOBODY,
        (None, false) => fail_setup("command line needs peer=MAC (or isolated=1)"),
    };
    let count = number(&args, "count", 32);
    if count == 0 || count > u64::from(MAX_COUNT) {
        fail_setup(format_args!(
            "command line count={count}: expected 1..={MAX_COUNT}"
        ));
    }
    let tsc_hz = time::tsc_rate().map_or(3_000_000_000, |(hz, _)| hz);
    let w = window::find(&args, DEVICE_NET).unwrap_or_else(|err| fail_setup(err));
    let transport = w.transport().unwrap_or_else(|err| fail_setup(err));
    let net = Net::new(transport).unwrap_or_else(|err| fail_setup(err));
    let own = net.mac_address();
    let mut checks = Checks::new("virtio-net");
    check_features(&mut checks, &w, &args, own);
    let mut port = Port::new(net, tsc_hz).unwrap_or_else(|err| fail_setup(err));
    let cfg = Config {
        own,
        peer,
        role,
        peer_role,
        count: count as u32,
        tsc_hz,
        timeout_ms: number(&args, "timeout_ms", 30_000),
        idle_timer_count: 0,
    };
    println!(
        "virtio-net: role {}, peer {}, {} frames each way{}",
        role as char,
        MacFmt(peer),
        count,
        if is_isolated { ", isolated" } else { "" }
    );
    let irq = (args.get("irq") == Some("1"))
        .then(|| route_irq(&mut checks, &w))
        .flatten();
    let irqs_before = irq.map_or(0, |i| i.count());
    let timer_hz = apic::timer_hz().unwrap_or(time::QEMU_APIC_TIMER_HZ);
    let cfg = Config {
        idle_timer_count: if irq.is_some() {
            u32::try_from(time::us_to_ticks(IDLE_BACKSTOP_US, timer_hz)).unwrap_or(u32::MAX)
        } else {
            0
        },
        ..cfg
    };
    let mut tally = Tally::default();
    if irq.is_some() {
        sti();
    }
    let result = if is_isolated {
        exchange::run_isolated(
            &mut port,
            &cfg,
            &mut tally,
            number(&args, "listen_ms", 2_000),
        )
    } else {
        exchange::run(&mut port, &cfg, &mut tally)
    };
    cli();
    apic::timer_stop();
    let outcome = result.unwrap_or_else(|err| fail_setup(err));
    println!(
        "virtio-net: sent {} frames, received {}",
        port.tx_frames, port.rx_frames
    );
    let expected_sent = 2 * cfg.count;
    if outcome.is_handshake_done || is_isolated {
        checks.expect(
            "send",
            outcome.data_sent == expected_sent,
            format_args!("{} of {expected_sent} data frames sent", outcome.data_sent),
        );
    }
    if is_isolated {
        checks.expect(
            "isolated",
            port.rx_frames == 0,
            format_args!(
                "received {} frames ({} of ours from {})",
                port.rx_frames,
                tally.unicast.len() + tally.broadcast.len(),
                MacFmt(peer)
            ),
        );
    } else {
        judge_exchange(&mut checks, &cfg, &outcome, &tally);
    }
    if let Some(irq) = irq {
        let delivered = irq.count() - irqs_before;
        println!(
            "virtio-net: GSI {} -> vector {:#x}: {delivered} interrupts, InterruptStatus bits \
             seen {:#x}",
            irq.gsi,
            irq.vector,
            irq.status_seen()
        );
        checks.expect(
            "irq",
            delivered > 0 && irq.status_seen() & 1 != 0,
            format_args!("{delivered} interrupts on GSI {}", irq.gsi),
        );
    }
    checks.finish()
}
