//! `disk-checker`: the well-behaved neighbour of the hostile scenarios. It reads its whole
//! virtio-blk disk again and again through `virtio-drivers` and checks every round hashes the
//! same (and to `expect=` when given), so a hostile guest beside it that corrupts another
//! guest's disk, RAM or device, or stalls the hypervisor's device work, shows up as a wrong
//! byte or a stall here. Ends with `PASS disk-checker rounds=N`, or `FAIL disk-checker: ...`
//! on the first wrong round or on a request that takes longer than the stall limit.
//!
//! Before the verdict it prints `NEIGHBOUR SUMMARY disk-checker rounds=N wrong=W stalls=S
//! max_round_ms=T` for `cargo xtask test --hostile`.
//!
//! Command line: `virtio=ADDR`, `rounds=N` (default 20), `min_ms=N` (keep going at least this
//! long, default 0), `expect=HASH` (FNV-1a 64 of the disk; default: the first round's hash),
//! `stall_ms=N` (longest a round may take, default 5000), `limit_kib=N` (read only that much).

#![no_std]
#![no_main]

#[path = "../virtio_blk/disk.rs"]
#[allow(dead_code)] // the checker only reads
mod disk;

use guest_rt::cmdline::Cmdline;
use guest_rt::cpu::rdtsc;
use guest_rt::setup::{alloc, fail_setup};
use guest_rt::{dma, exit, println, time, StartInfo};
use guest_virtio::hash::Fnv1a;
use guest_virtio::window::{self, DEVICE_BLK};
use virtio_drivers::device::blk::VirtIOBlk;

use crate::disk::{Disk, SECTOR_BYTES};

guest_rt::guest!("disk-checker", main);

/// Bytes per read request.
const CHUNK_BYTES: u64 = 64 << 10;
const DEFAULT_ROUNDS: u64 = 20;
const DEFAULT_STALL_MS: u64 = 5_000;
/// Print a progress line every this many rounds.
const PROGRESS_EVERY: u64 = 10;

fn number(args: &Cmdline<'_>, key: &'static str) -> Option<u64> {
    args.get_u64(key).unwrap_or_else(|err| fail_setup(err))
}

fn summary(rounds: u64, wrong: u64, stalls: u64, max_round_ms: u64) {
    println!(
        "NEIGHBOUR SUMMARY disk-checker rounds={rounds} wrong={wrong} stalls={stalls} \
         max_round_ms={max_round_ms}"
    );
}

/// One pass over the first `sectors` sectors; the hash of what was read.
fn read_round(disk: &mut Disk, buf: &mut [u8], sectors: u64) -> Result<u64, disk::DiskError> {
    let mut hash = Fnv1a::new();
    let per_chunk = CHUNK_BYTES / SECTOR_BYTES;
    let mut sector = 0;
    while sector < sectors {
        let count = per_chunk.min(sectors - sector);
        let part = &mut buf[..(count * SECTOR_BYTES) as usize];
        // A stale buffer must not pass for a good read.
        part.fill(0xA5);
        disk.read(sector, part)?;
        hash.update(part);
        sector += count;
    }
    Ok(hash.finish())
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    if let Err(err) = dma::init(info) {
        fail_setup(err);
    }
    let w = window::find(&args, DEVICE_BLK).unwrap_or_else(|err| fail_setup(err));
    let transport = w.transport().unwrap_or_else(|err| fail_setup(err));
    let blk = VirtIOBlk::new(transport).unwrap_or_else(|err| fail_setup(err));
    let tsc_hz = time::tsc_rate().map_or(3_000_000_000, |(hz, _)| hz);
    let mut disk = Disk { blk, tsc_hz };
    let rounds = number(&args, "rounds").unwrap_or(DEFAULT_ROUNDS).max(1);
    let min_ms = number(&args, "min_ms").unwrap_or(0);
    let stall_ms = number(&args, "stall_ms").unwrap_or(DEFAULT_STALL_MS);
    let limit = number(&args, "limit_kib").map_or(u64::MAX, |kib| kib * 1024 / SECTOR_BYTES);
    let sectors = disk.sectors().min(limit);
    if sectors == 0 {
        fail_setup("the disk has no sectors");
    }
    let addr = alloc(CHUNK_BYTES);
    // SAFETY: the pool hands these bytes out once; identity-mapped RAM nothing else uses.
    let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, CHUNK_BYTES as usize) };
    let mut expected = number(&args, "expect");
    println!(
        "disk-checker: {sectors} sectors per round, at least {rounds} rounds and {min_ms} ms, \
         expect {expected:#x?}"
    );
    let ms = |ticks: u64| ticks / (tsc_hz / 1000).max(1);
    let started = rdtsc();
    let (mut done, mut max_round_ms) = (0u64, 0u64);
    while done < rounds || ms(rdtsc().wrapping_sub(started)) < min_ms {
        let t = rdtsc();
        let hash = match read_round(&mut disk, buf, sectors) {
            Ok(h) => h,
            Err(err) => {
                let stalls = u64::from(matches!(err, disk::DiskError::Timeout { .. }));
                summary(done, 0, stalls, max_round_ms);
                fail_setup(format_args!("round {}: {err}", done + 1));
            }
        };
        let round_ms = ms(rdtsc().wrapping_sub(t));
        max_round_ms = max_round_ms.max(round_ms);
        done += 1;
        match expected {
            None => {
                println!("disk-checker: round 1 hash {hash:#018x}");
                expected = Some(hash);
            }
            Some(e) if e != hash => {
                summary(done, 1, 0, max_round_ms);
                fail_setup(format_args!(
                    "round {done}: hash {hash:#018x}, expected {e:#018x} (wrong bytes)"
                ));
            }
            Some(_) => {}
        }
        if round_ms > stall_ms {
            summary(done, 0, 1, max_round_ms);
            fail_setup(format_args!(
                "round {done} took {round_ms} ms, more than stall_ms={stall_ms}"
            ));
        }
        if done % PROGRESS_EVERY == 0 {
            println!("disk-checker: {done} rounds good, slowest {max_round_ms} ms");
        }
    }
    summary(done, 0, 0, max_round_ms);
    println!("PASS disk-checker rounds={done}");
    exit(0)
}
