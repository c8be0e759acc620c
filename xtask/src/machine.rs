//! The emulated machine a boot runs on: emulator, firmware, CPU model, CPU count, RAM.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emulator {
    Qemu,
    Bochs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS under QEMU, the Bochs BIOS under Bochs.
    #[default]
    Bios,
    /// OVMF (QEMU only).
    Uefi,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Tcg,
    Kvm,
}

/// Which virtualization extension the guest CPU offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cpu {
    /// QEMU `-cpu max` under TCG: AMD-V with NPT.
    Max,
    /// QEMU `-cpu host` under KVM: whatever the host (nested) offers.
    Host,
    /// Intel VT-x with EPT: Bochs `corei7_skylake_x`.
    Vmx,
    /// AMD-V with NPT and nRIP: Bochs `ryzen`, or QEMU TCG `-cpu max`.
    Svm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Machine {
    pub emulator: Emulator,
    pub firmware: Firmware,
    pub accel: Accel,
    pub cpu: Cpu,
    pub smp: u32,
    pub mem_mib: u32,
}

/// The most CPUs a scenario may ask for (the xAPIC ids Bochs and SeaBIOS handle comfortably).
pub const MAX_SMP: u32 = 16;
/// Below this, firmware plus GRUB plus the hypervisor do not fit.
pub const MIN_MEM_MIB: u32 = 64;

impl Machine {
    /// The CPU model a machine gets when none is named.
    pub fn default_cpu(emulator: Emulator, accel: Accel) -> Cpu {
        match (emulator, accel) {
            (Emulator::Qemu, Accel::Kvm) => Cpu::Host,
            (Emulator::Qemu, Accel::Tcg) => Cpu::Max,
            (Emulator::Bochs, _) => Cpu::Vmx,
        }
    }

    /// Rejects combinations no emulator here can run.
    pub fn validate(&self) -> Result<(), String> {
        match (self.emulator, self.accel, self.cpu, self.firmware) {
            (Emulator::Bochs, _, _, Firmware::Uefi) => {
                Err("Bochs runs BIOS firmware only (no OVMF build for Bochs)".into())
            }
            (Emulator::Bochs, Accel::Kvm, _, _) => Err("Bochs has no KVM acceleration".into()),
            (Emulator::Bochs, _, Cpu::Max | Cpu::Host, _) => {
                Err("Bochs CPU models are `vmx` (corei7_skylake_x) and `svm` (ryzen)".into())
            }
            (Emulator::Qemu, Accel::Tcg, Cpu::Vmx, _) => Err(
                "QEMU's TCG does not emulate VMX: use Bochs (--bochs --cpu vmx) or KVM on an Intel host"
                    .into(),
            ),
            (Emulator::Qemu, Accel::Tcg, Cpu::Host, _) => {
                Err("`-cpu host` needs KVM (--accel kvm)".into())
            }
            _ if self.smp == 0 || self.smp > MAX_SMP => {
                Err(format!("smp must be 1..={MAX_SMP}, got {}", self.smp))
            }
            _ if self.mem_mib < MIN_MEM_MIB => Err(format!(
                "memory must be at least {MIN_MEM_MIB} MiB, got {} MiB",
                self.mem_mib
            )),
            _ => Ok(()),
        }
    }

    /// A short, file-name-safe description: `qemu-uefi-smp2-128M`, `bochs-svm-smp4-2G`.
    pub fn label(&self) -> String {
        let kind = match (self.emulator, self.accel, self.firmware, self.cpu) {
            (Emulator::Qemu, Accel::Kvm, _, _) => "qemu-kvm",
            (Emulator::Qemu, _, Firmware::Uefi, _) => "qemu-uefi",
            (Emulator::Qemu, _, Firmware::Bios, _) => "qemu-bios",
            (Emulator::Bochs, _, _, Cpu::Svm) => "bochs-svm",
            (Emulator::Bochs, _, _, _) => "bochs-vmx",
        };
        let kvm_uefi = if self.accel == Accel::Kvm && self.firmware == Firmware::Uefi {
            "-uefi"
        } else {
            ""
        };
        format!(
            "{kind}{kvm_uefi}-smp{}-{}",
            self.smp,
            mem_label(self.mem_mib)
        )
    }

