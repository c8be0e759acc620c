//! Everything that executes privileged x86_64 instructions: CPU tables, interrupts, the local
//! APIC, the serial line, CPU start-up and the kernel's entry from `boot/entry.S`.

pub mod acpi;
pub mod apic;
pub mod cpu;
pub mod entry;
pub mod guest_ram;
pub mod idt;
pub mod memory;
pub mod page_tables;
pub mod percpu;
pub mod selftest;
pub mod serial;
pub mod smp;
pub mod tables;
pub mod time;

core::arch::global_asm!(include_str!("../../../boot/entry.S"));
core::arch::global_asm!(include_str!("../../../boot/ap_trampoline.S"));
