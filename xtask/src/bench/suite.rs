//! The benchmarks themselves: which boots, in which order, and what each one's log yields.
//! Each run boots Bulkhead and its peer back to back, the order swapped every other run so a
//! drift in the machine's load does not always favour the same side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::parse::{self, ExitCounts, GuestFootprint, OwnFootprint};
use super::runners::{self, HvBoot, PlainBoot, Run};
use super::setup::{self, Media};
use super::stats;
use crate::linux::bench::{uptime_in, BASE_CMDLINE};
use crate::machine::Emulator;

/// Which benchmarks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bench {
    Boot,
    Blk,
    Net,
    Exits,
    Noisy,
}

impl Bench {
    pub const ALL: [Bench; 5] = [
        Bench::Boot,
        Bench::Blk,
        Bench::Net,
        Bench::Exits,
        Bench::Noisy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bench::Boot => "boot",
            Bench::Blk => "blk",
            Bench::Net => "net",
            Bench::Exits => "exits",
            Bench::Noisy => "noisy",
        }
    }
}

/// How the suite runs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub runs: usize,
    pub benches: Vec<Bench>,
    /// Also time exits on Bochs/VMX.
    pub bochs: bool,
}

/// Per-run figures (one entry per run; `None` where that run gave nothing) and what the logs
/// said besides.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Raw {
    pub runs: usize,
    pub boot_wall_hv_s: Vec<Option<f64>>,
    pub boot_wall_plain_s: Vec<Option<f64>>,
    pub boot_uptime_hv_s: Vec<Option<f64>>,
    pub boot_uptime_plain_s: Vec<Option<f64>>,
    /// Exits of the Linux guest in each boot run (boot to userspace, then power-off).
    pub boot_exits: Vec<ExitCounts>,
    /// Its port I/O exits by port.
    pub boot_ports: Vec<ExitCounts>,
    pub blk_read_hv_mbps: Vec<Option<f64>>,
    pub blk_read_plain_mbps: Vec<Option<f64>>,
    pub blk_write_hv_mbps: Vec<Option<f64>>,
    pub blk_write_plain_mbps: Vec<Option<f64>>,
    pub blk_exits: Vec<ExitCounts>,
    /// One entry per round of the single net boot.
    pub net_peer_mbps: Vec<Option<f64>>,
    pub net_loopback_mbps: Vec<Option<f64>>,
    pub net_exits: Vec<ExitCounts>,
    /// CPUID loop ticks over LFENCE loop ticks, per run.
    pub exit_cost_qemu: Vec<Option<f64>>,
    pub exit_cost_bochs: Vec<Option<f64>>,
    /// Heartbeat spin iterations per million TSC ticks (the CPU it got; per tick, not per
    /// second, because the guest's idea of the TSC rate is the hypervisor's calibration, which
    /// varies between boots) and the share of its nominal beat rate it achieved.
    pub heart_spins_alone: Vec<Option<f64>>,
    pub heart_spins_quiet: Vec<Option<f64>>,
    pub heart_spins_hammer: Vec<Option<f64>>,
    pub heart_beats_alone: Vec<Option<f64>>,
    pub heart_beats_hammer: Vec<Option<f64>>,
    /// The TSC rate each Bulkhead boot calibrated, and the host's (QEMU TCG's guest TSC counts
    /// with the host's): a miscalibration skews the uptimes Linux guests report.
    pub hv_tsc_mhz: Vec<Option<f64>>,
    pub host_tsc_mhz: Option<f64>,
    pub own_footprint: Option<OwnFootprint>,
    /// Guest footprints by benchmark (`boot`, `blk`, `net`).
    pub guest_footprints: Vec<(String, GuestFootprint)>,
    /// Boots that went wrong and measurements that failed.
    pub problems: Vec<String>,
}

const LINUX_TIMEOUT: Duration = Duration::from_secs(240);
const NET_TIMEOUT: Duration = Duration::from_secs(420);
const SMALL_TIMEOUT: Duration = Duration::from_secs(120);
const BOCHS_TIMEOUT: Duration = Duration::from_secs(300);

struct Suite<'a> {
    media: &'a Media,
    raw: Raw,
}

