//! `vecho`: reads lines from its virtio-console and prints each on COM1 as `VECHO <line>`, so a
//! scenario can see that typed input reached this guest through the console's receive queue
//! (and only when it had the focus). It prints `vecho: ready` once its receive buffer is
//! posted; after `lines=N` lines it passes and exits.
//!
//! Command line: `virtio=ADDR@GSI` (from the hypervisor), `lines=N` (default: forever).

#![no_std]
#![no_main]

use guest_rt::line::LineEcho;
use guest_rt::setup::{alloc, fail_setup};
use guest_rt::{dma, println, Checks, StartInfo};
use guest_virtio::window;
use guest_virtio::GuestHal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};

guest_rt::guest!("vecho", main);

/// virtio device ID of a console (virtio 1.2 §5).
const DEVICE_CONSOLE: u32 = 3;
/// receiveq0 (virtio 1.2 §5.3.2).
const RX_QUEUE: u16 = 0;
const QUEUE_SIZE: usize = 16;
/// VIRTIO_F_VERSION_1, the only feature this driver takes (virtio 1.2 §6).
const F_VERSION_1: u64 = 1 << 32;
const PAGE_BYTES: u32 = 4096;
const RX_BYTES: u64 = 4096;

fn main(info: &'static StartInfo) -> ! {
    let args = info.args();
    let limit = args.get_u64("lines").unwrap_or_else(|e| fail_setup(e));
    if let Err(e) = dma::init(info) {
        fail_setup(e);
    }
    guest_rt::cpu::enable_write_back_default();
    let w = window::find(&args, DEVICE_CONSOLE).unwrap_or_else(|e| fail_setup(e));
    let mut t = w.transport().unwrap_or_else(|e| fail_setup(e));
    // Device initialisation, virtio 1.2 §3.1.1 (by hand: the crate's console driver needs
    // an allocator, which these guests do not have).
    t.set_status(DeviceStatus::empty());
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let features = t.read_device_features() & F_VERSION_1;
    t.write_driver_features(features);
    t.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK);
    t.set_guest_page_size(PAGE_BYTES);
    let mut rx = VirtQueue::<GuestHal, QUEUE_SIZE>::new(&mut t, RX_QUEUE, false, false)
        .unwrap_or_else(|e| fail_setup(e));
    t.finish_init();
    let addr = alloc(RX_BYTES);
    // SAFETY: the pool hands these bytes out once; identity-mapped RAM nothing else uses.
    let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, RX_BYTES as usize) };
    println!("vecho: ready (virtio-console at {:#x})", w.base());
    let mut echo = LineEcho::new("VECHO");
    loop {
        // SAFETY: the buffer stays valid and untouched until the device returns it below.
        let token = unsafe { rx.add(&[], &mut [&mut buf[..]]) };
        let token = token.unwrap_or_else(|e| fail_setup(e));
        if rx.should_notify() {
            t.notify(RX_QUEUE);
        }
        // Polling reads only the used ring in RAM: no exits while nothing arrives.
        while rx.peek_used() != Some(token) {
            core::hint::spin_loop();
        }
        // SAFETY: the same buffer as added above, now returned by the device.
        let n = unsafe { rx.pop_used(token, &[], &mut [&mut buf[..]]) };
        let n = n.unwrap_or_else(|e| fail_setup(e));
        for &b in buf.iter().take(n as usize) {
            let Some(lines) = echo.push(b) else {
                continue;
            };
            if limit.is_some_and(|l| lines >= l) {
                Checks::new("vecho").finish()
            }
        }
    }
}