    /// How the hypervisor names the extension this machine offers, as in its `virt:` line.
    pub fn virt_name(&self) -> &'static str {
        let intel = match self.cpu {
            Cpu::Vmx => true,
            Cpu::Svm | Cpu::Max => false,
            Cpu::Host => host_is_intel(),
        };
        if intel {
            "Intel VT-x (VMX)"
        } else {
            "AMD-V (SVM)"
        }
    }
}

fn host_is_intel() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| info.contains("GenuineIntel"))
}

/// Parses a RAM size: a number with an optional `K`, `M` (default) or `G` suffix
/// (`KiB`/`MiB`/`GiB`/`B` spellings accepted), into MiB.
pub fn parse_mem(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let bad = || format!("bad memory size `{text}` (want e.g. 128M or 2G)");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let mib = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => n,
        "G" | "GB" | "GIB" => n.checked_mul(1024).ok_or_else(bad)?,
        "K" | "KB" | "KIB" if n.is_multiple_of(1024) => n / 1024,
        _ => return Err(bad()),
    };
    u32::try_from(mib).map_err(|_| bad())
}

/// `2048` → `2G`, `128` → `128M`.
pub fn mem_label(mib: u32) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(emulator: Emulator, cpu: Cpu, firmware: Firmware) -> Machine {
        Machine {
            emulator,
            firmware,
            accel: Accel::Tcg,
            cpu,
            smp: 2,
            mem_mib: 2048,
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem("128M"), Ok(128));
        assert_eq!(parse_mem("2G"), Ok(2048));
        assert_eq!(parse_mem("2GiB"), Ok(2048));
        assert_eq!(parse_mem("512"), Ok(512));
        assert_eq!(parse_mem("65536K"), Ok(64));
        assert!(parse_mem("lots").is_err());
        assert!(parse_mem("1T").is_err());
        assert!(parse_mem("99999999999G").is_err());
        assert_eq!(mem_label(2048), "2G");
        assert_eq!(mem_label(128), "128M");
        assert_eq!(mem_label(1536), "1536M");
    }

    #[test]
    fn labels_and_vendors() {
        let m = machine(Emulator::Bochs, Cpu::Vmx, Firmware::Bios);
        assert_eq!(m.label(), "bochs-vmx-smp2-2G");
        assert_eq!(m.virt_name(), "Intel VT-x (VMX)");
        let m = machine(Emulator::Qemu, Cpu::Max, Firmware::Uefi);
        assert_eq!(m.label(), "qemu-uefi-smp2-2G");
        assert_eq!(m.virt_name(), "AMD-V (SVM)");
        assert_eq!(
            machine(Emulator::Bochs, Cpu::Svm, Firmware::Bios).virt_name(),
            "AMD-V (SVM)"
        );
    }

    #[test]
    fn impossible_machines_are_rejected() {
        assert!(machine(Emulator::Bochs, Cpu::Vmx, Firmware::Uefi)
            .validate()
            .is_err());
        assert!(machine(Emulator::Qemu, Cpu::Vmx, Firmware::Bios)
            .validate()
            .is_err());
        assert!(machine(Emulator::Bochs, Cpu::Max, Firmware::Bios)
            .validate()
            .is_err());
        let mut m = machine(Emulator::Qemu, Cpu::Max, Firmware::Bios);
        assert!(m.validate().is_ok());
        m.smp = 0;
        assert!(m.validate().is_err());
        m.smp = 1;
        m.mem_mib = 16;
        assert!(m.validate().is_err());
    }
}