impl Suite<'_> {
    /// By how much a Bulkhead guest's seconds are shorter than real ones: Linux guests count
    /// time at the TSC rate Bulkhead tells them, QEMU TCG's TSC runs at the host's, so a guest
    /// told too high a rate sees its clock run slow by `told / host`. 1 when either is unknown.
    fn clock_scale(&self, log: &str) -> f64 {
        match (parse::tsc_mhz(log), self.raw.host_tsc_mhz) {
            (Some(told), Some(host)) if host > 0.0 => told as f64 / host,
            _ => 1.0,
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.media.dir.join(format!("{name}.log"))
    }

    fn note(&mut self, what: &str, run: &Run) {
        if !what.contains("bochs") && !what.contains("plain") {
            self.raw
                .hv_tsc_mhz
                .push(parse::tsc_mhz(&run.log).map(|m| m as f64));
        }
        if let Some(p) = &run.problem {
            self.raw.problems.push(format!("{what}: {p}"));
        }
        for e in parse::bench_errors(&run.log) {
            self.raw.problems.push(format!("{what}: {e}"));
        }
    }

    fn hv(&mut self, what: &str, iso: &Path, smp: u32, mem_mib: u32, timeout: Duration) -> Run {
        let log = self.log(what);
        println!("xtask: bench: {what} (Bulkhead, QEMU TCG/SVM)");
        let run = runners::hypervisor(&HvBoot {
            iso,
            emulator: Emulator::Qemu,
            smp,
            mem_mib,
            log: &log,
            marker_prefix: Some("[linux] "),
            timeout,
        });
        self.note(what, &run);
        run
    }

    fn plain(&mut self, what: &str, cmdline: &str, disk: Option<PathBuf>) -> Run {
        let log = self.log(what);
        println!("xtask: bench: {what} (QEMU -M microvm -kernel)");
        // Linux would calibrate its TSC against a PIT, which microvm under TCG does not offer
        // (the boot hangs): tell it the rate, as Bulkhead tells its Linux guests.
        let tsc = runners::host_tsc_khz().map_or(String::new(), |k| format!(" tsc_early_khz={k}"));
        let cmdline = format!("{BASE_CMDLINE} {cmdline}{tsc}");
        let run = runners::plain(&PlainBoot {
            kernel: &self.media.linux.vmlinuz,
            initrd: &self.media.initrd,
            cmdline: &cmdline,
            mem_mib: setup::LINUX_MEM_MIB,
            disk: disk.as_deref(),
            log: &log,
            timeout: LINUX_TIMEOUT,
        });
        self.note(what, &run);
        run
    }

    fn footprints(&mut self, bench: &str, log: &str) {
        if self.raw.own_footprint.is_none() {
            self.raw.own_footprint = parse::own_footprint(log);
        }
        if !self.raw.guest_footprints.iter().any(|(b, _)| b == bench) {
            for g in parse::guest_footprints(log) {
                self.raw.guest_footprints.push((bench.to_owned(), g));
            }
        }
    }

    fn boot(&mut self, run: usize) {
        let mut hv = |s: &mut Self| {
            let r = s.hv(
                &format!("boot-hv-{run}"),
                &s.media.boot.clone(),
                2,
                512,
                LINUX_TIMEOUT,
            );
            s.raw.boot_wall_hv_s.push(r.wall_to_marker_s);
            let scale = s.clock_scale(&r.log);
            s.raw
                .boot_uptime_hv_s
                .push(uptime_in(&r.log, "[linux] ").map(|u| u * scale));
            s.raw.boot_exits.extend(parse::exit_counts(&r.log, "linux"));
            s.raw.boot_ports.extend(parse::port_counts(&r.log, "linux"));
            s.footprints("boot", &r.log);
        };
        let plain = |s: &mut Self| {
            let r = s.plain(&format!("boot-plain-{run}"), "bench.mode=boot", None);
            s.raw.boot_wall_plain_s.push(r.wall_to_marker_s);
            s.raw.boot_uptime_plain_s.push(uptime_in(&r.log, ""));
        };
        alternate(self, run, &mut hv, plain);
    }

    fn blk(&mut self, run: usize) {
        let rate = |log: &str, prefix: &str, what: &str| {
            parse::transfers(log, prefix)
                .iter()
                .find(|t| t.what == what)
                .and_then(|t| stats::mb_per_s(t.bytes, t.centiseconds))
        };
        let mut hv = |s: &mut Self| {
            let r = s.hv(
                &format!("blk-hv-{run}"),
                &s.media.blk.clone(),
                2,
                1024,
                LINUX_TIMEOUT,
            );
            let scale = s.clock_scale(&r.log);
            let real = |mbps: Option<f64>| mbps.map(|m| m / scale);
            s.raw
                .blk_read_hv_mbps
                .push(real(rate(&r.log, "[linux] ", "blk-read")));
            s.raw
                .blk_write_hv_mbps
                .push(real(rate(&r.log, "[linux] ", "blk-write")));
            s.raw.blk_exits.extend(parse::exit_counts(&r.log, "linux"));
            s.footprints("blk", &r.log);
        };
        let plain = |s: &mut Self| {
            // A fresh copy each run: QEMU writes to it.
            let disk = s.media.dir.join("disk-plain.img");
            if let Err(e) = std::fs::copy(&s.media.disk, &disk) {
                s.raw.problems.push(format!("copying the disk: {e}"));
            }
            let r = s.plain(
                &format!("blk-plain-{run}"),
                &setup::blk_cmdline(),
                Some(disk),
            );
            s.raw.blk_read_plain_mbps.push(rate(&r.log, "", "blk-read"));
            s.raw
                .blk_write_plain_mbps
                .push(rate(&r.log, "", "blk-write"));
        };
        alternate(self, run, &mut hv, plain);
    }

    /// One boot; its rounds alternate loopback and the switch inside the client guest.
    fn net(&mut self, runs: usize) {
        let r = self.hv("net-hv", &self.media.net.clone(), 3, 1024, NET_TIMEOUT);
        let transfers = parse::transfers(&r.log, "[client] ");
        for round in 1..=runs as u32 {
            let rate = |what: &str| {
                transfers
                    .iter()
                    .find(|t| t.what == what && t.round == round)
                    .and_then(|t| stats::mb_per_s(t.bytes, t.centiseconds))
            };
            self.raw.net_peer_mbps.push(rate("net-peer"));
            self.raw.net_loopback_mbps.push(rate("net-loopback"));
        }
        self.raw
            .net_exits
            .extend(parse::exit_counts(&r.log, "client"));
        self.footprints("net", &r.log);
    }

    fn exits(&mut self, run: usize, bochs: bool) {
        let cost = |log: &str| {
            parse::exitbench(log).map(|e| e.exit_ticks as f64 / e.base_ticks.max(1) as f64)
        };
        let log = self.log(&format!("exitbench-qemu-{run}"));
        println!("xtask: bench: exitbench-qemu-{run} (Bulkhead, QEMU TCG/SVM)");
        let r = runners::hypervisor(&HvBoot {
            iso: &self.media.exitbench,
            emulator: Emulator::Qemu,
            smp: 2,
            mem_mib: 128,
            log: &log,
            marker_prefix: None,
            timeout: SMALL_TIMEOUT,
        });
        self.note(&format!("exitbench-qemu-{run}"), &r);
        self.raw.exit_cost_qemu.push(cost(&r.log));
        if bochs {
            let log = self.log(&format!("exitbench-bochs-{run}"));
            println!("xtask: bench: exitbench-bochs-{run} (Bulkhead, Bochs/VMX)");
            let r = runners::hypervisor(&HvBoot {
                iso: &self.media.exitbench_bochs,
                emulator: Emulator::Bochs,
                smp: 2,
                mem_mib: 128,
                log: &log,
                marker_prefix: None,
                timeout: BOCHS_TIMEOUT,
            });
            self.note(&format!("exitbench-bochs-{run}"), &r);
            self.raw.exit_cost_bochs.push(cost(&r.log));
        }
    }

    fn noisy(&mut self, run: usize) {
        let boot = |s: &mut Self, which: &str, iso: PathBuf| {
            let what = format!("noisy-{which}-{run}");
            let log = s.log(&what);
            println!("xtask: bench: {what} (Bulkhead, QEMU TCG/SVM)");
            let r = runners::hypervisor(&HvBoot {
                iso: &iso,
                emulator: Emulator::Qemu,
                smp: 3,
                mem_mib: 256,
                log: &log,
                marker_prefix: None,
                timeout: SMALL_TIMEOUT,
            });
            s.note(&what, &r);
            parse::heart_rate(&r.log)
        };
        let alone = boot(self, "alone", self.media.noisy_alone.clone());
        let quiet = boot(self, "quiet", self.media.noisy_quiet.clone());
        let hammer = boot(self, "hammer", self.media.noisy_hammer.clone());
        let raw = &mut self.raw;
        raw.heart_spins_alone
            .push(alone.and_then(|h| h.spins_per_mtick()));
        raw.heart_spins_quiet
            .push(quiet.and_then(|h| h.spins_per_mtick()));
        raw.heart_spins_hammer
            .push(hammer.and_then(|h| h.spins_per_mtick()));
        let on_time =
            |h: Option<parse::HeartRate>| h.and_then(|h| h.on_time_share(setup::HEART_PERIOD_MS));
        raw.heart_beats_alone.push(on_time(alone));
        raw.heart_beats_hammer.push(on_time(hammer));
    }
}

