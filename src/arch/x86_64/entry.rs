//! From `boot/entry.S` to a running platform: the boot CPU's `kernel_main`, each AP's
//! `ap_main`, the panic handler and the test-mode exit.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use multiboot2::{BootInformation, BootInformationHeader};

use super::{apic, cpu, idt, memory, percpu, serial, smp, tables, time};
use crate::addr::HostPhysAddr;
use crate::boot::{cmdline, BootInfo, RegionKind};
use crate::println;
use crate::virt;

static TEST_MODE: AtomicBool = AtomicBool::new(false);

/// QEMU isa-debug-exit port; the emulator exits with status `(value << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xF4;
const DEBUG_EXIT_OK: u8 = 0x10;
const DEBUG_EXIT_FAIL: u8 = 0x11;

/// Ends a test run: prints the verdict, exits QEMU (isa-debug-exit) or stops Bochs (magic
/// breakpoint), and otherwise halts.
pub fn finish(ok: bool, reason: &str) -> ! {
    if ok {
        println!("BULKHEAD EXIT ok");
    } else {
        println!("BULKHEAD EXIT fail: {reason}");
    }
    serial::flush();
    if TEST_MODE.load(Ordering::Relaxed) {
        // SAFETY: port 0xF4 is QEMU's debug-exit device in test runs (absent elsewhere, where
        // the write goes nowhere); `xchg bx, bx` is a no-op outside Bochs.
        unsafe {
            cpu::outb(
                DEBUG_EXIT_PORT,
                if ok { DEBUG_EXIT_OK } else { DEBUG_EXIT_FAIL },
            );
            core::arch::asm!("xchg bx, bx", options(nomem, nostack, preserves_flags));
        }
    }
    cpu::halt_forever()
}

/// Sets up GDT/TSS (with IST stacks), IDT and the local APIC on the running CPU.
fn init_cpu_tables() {
    let mut ist = [0u64; 3];
    for top in &mut ist {
        *top = match memory::alloc_stack() {
            Ok(s) => s.top,
            Err(e) => panic!("no memory for an interrupt stack: {e}"),
        };
    }
    tables::load(&tables::IstStacks {
        double_fault: ist[0],
        nmi: ist[1],
        machine_check: ist[2],
    });
    idt::load();
    apic::init();
    idt::set_handler(idt::KICK_VECTOR, |_| {});
    idt::set_handler(idt::TIMER_VECTOR, |_| {});
}

#[no_mangle]
extern "C" fn kernel_main(magic: u32, info_addr: u64) -> ! {
    serial::init();
    serial::init_logger(log::LevelFilter::Info);
    memory::init_heap();
    println!("Bulkhead {} starting", env!("CARGO_PKG_VERSION"));

    // SAFETY: GRUB passed the address of a complete multiboot2 information structure in EBX,
    // identity-mapped by the boot page tables; it stays untouched until BootInfo owns a copy.
    let mbi = unsafe { BootInformation::load(info_addr as *const BootInformationHeader) };
    let info = match mbi
        .map_err(|_| ())
        .and_then(|m| BootInfo::parse(magic, &m).map_err(|e| log::error!("{e}")))
    {
        Ok(i) => i,
        Err(()) => finish(false, "unusable boot information"),
    };
    let mut unknown = Vec::new();
    let args = cmdline::parse(&info.cmdline, |w| {
        unknown.push(alloc::string::String::from(w))
    });
    TEST_MODE.store(args.test, Ordering::Relaxed);
    log::set_max_level(args.log_level);
    for w in unknown {
        log::warn!(target: "boot", "unknown command-line word {w:?} ignored");
    }

    memory::init_frames(&info);
    log_memory_map(&info);

    // SAFETY: cpu0 is the boot CPU and this runs once, before anything reads per-CPU data.
    unsafe { percpu::init(0, 0) };
    apic::disable_legacy_pic();
    init_cpu_tables();
    // SAFETY: cpu0's block is ours; re-initialise with the real APIC id now that the APIC is on.
    unsafe { percpu::init(0, apic::id()) };
    let khz = time::calibrate();
    log::info!(target: "boot", "TSC {} MHz", khz / 1000);
    apic::init_timer(idt::TIMER_VECTOR);
    time::init_wall_clock();

    let cpus = super::acpi::cpu_apic_ids(&info);
    super::page_tables::init(&info);
    start_aps(&info, &cpus);
    memory::release_high_memory(&info);
    let cpu_count = cpus.len().max(1);

    let caps = match virt::probe() {
        Ok(c) => c,
        Err(e) => {
            log::error!(target: "virt", "{e}");
            finish(false, "no usable hardware virtualization");
        }
    };
    log::info!(target: "virt", "{caps}");
    if args.selftest && super::selftest::run(cpu_count) > 0 && args.test {
        finish(false, "self-tests failed");
    }
    crate::hypervisor::run(&info, args, caps)
}

