//! `hostile-dma`: virtio requests whose buffers point at guest-physical addresses this guest
//! does not own — past its RAM, straddling its end, in the PCI hole, at device windows and the
//! APICs, straddling and beyond 4 GiB, at 2^46 and 2^63, and wrapping past 2^64 — where the
//! hypervisor's own memory or a neighbour's would be if the device trusted them. For blk:
//! reads into (the device writes), writes from (the device reads into the disk), header and
//! status bytes; for net: transmit from (whole frame or header/frame split) and receive into.
//! Every request must be refused (DEVICE_NEEDS_RESET, or VIRTIO_BLK_S_IOERR) and touch
//! nothing: canary pages after every buffer, the last page of RAM and the first page at GPA 0
//! must stay, the disk sector must keep its pattern, no frame may reach the other port. After
//! each case the devices are reset and must serve a valid request.
//!
//! Ends with `HOSTILE SUMMARY hostile-dma cases=N iterations=M refused=R` and the verdict.
//!
//! Then a sweep: a blk read into and a net receive into every 4 MiB from the end of RAM to
//! `sweep_mib` (every host-physical address the hypervisor and the neighbours can have, taken
//! as a guest-physical one).
//!
//! Command line: `case_ms=N` (wait per request, default 300), `targets=a,b` (by name; no
//! sweep), `sweep_mib=N` (default 256).

#![no_std]
#![no_main]

#[path = "../virtio_hostile/dev.rs"]
#[allow(dead_code)] // only the set-up and observation half of the raw driver is used
mod dev;
mod targets;

use guest_rt::canary::Canaries;
use guest_rt::setup::{fail_setup, number};
use guest_rt::{dma, println, time, Checks, StartInfo};
use guest_virtio::window::{BULKHEAD, DEVICE_BLK, DEVICE_NET};

use crate::dev::{read8, write8, Dev, Mem, Observation};
use crate::targets::{Op, Target, BLK_OPS, BLK_T_IN, BLK_T_OUT, NET_OPS, SECTOR_BYTES};

guest_rt::guest!("hostile-dma", main);

const PAGE: u64 = 4096;
const QUEUE_SIZE: u16 = 8;
/// The sweep past RAM: up to this much guest-physical space (the scenario machines' RAM), in
/// steps of this size.
const DEFAULT_SWEEP_MIB: u64 = 256;
const SWEEP_STEP: u64 = 4 << 20;
/// How long a frame that must not arrive is waited for.
const LEAK_WAIT_MS: u64 = 50;

/// Driver memory: rings, a header page, one data page and the canary page right after it.
fn driver_mem() -> Mem {
    Mem::alloc(PAGE, PAGE)
}

/// The guest's devices: a disk and two ports on one switch (receive on `rx`, send on `tx`).
struct Devs {
    blk: Dev,
    rx: Dev,
    tx: Dev,
    /// The pattern of [`targets::CASE_SECTOR`].
    pattern: [u8; SECTOR_BYTES as usize],
    case_ms: u64,
}

fn pattern_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(7) ^ 0x5A
}

impl Devs {
    fn reinit(&mut self) -> Result<(), dev::DevError> {
        self.blk.init(QUEUE_SIZE)?;
        self.rx.init(QUEUE_SIZE)?;
        self.tx.init(QUEUE_SIZE)
    }

