//! System tools the commands need (GRUB, xorriso, QEMU, OVMF, Bochs, gdb): find what is
//! missing and install it with apt-get when we may, or say exactly what to run.

use std::path::Path;
use std::process::Command;

/// A capability a command needs from the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// `grub-mkrescue` with both the BIOS and the UEFI platform files, xorriso and mtools.
    Iso,
    Qemu,
    /// OVMF firmware for QEMU.
    Uefi,
    /// Bochs with its rfb display plugin, its BIOS and the VGA BIOS.
    Bochs,
    Gdb,
    /// A TrueType font for the text in `cargo xtask bench`'s chart.
    Font,
    /// A C++ compiler, for libFuzzer (built by cargo-fuzz's `libfuzzer-sys`).
    Cxx,
}

/// How to tell that something is installed.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// An executable somewhere on `$PATH`.
    Command(&'static str),
    /// A file or directory.
    Path(&'static str),
}

/// One probe and the Debian packages that satisfy it.
struct Requirement {
    probe: Probe,
    packages: &'static [&'static str],
}

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
pub const VGA_BIOS: &str = "/usr/share/vgabios/vgabios.bin";
/// Debian ships the rfb display library inside the `bochs` package itself.
const BOCHS_RFB_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_rfb_gui.so";

const ISO: &[Requirement] = &[
    Requirement {
        probe: Probe::Command("grub-mkrescue"),
        packages: &["grub-common"],
    },
    Requirement {
        probe: Probe::Path("/usr/lib/grub/i386-pc/multiboot2.mod"),
        packages: &["grub-pc-bin"],
    },
    Requirement {
        probe: Probe::Path("/usr/lib/grub/x86_64-efi/multiboot2.mod"),
        packages: &["grub-efi-amd64-bin"],
    },
    Requirement {
        probe: Probe::Command("xorriso"),
        packages: &["xorriso"],
    },
    Requirement {
        probe: Probe::Command("mformat"),
        packages: &["mtools"],
    },
];

const QEMU: &[Requirement] = &[Requirement {
    probe: Probe::Command("qemu-system-x86_64"),
    packages: &["qemu-system-x86"],
}];

const UEFI: &[Requirement] = &[
    Requirement {
        probe: Probe::Path(OVMF_CODE),
        packages: &["ovmf"],
    },
    Requirement {
        probe: Probe::Path(OVMF_VARS),
        packages: &["ovmf"],
    },
];

// `bochs` depends on `bochs-wx | bochs-gui`; naming the small terminal front end (which provides
// bochs-gui) keeps apt from pulling in wxWidgets. We never use it: the display is rfb.
const BOCHS: &[Requirement] = &[
    Requirement {
        probe: Probe::Command("bochs"),
        packages: &["bochs", "bochs-term"],
    },
    Requirement {
        probe: Probe::Path(BOCHS_RFB_PLUGIN),
        packages: &["bochs", "bochs-term"],
    },
    Requirement {
        probe: Probe::Path(BOCHS_BIOS),
        packages: &["bochsbios"],
    },
    Requirement {
        probe: Probe::Path(VGA_BIOS),
        packages: &["vgabios"],
    },
];

const GDB: &[Requirement] = &[Requirement {
    probe: Probe::Command("gdb"),
    packages: &["gdb"],
}];

/// The font `cargo xtask bench` draws its chart's text with.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const FONT_FILES: &[Requirement] = &[Requirement {
    probe: Probe::Path(FONT),
    packages: &["fonts-dejavu-core"],
}];

const CXX: &[Requirement] = &[Requirement {
    probe: Probe::Command("c++"),
    packages: &["g++"],
}];

fn requirements(need: Need) -> &'static [Requirement] {
    match need {
        Need::Iso => ISO,
        Need::Qemu => QEMU,
        Need::Uefi => UEFI,
        Need::Bochs => BOCHS,
        Need::Gdb => GDB,
        Need::Font => FONT_FILES,
        Need::Cxx => CXX,
    }
}

/// Whether `name` is an executable file in one of `$PATH`'s directories.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

fn is_present(probe: Probe) -> bool {
    match probe {
        Probe::Command(name) => on_path(name),
        Probe::Path(path) => Path::new(path).exists(),
    }
}

/// Packages to install so that every need is met, in a stable order without repeats.
fn missing_packages(needs: &[Need]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for need in needs {
        for req in requirements(*need) {
            if !is_present(req.probe) {
                for p in req.packages {
                    if !packages.contains(p) {
                        packages.push(*p);
                    }
                }
            }
        }
    }
    packages
}

/// Whether we run as root (effective uid 0, from /proc; false where that is not readable).
pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// Effective user id from /proc (Linux); None where that is not readable.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn is_debian_like() -> bool {
    let Ok(os) = std::fs::read_to_string("/etc/os-release") else {
        return false;
    };
    os.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(key, _)| *key == "ID" || *key == "ID_LIKE")
        .any(|(_, value)| {
            value
                .trim_matches('"')
                .split_whitespace()
                .any(|id| id == "debian" || id == "ubuntu")
        })
}

/// Runs apt-get non-interactively, its output on this terminal.
pub fn apt(args: &[&str]) -> Result<(), String> {
    println!("xtask: apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot start apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("apt-get {} failed ({status})", args.join(" ")))
    }
}

/// Makes sure every need is met, installing missing Debian packages when running as root on
/// Debian/Ubuntu; otherwise fails with the exact command to run.
pub fn ensure(needs: &[Need]) -> Result<(), String> {
    let missing = missing_packages(needs);
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    let may_install = is_root() && is_debian_like() && on_path("apt-get");
    if !may_install {
        return Err(format!(
            "missing system packages: {}\ninstall them (as root) with:\n  {command}",
            missing.join(" ")
        ));
    }
    println!(
        "xtask: installing missing system packages: {}",
        missing.join(" ")
    );
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;
    let still = missing_packages(needs);
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "installed {} but still missing what packages {} provide",
            missing.join(" "),
            still.join(" ")
        ))
    }
}
