//! In-kernel tests of code that only runs on a real (or emulated) CPU, run with `selftest` on
//! the command line. Each prints `PASS selftest/NAME` or `FAIL selftest/NAME: why`.

use alloc::vec::Vec;

use super::guest_ram::GuestRam;
use super::{apic, cpu, memory, page_tables, percpu, smp, time};
use crate::addr::{GuestPhysAddr, LARGE_PAGE_SIZE};
use crate::guest_mem::GuestMemory;
use crate::println;

type Test = (&'static str, fn() -> Result<(), &'static str>);

const TESTS: [Test; 9] = [
    ("host-tables-checked", host_tables_checked),
    ("stack-guards-unmapped", stack_guards_unmapped),
    ("timer-wakes", timer_wakes),
    ("frames-roundtrip", frames_roundtrip),
    ("guest-ram-copies", guest_ram_copies),
    ("tsc-advances", tsc_advances),
    ("percpu-index", percpu_index),
    ("apic-id-matches", apic_id_matches),
    ("all-cpus-online", all_cpus_online),
];

/// Runs every self-test; returns how many failed.
pub fn run(expected_cpus: usize) -> usize {
    EXPECTED_CPUS.store(expected_cpus, core::sync::atomic::Ordering::Relaxed);
    let mut failed = 0;
    for (name, test) in TESTS {
        match test() {
            Ok(()) => println!("PASS selftest/{name}"),
            Err(why) => {
                failed += 1;
                println!("FAIL selftest/{name}: {why}");
            }
        }
    }
    failed
}

static EXPECTED_CPUS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);

fn frames_roundtrip() -> Result<(), &'static str> {
    let before = memory::free_frames();
    let mut blocks = Vec::new();
    for size in [4096u64, 3 * 4096, LARGE_PAGE_SIZE, 5 * LARGE_PAGE_SIZE] {
        let pa = memory::alloc_zeroed(size, LARGE_PAGE_SIZE).map_err(|_| "allocation failed")?;
        if !pa.is_aligned(LARGE_PAGE_SIZE) {
            return Err("block not aligned as asked");
        }
        blocks.push((pa, size));
    }
    if memory::free_frames() >= before {
        return Err("free count did not drop");
    }
    for (pa, size) in blocks {
        memory::free(pa, size);
    }
    if memory::free_frames() != before {
        return Err("frames leaked");
    }
    Ok(())
}

fn guest_ram_copies() -> Result<(), &'static str> {
    let size = 2 * LARGE_PAGE_SIZE;
    let pa = memory::alloc_zeroed(size, LARGE_PAGE_SIZE).map_err(|_| "allocation failed")?;
    // SAFETY: the block was just allocated for this test alone and is freed below.
    let ram = unsafe { GuestRam::new(pa, size) };
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let result = (|| {
        for gpa in [0u64, 3, 4093, size - 1000] {
            ram.write(GuestPhysAddr::new(gpa), &data)
                .map_err(|_| "write in range refused")?;
            let mut back = alloc::vec![0u8; data.len()];
            ram.read(GuestPhysAddr::new(gpa), &mut back)
                .map_err(|_| "read in range refused")?;
            if back != data {
                return Err("read back differs");
            }
        }
        if ram.write(GuestPhysAddr::new(size - 999), &data).is_ok() {
            return Err("write past the end accepted");
        }
        if ram.read_u64(GuestPhysAddr::new(u64::MAX - 3)).is_ok() {
            return Err("wrapping read accepted");
        }
        Ok(())
    })();
    memory::free(pa, size);
    result
}

fn tsc_advances() -> Result<(), &'static str> {
    let a = cpu::rdtsc();
    time::delay_us(1000);
    let b = cpu::rdtsc();
    if b <= a || b - a < time::tsc_khz() / 2 {
        return Err("TSC did not advance by about 1 ms over a 1 ms delay");
    }
    Ok(())
}

fn percpu_index() -> Result<(), &'static str> {
    if percpu::index() != 0 {
        return Err("boot CPU is not cpu0");
    }
    Ok(())
}

fn apic_id_matches() -> Result<(), &'static str> {
    if percpu::apic_id(0) != apic::id() {
        return Err("per-CPU APIC id differs from the APIC's");
    }
    Ok(())
}

fn all_cpus_online() -> Result<(), &'static str> {
    if smp::online() != EXPECTED_CPUS.load(core::sync::atomic::Ordering::Relaxed) {
        return Err("not every CPU in the MADT came online");
    }
    Ok(())
}

fn timer_wakes() -> Result<(), &'static str> {
    let start = cpu::rdtsc();
    let deadline = start + time::tsc_khz() * 2;
    apic::arm_timer_at(deadline);
    // A kick or a stray interrupt may wake us early; wait for the deadline itself.
    let limit = start + time::tsc_khz() * 1000;
    while cpu::rdtsc() < deadline {
        cpu::wait_for_interrupt();
        if cpu::rdtsc() > limit {
            return Err("no timer interrupt within 1 s of a 2 ms deadline");
        }
    }
    apic::disarm_timer();
    Ok(())
}

/// The full check of the live tables (W^X, code only in the image's text, every stack guard
/// unmapped), after more stacks have been made; the reason is printed, the test fails.
fn host_tables_checked() -> Result<(), &'static str> {
    let stack = memory::alloc_stack().map_err(|_| "no memory for a stack")?;
    // Deliberately leaked, like stack_guards_unmapped's: its guard stays unmapped and listed.
    let _ = stack;
    page_tables::check(&[]).map_err(|v| {
        println!("selftest: {v}");
        "the hypervisor's page tables break a rule"
    })
}

fn stack_guards_unmapped() -> Result<(), &'static str> {
    let stack = memory::alloc_stack().map_err(|_| "no memory for a stack")?;
    let guard_mapped = page_tables::is_mapped(stack.guard.as_u64());
    let top_mapped = page_tables::is_mapped(stack.top - 8);
    // The stack is deliberately leaked: its guard page stays unmapped.
    if guard_mapped {
        return Err("a new stack's guard page is mapped");
    }
    if !top_mapped {
        return Err("a new stack itself is not mapped");
    }
    Ok(())
}
