//! `hostile-life`: a guest that ends badly on purpose, for lifecycle scenarios. It cannot judge
//! itself (it does not survive); the scenario judges the hypervisor's lines (`RESTART`,
//! `PASS restart-no-leak`, the time limit, the neighbour's heartbeat).
//!
//! Command line `mode=`:
//! - `crash` (default): one of six ways to end the guest, picked from the TSC so that a
//!   restart loop meets them all: `triple-empty-idt` (#UD with no IDT), `triple-stack`
//!   (exceptions with an unmapped stack: #PF → #DF → shutdown), `triple-idt-unmapped` (the IDT
//!   itself not mapped), `fetch-outside-ram` (a jump into the device window), `cr3-absent`
//!   (page tables moved to memory that is not there), `cr4-reserved` (a reserved CR4 bit, then
//!   a triple fault if the write was refused).
//! - `spin`: loops forever with interrupts off, never exiting by itself;
//! - `halt`: HLT with interrupts off, which only a reset would end;
//! - `ap-triple` (two vCPUs): vCPU 0 starts vCPU 1 (INIT, SIPI) in real-mode code that loads
//!   an empty IDT and executes UD2 (a triple fault on the application processor), then spins;
//! - `ap-spin` (two vCPUs): vCPU 1 is started into `cli; jmp $`, vCPU 0 exits with status 0
//!   after `ap_ms` (default 200) ms: the hypervisor must take vCPU 1 off its CPU too.
//!
//! Before it acts it prints `hostile-life: <mode>: <method>` and
//! `HOSTILE SUMMARY hostile-life-<mode> cases=1 iterations=1 failed=0 ms=0` (one case per run;
//! a report sums the lines of one guest).

#![no_std]
#![no_main]

use core::arch::asm;

use guest_rt::apic::{self, reg, Mode};
use guest_rt::cpu::{cli, rdtsc};
use guest_rt::time::spin_ms;
use guest_rt::{exit, println, StartInfo};

guest_rt::guest!("hostile-life", main);

/// An unbacked address in the device window (the boot map covers it, uncached).
const DEVICE_WINDOW_HOLE: u64 = 0xE000_0000;
/// A virtual address the boot map (first 4 GiB) leaves unmapped.
const UNMAPPED_VA: u64 = 0x0000_7000_0000_0000;

const METHODS: [&str; 6] = [
    "triple-empty-idt",
    "triple-stack",
    "triple-idt-unmapped",
    "fetch-outside-ram",
    "cr3-absent",
    "cr4-reserved",
];
/// CR4 bit 31: reserved on every CPU (Intel SDM vol.3 §2.5, AMD APM vol.2 §3.1.3).
const CR4_RESERVED: u64 = 1 << 31;

/// The page the application processor starts in (SIPI vector 0x50): free low RAM, below the
/// command line (0x2_0000.. is the loader's) and the legacy hole.
const AP_PAGE: u64 = 0x5_0000;
const AP_VECTOR: u32 = (AP_PAGE >> 12) as u32;
/// Real-mode code: `cli; jmp $`.
const AP_SPIN: [u8; 3] = [0xFA, 0xEB, 0xFE];
/// Real-mode code: `cli; lidt cs:[0x10]; ud2`, with a zero IDT descriptor at offset 0x10.
const AP_TRIPLE: [u8; 9] = [0xFA, 0x2E, 0x0F, 0x01, 0x1E, 0x10, 0x00, 0x0F, 0x0B];
const AP_IDT_OFFSET: u64 = 0x10;
/// ICR (Intel SDM vol.3 §11.6.1): INIT, level assert; STARTUP with the page number.
const ICR_INIT: u32 = 0x4500;
const ICR_SIPI: u32 = 0x4600;
const AP_APIC_ID: u32 = 1;
const DEFAULT_AP_MS: u64 = 200;

/// Puts `code` at [`AP_PAGE`] and starts vCPU 1 there with INIT, SIPI, SIPI.
fn start_ap(code: &[u8]) -> Result<(), apic::ApicError> {
    for (i, &byte) in code.iter().enumerate() {
        // SAFETY: AP_PAGE is free low RAM of this guest (identity-mapped), used for nothing else.
        unsafe { core::ptr::write_volatile((AP_PAGE + i as u64) as *mut u8, byte) };
    }
    for i in 0..6 {
        // SAFETY: as above: the zero IDT descriptor the triple-fault code loads.
        unsafe { core::ptr::write_volatile((AP_PAGE + AP_IDT_OFFSET + i) as *mut u8, 0) };
    }
    apic::enable(Mode::XApic)?;
    for low in [ICR_INIT, ICR_SIPI | AP_VECTOR, ICR_SIPI | AP_VECTOR] {
        apic::write(reg::ICR_HIGH, AP_APIC_ID << 24);
        apic::write(reg::ICR_LOW, low);
        spin_ms(1);
    }
    Ok(())
}

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

