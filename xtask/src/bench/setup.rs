//! What the bench boots, made once per `cargo xtask bench` in `target/bench/`: the bench
//! initramfs (tests/linux/bench-init as `/init`), a 64 MiB disk, one manifest per benchmark and
//! an ISO for each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::iso::{self, IsoSpec};
// Every bench Linux guest starts its command line with the words the Linux test manifests
// use, so the kernel does the same work.
use crate::linux::bench::BASE_CMDLINE;
use crate::linux::{self, Artifacts};
use crate::paths;

/// The hypervisor's command line in every bench ISO: exit when all guests have stopped.
const HV_CMDLINE: &str = "log=info test";
/// Size of each disk pass and network transfer.
pub const BLK_MIB: u64 = 64;
/// Passes over the disk per timed blk measurement: one 64 MiB pass takes only a few of the
/// guest clock's centiseconds.
pub const BLK_PASSES: u64 = 8;
pub const NET_MIB: u64 = 16;
/// Guest RAM for the Linux guests, both under Bulkhead and in plain QEMU.
pub const LINUX_MEM_MIB: u32 = 256;
/// exitbench iterations: QEMU is fast enough for many; Bochs is slow.
pub const EXITBENCH_N_QEMU: u64 = 20_000;
pub const EXITBENCH_N_BOCHS: u64 = 2_000;
/// The noisy-neighbour bench: heartbeat beats this often, this many times, while the
/// neighbour keeps busy a little longer than that.
const HEART_BEATS: u64 = 20;
pub const HEART_PERIOD_MS: u64 = 250;
const NEIGHBOUR_MS: u64 = 8_000;

/// Everything the runs need; the ISOs are named after their manifests.
#[derive(Clone, Debug)]
pub struct Media {
    pub dir: PathBuf,
    pub linux: Artifacts,
    pub initrd: PathBuf,
    pub disk: PathBuf,
    pub boot: PathBuf,
    pub blk: PathBuf,
    pub net: PathBuf,
    pub exitbench: PathBuf,
    pub exitbench_bochs: PathBuf,
    pub noisy_alone: PathBuf,
    pub noisy_quiet: PathBuf,
    pub noisy_hammer: PathBuf,
}

/// `target/bench` below the repository root (next to `target/linux`, which the manifests name
/// by relative path).
pub fn dir() -> PathBuf {
    paths::root().join("target").join("bench")
}

fn linux_guest(name: &str, cmdline: &str) -> String {
    format!(
        "[[guest]]\nname = \"{name}\"\ncpus = 1\nmemory = \"{LINUX_MEM_MIB}M\"\n\
         kernel = \"../linux/vmlinuz\"\nformat = \"linux\"\ninitrd = \"bench-initrd.cpio\"\n\
         cmdline = \"{BASE_CMDLINE} {cmdline}\"\n"
    )
}

fn test_guest(name: &str, binary: &str, cpu: u32, cmdline: &str) -> String {
    format!(
        "[[guest]]\nname = \"{name}\"\ncpus = [{cpu}]\nmemory = \"32M\"\n\
         kernel = \"../../tests/guests/target/x86_64-unknown-none/release/{binary}\"\n\
         cmdline = \"{cmdline}\"\n"
    )
}

fn heartbeat() -> String {
    test_guest(
        "heartbeat",
        "heartbeat",
        1,
        &format!("beats={HEART_BEATS} period_ms={HEART_PERIOD_MS}"),
    )
}

/// A noisy-neighbour manifest: heartbeat beside an exitbench neighbour that exits as fast as it
/// can, or that keeps as busy without exiting (`is_quiet`), so the two differ only in exits.
fn noisy(is_quiet: bool) -> String {
    let extra = if is_quiet { " quiet" } else { "" };
    let neighbour = test_guest(
        "neighbour",
        "exitbench",
        2,
        &format!("hammer_ms={NEIGHBOUR_MS}{extra}"),
    );
    format!("{}\n{neighbour}", heartbeat())
}

/// The blk guest's bench words, the same under Bulkhead and in plain QEMU.
pub fn blk_cmdline() -> String {
    format!("bench.mode=blk bench.mib={BLK_MIB} bench.passes={BLK_PASSES}")
}

