//! The validated `Plan`: what the manifest asked for, in plain Rust types, every rule already
//! checked. Nothing after the Plan reads TOML.

#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::mac::MacAddr;
use super::size::human;

/// Everything the hypervisor needs to start the guests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The manifest format version (always 1 today).
    pub version: u32,
    pub hypervisor: HypervisorPlan,
    /// In manifest order.
    pub guests: Vec<GuestPlan>,
    /// In order of first mention; only switches with at least two ports exist.
    pub switches: Vec<SwitchPlan>,
}

/// Settings of the hypervisor itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HypervisorPlan {
    pub log: LogLevel,
    pub console: HostConsolePlan,
}

/// How much the hypervisor logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        })
    }
}

impl LogLevel {
    /// The same level as the `log` crate's filter.
    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            Self::Error => log::LevelFilter::Error,
            Self::Warn => log::LevelFilter::Warn,
            Self::Info => log::LevelFilter::Info,
            Self::Debug => log::LevelFilter::Debug,
            Self::Trace => log::LevelFilter::Trace,
        }
    }
}

/// The serial console the hypervisor shares with the guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostConsolePlan {
    /// The key that enters the monitor (and, pressed twice, sends itself to the guest).
    pub escape: EscapeKey,
    /// Whether each line a guest prints is prefixed with its name.
    pub prefix_guest_output: bool,
}

/// A control key, Ctrl-A to Ctrl-Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EscapeKey {
    letter: u8,
}

impl EscapeKey {
    /// Ctrl-A, as in QEMU and screen.
    pub const CTRL_A: Self = Self { letter: b'a' };

    /// Ctrl plus `letter` (a to z); `None` for anything else.
    pub fn ctrl(letter: u8) -> Option<Self> {
        let letter = letter.to_ascii_lowercase();
        letter.is_ascii_lowercase().then_some(Self { letter })
    }

    /// The byte the terminal sends for this key (Ctrl-A is 0x01).
    pub fn byte(self) -> u8 {
        self.letter - b'a' + 1
    }
}

impl fmt::Display for EscapeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ctrl-{}", char::from(self.letter))
    }
}

/// One guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestPlan {
    /// Unique, `[a-z0-9-]`, at most 32 characters.
    pub name: String,
    /// Bulkhead CPU numbers (cpu0 is the boot CPU), one vCPU each, in ascending order for the
    /// count form and in the order written for the list form.
    pub cpus: Vec<u32>,
    /// A multiple of 4 KiB, at least the minimum.
    pub memory_bytes: u64,
    /// Module string of the kernel image.
    pub kernel: String,
    pub format: KernelFormat,
    pub cmdline: String,
    /// Module string of the initrd.
    pub initrd: Option<String>,
    pub on_crash: CrashPolicy,
    /// Stop the guest this long after it first started, whatever it is doing (`None`: it runs
    /// until it stops itself).
    pub time_limit_ms: Option<u64>,
    /// virtio-blk devices, in manifest order.
    pub disks: Vec<DiskPlan>,
    /// virtio-net devices, in manifest order.
    pub nets: Vec<NetPlan>,
    pub console: ConsolePlan,
}

/// How to read the kernel image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// Decide from the image's first bytes.
    Auto,
    /// ELF64 with a PVH entry note.
    Elf,
    /// Linux bzImage.
    Linux,
}

impl fmt::Display for KernelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Elf => "elf",
            Self::Linux => "linux",
        })
    }
}

/// What happens when the guest crashes (triple fault, fatal exit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPolicy {
    /// It stays stopped; the others run on.
    Stop,
    /// It is reloaded from its images and started again, at most `limit` times.
    Restart { limit: u32 },
}

/// A virtio-blk disk backed by a boot module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskPlan {
    /// Module string of the disk image.
    pub image: String,
    pub readonly: bool,
}

/// A virtio-net device plugged into a switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetPlan {
    pub switch: String,
    pub mac: MacAddr,
}

/// A guest's console options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsolePlan {
    /// Whether the guest also gets a virtio-console (the emulated 16550 is always there).
    pub virtio: bool,
}

/// A switch inside the hypervisor and the ports plugged into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchPlan {
    pub name: String,
    /// At least two, in manifest order.
    pub ports: Vec<SwitchPort>,
}

/// One port of a switch: a guest's net device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchPort {
    /// Index into `Plan::guests`.
    pub guest: usize,
    /// Index into that guest's `nets`.
    pub net: usize,
}

impl Plan {
    /// Every image path the guests use (kernels, initrds, disks), each once, in manifest order.
    /// These are the multiboot2 module strings the boot needs besides the manifest.
    pub fn modules(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for g in &self.guests {
            let images = core::iter::once(&g.kernel)
                .chain(g.initrd.as_ref())
                .chain(g.disks.iter().map(|d| &d.image));
            for image in images {
                if !out.contains(image) {
                    out.push(image.clone());
                }
            }
        }
        out
    }

    /// The guest called `name`.
    pub fn guest(&self, name: &str) -> Option<&GuestPlan> {
        self.guests.iter().find(|g| g.name == name)
    }

    /// Total guest RAM.
    pub fn memory_bytes(&self) -> u64 {
        self.guests.iter().map(|g| g.memory_bytes).sum()
    }
}

/// A short summary, one line per guest, device and switch (for `cargo xtask check` and the boot
/// log).
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus: usize = self.guests.iter().map(|g| g.cpus.len()).sum();
        writeln!(
            f,
            "manifest version {}: {} guest(s) on {cpus} CPU(s) with {} of RAM, {} switch(es); log {}, escape {}",
            self.version,
            self.guests.len(),
            human(self.memory_bytes()),
            self.switches.len(),
            self.hypervisor.log,
            self.hypervisor.console.escape,
        )?;
        for g in &self.guests {
            write!(f, "  guest {}:", g.name)?;
            for (i, cpu) in g.cpus.iter().enumerate() {
                write!(f, "{}cpu{cpu}", if i == 0 { " " } else { "+" })?;
            }
            write!(
                f,
                ", {}, kernel {} ({})",
                human(g.memory_bytes),
                g.kernel,
                g.format
            )?;
            if let Some(initrd) = &g.initrd {
                write!(f, ", initrd {initrd}")?;
            }
            if !g.cmdline.is_empty() {
                write!(f, ", cmdline {:?}", g.cmdline)?;
            }
            match g.on_crash {
                CrashPolicy::Stop => write!(f, ", on crash stop")?,
                CrashPolicy::Restart { limit } => {
                    write!(f, ", on crash restart (at most {limit})")?
                }
            }
            if let Some(ms) = g.time_limit_ms {
                write!(f, ", time limit {ms} ms")?;
            }
            if g.console.virtio {
                write!(f, ", virtio console")?;
            }
            writeln!(f)?;
            for (i, d) in g.disks.iter().enumerate() {
                let mode = if d.readonly {
                    "read-only"
                } else {
                    "read-write"
                };
                writeln!(f, "    disk{i}: {} ({mode})", d.image)?;
            }
            for (i, n) in g.nets.iter().enumerate() {
                writeln!(f, "    net{i}: switch {}, mac {}", n.switch, n.mac)?;
            }
        }
        for s in &self.switches {
            write!(f, "  switch {}:", s.name)?;
            for p in &s.ports {
                let name = self.guests.get(p.guest).map_or("?", |g| g.name.as_str());
                write!(f, " {name}.net{}", p.net)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