    /// A valid read of the case sector; it must still hold the pattern.
    fn blk_valid(&mut self) -> Result<(), &'static str> {
        let (header, data) = (self.blk.mem.header, self.blk.mem.data);
        let status = targets::own_status(&self.blk);
        // SAFETY: the data page belongs to this driver; a stale buffer must not pass.
        unsafe { core::ptr::write_bytes(data as *mut u8, 0xEE, SECTOR_BYTES as usize) };
        targets::submit_blk(&mut self.blk, BLK_T_IN, header, data, status);
        match self.blk.observe(self.case_ms) {
            Observation::Used {
                blk_status: Some(0),
                ..
            } => {}
            _ => return Err("a valid blk read failed"),
        }
        let is_same = (0..SECTOR_BYTES as usize).all(|i| read8(data + i as u64) == self.pattern[i]);
        is_same
            .then_some(())
            .ok_or("the disk sector lost its pattern (the device wrote it from elsewhere)")
    }

    /// A valid frame from `tx` must arrive at `rx`.
    fn net_valid(&mut self) -> Result<(), &'static str> {
        let rx_buf = self.rx.mem.data;
        targets::post_rx(&mut self.rx, rx_buf);
        let frame = self.tx.mem.header;
        targets::submit_tx(&mut self.tx, frame, false);
        if !matches!(self.tx.observe(self.case_ms), Observation::Used { .. }) {
            return Err("a valid transmit did not complete");
        }
        match self.rx.observe(self.case_ms) {
            Observation::Used { len, .. }
                if len >= targets::NET_HDR_BYTES + targets::FRAME_BYTES =>
            {
                Ok(())
            }
            _ => Err("a valid frame did not arrive at the other port"),
        }
    }

    /// Runs `op` against `target`; Err says why it was not refused cleanly.
    fn attack(&mut self, op: Op, target: u64) -> Result<Observation, &'static str> {
        let (header, data, status) = (
            self.blk.mem.header,
            self.blk.mem.data,
            targets::own_status(&self.blk),
        );
        match op {
            Op::BlkReadInto => targets::submit_blk(&mut self.blk, BLK_T_IN, header, target, status),
            Op::BlkWriteFrom => {
                targets::submit_blk(&mut self.blk, BLK_T_OUT, header, target, status)
            }
            Op::BlkHeader => targets::submit_blk(&mut self.blk, BLK_T_IN, target, data, status),
            Op::BlkStatus => targets::submit_blk(&mut self.blk, BLK_T_IN, header, data, target),
            Op::NetTx | Op::NetTxSplit => {
                let rx_buf = self.rx.mem.data;
                targets::post_rx(&mut self.rx, rx_buf);
                targets::submit_tx(&mut self.tx, target, op == Op::NetTxSplit);
                let obs = self.tx.observe(self.case_ms);
                if matches!(self.rx.observe(LEAK_WAIT_MS), Observation::Used { .. }) {
                    return Err("a frame read from the target reached the other port");
                }
                return Ok(obs);
            }
            Op::NetRx => {
                targets::post_rx(&mut self.rx, target);
                let frame = self.tx.mem.header;
                targets::submit_tx(&mut self.tx, frame, false);
                if !matches!(self.tx.observe(self.case_ms), Observation::Used { .. }) {
                    return Err("the valid transmit that feeds the receive did not complete");
                }
                return Ok(self.rx.observe(self.case_ms));
            }
        }
        Ok(self.blk.observe(self.case_ms))
    }
}

