//! `virtio-blk`: a virtio block device through the `virtio-drivers` crate. Checks feature
//! negotiation and capacity, optionally that the device's interrupt arrives, then either
//! writes every sector with a pattern and reads it back, or hashes a pre-made disk against
//! `expect=`, or (read-only disk) sees that a write fails with an I/O error and changes nothing;
//! finally times sequential 1 MiB reads against the guest's own memcpy.
//!
//! Command line: `virtio=ADDR[@GSI]`, `irq=1`, `readonly`, `expect=HASH`, `seed=N`,
//! `limit_mib=N`, `bench_mib=N` (default 64; 0 skips), `capacity=SECTORS`.

#![no_std]
#![no_main]

mod bench;
mod data;
mod disk;

use guest_rt::apic::{self, Mode};
use guest_rt::cmdline::Cmdline;
use guest_rt::cpu::{cli, is_bulkhead, sti};
use guest_rt::setup::fail_setup;
use guest_rt::{dma, exit, println, time, Checks, StartInfo};
use guest_virtio::window::{self, reg, Window, DEVICE_BLK};
use virtio_drivers::device::blk::VirtIOBlk;

use crate::disk::{Disk, DiskError, SECTOR_BYTES};

guest_rt::guest!("virtio-blk", main);

/// Bytes per request in the data and throughput passes.
const BUF_BYTES: u64 = 1 << 20;
/// The vector the device's interrupt is routed to.
const BLK_VECTOR: u8 = 0x50;
const IRQ_TIMEOUT_US: u64 = 1_000_000;
/// VIRTIO_F_VERSION_1 (virtio 1.2 §6).
const F_VERSION_1: u64 = 1 << 32;
/// Device status bits (virtio 1.2 §2.1).
const STATUS_DRIVER_READY: u32 = 0xF;
const STATUS_NEEDS_RESET: u32 = 0x40;
const DEFAULT_SEED: u64 = 0xB10C_5EED;

fn number(args: &Cmdline<'_>, key: &'static str) -> Option<u64> {
    args.get_u64(key).unwrap_or_else(|err| fail_setup(err))
}

fn device_features(w: &Window) -> u64 {
    w.write(reg::DEVICE_FEATURES_SEL, 1);
    let high = w.read(reg::DEVICE_FEATURES);
    w.write(reg::DEVICE_FEATURES_SEL, 0);
    (u64::from(high) << 32) | u64::from(w.read(reg::DEVICE_FEATURES))
}

fn check_features(checks: &mut Checks, w: &Window, offered: u64) {
    let (version, status) = (w.version(), w.read(reg::STATUS));
    println!(
        "virtio-blk: window {:#x} version {version}, device features {offered:#x}, status \
         {status:#x}",
        w.base()
    );
    let is_modern = version == 2 && offered & F_VERSION_1 != 0;
    checks.expect(
        "features",
        status == STATUS_DRIVER_READY && (is_modern || !is_bulkhead()),
        format_args!(
            "status {status:#x} (expected {STATUS_DRIVER_READY:#x}, no NEEDS_RESET \
             {STATUS_NEEDS_RESET:#x}); version {version}, VERSION_1 {}",
            offered & F_VERSION_1 != 0
        ),
    );
}

fn check_irq(
    checks: &mut Checks,
    disk: &mut Disk,
    w: &Window,
    buf: &mut [u8],
) -> Result<(), DiskError> {
    if apic::mode().is_none() {
        if let Err(err) = apic::enable(Mode::XApic) {
            checks.fail("irq", err);
            return Ok(());
        }
    }
    let irq = match guest_virtio::irq::route(w, BLK_VECTOR) {
        Ok(irq) => irq,
        Err(err) => {
            checks.fail("irq", err);
            return Ok(());
        }
    };
    let before = irq.count();
    let mut arrived = false;
    sti();
    let result = disk.read_with(0, &mut buf[..SECTOR_BYTES as usize], |_| {
        arrived = time::wait_until(IRQ_TIMEOUT_US, || irq.count() > before);
    });
    cli();
    result?;
    println!(
        "virtio-blk: GSI {} -> vector {:#x}: {} interrupts, InterruptStatus bits seen {:#x}",
        irq.gsi,
        irq.vector,
        irq.count() - before,
        irq.status_seen()
    );
    checks.expect(
        "irq",
        arrived && irq.status_seen() & 1 != 0,
        format_args!(
            "no used-buffer interrupt on GSI {} within {} ms",
            irq.gsi,
            IRQ_TIMEOUT_US / 1000
        ),
    );
    Ok(())
}

