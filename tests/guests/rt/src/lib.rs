//! Runtime shared by Bulkhead's test guests: the PVH entry (ELF note, 32-bit stub, long mode),
//! COM1 printing, the exit port, an IDT whose faults can be caught as values and whose
//! interrupt vectors dispatch to registered handlers, the local APIC and I/O APIC, a DMA page
//! pool, the start info, the command line, CPUID/MSR/port helpers, the PASS/FAIL markers, and
//! pieces several guests share: set-up that fails the guest, canary pages, line echo.
//!
//! A guest is a binary that calls [`guest!`] with its name and `fn main(&'static StartInfo) -> !`.

#![no_std]

pub mod apic;
pub mod boot;
pub mod canary;
pub mod checks;
pub mod cmdline;
pub mod cpu;
pub mod dma;
pub mod fault;
pub mod idt;
pub mod ioapic;
pub mod irq;
pub mod line;
pub mod mmio;
pub mod paging;
pub mod pit;
pub mod runtime;
pub mod serial;
pub mod setup;
pub mod start_info;
pub mod time;

pub use checks::Checks;
pub use runtime::exit;
pub use start_info::StartInfo;
