//! Time to Linux userspace: how long the same kernel and initramfs take to print
//! `LINUX USERSPACE up` under Bulkhead (watched in a scenario's serial log) and under plain
//! QEMU booting them directly. Two numbers each: the guest's own uptime when `/init` started
//! (the kernel's boot alone) and wall-clock time from the emulator's start (for Bulkhead that
//! includes firmware, GRUB loading the images and the hypervisor's own boot).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Artifacts;
use crate::qemu::{self, DirectLinux};
use crate::runner;
use crate::verdict::Outcome;

/// The line `/init` prints first, followed by the uptime in seconds.
pub const MARKER: &str = "LINUX USERSPACE up ";
/// The command line the plain-QEMU boot uses: the Linux manifests' guests start with the same
/// words, so both boots do the same work until userspace.
pub const BASE_CMDLINE: &str = "console=ttyS0 loglevel=4";
/// The guest whose boot is timed under Bulkhead (its lines start `[linux] `); the manifests'
/// other Linux guests boot the same way but share its CPUs' host cores.
pub const TIMED_GUEST: &str = "linux";
/// How often logs are looked at.
const POLL: Duration = Duration::from_millis(20);
/// A plain QEMU boot that takes longer than this has hung.
const PLAIN_TIMEOUT: Duration = Duration::from_secs(120);
const PLAIN_MEM_MIB: u32 = 256;

/// When userspace started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BootTime {
    /// The guest's uptime as `/init` read it.
    pub uptime_s: Option<f64>,
    /// Seconds from the emulator's start to the line appearing in its serial log.
    pub wall_s: Option<f64>,
}

impl fmt::Display for BootTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<f64>| v.map_or("?".to_owned(), |s| format!("{s:.2} s"));
        write!(
            f,
            "LINUX USERSPACE up at guest uptime {}, {} wall-clock from the emulator's start",
            show(self.uptime_s),
            show(self.wall_s)
        )
    }
}

/// The first marker line of `log` that starts with `prefix`.
fn marker_line<'a>(log: &'a str, prefix: &str) -> Option<&'a str> {
    log.lines()
        .find(|l| l.starts_with(prefix) && l.contains(MARKER))
}

/// The uptime on the first marker line of `log` that starts with `prefix`.
pub fn uptime_in(log: &str, prefix: &str) -> Option<f64> {
    let line = marker_line(log, prefix)?;
    let after = &line[line.find(MARKER)? + MARKER.len()..];
    after.split_whitespace().next()?.parse().ok()
}

/// How a guest's lines start in Bulkhead's log.
pub fn guest_prefix(guest: &str) -> String {
    format!("[{guest}] ")
}

/// Follows one serial log file while an emulator writes it.
pub struct Watch {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<BootTime>,
}

impl Watch {
    /// Starts following `log` for a marker line starting with `prefix`. The emulator's start
    /// is taken as the last moment the file was (re)created: the scenario runner deletes a
    /// case's log just before starting it.
    pub fn start(log: PathBuf, prefix: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || follow(&log, &prefix, &flag));
        Self { stop, handle }
    }

    /// Stops following; what was seen.
    pub fn finish(self) -> BootTime {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

fn follow(log: &Path, prefix: &str, stop: &AtomicBool) -> BootTime {
    let mut created: Option<Instant> = None;
    // A log already there is a previous run's: only a new or truncated file counts.
    let mut last_len: Option<u64> = std::fs::metadata(log).ok().map(|m| m.len());
    while !stop.load(Ordering::Relaxed) {
        let len = std::fs::metadata(log).ok().map(|m| m.len());
        match (last_len, len) {
            (_, None) => created = None,
            (None, Some(_)) => created = Some(Instant::now()),
            (Some(old), Some(new)) if new < old => created = Some(Instant::now()),
            _ => {}
        }
        if let (Some(start), Some(new)) = (created, len) {
            if Some(new) != last_len {
                let text = std::fs::read(log).unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                if marker_line(&text, prefix).is_some() {
                    return BootTime {
                        uptime_s: uptime_in(&text, prefix),
                        wall_s: Some(start.elapsed().as_secs_f64()),
                    };
                }
            }
        }
        last_len = len;
        std::thread::sleep(POLL);
    }
    BootTime::default()
}

/// Watches on the serial logs of the scenario cases that boot Linux, for one test run.
pub struct CaseWatches {
    watches: Vec<(String, Watch)>,
}

impl CaseWatches {
    /// Starts watching every case (name, manifest) whose manifest needs the Linux artifacts;
    /// `log_of` gives a case's serial log path.
    pub fn start<'a>(
        cases: impl IntoIterator<Item = (&'a str, Option<&'a Path>)>,
        log_of: impl Fn(&str) -> PathBuf,
    ) -> Self {
        let watches = cases
            .into_iter()
            .filter(|(_, manifest)| manifest.is_some_and(|m| super::needed_by(m).is_some()))
            .map(|(name, _)| {
                let watch = Watch::start(log_of(name), guest_prefix(TIMED_GUEST));
                (name.to_owned(), watch)
            })
            .collect();
        Self { watches }
    }

    /// Prints each watched case's time to userspace, then boots the same kernel and initramfs
    /// in plain QEMU and prints its time.
    pub fn report(self) {
        if self.watches.is_empty() {
            return;
        }
        println!("==== time to Linux userspace");
        for (name, watch) in self.watches {
            println!(
                "xtask: linux: Bulkhead (guest `{TIMED_GUEST}` in {name}): {}",
                watch.finish()
            );
        }
        let plain = super::ensure(super::Options::default()).and_then(|a| boot_plain_qemu(&a));
        match plain {
            Ok(time) => println!("xtask: linux: plain QEMU (-kernel/-initrd, 1 CPU): {time}"),
            Err(e) => println!("xtask: linux: plain QEMU: {e}"),
        }
    }
}

