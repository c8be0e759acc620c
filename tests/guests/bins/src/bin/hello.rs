//! `hello`: the smallest scenario. Prints a greeting with its command line (or "hello"), the
//! memory map it was given, and `PASS hello`.
//!
//! For testing scenario runners themselves, the command line words `fail`, `panic` and `fault`
//! make it end badly on purpose: a `FAIL` marker, a panic, or an unexpected #UD.

#![no_std]
#![no_main]

use guest_rt::{println, Checks, StartInfo};

guest_rt::guest!("hello", main);

fn main(info: &'static StartInfo) -> ! {
    let cmdline = info.cmdline();
    let greeting = if cmdline.trim().is_empty() {
        "hello"
    } else {
        cmdline
    };
    println!("hello from {greeting}");
    println!(
        "hello: start info at {:#x}, version {}, rsdp {:#x}",
        info.paddr, info.version, info.rsdp_paddr
    );
    for range in info.memmap() {
        println!(
            "hello: memmap {:#012x}-{:#012x} {}",
            range.base,
            range.end().saturating_sub(1),
            range.kind_name()
        );
    }
    if info.is_memmap_truncated {
        println!("hello: memory map truncated");
    }
    println!("hello: {} KiB of RAM", info.ram_bytes() / 1024);
    let args = info.args();
    let mut checks = Checks::new("hello");
    if args.has("fail") {
        checks.fail("asked", "the command line said fail");
    }
    if args.has("panic") {
        panic!("the command line said panic");
    }
    if args.has("fault") {
        // SAFETY: UD2 only raises #UD, which the runtime reports as an unexpected exception.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
    checks.finish()
}
