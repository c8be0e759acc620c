//! `cargo xtask`: builds the hypervisor, packs it into a GRUB ISO, boots it in QEMU or Bochs and
//! runs the test suite (host unit tests plus boot scenarios judged by their serial log).

mod args;
mod bench;
mod bochs;
mod cargo;
mod check;
mod commands;
mod fuzz;
mod fuzz_report;
mod hostile_report;
mod iso;
mod le;
mod linux;
mod machine;
mod pack;
mod paths;
mod qemu;
mod runner;
mod scenario;
mod sizing;
mod sys;
mod test_cmd;
mod verdict;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build                      build the hypervisor (and tests/guests if present)
  iso   [--cmdline S] [--manifest FILE | --no-manifest] [--out PATH]
                             make a GRUB rescue ISO (BIOS and UEFI)
  run   [--accel tcg|kvm] [--bochs] [--cpu vmx|svm] [--uefi] [--smp N] [--mem SIZE]
        [--cmdline S] [--manifest FILE | --no-manifest]
                             build, make the ISO and boot it with serial on this terminal
  test  [--filter S] [--long] [--jobs N] [--skip-host] [--list] [--hostile]
                             host unit tests, then the boot scenarios in tests/scenarios
  gdb   [--uefi] [--smp N] [--mem SIZE] [--cmdline S] [--manifest FILE | --no-manifest]
        [--no-gdb]
                             boot QEMU halted with a gdb stub on :1234 and attach gdb
  linux [--vmlinux] [--refresh] [--boot-qemu]
                             fetch Debian's kernel and busybox, build the Linux guest's
                             initramfs and disks in target/linux (see tests/linux)
  bench [--runs N | --quick] [--only boot,blk,net,exits,noisy] [--no-bochs]
                             Bulkhead against peers measured in the same run; writes
                             target/bench/report.md, report.json, chart.png (docs/BENCHMARKS.md)
  check FILE [--cpus N] [--ram SIZE] [--skip-modules]
                             validate a manifest as the hypervisor would (see docs/MANIFEST.md)
  fuzz  [--minutes N | --seconds N] [--target T] [--list]
                             run each cargo-fuzz target in fuzz/ for N minutes (default 1)

SIZE is a number with an optional K/M/G suffix (default MiB), e.g. 128M or 2G.
The manifest defaults to tests/manifests/default.toml; the command line to `log=info`.
See docs/TESTING.md.";

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || matches!(argv[0].as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return if argv.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let command = argv.remove(0);
    let result = match command.as_str() {
        "build" => commands::build(argv),
        "iso" => commands::iso(argv),
        "run" => commands::run(argv),
        "gdb" => commands::gdb(argv),
        "test" => test_cmd::test(argv),
        "check" => check::check(argv),
        "linux" => linux::linux(argv),
        "bench" => bench::bench(argv),
        "fuzz" => fuzz::fuzz(argv),
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("xtask {command}: {message}");
            ExitCode::FAILURE
        }
    }
}