/// QEMU's arguments for booting the artifacts directly (no hypervisor, no devices: `/init`
/// finds no disk or net, runs no test and powers off).
pub fn plain_qemu_args(artifacts: &Artifacts, serial_log: &Path) -> Vec<String> {
    qemu::direct_linux_args(&DirectLinux {
        kernel: &artifacts.vmlinuz,
        initrd: &artifacts.initrd,
        cmdline: &format!("{BASE_CMDLINE} bulkhead.test=none"),
        mem_mib: PLAIN_MEM_MIB,
        serial_log,
    })
}

/// Boots the kernel and initramfs in plain QEMU and times userspace.
pub fn boot_plain_qemu(artifacts: &Artifacts) -> Result<BootTime, String> {
    let log = super::dir().join("plain-qemu.log");
    let _ = std::fs::remove_file(&log);
    let args = plain_qemu_args(artifacts, &log);
    let watch = Watch::start(log.clone(), String::new());
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let outcome = runner::wait(&mut child, PLAIN_TIMEOUT);
    let time = watch.finish();
    let text = runner::read_log(&log);
    let time = BootTime {
        uptime_s: time.uptime_s.or_else(|| uptime_in(&text, "")),
        ..time
    };
    if time.uptime_s.is_none() {
        let ended = match outcome {
            Outcome::Exited { code } => format!("QEMU ended (status {code:?})"),
            Outcome::TimedOut(t) => format!("QEMU was killed after {} s", t.as_secs()),
        };
        return Err(format!(
            "plain QEMU boot never printed `{MARKER}`: {ended}; serial log {}\n  \
             qemu-system-x86_64 {}",
            log.display(),
            args.join(" ")
        ));
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uptime_is_read_from_the_marker_line() {
        let log = "boot\n[peer] LINUX USERSPACE up 2.70 s\n[linux] LINUX USERSPACE up 2.53 s\n";
        assert_eq!(uptime_in(log, "[linux] "), Some(2.53));
        assert_eq!(uptime_in(log, ""), Some(2.70));
        assert_eq!(uptime_in("LINUX USERSPACE up soon", ""), None);
        assert_eq!(uptime_in("nothing", ""), None);
    }

    #[test]
    fn a_watch_sees_the_line_appear() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("case.log");
        let _ = std::fs::remove_file(&log);
        std::fs::write(&log, "[linux] LINUX USERSPACE up 9.00 s\n").unwrap();
        let watch = Watch::start(log.clone(), guest_prefix("linux"));
        std::thread::sleep(POLL * 3);
        std::fs::remove_file(&log).unwrap();
        std::thread::sleep(POLL * 3);
        std::fs::write(&log, "firmware\n[peer] LINUX USERSPACE up 1.00 s\n").unwrap();
        std::thread::sleep(POLL * 5);
        // Appended, as an emulator writes (a rewrite would look like a new run).
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, b"[linux] LINUX USERSPACE up 1.50 s\n")
            })
            .unwrap();
        std::thread::sleep(POLL * 5);
        let time = watch.finish();
        assert_eq!(time.uptime_s, Some(1.5));
        assert!(time.wall_s.is_some_and(|w| w >= (POLL * 4).as_secs_f64()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