fn crash(method: &str) -> ! {
    match method {
        "triple-empty-idt" => guest_rt::idt::triple_fault(),
        "triple-stack" => {
            // SAFETY: the point is to end this guest: with RSP unmapped, delivering #UD faults
            // (#PF), delivering that faults (#DF), and the CPU shuts down.
            unsafe { asm!("mov rsp, {}", "ud2", in(reg) UNMAPPED_VA, options(noreturn)) }
        }
        "triple-idt-unmapped" => {
            let idt = DescriptorPointer {
                limit: 0xFFF,
                base: UNMAPPED_VA,
            };
            // SAFETY: as above: reading the gate for #UD faults, and so on to a shutdown.
            unsafe { asm!("lidt [{}]", "ud2", in(reg) &idt, options(noreturn)) }
        }
        "cr4-reserved" => {
            // Hardware raises #GP (caught here, then a triple fault ends the run anyway); QEMU's
            // SVM model instead fails the next VMRUN (VMEXIT_INVALID), which must stop this
            // guest alone and leave it restartable.
            let _ = guest_rt::fault::catch(|| {
                let cr4: u64;
                // SAFETY: reading CR4 has no side effects; the write is meant to be refused.
                unsafe {
                    asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
                    asm!("mov cr4, {}", in(reg) cr4 | CR4_RESERVED, options(nostack));
                }
            });
            guest_rt::idt::triple_fault()
        }
        "fetch-outside-ram" => {
            // SAFETY: as above: the fetch reaches guest-physical memory that is not RAM, which
            // Bulkhead treats as fatal for the guest.
            unsafe { asm!("jmp {}", in(reg) DEVICE_WINDOW_HOLE, options(noreturn)) }
        }
        _ => {
            // SAFETY: as above: every later fetch walks page tables that are not there.
            unsafe { asm!("mov cr3, {}", "ud2", in(reg) DEVICE_WINDOW_HOLE, options(noreturn)) }
        }
    }
}

fn main(info: &'static StartInfo) -> ! {
    let mode = info.args().get("mode").unwrap_or("crash");
    let method = match mode {
        // The TSC's low bits differ from run to run; /64 skips the lowest, which may move in
        // fixed steps under emulators.
        "crash" => METHODS[((rdtsc() / 64) % METHODS.len() as u64) as usize],
        "spin" => "interrupts off, looping",
        "halt" => "interrupts off, halted",
        "ap-triple" => "vCPU 1 triple-faults in real mode, vCPU 0 spins",
        "ap-spin" => "vCPU 1 spins with interrupts off, vCPU 0 exits",
        other => {
            println!("FAIL hostile-life: mode={other:?}: expected crash, spin or halt");
            exit(1)
        }
    };
    println!("hostile-life: {mode}: {method}");
    println!("HOSTILE SUMMARY hostile-life-{mode} cases=1 iterations=1 failed=0 ms=0");
    if mode.starts_with("ap-") {
        let code: &[u8] = match mode {
            "ap-spin" => &AP_SPIN,
            _ => &AP_TRIPLE,
        };
        if let Err(e) = start_ap(code) {
            println!("FAIL hostile-life: cannot start vCPU 1: {e}");
            exit(1)
        }
        if mode == "ap-spin" {
            let ms = info
                .args()
                .get_u64("ap_ms")
                .ok()
                .flatten()
                .unwrap_or(DEFAULT_AP_MS);
            spin_ms(ms);
            println!("hostile-life: vCPU 0 exits; vCPU 1 is still spinning");
            exit(0)
        }
    }
    cli();
    match mode {
        "spin" | "ap-triple" => loop {
            core::hint::spin_loop();
        },
        "halt" => loop {
            // SAFETY: with IF=0 HLT never returns; only the hypervisor can end this guest.
            unsafe { asm!("hlt", options(nomem, nostack)) }
        },
        _ => crash(method),
    }
}
