//! The VMM's view of the machine it runs on ([`Host`] for the dispatcher).

use raw_cpuid::native_cpuid::cpuid_count;

use crate::arch::x86_64::{cpu, serial, time};
use crate::vmm::dispatch::Host;

/// The host services a vCPU of guest `name` uses.
pub struct MachineHost {
    /// The guest's name, put in front of each console line.
    pub name: &'static str,
    max_basic: u32,
    max_ext: u32,
}

impl MachineHost {
    /// For guest `name`.
    pub fn new(name: &'static str) -> Self {
        let max_basic = cpuid_count(0, 0).eax;
        let max_ext = cpuid_count(0x8000_0000, 0).eax;
        Self {
            name,
            max_basic,
            max_ext,
        }
    }
}

impl Host for MachineHost {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let r = cpuid_count(leaf, subleaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    }

    fn cpuid_max(&self) -> (u32, u32) {
        (self.max_basic, self.max_ext)
    }

    fn tsc(&self) -> u64 {
        cpu::rdtsc()
    }

    fn tsc_khz(&self) -> u64 {
        time::tsc_khz()
    }

    fn unix_now(&self) -> u64 {
        time::unix_now()
    }

    fn console_line(&mut self, line: &[u8]) {
        use core::fmt::Write;
        let mut out = serial::line();
        let _ = write!(out, "[{}] ", self.name);
        // Guest bytes are shown as text where they are printable ASCII, escaped otherwise, so a
        // guest cannot send terminal control sequences through the hypervisor's console.
        for &b in line {
            if b == b'\t' || (0x20..0x7F).contains(&b) {
                let _ = out.write_char(b as char);
            } else {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        let _ = out.write_str("\n");
    }
}
