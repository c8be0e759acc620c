//! `hostile-vq`: a seeded virtqueue fuzzer. For a set number of iterations it writes random
//! descriptor chains (random addresses in and far outside its RAM, lengths, flags, next
//! indices, indirect tables, blk headers) into the queues of its virtio-blk disk and its
//! virtio-net transmit queue, moves the available index at random (one entry, several, or a
//! jump), notifies, and watches what the device does: DEVICE_NEEDS_RESET (counted as refused,
//! then reset and set up again), a completion (served), or nothing (ignored). Canary pages
//! after every region it hands out, the last page of RAM and the page at GPA 0 must never
//! change, and every `probe_every` iterations a valid request must still work.
//!
//! Ends with `HOSTILE SUMMARY hostile-vq cases=2 iterations=N refused=R served=S ignored=I`
//! and the verdict.
//!
//! Command line: `seed=N`, `iterations=N` (per queue, default 2000), `case_ms=N` (wait per
//! submission, default 20), `probe_every=N` (default 64).

#![no_std]
#![no_main]

mod chains;
#[path = "../virtio_hostile/dev.rs"]
#[allow(dead_code)] // the fuzzer writes its own chains; only set-up and observation are used
mod dev;

use guest_rt::canary::Canaries;
use guest_rt::cpu::rdtsc;
use guest_rt::setup::{alloc, fail_setup, number};
use guest_rt::{dma, println, time, Checks, StartInfo};
use guest_virtio::rng::Rng;
use guest_virtio::window::{Window, BULKHEAD, DEVICE_BLK, DEVICE_NET};

use crate::chains::Regions;
use crate::dev::{write_desc, Dev, Mem, Observation, DESC_INDIRECT};

guest_rt::guest!("hostile-vq", main);

const PAGE: u64 = 4096;
const SCRATCH_BYTES: u64 = 16 * PAGE;
const TABLES_BYTES: u64 = 2 * PAGE;
const QUEUE_SIZE: u16 = 8;
const DEFAULT_SEED: u64 = 0xF0CC_ACC1_A5ED;
/// Time allowed for a valid probe request.
const PROBE_MS: u64 = 2000;

fn window(device_id: u32) -> Window {
    BULKHEAD
        .devices(device_id)
        .next()
        .unwrap_or_else(|| fail_setup(format_args!("no virtio device of type {device_id}")))
}

/// One fuzzed queue: its device, its regions, and what happened.
struct Target {
    name: &'static str,
    dev: Dev,
    regions: Regions,
    needs_init: bool,
    refused: u64,
    served: u64,
    ignored: u64,
    problem: Option<&'static str>,
}

/// Memory for one device: rings, header page, scratch, tables, each region followed by a
/// canary page. Returns the driver memory, the regions, and the three canary pages.
fn regions(ram_end: u64) -> (Mem, Regions, [u64; 3]) {
    let header = alloc(2 * PAGE);
    let scratch = alloc(SCRATCH_BYTES + PAGE);
    let tables = alloc(TABLES_BYTES + PAGE);
    let mem = Mem {
        desc: alloc(PAGE),
        avail: alloc(PAGE),
        used: alloc(PAGE),
        header,
        data: scratch,
        data_bytes: SCRATCH_BYTES,
        guard: scratch + SCRATCH_BYTES,
        tables,
        tables_bytes: TABLES_BYTES,
    };
    let r = Regions {
        scratch,
        scratch_bytes: SCRATCH_BYTES,
        tables,
        tables_bytes: TABLES_BYTES,
        header,
        ram_end,
    };
    (
        mem,
        r,
        [
            header + PAGE,
            scratch + SCRATCH_BYTES,
            tables + TABLES_BYTES,
        ],
    )
}

impl Target {
    /// One random submission; returns what the device did.
    fn iterate(&mut self, rng: &mut Rng, case_ms: u64) -> Observation {
        if self.needs_init {
            if self.dev.init(QUEUE_SIZE).is_err() {
                self.problem
                    .get_or_insert("the device did not come back after reset");
            }
            self.needs_init = false;
        }
        let (r, size) = (self.regions, u64::from(QUEUE_SIZE));
        let table = self.dev.mem.desc;
        if rng.chance(1, 3) {
            // A valid request with one field mutated reaches deeper into the device than a
            // wholly random chain (which blk mostly refuses for a missing status byte).
            self.dev.write_request_frame(table);
            self.dev.valid_data_desc(table);
            if self.dev.is_blk {
                chains::blk_header(rng, r.header);
            }
            chains::mutate(rng, &r, table, size);
        } else {
            if self.dev.is_blk {
                chains::blk_header(rng, r.header);
            }
            self.random_chain(rng, table, size);
        }
        let is_plain = match rng.below(10) {
            0 => {
                self.dev.set_avail_idx(rng.next_u32() as u16);
                false
            }
            1 => {
                for _ in 0..2 + rng.below(size) {
                    self.dev.publish(rng.below(size) as u16);
                }
                false
            }
            _ => {
                self.dev.publish(rng.below(size) as u16);
                true
            }
        };
        self.dev.notify();
        let obs = self.dev.observe(case_ms);
        match obs {
            Observation::NeedsReset => self.refused += 1,
            Observation::Used { .. } => self.served += 1,
            Observation::Nothing => self.ignored += 1,
        }
        // After a jump or several entries the rings' state is unknown: start clean.
        self.needs_init = !is_plain || !matches!(obs, Observation::Used { .. });
        if self.needs_init {
            let _ = self.dev.reset();
        }
        obs
    }

