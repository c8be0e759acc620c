//! `build`, `iso`, `run` and `gdb`: the interactive commands.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::Duration;

use crate::args::{self, Parsed, Spec};
use crate::iso::{self, IsoSpec};
use crate::machine::{self, Accel, Cpu, Emulator, Firmware, Machine};
use crate::sys::{self, Need};
use crate::{bochs, cargo, linux, paths, qemu, sizing};

/// What `run`, `iso` and `gdb` put on the kernel command line unless told otherwise.
const DEFAULT_CMDLINE: &str = "log=info";

pub fn build(argv: Vec<String>) -> Result<ExitCode, String> {
    args::parse(
        argv,
        &Spec {
            flags: &[],
            options: &[],
        },
    )?;
    let elf = cargo::build_kernel()?;
    println!("xtask: hypervisor: {}", paths::display(&elf));
    if cargo::build_guests()? {
        println!(
            "xtask: test guests: {}",
            paths::display(&paths::guests_out_dir())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The manifest to pack: `--manifest` (relative to the current directory), none with
/// `--no-manifest`, else tests/manifests/default.toml when it exists.
fn manifest_arg(parsed: &Parsed) -> Result<Option<PathBuf>, String> {
    if parsed.flag("no-manifest") {
        return Ok(None);
    }
    match parsed.value("manifest") {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(format!("manifest {} does not exist", path.display()))
            }
        }
        None => Ok(Some(paths::default_manifest()).filter(|p| p.is_file())),
    }
}

/// Builds the hypervisor and an ISO with the command line and manifest from `parsed`.
fn build_iso(parsed: &Parsed, out: &Path) -> Result<(), String> {
    let elf = cargo::build_kernel()?;
    let manifest = manifest_arg(parsed)?;
    if manifest.is_some() {
        // Manifests name test guests; build them first so the images are fresh.
        cargo::build_guests()?;
    }
    if let Some(m) = &manifest {
        // A Linux guest's kernel, initramfs and disks come from `cargo xtask linux`.
        linux::ensure_for([m.as_path()])?;
    }
    let cmdline = parsed.value("cmdline").unwrap_or(DEFAULT_CMDLINE);
    let (spec, warnings) = IsoSpec::new(elf, cmdline, manifest.as_deref())?;
    for w in warnings {
        println!("xtask: warning: {w}");
    }
    iso::build(&spec, out)?;
    let with = match &manifest {
        Some(m) => format!(
            ", manifest {} with {} images",
            m.display(),
            spec.modules.len() - 1
        ),
        None => String::new(),
    };
    println!(
        "xtask: ISO {} (cmdline `{cmdline}`{with})",
        paths::display(out)
    );
    Ok(())
}

pub fn iso(argv: Vec<String>) -> Result<ExitCode, String> {
    let parsed = args::parse(
        argv,
        &Spec {
            flags: &["no-manifest"],
            options: &["cmdline", "manifest", "out"],
        },
    )?;
    sys::ensure(&[Need::Iso])?;
    let out = parsed
        .value("out")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::target_dir().join("bulkhead.iso"));
    build_iso(&parsed, &out)?;
    Ok(ExitCode::SUCCESS)
}

/// RAM for a machine whose manifest says nothing (or that has none).
const DEFAULT_MEM_MIB: u32 = 256;

const MACHINE_FLAGS: &[&str] = &["bochs", "uefi", "no-manifest"];
const MACHINE_OPTIONS: &[&str] = &["accel", "cpu", "smp", "mem", "cmdline", "manifest"];