/// Runs Bulkhead's side and the peer's side of run `run`, Bulkhead first on even runs.
fn alternate<'a, 'm>(
    suite: &'a mut Suite<'m>,
    run: usize,
    hv: &mut dyn FnMut(&mut Suite<'m>),
    plain: impl FnOnce(&mut Suite<'m>),
) {
    if run.is_multiple_of(2) {
        hv(suite);
        plain(suite);
    } else {
        plain(suite);
        hv(suite);
    }
}

/// Runs every benchmark of `plan`; what went wrong is in `Raw::problems`.
pub fn run(media: &Media, plan: &Plan) -> Raw {
    let mut suite = Suite {
        media,
        raw: Raw {
            runs: plan.runs,
            host_tsc_mhz: runners::host_tsc_khz().map(|k| k as f64 / 1000.0),
            ..Raw::default()
        },
    };
    let wants = |b: Bench| plan.benches.contains(&b);
    for run in 0..plan.runs {
        println!("==== bench run {} of {}", run + 1, plan.runs);
        if wants(Bench::Boot) {
            suite.boot(run);
        }
        if wants(Bench::Blk) {
            suite.blk(run);
        }
        if wants(Bench::Exits) {
            suite.exits(run, plan.bochs);
        }
        if wants(Bench::Noisy) {
            suite.noisy(run);
        }
    }
    if wants(Bench::Net) {
        println!("==== bench net ({} rounds in one boot)", plan.runs);
        suite.net(plan.runs);
    }
    suite.raw
}