/// A zeroed DMA buffer of `bytes`.
fn dma_buffer(bytes: u64) -> &'static mut [u8] {
    let addr = dma::alloc(bytes).unwrap_or_else(|err| fail_setup(err));
    // SAFETY: the pool hands these bytes out once; they are identity-mapped RAM that nothing
    // else uses for the rest of the guest's life.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, bytes as usize) }
}

fn run(
    checks: &mut Checks,
    info: &StartInfo,
    disk: &mut Disk,
    w: &Window,
) -> Result<(), DiskError> {
    let args = info.args();
    let seed = number(&args, "seed").unwrap_or(DEFAULT_SEED);
    let buf = dma_buffer(BUF_BYTES);
    if args.get("irq") == Some("1") {
        check_irq(checks, disk, w, buf)?;
    }
    let is_readonly = args.has("readonly");
    if is_readonly {
        checks.expect(
            "readonly-feature",
            disk.blk.readonly(),
            "VIRTIO_BLK_F_RO was not negotiated",
        );
        data::check_readonly(checks, disk, buf, seed)?;
    }
    let limit = number(&args, "limit_mib").map_or(u64::MAX, |mib| mib << 20 >> 9);
    let sectors = disk.sectors().min(limit);
    match number(&args, "expect") {
        Some(expected) => {
            let hash = data::hash_disk(disk, buf, sectors)?;
            println!("virtio-blk: {sectors} sectors hash {hash:#018x}");
            checks.expect(
                "expect-hash",
                hash == expected,
                format_args!("content hash {hash:#018x}, expected {expected:#018x}"),
            );
        }
        None if is_readonly => {
            let hash = data::hash_disk(disk, buf, sectors)?;
            println!("virtio-blk: {sectors} sectors hash {hash:#018x}");
        }
        None => data::check_write_read(checks, disk, buf, sectors, seed)?,
    }
    let bench_mib = number(&args, "bench_mib").unwrap_or(64);
    if bench_mib > 0 {
        let copy_to = dma_buffer(BUF_BYTES);
        let hz = time::tsc_rate().map(|(hz, _)| hz);
        bench::check_throughput(checks, disk, buf, copy_to, bench_mib, hz)?;
    }
    Ok(())
}

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    if let Err(err) = dma::init(info) {
        fail_setup(err);
    }
    if let Some(old) = guest_rt::cpu::enable_write_back_default() {
        println!("virtio-blk: MTRRs were off ({old:#x}): RAM made write-back by default");
    }
    let w = window::find(&args, DEVICE_BLK).unwrap_or_else(|err| fail_setup(err));
    let offered = device_features(&w);
    let transport = w.transport().unwrap_or_else(|err| fail_setup(err));
    let blk = VirtIOBlk::new(transport).unwrap_or_else(|err| fail_setup(err));
    let tsc_hz = match time::tsc_rate() {
        Some((hz, source)) => {
            println!("virtio-blk: TSC {} kHz ({source})", hz / 1000);
            hz
        }
        None => 3_000_000_000,
    };
    let mut disk = Disk { blk, tsc_hz };
    let mut checks = Checks::new("virtio-blk");
    check_features(&mut checks, &w, offered);
    let sectors = disk.sectors();
    println!(
        "virtio-blk: capacity {sectors} sectors ({} KiB), read-only {}",
        sectors * SECTOR_BYTES / 1024,
        disk.blk.readonly()
    );
    let expected = number(&args, "capacity");
    checks.expect(
        "capacity",
        sectors > 0 && expected.is_none_or(|e| e == sectors),
        format_args!("capacity {sectors} sectors, expected {expected:?} (and more than 0)"),
    );
    if let Err(err) = run(&mut checks, info, &mut disk, &w) {
        println!("FAIL virtio-blk: {err}; stopping (the device may still own buffers)");
        exit(1);
    }
    checks.finish()
}