/// The machine described by `run`/`gdb` options.
fn machine_arg(parsed: &Parsed) -> Result<Machine, String> {
    let emulator = if parsed.flag("bochs") {
        Emulator::Bochs
    } else {
        Emulator::Qemu
    };
    let accel = match parsed.value("accel") {
        None | Some("tcg") => Accel::Tcg,
        Some("kvm") if Path::new("/dev/kvm").exists() => Accel::Kvm,
        Some("kvm") => return Err("--accel kvm: /dev/kvm does not exist here".into()),
        Some(other) => return Err(format!("--accel wants tcg or kvm, got `{other}`")),
    };
    // Unless told, a machine big enough for the manifest being packed.
    let needed = manifest_arg(parsed)?.and_then(|m| sizing::needed_by(&m));
    let cpu = match parsed.value("cpu") {
        None => Machine::default_cpu(emulator, accel),
        Some("vmx") if emulator == Emulator::Qemu && accel == Accel::Kvm => Cpu::Host,
        Some("svm") if emulator == Emulator::Qemu && accel == Accel::Kvm => Cpu::Host,
        Some("vmx") => Cpu::Vmx,
        Some("svm") if emulator == Emulator::Qemu => Cpu::Max,
        Some("svm") => Cpu::Svm,
        Some(other) => return Err(format!("--cpu wants vmx or svm, got `{other}`")),
    };
    let machine = Machine {
        emulator,
        firmware: if parsed.flag("uefi") {
            Firmware::Uefi
        } else {
            Firmware::Bios
        },
        accel,
        cpu,
        smp: match parsed.number("smp")? {
            Some(n) => n,
            None => needed.map_or(1, |(cpus, _)| cpus),
        },
        mem_mib: match parsed.value("mem") {
            Some(text) => machine::parse_mem(text)?,
            None => needed.map_or(DEFAULT_MEM_MIB, |(_, mib)| mib.max(DEFAULT_MEM_MIB)),
        },
    };
    if parsed.value("smp").is_none() || parsed.value("mem").is_none() {
        println!(
            "xtask: machine: {} CPUs, {} MiB (--smp/--mem to change)",
            machine.smp, machine.mem_mib
        );
    }
    machine.validate()?;
    Ok(machine)
}

fn needs_for(machine: &Machine) -> Vec<Need> {
    let mut needs = vec![Need::Iso];
    match machine.emulator {
        Emulator::Qemu => needs.push(Need::Qemu),
        Emulator::Bochs => needs.push(Need::Bochs),
    }
    if machine.firmware == Firmware::Uefi {
        needs.push(Need::Uefi);
    }
    needs
}

/// QEMU's status as ours: the hypervisor's verdict when it wrote one, else QEMU's own.
fn exit_code_from_qemu(code: Option<i32>) -> ExitCode {
    match code {
        Some(qemu::EXIT_OK) | Some(0) => ExitCode::SUCCESS,
        Some(qemu::EXIT_FAIL) | None => ExitCode::FAILURE,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
    }
}

pub fn run(argv: Vec<String>) -> Result<ExitCode, String> {
    let parsed = args::parse(
        argv,
        &Spec {
            flags: MACHINE_FLAGS,
            options: MACHINE_OPTIONS,
        },
    )?;
    let machine = machine_arg(&parsed)?;
    sys::ensure(&needs_for(&machine))?;
    let work = paths::iso_work_dir();
    let iso_path = work.join("run.iso");
    build_iso(&parsed, &iso_path)?;
    println!("xtask: booting {}", machine.label());
    match machine.emulator {
        Emulator::Qemu => {
            let vars = match machine.firmware {
                Firmware::Uefi => Some(qemu::copy_ovmf_vars(&work.join("run.vars.fd"))?),
                Firmware::Bios => None,
            };
            let mut command = qemu::command(&qemu::Boot {
                machine: &machine,
                iso: &iso_path,
                serial: qemu::Serial::Terminal,
                ovmf_vars: vars.as_deref(),
                gdb: false,
            })?;
            println!("xtask: serial on this terminal; Ctrl-A switches guest input and the monitor shell, Ctrl-] x quits QEMU");
            let status = command
                .status()
                .map_err(|e| format!("cannot start QEMU: {e}"))?;
            Ok(exit_code_from_qemu(status.code()))
        }
        Emulator::Bochs => run_bochs(&machine, &iso_path, &work),
    }
}