/// The manifests, by file name.
pub fn manifests(runs: usize) -> Vec<(&'static str, String)> {
    let head = "# Written by `cargo xtask bench` (xtask/src/bench/setup.rs).\nversion = 1\n\n";
    let net = |name: &str, mode: &str, ip: &str, peer: &str, mac: &str| {
        format!(
            "{}\n[[guest.net]]\nswitch = \"lan\"\nmac = \"{mac}\"\n",
            linux_guest(
                name,
                &format!(
                    "bench.mode={mode} bench.mib={NET_MIB} bench.rounds={runs} \
                     bench.ip={ip}/24 bench.peer={peer}"
                )
            )
        )
    };
    vec![
        ("boot.toml", linux_guest("linux", "bench.mode=boot")),
        (
            "blk.toml",
            format!(
                "{}\n[[guest.disk]]\nimage = \"disk.img\"\n",
                linux_guest("linux", &blk_cmdline())
            ),
        ),
        (
            "net.toml",
            format!(
                "{}\n{}",
                net(
                    "client",
                    "net-client",
                    "10.0.0.2",
                    "10.0.0.3",
                    "52:54:00:00:00:02"
                ),
                net(
                    "server",
                    "net-server",
                    "10.0.0.3",
                    "10.0.0.2",
                    "52:54:00:00:00:03"
                )
            ),
        ),
        (
            "exitbench.toml",
            test_guest(
                "exitbench",
                "exitbench",
                1,
                &format!("n={EXITBENCH_N_QEMU}"),
            ),
        ),
        (
            "exitbench-bochs.toml",
            test_guest(
                "exitbench",
                "exitbench",
                1,
                &format!("n={EXITBENCH_N_BOCHS}"),
            ),
        ),
        ("noisy-alone.toml", heartbeat()),
        ("noisy-quiet.toml", noisy(true)),
        ("noisy-hammer.toml", noisy(false)),
    ]
    .into_iter()
    .map(|(name, body)| (name, format!("{head}{body}")))
    .collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A zero-filled disk of `BLK_MIB` MiB (sparse on the host).
fn make_disk(path: &Path) -> Result<(), String> {
    let want = BLK_MIB << 20;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == want) {
        return Ok(());
    }
    let file =
        std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.set_len(want)
        .map_err(|e| format!("sizing {}: {e}", path.display()))
}

/// Builds the initramfs, the disk, the manifests and one ISO per manifest.
pub fn prepare(kernel_elf: &Path, linux: Artifacts, runs: usize) -> Result<Media, String> {
    let dir = dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let initrd = dir.join("bench-initrd.cpio");
    let init = paths::root().join("tests").join("linux").join("bench-init");
    linux::initramfs_with_init(&linux, &init, &initrd)?;
    let disk = dir.join("disk.img");
    make_disk(&disk)?;
    let mut isos = BTreeMap::new();
    for (name, text) in manifests(runs) {
        let manifest = dir.join(name);
        write(&manifest, text.as_bytes())?;
        let iso = manifest.with_extension("iso");
        let (spec, warnings) = IsoSpec::new(kernel_elf.to_path_buf(), HV_CMDLINE, Some(&manifest))?;
        if let Some(w) = warnings.first() {
            return Err(format!("{}: {w}", manifest.display()));
        }
        iso::build(&spec, &iso)?;
        isos.insert(name, iso);
    }
    // By name, so the fields do not depend on the order manifests() lists them in.
    let mut iso = |name: &str| {
        isos.remove(name)
            .ok_or_else(|| format!("no bench manifest {name}"))
    };
    Ok(Media {
        dir,
        linux,
        initrd,
        disk,
        boot: iso("boot.toml")?,
        blk: iso("blk.toml")?,
        net: iso("net.toml")?,
        exitbench: iso("exitbench.toml")?,
        exitbench_bochs: iso("exitbench-bochs.toml")?,
        noisy_alone: iso("noisy-alone.toml")?,
        noisy_quiet: iso("noisy-quiet.toml")?,
        noisy_hammer: iso("noisy-hammer.toml")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bench_manifest_is_valid() {
        let facts = bulkhead::manifest::MachineFacts {
            cpu_count: 4,
            free_ram_bytes: 2 << 30,
            module_exists: &|_| true,
        };
        for (name, text) in manifests(3) {
            if let Err(d) = bulkhead::manifest::parse_bytes(text.as_bytes(), &facts) {
                panic!("{name}:\n{}", d.render(name));
            }
        }
        let net = &manifests(3)[2].1;
        assert!(net.contains("bench.rounds=3") && net.contains("switch = \"lan\""));
    }
}
