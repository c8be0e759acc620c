//! Boots for the bench, one at a time: Bulkhead from an ISO (QEMU TCG/SVM or Bochs/VMX) and
//! Linux booted directly by QEMU (`-M microvm -kernel`), each with its serial log in a file and
//! a timeout, timing the Linux userspace marker when asked to.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::bochs;
use crate::linux::bench::Watch;
use crate::machine::{Accel, Cpu, Emulator, Firmware, Machine};
use crate::qemu::{self, DirectLinux};
use crate::runner;
use crate::verdict::Outcome;

/// What one boot left behind.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub log: String,
    /// Seconds from the emulator's start to the userspace marker, when one was watched for.
    pub wall_to_marker_s: Option<f64>,
    /// What went wrong, if the boot did not end as it should.
    pub problem: Option<String>,
}

/// A Bulkhead boot.
pub struct HvBoot<'a> {
    pub iso: &'a Path,
    pub emulator: Emulator,
    pub smp: u32,
    pub mem_mib: u32,
    /// The serial log; its sibling `<stem>.emu.log` gets the emulator's own output.
    pub log: &'a Path,
    /// Time the first line starting with this that carries the userspace marker.
    pub marker_prefix: Option<&'a str>,
    pub timeout: Duration,
}

/// A Linux boot directly in QEMU's microvm machine: the same kernel entry (bzImage through
/// `-kernel`), virtio-mmio devices described in ACPI as Bulkhead does.
pub struct PlainBoot<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    pub mem_mib: u32,
    /// A raw image behind QEMU's own `virtio-blk-device`.
    pub disk: Option<&'a Path>,
    pub log: &'a Path,
    pub timeout: Duration,
}

fn sibling(log: &Path, what: &str) -> PathBuf {
    let stem = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    log.with_file_name(format!("{stem}.{what}"))
}

/// The emulator's exit code, or why it did not exit by itself.
fn wait(child: &mut Child, timeout: Duration) -> Result<Option<i32>, String> {
    match runner::wait(child, timeout) {
        Outcome::Exited { code } => Ok(code),
        Outcome::TimedOut(t) => Err(format!(
            "timed out after {} s (emulator killed)",
            t.as_secs()
        )),
    }
}

/// Starts `command` with its output in `emu_log`, watches `log` for the marker, waits.
fn run(
    mut command: Command,
    log: &Path,
    marker_prefix: Option<&str>,
    timeout: Duration,
) -> (Run, Result<Option<i32>, String>) {
    let _ = std::fs::remove_file(log);
    let watch = marker_prefix.map(|p| Watch::start(log.to_path_buf(), p.to_owned()));
    let emu_log = sibling(log, "emu.log");
    let spawned = File::create(&emu_log)
        .and_then(|out| Ok((out.try_clone()?, out)))
        .map_err(|e| format!("creating {}: {e}", emu_log.display()))
        .and_then(|(out, err)| {
            command
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))
        });
    let status = spawned.and_then(|mut child| wait(&mut child, timeout));
    let wall = watch.and_then(|w| w.finish().wall_s);
    let run = Run {
        log: runner::read_log(log),
        wall_to_marker_s: wall,
        problem: None,
    };
    (run, status)
}

/// Boots Bulkhead; a run that does not end with `BULKHEAD EXIT ok` has a problem.
pub fn hypervisor(boot: &HvBoot) -> Run {
    let machine = Machine {
        emulator: boot.emulator,
        firmware: Firmware::Bios,
        accel: Accel::Tcg,
        cpu: match boot.emulator {
            Emulator::Qemu => Cpu::Max,
            Emulator::Bochs => Cpu::Vmx,
        },
        smp: boot.smp,
        mem_mib: boot.mem_mib,
    };
    let command = match boot.emulator {
        Emulator::Qemu => qemu::command(&qemu::Boot {
            machine: &machine,
            iso: boot.iso,
            serial: qemu::Serial::File(boot.log),
            ovmf_vars: None,
            gdb: false,
        }),
        Emulator::Bochs => bochs::command(
            &bochs::Boot {
                machine: &machine,
                iso: boot.iso,
                serial_log: boot.log,
                bochs_log: &sibling(boot.log, "bochs.log"),
            },
            &sibling(boot.log, "bochsrc"),
            &sibling(boot.log, "rc"),
        ),
    };
    let command = match command {
        Ok(c) => c,
        Err(e) => {
            return Run {
                problem: Some(e),
                ..Run::default()
            }
        }
    };
    let (mut run, status) = run(command, boot.log, boot.marker_prefix, boot.timeout);
    let ok = run.log.lines().any(|l| l.starts_with("BULKHEAD EXIT ok"));
    run.problem = match status {
        Err(e) => Some(e),
        Ok(_) if ok => None,
        Ok(code) => Some(format!(
            "no `BULKHEAD EXIT ok` (emulator status {code:?}); see {}",
            boot.log.display()
        )),
    };
    run
}

/// The host's TSC rate in kHz, from /proc/cpuinfo's `cpu MHz` (the TSC rate on a CPU with an
/// invariant TSC). QEMU TCG's guest TSC counts with the host's.
pub fn host_tsc_khz() -> Option<u64> {
    cpu_mhz_khz(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

fn cpu_mhz_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some((mhz * 1000.0).round() as u64)
}

/// QEMU's arguments for a plain boot.
pub fn plain_args(boot: &PlainBoot) -> Vec<String> {
    let mut a = vec!["-M".to_owned(), "microvm".to_owned()];
    a.extend(qemu::direct_linux_args(&DirectLinux {
        kernel: boot.kernel,
        initrd: boot.initrd,
        cmdline: boot.cmdline,
        mem_mib: boot.mem_mib,
        serial_log: boot.log,
    }));
    if let Some(disk) = boot.disk {
        a.push("-drive".into());
        a.push(format!(
            "file={},format=raw,if=none,id=bench0",
            disk.display()
        ));
        a.extend(["-device".into(), "virtio-blk-device,drive=bench0".into()]);
    }
    a
}

/// Boots Linux directly in QEMU; it must power off by itself (QEMU status 0).
pub fn plain(boot: &PlainBoot) -> Run {
    let mut command = Command::new("qemu-system-x86_64");
    command.args(plain_args(boot));
    let (mut run, status) = run(command, boot.log, Some(""), boot.timeout);
    run.problem = match status {
        Ok(Some(0)) => None,
        Ok(code) => Some(format!(
            "QEMU ended with status {code:?}; see {}",
            boot.log.display()
        )),
        Err(e) => Some(e),
    };
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_boots_use_microvm_and_qemus_own_virtio_blk() {
        let args = plain_args(&PlainBoot {
            kernel: Path::new("/l/vmlinuz"),
            initrd: Path::new("/b/i.cpio"),
            cmdline: "console=ttyS0 bench.mode=blk",
            mem_mib: 256,
            disk: Some(Path::new("/b/d.img")),
            log: Path::new("/b/x.log"),
            timeout: Duration::from_secs(1),
        })
        .join(" ");
        assert!(args.starts_with("-M microvm -accel tcg -cpu max -smp 1"));
        assert!(args.contains("-m 256 -serial file:/b/x.log -kernel /l/vmlinuz"));
        assert!(args.contains("-append console=ttyS0 bench.mode=blk"));
        assert!(args.ends_with(
            "-drive file=/b/d.img,format=raw,if=none,id=bench0 -device virtio-blk-device,drive=bench0"
        ));
        assert_eq!(
            sibling(Path::new("/b/x.log"), "emu.log"),
            Path::new("/b/x.emu.log")
        );
    }
}
