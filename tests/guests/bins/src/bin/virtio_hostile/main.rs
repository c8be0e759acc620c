//! `virtio-hostile`: a raw virtio-mmio driver (no `virtio-drivers`) that breaks the rules on
//! purpose: descriptors outside RAM, in MMIO or at 64 GiB, a 4 GiB length, loops, chains
//! longer than the queue, nested indirect tables, an available index that jumps, rings outside
//! RAM, a queue size that is not a power of two, notifications of queues never enabled, and
//! garbage in every register. After each case the device must have done nothing harmful (no
//! successful completion of a request it should have refused, no write past a buffer) or set
//! DEVICE_NEEDS_RESET; then it is reset and must serve one valid request again. Every wait is
//! bounded by the TSC, so the guest never hangs. blk devices give the strongest checks (their
//! status byte); net devices are driven through their transmit queue.
//!
//! Command line: `virtio=ADDR` (a blk or net window; default: scan), `expect=bulkhead|bare`
//! (bare tolerates QEMU completing requests a stricter device refuses), `cases=a,b,...`,
//! `queue_size=N` (default 8), `case_ms=N` (default 300).

#![no_std]
#![no_main]

mod cases;
mod dev;

use guest_rt::canary::Canaries;
use guest_rt::cpu::is_bulkhead;
use guest_rt::setup::{fail_setup, number};
use guest_rt::{dma, println, time, Checks, StartInfo};

use crate::cases::{Attempt, Env, CASES};
use crate::dev::{read8, Dev, Mem, Observation, BLK_S_OK, SECTOR_BYTES};

guest_rt::guest!("virtio-hostile", main);

const PAGE: u64 = 4096;
const DATA_BYTES: u64 = 1 << 20;
const TABLES_BYTES: u64 = 8 * PAGE;

/// Whether the attempt left memory alone: NEEDS_RESET and "nothing" always do; a completion
/// does unless it succeeded where it must not (strict mode only; QEMU is lenient).
fn is_harmless(a: &Attempt, is_strict: bool) -> bool {
    match a.obs {
        Observation::NeedsReset | Observation::Nothing => true,
        Observation::Used {
            blk_status: Some(status),
            ..
        } if status != BLK_S_OK => true,
        Observation::Used { .. } => !(a.is_ok_harmful && is_strict),
    }
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let (pool_start, pool_end) = dma::init(info).unwrap_or_else(|err| fail_setup(err));
    let is_strict = match args.get("expect") {
        Some("bulkhead") => true,
        Some("bare") => false,
        Some(other) => fail_setup(format_args!(
            "command line expect={other:?}: expected bulkhead or bare"
        )),
        None => is_bulkhead(),
    };
    let w = dev::find_window(&args).unwrap_or_else(|err| fail_setup(err));
    if w.version() != 2 {
        fail_setup(format_args!(
            "window {:#x} has virtio-mmio version {}: only modern (2) is spoken here (QEMU: \
             -global virtio-mmio.force-legacy=false)",
            w.base(),
            w.version()
        ));
    }
    let mem = Mem::alloc(DATA_BYTES, TABLES_BYTES);
    if dma::left_bytes() < PAGE || pool_end - PAGE < pool_start {
        fail_setup("no room for the end-of-RAM canary page");
    }
    // SAFETY: the guard page follows the data in the DMA pool and the pool's last page is left
    // unallocated (checked above); nothing else uses them.
    let mut canaries = unsafe { Canaries::new([mem.guard, pool_end - PAGE], false) };
    let tsc_hz = time::tsc_rate().map_or(3_000_000_000, |(hz, _)| hz);
    let mut dev = Dev::new(w, mem, tsc_hz);
    let max = dev.max_size();
    let env = Env {
        ram_end: info.ram_end().unwrap_or(pool_end),
        queue_size: (number(&args, "queue_size", 8) as u16)
            .min(max as u16)
            .max(1),
        case_ms: number(&args, "case_ms", 300),
    };
    println!(
        "virtio-hostile: {} at {:#x}, queue {} of max {max}, RAM ends {:#x}, {} mode",
        if dev.is_blk { "blk" } else { "net" },
        w.base(),
        env.queue_size,
        env.ram_end,
        if is_strict {
            "strict (bulkhead)"
        } else {
            "bare"
        }
    );
    let mut checks = Checks::new("virtio-hostile");
    let mut baseline = [0u8; SECTOR_BYTES as usize];
    let start = dev
        .init(env.queue_size)
        .and_then(|()| dev.valid_request(&[], env.case_ms));
    if let Err(err) = start {
        checks.fail("baseline", err);
        checks.finish();
    }
    if dev.is_blk {
        for (i, b) in baseline.iter_mut().enumerate() {
            *b = read8(mem.data + i as u64);
        }
    }
    checks.pass("baseline");
    let only = args.get("cases");
    for (name, case) in CASES {
        if only.is_some_and(|list| !list.split(',').any(|n| n == name)) {
            continue;
        }
        let attempt = case(&mut dev, &env);
        let status = dev.status();
        let changed = canaries.check();
        let recovery = dev
            .reset()
            .and_then(|()| dev.init(env.queue_size))
            .and_then(|()| dev.valid_request(&baseline, env.case_ms));
        let attempt = match attempt {
            Ok(a) => a,
            Err(err) => {
                checks.fail(name, format_args!("setting the case up: {err}"));
                continue;
            }
        };
        println!(
            "virtio-hostile: {name}: {} (status {status:#x}){}{}",
            attempt.obs,
            if attempt.note.is_some() { "; " } else { "" },
            attempt.note.unwrap_or("")
        );
        if let Some(addr) = changed {
            checks.fail(
                name,
                format_args!("the device wrote guest RAM at {addr:#x}"),
            );
        } else if !is_harmless(&attempt, is_strict) {
            checks.fail(
                name,
                format_args!("{}: a request that must be refused succeeded", attempt.obs),
            );
        } else if let Some(problem) = attempt.problem {
            checks.fail(name, problem);
        } else if let Err(err) = recovery {
            checks.fail(name, format_args!("after reset: {err}"));
        } else {
            checks.pass(name);
        }
    }
    dev.reset().ok();
    checks.finish()
}