    /// 1 to 6 random descriptors anywhere in the table.
    fn random_chain(&mut self, rng: &mut Rng, table: u64, size: u64) {
        let r = self.regions;
        for _ in 0..1 + rng.below(6) {
            let index = if rng.chance(7, 8) {
                rng.below(size)
            } else {
                rng.below(256)
            };
            let f = chains::flags(rng);
            let (addr, len) = if f & DESC_INDIRECT != 0 && rng.chance(3, 4) {
                chains::indirect_table(rng, &r)
            } else {
                chains::buffer(rng, &r)
            };
            write_desc(table, index, addr, len, f, chains::next(rng, size));
        }
    }

    /// A valid request on a freshly set-up queue must complete.
    fn probe(&mut self) -> Result<(), dev::DevError> {
        self.dev.reset()?;
        self.dev.init(QUEUE_SIZE)?;
        self.dev.valid_request(&[], PROBE_MS)?;
        self.needs_init = false;
        Ok(())
    }
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let (_, pool_end) = dma::init(info).unwrap_or_else(|err| fail_setup(err));
    let ram_end = info.ram_end().unwrap_or(pool_end);
    let seed = number(&args, "seed", DEFAULT_SEED);
    let iterations = number(&args, "iterations", 2000);
    let case_ms = number(&args, "case_ms", 20);
    let probe_every = number(&args, "probe_every", 64).max(1);
    let tsc_hz = time::tsc_rate().map_or(3_000_000_000, |(hz, _)| hz);
    let (blk_mem, blk_r, blk_guards) = regions(ram_end);
    let (net_mem, net_r, net_guards) = regions(ram_end);
    if ram_end > pool_end || dma::left_bytes() < PAGE {
        fail_setup("the DMA pool does not reach the end of RAM");
    }
    let [b0, b1, b2] = blk_guards;
    let [n0, n1, n2] = net_guards;
    // SAFETY: the guard pages follow each region in the DMA pool and the last page of RAM is
    // the pool's, left unallocated (checked above); nothing else uses them. GPA 0 is
    // identity-mapped RAM.
    let mut canaries = unsafe { Canaries::new([b0, b1, b2, n0, n1, n2, ram_end - PAGE], true) };
    let target = |name, w, mem, regions| Target {
        name,
        dev: Dev::new(w, mem, tsc_hz),
        regions,
        needs_init: true,
        refused: 0,
        served: 0,
        ignored: 0,
        problem: None,
    };
    let mut targets = [
        target("blk", window(DEVICE_BLK), blk_mem, blk_r),
        target("net-tx", window(DEVICE_NET), net_mem, net_r),
    ];
    let mut checks = Checks::new("hostile-vq");
    println!(
        "hostile-vq: seed {seed:#x}, {iterations} iterations per queue, RAM ends {ram_end:#x}"
    );
    let mut rng = Rng::new(seed);
    for t in targets.iter_mut() {
        let start = rdtsc();
        if let Err(err) = t.probe() {
            checks.fail(t.name, format_args!("before fuzzing: {err}"));
            continue;
        }
        for i in 1..=iterations {
            let obs = t.iterate(&mut rng, case_ms);
            if let Some(addr) = canaries.check() {
                println!(
                    "hostile-vq: {} iteration {i} ({obs}): RAM at {addr:#x} changed",
                    t.name
                );
                t.problem
                    .get_or_insert("the device wrote RAM outside every buffer");
            }
            if i % probe_every == 0 || i == iterations {
                if let Err(err) = t.probe() {
                    println!("hostile-vq: {} iteration {i}: valid probe: {err}", t.name);
                    t.problem
                        .get_or_insert("a valid request failed after fuzzing");
                }
            }
        }
        let ms = rdtsc().wrapping_sub(start) / (tsc_hz / 1000).max(1);
        println!(
            "hostile-vq: {}: {iterations} iterations in {ms} ms: {} refused, {} served, {} \
             ignored",
            t.name, t.refused, t.served, t.ignored
        );
        match t.problem {
            None => checks.pass(t.name),
            Some(why) => checks.fail(t.name, why),
        }
        let _ = t.dev.reset();
    }
    let sum = |f: fn(&Target) -> u64| targets.iter().map(f).sum::<u64>();
    println!(
        "HOSTILE SUMMARY hostile-vq cases={} iterations={} refused={} served={} ignored={} \
         seed={seed:#x}",
        targets.len(),
        iterations * targets.len() as u64,
        sum(|t| t.refused),
        sum(|t| t.served),
        sum(|t| t.ignored)
    );
    checks.finish()
}