/// Runs one case and recovers; Ok(refused) or why it failed.
fn run_case(
    devs: &mut Devs,
    canaries: &mut Canaries<4>,
    op: Op,
    target: &Target,
) -> Result<bool, &'static str> {
    let addr = target.addr_for(op.target_len());
    let outcome = devs.attack(op, addr);
    let status = match op {
        Op::BlkReadInto | Op::BlkWriteFrom | Op::BlkHeader | Op::BlkStatus => devs.blk.status(),
        Op::NetRx => devs.rx.status(),
        Op::NetTx | Op::NetTxSplit => devs.tx.status(),
    };
    let changed = canaries.check();
    let recovered = devs
        .reinit()
        .map_err(|_| "the devices did not come back after reset")
        .and_then(|()| match op {
            Op::NetTx | Op::NetTxSplit | Op::NetRx => devs.net_valid(),
            _ => devs.blk_valid(),
        });
    let obs = outcome?;
    println!(
        "hostile-dma: {} {op} at {addr:#x}: {obs} (status {status:#x})",
        target.name
    );
    if let Some(addr) = changed {
        println!("hostile-dma: RAM at {addr:#x} changed");
        return Err("the device wrote this guest's RAM outside every buffer");
    }
    let refused = targets::is_refused(obs);
    recovered?;
    if refused {
        Ok(true)
    } else {
        Err("the request was not refused (no NEEDS_RESET, no IOERR)")
    }
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let (_, pool_end) = dma::init(info).unwrap_or_else(|err| fail_setup(err));
    let ram_end = info.ram_end().unwrap_or(pool_end);
    let case_ms = number(&args, "case_ms", 300);
    let tsc_hz = time::tsc_rate().map_or(3_000_000_000, |(hz, _)| hz);
    let blk_w = BULKHEAD
        .devices(DEVICE_BLK)
        .next()
        .unwrap_or_else(|| fail_setup("no virtio-blk slot"));
    let mut nets = BULKHEAD.devices(DEVICE_NET);
    let (Some(rx_w), Some(tx_w)) = (nets.next(), nets.next()) else {
        fail_setup("two virtio-net slots on one switch are needed");
    };
    let (blk_mem, rx_mem, tx_mem) = (driver_mem(), driver_mem(), driver_mem());
    let mut rx = Dev::new(rx_w, rx_mem, tsc_hz);
    rx.queue = 0;
    let mut devs = Devs {
        blk: Dev::new(blk_w, blk_mem, tsc_hz),
        rx,
        tx: Dev::new(tx_w, tx_mem, tsc_hz),
        pattern: core::array::from_fn(pattern_byte),
        case_ms,
    };
    if ram_end > pool_end || pool_end - PAGE < blk_mem.guard + PAGE {
        fail_setup("the DMA pool does not reach the end of RAM");
    }
    // SAFETY: the guard pages follow each driver's data in the DMA pool and the last page of
    // RAM is the pool's (checked above); nothing else uses them. GPA 0 is identity-mapped RAM.
    let mut canaries = unsafe {
        Canaries::new(
            [blk_mem.guard, rx_mem.guard, tx_mem.guard, ram_end - PAGE],
            true,
        )
    };
    let mut checks = Checks::new("hostile-dma");
    // Baseline: the case sector gets its pattern, reads back, and a frame crosses the switch.
    for (i, b) in devs.pattern.iter().enumerate() {
        write8(blk_mem.data + i as u64, *b);
    }
    let baseline = devs
        .reinit()
        .map_err(|_| "devices did not initialise")
        .and_then(|()| {
            let (h, d, s) = (blk_mem.header, blk_mem.data, targets::own_status(&devs.blk));
            targets::submit_blk(&mut devs.blk, BLK_T_OUT, h, d, s);
            match devs.blk.observe(case_ms) {
                Observation::Used {
                    blk_status: Some(0),
                    ..
                } => Ok(()),
                _ => Err("writing the case sector failed"),
            }
        });
    let baseline = baseline
        .and_then(|()| devs.blk_valid())
        .and_then(|()| devs.net_valid());
    if !checks.check("baseline", baseline) {
        checks.finish();
    }
    let only = args.get("targets");
    let (mut cases, mut iterations, mut refused) = (0u64, 0u64, 0u64);
    for target in targets::targets(ram_end) {
        if only.is_some_and(|list| !list.split(',').any(|n| n == target.name)) {
            continue;
        }
        let mut problem = None;
        for op in BLK_OPS.into_iter().chain(NET_OPS) {
            cases += 1;
            iterations += if matches!(op, Op::NetRx | Op::NetTx | Op::NetTxSplit) {
                2
            } else {
                1
            };
            match run_case(&mut devs, &mut canaries, op, &target) {
                Ok(was_refused) => refused += u64::from(was_refused),
                Err(why) => {
                    println!("hostile-dma: {} {op}: {why}", target.name);
                    problem.get_or_insert((op, why));
                }
            }
        }
        match problem {
            None => checks.pass(target.name),
            Some((op, why)) => checks.fail(target.name, format_args!("{op}: {why}")),
        }
    }
    // Every host-physical address the hypervisor and the neighbours can have (the scenarios'
    // machines have at most `sweep_mib` of RAM) is some GPA past this guest's RAM: aim the two
    // requests that make the device write at each step of that range.
    let sweep_end = number(&args, "sweep_mib", DEFAULT_SWEEP_MIB) << 20;
    let mut problem = None;
    let mut addr = ram_end;
    while addr < sweep_end && only.is_none() {
        let target = Target {
            name: "sweep",
            addr,
            is_straddle: false,
            is_ram_below: false,
        };
        for op in [Op::BlkReadInto, Op::NetRx] {
            cases += 1;
            iterations += if op == Op::NetRx { 2 } else { 1 };
            match run_case(&mut devs, &mut canaries, op, &target) {
                Ok(was_refused) => refused += u64::from(was_refused),
                Err(why) => {
                    problem.get_or_insert((addr, op, why));
                }
            }
        }
        addr += SWEEP_STEP;
    }
    if only.is_none() {
        match problem {
            None => checks.pass("sweep"),
            Some((addr, op, why)) => checks.fail("sweep", format_args!("{op} at {addr:#x}: {why}")),
        }
    }
    for d in [&mut devs.blk, &mut devs.rx, &mut devs.tx] {
        d.reset().ok();
    }
    println!("HOSTILE SUMMARY hostile-dma cases={cases} iterations={iterations} refused={refused}");
    checks.finish()
}