fn log_memory_map(info: &BootInfo) {
    log::info!(target: "boot", "memory map ({}, {} regions):", if info.is_uefi { "UEFI" } else { "BIOS e820" }, info.memory.len());
    for r in &info.memory {
        log::info!(target: "boot", "  {:#014x}-{:#014x} {:>8} KiB {:?}", r.start.as_u64(), r.end().as_u64(), r.len / 1024, r.kind);
    }
    log::info!(
        target: "boot",
        "usable RAM {} MiB, free for guests {} MiB (largest block {} MiB), {} modules",
        info.usable_bytes() >> 20,
        memory::free_bytes() >> 20,
        memory::largest_free() >> 20,
        info.modules.len()
    );
    for m in &info.modules {
        log::info!(target: "boot", "  module {:?} at {} ({} bytes)", m.name, m.start, m.len);
    }
}

/// A free, usable page below 1 MiB that holds no boot data, for the AP trampoline.
fn trampoline_page(info: &BootInfo) -> Option<HostPhysAddr> {
    const PAGE: u64 = 4096;
    let busy = |p: u64| {
        let overlaps = |s: u64, len: u64| s < p + PAGE && p < s.saturating_add(len);
        overlaps(info.info_start.as_u64(), info.info_len)
            || info
                .modules
                .iter()
                .any(|m| overlaps(m.start.as_u64(), m.len))
    };
    (1..0x9F)
        .rev()
        .map(|n| n * PAGE)
        .find(|&p| {
            info.memory.iter().any(|r| {
                r.kind == RegionKind::Usable
                    && r.start.as_u64() <= p
                    && p + PAGE <= r.end().as_u64()
            }) && !busy(p)
        })
        .map(HostPhysAddr::new)
}

fn start_aps(info: &BootInfo, apic_ids: &[u32]) {
    let bsp = apic::id();
    let aps: Vec<u32> = apic_ids
        .iter()
        .copied()
        .filter(|&id| id != bsp)
        .take(percpu::MAX_CPUS - 1)
        .collect();
    if !aps.is_empty() {
        let Some(page) = trampoline_page(info) else {
            log::error!(target: "smp", "no free page below 1 MiB for the AP trampoline; running on cpu0 only");
            return;
        };
        for (i, &apic_id) in aps.iter().enumerate() {
            let index = i + 1;
            let stack = match memory::alloc_stack() {
                Ok(s) => s,
                Err(e) => {
                    log::error!(target: "smp", "cpu{index}: {e}");
                    break;
                }
            };
            // SAFETY: `page` is usable RAM below 1 MiB holding no boot data; APs start one at a
            // time, so it is not shared; the stack is fresh; `ap_main` never returns.
            if let Err(e) = unsafe { smp::start_ap(page, apic_id, index, stack.top, ap_main) } {
                log::error!(target: "smp", "{e}");
            }
        }
    }
    let expected = aps.len() + 1;
    let deadline = time::now_us() + 2_000_000;
    while smp::online() < expected && time::now_us() < deadline {
        cpu::relax();
    }
    if smp::online() == expected {
        log::info!(target: "smp", "all {} CPUs online", expected);
    } else {
        log::error!(target: "smp", "only {} of {} CPUs came online", smp::online(), expected);
    }
}

extern "C" fn ap_main(index: usize) -> ! {
    super::page_tables::load();
    smp::ap_arrived();
    // SAFETY: each AP gets a unique index from the boot CPU; this runs first on the AP.
    unsafe { percpu::init(index, 0) };
    init_cpu_tables();
    // SAFETY: as above; record the APIC id now that the APIC is enabled.
    unsafe { percpu::init(index, apic::id()) };
    apic::init_timer(idt::TIMER_VECTOR);
    match virt::probe() {
        Ok(_) => log::debug!(target: "smp", "online, APIC id {}", apic::id()),
        Err(e) => log::warn!(target: "smp", "online, APIC id {}, but {e}", apic::id()),
    }
    smp::report_online();
    crate::hypervisor::ap_idle(index)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    smp::stop_others();
    // SAFETY: every other CPU was just told to stop; breaking the lock lets the report out even
    // if this CPU panicked while printing.
    unsafe { serial::force_unlock() };
    println!("PANIC on cpu{}: {}", percpu::index(), info);
    finish(false, "panic")
}