/// Bochs writes COM1 to a file; this follows it on the terminal until Bochs exits.
fn run_bochs(machine: &Machine, iso_path: &Path, work: &Path) -> Result<ExitCode, String> {
    let serial_log = work.join("run.serial.log");
    let bochs_log = work.join("run.bochs.log");
    let _ = std::fs::remove_file(&serial_log);
    let mut command = bochs::command(
        &bochs::Boot {
            machine,
            iso: iso_path,
            serial_log: &serial_log,
            bochs_log: &bochs_log,
        },
        &work.join("run.bochsrc"),
        &work.join("run.rc"),
    )?;
    let out_path = work.join("run.bochs-out.log");
    let out = std::fs::File::create(&out_path)
        .map_err(|e| format!("creating {}: {e}", out_path.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    println!(
        "xtask: Bochs' own messages go to {} and {}",
        paths::display(&out_path),
        paths::display(&bochs_log)
    );
    let mut child = command
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start Bochs: {e}"))?;
    let mut offset = 0u64;
    loop {
        let exited = child.try_wait().map_err(|e| e.to_string())?;
        offset = print_new_bytes(&serial_log, offset);
        if let Some(status) = exited {
            let log = std::fs::read_to_string(&serial_log).unwrap_or_default();
            let ok = log.lines().any(|l| l.starts_with("BULKHEAD EXIT ok"));
            if !log.is_empty() && !log.ends_with('\n') {
                println!();
            }
            println!("xtask: Bochs exited ({status})");
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies what `path` gained since `offset` to stdout; returns the new offset.
fn print_new_bytes(path: &Path, offset: u64) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return offset;
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return offset;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&bytes);
    let _ = stdout.flush();
    offset + bytes.len() as u64
}

pub fn gdb(argv: Vec<String>) -> Result<ExitCode, String> {
    let parsed = args::parse(
        argv,
        &Spec {
            flags: &["uefi", "no-gdb", "no-manifest"],
            options: &["smp", "mem", "cmdline", "manifest"],
        },
    )?;
    let machine = machine_arg(&parsed)?;
    let mut needs = needs_for(&machine);
    let attach = !parsed.flag("no-gdb");
    if attach {
        needs.push(Need::Gdb);
    }
    sys::ensure(&needs)?;
    let work = paths::iso_work_dir();
    let iso_path = work.join("gdb.iso");
    build_iso(&parsed, &iso_path)?;
    let serial_log = work.join("gdb.serial.log");
    let vars = match machine.firmware {
        Firmware::Uefi => Some(qemu::copy_ovmf_vars(&work.join("gdb.vars.fd"))?),
        Firmware::Bios => None,
    };
    let mut qemu_command = qemu::command(&qemu::Boot {
        machine: &machine,
        iso: &iso_path,
        serial: qemu::Serial::File(&serial_log),
        ovmf_vars: vars.as_deref(),
        gdb: true,
    })?;
    let mut qemu_child: Child = qemu_command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let elf = paths::kernel_elf();
    let gdb_line = format!("gdb {} -ex 'target remote :1234'", elf.display());
    println!(
        "xtask: QEMU waits for gdb on :1234; serial goes to {}",
        serial_log.display()
    );
    println!("xtask: attach with: {gdb_line}");
    if attach {
        let status = std::process::Command::new("gdb")
            .arg(&elf)
            .arg("-ex")
            .arg("target remote :1234")
            .status()
            .map_err(|e| format!("cannot start gdb: {e}"));
        let _ = qemu_child.kill();
        let _ = qemu_child.wait();
        status?;
        Ok(ExitCode::SUCCESS)
    } else {
        let status = qemu_child.wait().map_err(|e| e.to_string())?;
        Ok(exit_code_from_qemu(status.code()))
    }
}
