//! QEMU command lines: a machine booting an ISO (the hypervisor), or QEMU booting a Linux
//! kernel itself (the benchmarks' baseline without the hypervisor).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::machine::{Accel, Firmware, Machine};
use crate::sys;

/// Where the guest's COM1 goes.
pub enum Serial<'a> {
    /// Serial and the QEMU monitor multiplexed on this terminal (Ctrl-] x quits: QEMU's mux
    /// escape moves off Ctrl-A, which belongs to Bulkhead's console).
    Terminal,
    /// Serial written to a file; no monitor.
    File(&'a Path),
    /// Serial on QEMU's stdin/stdout (pipes the runner reads and types into); no monitor.
    Pipes,
}

/// A Linux kernel and initramfs that QEMU boots itself, with no hypervisor under them.
pub struct DirectLinux<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    pub mem_mib: u32,
    pub serial_log: &'a Path,
}

/// QEMU's arguments for a [`DirectLinux`] boot under TCG (what the hypervisor's scenarios get
/// too): one CPU, no display or monitor, COM1 to the log, and no reboot, so a kernel that
/// powers off or panics ends QEMU. The machine type is QEMU's default unless the caller adds
/// `-M`.
pub fn direct_linux_args(boot: &DirectLinux) -> Vec<String> {
    let words = [
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-display",
        "none",
        "-no-reboot",
        "-monitor",
        "none",
    ];
    let mut args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    args.extend(["-m".into(), boot.mem_mib.to_string()]);
    args.extend([
        "-serial".into(),
        format!("file:{}", boot.serial_log.display()),
    ]);
    args.extend(["-kernel".into(), boot.kernel.display().to_string()]);
    args.extend(["-initrd".into(), boot.initrd.display().to_string()]);
    args.extend(["-append".into(), boot.cmdline.to_owned()]);
    args
}

/// One QEMU boot.
pub struct Boot<'a> {
    pub machine: &'a Machine,
    pub iso: &'a Path,
    pub serial: Serial<'a>,
    /// A writable copy of the OVMF variable store (UEFI only); see [`copy_ovmf_vars`].
    pub ovmf_vars: Option<&'a Path>,
    /// Start halted with a gdb stub on TCP port 1234 (`-s -S`).
    pub gdb: bool,
}

/// QEMU's own terminal escape (Ctrl-]), so Ctrl-A reaches Bulkhead's monitor console.
pub const QEMU_ESCAPE: &str = "0x1d";
/// Port QEMU's `isa-debug-exit` device listens on; the hypervisor writes its verdict there.
pub const DEBUG_EXIT_DEVICE: &str = "isa-debug-exit,iobase=0xf4,iosize=0x04";
/// Exit status QEMU reports for `BULKHEAD EXIT ok` (0x10 written: (0x10 << 1) | 1).
pub const EXIT_OK: i32 = 33;
/// Exit status QEMU reports for `BULKHEAD EXIT fail` (0x11 written).
pub const EXIT_FAIL: i32 = 35;

/// Gives a UEFI boot its own copy of the variable store (OVMF writes to it).
pub fn copy_ovmf_vars(dest: &Path) -> Result<PathBuf, String> {
    std::fs::copy(sys::OVMF_VARS, dest)
        .map_err(|e| format!("copying {} to {}: {e}", sys::OVMF_VARS, dest.display()))?;
    Ok(dest.to_path_buf())
}

/// The arguments after `qemu-system-x86_64`.
pub fn args(boot: &Boot) -> Result<Vec<OsString>, String> {
    let m = boot.machine;
    m.validate()?;
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |words: &[&str]| a.extend(words.iter().map(OsString::from));
    // q35 works with both SeaBIOS and OVMF and still has the ISA bus for COM1 and port 0xf4.
    push(&["-machine", "q35"]);
    match (m.accel, m.cpu) {
        (Accel::Kvm, _) => push(&["-accel", "kvm", "-cpu", "host"]),
        // TCG's `max` CPU includes SVM with NPT; it has no VMX (validate() rejected that).
        (Accel::Tcg, _) => push(&["-accel", "tcg", "-cpu", "max"]),
    }
    let smp = m.smp.to_string();
    let mem = m.mem_mib.to_string();
    push(&["-smp", &smp, "-m", &mem]);
    push(&["-display", "none", "-no-reboot"]);
    push(&["-device", DEBUG_EXIT_DEVICE]);
    match boot.serial {
        Serial::Terminal => push(&["-echr", QEMU_ESCAPE, "-serial", "mon:stdio"]),
        Serial::File(log) => {
            push(&["-monitor", "none", "-serial"]);
            let mut spec = OsString::from("file:");
            spec.push(log);
            a.push(spec);
        }
        Serial::Pipes => push(&["-monitor", "none", "-serial", "stdio"]),
    }
    if m.firmware == Firmware::Uefi {
        let vars = boot
            .ovmf_vars
            .ok_or("a UEFI boot needs a copy of the OVMF variable store")?;
        a.push("-drive".into());
        a.push(
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                sys::OVMF_CODE
            )
            .into(),
        );
        a.push("-drive".into());
        let mut spec = OsString::from("if=pflash,format=raw,unit=1,file=");
        spec.push(vars);
        a.push(spec);
    }
    a.push("-cdrom".into());
    a.push(boot.iso.into());
    a.push("-boot".into());
    a.push("d".into());
    if boot.gdb {
        a.push("-s".into());
        a.push("-S".into());
    }
    Ok(a)
}

pub fn command(boot: &Boot) -> Result<Command, String> {
    let mut command = Command::new("qemu-system-x86_64");
    command.args(args(boot)?);
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Cpu, Emulator};

    fn joined(boot: &Boot) -> String {
        args(boot)
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn tcg_bios_boot_logs_to_a_file_and_can_exit() {
        let m = Machine {
            emulator: Emulator::Qemu,
            firmware: Firmware::Bios,
            accel: Accel::Tcg,
            cpu: Cpu::Max,
            smp: 2,
            mem_mib: 128,
        };
        let line = joined(&Boot {
            machine: &m,
            iso: Path::new("/t/a.iso"),
            serial: Serial::File(Path::new("/t/a.log")),
            ovmf_vars: None,
            gdb: false,
        });
        assert_eq!(
            line,
            "-machine q35 -accel tcg -cpu max -smp 2 -m 128 -display none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 -monitor none -serial file:/t/a.log \
             -cdrom /t/a.iso -boot d"
        );
    }

    #[test]
    fn uefi_uses_ovmf_flash_and_its_own_vars() {
        let m = Machine {
            emulator: Emulator::Qemu,
            firmware: Firmware::Uefi,
            accel: Accel::Kvm,
            cpu: Cpu::Host,
            smp: 1,
            mem_mib: 2048,
        };
        let mut boot = Boot {
            machine: &m,
            iso: Path::new("a.iso"),
            serial: Serial::Terminal,
            ovmf_vars: None,
            gdb: true,
        };
        assert!(args(&boot).is_err());
        boot.ovmf_vars = Some(Path::new("/t/vars.fd"));
        let line = joined(&boot);
        assert!(line.contains("-accel kvm -cpu host"));
        assert!(line.contains("-echr 0x1d -serial mon:stdio"));
        assert!(line.contains(&format!("readonly=on,file={}", sys::OVMF_CODE)));
        assert!(line.contains("unit=1,file=/t/vars.fd"));
        assert!(line.ends_with("-s -S"));
        boot.serial = Serial::Pipes;
        assert!(joined(&boot).contains("-monitor none -serial stdio"));
    }
}
