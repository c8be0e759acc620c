//! `cargo xtask linux`: everything an unmodified Linux guest needs, built with no hand steps and
//! cached under `target/linux/` (always below the repository, whatever `CARGO_TARGET_DIR` says,
//! because the manifests in tests/manifests/linux name these files by relative path):
//!
//! - `vmlinuz`: Debian's kernel (the package `linux-image-amd64` depends on), as shipped;
//! - `vmlinux`: the ELF inside it, for the PVH entry (`--vmlinux`, or when a manifest names it);
//! - `initrd.cpio`: busybox, tests/linux/init and the virtio modules (see [`initramfs`]);
//! - `disk-ro.img` (known contents, SHA-256 in `disk-ro.img.sha256`) and `disk-rw.img` (zeros).
//!
//! Packages are downloaded once; later runs need no network. `--refresh` asks apt again which
//! kernel is current.

pub mod bench;
mod bzimage;
mod cpio;
mod debian;
mod disks;
mod initramfs;
mod modules;

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use crate::args::{self, Spec};
use crate::paths;

/// The files a Linux guest boots from.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The concrete kernel package, e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    pub vmlinuz: PathBuf,
    /// Present when asked for.
    pub vmlinux: Option<PathBuf>,
    pub initrd: PathBuf,
    pub disk_ro: PathBuf,
    pub disk_ro_sha256: String,
    pub disk_rw: PathBuf,
}

/// What to build besides the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Also extract `vmlinux` from the bzImage.
    pub vmlinux: bool,
    /// Ask apt for the current kernel package even when one was fetched before.
    pub refresh: bool,
}

/// `target/linux` below the repository root.
pub fn dir() -> PathBuf {
    paths::root().join("target").join("linux")
}

/// Remembers which kernel package the cache holds.
const PACKAGE_FILE: &str = "kernel-package";
/// Inside an unpacked package folder: the `.deb` it came from.
const UNPACKED_STAMP: &str = ".unpacked-from";

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Unpacks `deb` into `dest` unless it already holds exactly that package.
fn unpacked(deb: &Path, dest: &Path) -> Result<(), String> {
    let stamp = dest.join(UNPACKED_STAMP);
    let name = deb.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.is_some() && std::fs::read_to_string(&stamp).ok() == name {
        return Ok(());
    }
    println!("xtask: linux: unpacking {}", paths::display(deb));
    debian::unpack(deb, dest)?;
    write_if_changed(&stamp, name.unwrap_or_default().as_bytes())
}

/// The kernel package to use: the one fetched before, unless `refresh` or none was.
fn kernel_package(dir: &Path, refresh: bool) -> Result<String, String> {
    let file = dir.join(PACKAGE_FILE);
    if !refresh {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if debian::kernel_version(text.trim()).is_some() {
                return Ok(text.trim().to_owned());
            }
        }
    }
    let package = debian::resolve_kernel(&dir.join("debs"))?;
    if debian::kernel_version(&package).is_none() {
        return Err(format!(
            "cannot tell the kernel version of package {package}"
        ));
    }
    write_if_changed(&file, package.as_bytes())?;
    Ok(package)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Builds (or finds up to date) every artifact.
pub fn ensure(options: Options) -> Result<Artifacts, String> {
    let dir = dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let package = kernel_package(&dir, options.refresh)?;
    let version = debian::kernel_version(&package)
        .unwrap_or_default()
        .to_owned();
    let debs = dir.join("debs");
    let kernel_deb = debian::download(&debs, &package)?;
    let busybox_deb = debian::download(&debs, debian::BUSYBOX)?;
    let kernel_tree = dir.join("kernel-pkg");
    let busybox_tree = dir.join("busybox-pkg");
    unpacked(&kernel_deb, &kernel_tree)?;
    unpacked(&busybox_deb, &busybox_tree)?;

    let vmlinuz = dir.join("vmlinuz");
    let bz = read(&kernel_tree.join("boot").join(format!("vmlinuz-{version}")))?;
    write_if_changed(&vmlinuz, &bz)?;

    let modules_dir = kernel_tree.join("lib").join("modules").join(&version);
    let index = modules::index(&modules_dir)?;
    let loaded = modules::closure(&modules_dir, &index, initramfs::ROOT_MODULES)?;
    let init_path = initramfs::init_source(&paths::root());
    let image = initramfs::build(&initramfs::Contents {
        busybox: &read(&busybox_tree.join("bin").join("busybox"))?,
        init: &read(&init_path)?,
        kernel_version: &version,
        modules: &loaded,
    })?;
    let initrd = dir.join("initrd.cpio");
    write_if_changed(&initrd, &image)?;

    let ro = disks::read_only_image();
    let disk_ro_sha256 = disks::sha256_hex(&ro);
    if disk_ro_sha256 != disks::RO_SHA256 {
        // The manifests carry the hash; a changed generator must change them too.
        return Err(format!(
            "disk-ro.img has sha256 {disk_ro_sha256}, but disks::RO_SHA256 (and the manifests \
             in tests/manifests/linux) say {}",
            disks::RO_SHA256
        ));
    }
    let disk_ro = dir.join("disk-ro.img");
    let disk_rw = dir.join("disk-rw.img");
    write_if_changed(&disk_ro, &ro)?;
    write_if_changed(
        &dir.join("disk-ro.img.sha256"),
        format!("{disk_ro_sha256}  disk-ro.img\n").as_bytes(),
    )?;
    write_if_changed(&disk_rw, &disks::writable_image())?;

    let vmlinux = if options.vmlinux {
        let path = dir.join("vmlinux");
        let fresh = |p: &Path| {
            let modified = |q: &Path| std::fs::metadata(q).and_then(|m| m.modified()).ok();
            matches!((modified(p), modified(&vmlinuz)), (Some(a), Some(b)) if a >= b)
        };
        if !fresh(&path) {
            println!("xtask: linux: extracting vmlinux from the bzImage");
            let elf = bzimage::extract_vmlinux(&bz).map_err(|e| format!("vmlinuz: {e}"))?;
            std::fs::write(&path, elf).map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Some(path)
    } else {
        None
    };
    let names: Vec<&str> = loaded.iter().map(|m| m.module.name.as_str()).collect();
    println!(
        "xtask: linux: {package}, initramfs {} KiB with modules {}",
        image.len() >> 10,
        names.join(" ")
    );
    Ok(Artifacts {
        package,
        vmlinuz,
        vmlinux,
        initrd,
        disk_ro,
        disk_ro_sha256,
        disk_rw,
    })
}

/// An initramfs like `initrd.cpio` (same busybox and modules) with `init` as `/init`, written
/// to `out`: `cargo xtask bench` packs tests/linux/bench-init this way.
pub fn initramfs_with_init(artifacts: &Artifacts, init: &Path, out: &Path) -> Result<(), String> {
    let dir = dir();
    let version = debian::kernel_version(&artifacts.package).unwrap_or_default();
    let modules_dir = dir
        .join("kernel-pkg")
        .join("lib")
        .join("modules")
        .join(version);
    let index = modules::index(&modules_dir)?;
    let loaded = modules::closure(&modules_dir, &index, initramfs::ROOT_MODULES)?;
    let image = initramfs::build(&initramfs::Contents {
        busybox: &read(&dir.join("busybox-pkg").join("bin").join("busybox"))?,
        init: &read(init)?,
        kernel_version: version,
        modules: &loaded,
    })?;
    write_if_changed(out, &image)
}

/// `a/b/../c` → `a/c`, without touching the file system (the file may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What a manifest needs from `target/linux`, if anything: `Some(options)` when it names a file
/// there (with `vmlinux` set when it boots the extracted ELF).
pub fn needed_by(manifest: &Path) -> Option<Options> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let images = bulkhead::manifest::image_paths(&text).ok()?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let dir = normalize(&dir());
    let ours: Vec<PathBuf> = images
        .iter()
        .map(|i| normalize(&base.join(i)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    if ours.is_empty() {
        return None;
    }
    Some(Options {
        vmlinux: ours.iter().any(|p| p.ends_with("vmlinux")),
        refresh: false,
    })
}

/// Builds the Linux artifacts when any of `manifests` needs them.
pub fn ensure_for<'a>(manifests: impl IntoIterator<Item = &'a Path>) -> Result<(), String> {
    let mut wanted: Option<Options> = None;
    for m in manifests {
        if let Some(o) = needed_by(m) {
            let w = wanted.get_or_insert_with(Options::default);
            w.vmlinux |= o.vmlinux;
        }
    }
    match wanted {
        Some(options) => ensure(options).map(|_| ()),
        None => Ok(()),
    }
}

pub fn linux(argv: Vec<String>) -> Result<ExitCode, String> {
    let parsed = args::parse(
        argv,
        &Spec {
            flags: &["vmlinux", "refresh", "boot-qemu"],
            options: &[],
        },
    )?;
    let artifacts = ensure(Options {
        vmlinux: parsed.flag("vmlinux"),
        refresh: parsed.flag("refresh"),
    })?;
    let show = |p: &Path| paths::display(p);
    println!("xtask: linux: kernel package {}", artifacts.package);
    println!("xtask: linux: vmlinuz {}", show(&artifacts.vmlinuz));
    if let Some(v) = &artifacts.vmlinux {
        println!("xtask: linux: vmlinux {}", show(v));
    }
    println!("xtask: linux: initrd  {}", show(&artifacts.initrd));
    println!(
        "xtask: linux: disks   {} (sha256 {}), {}",
        show(&artifacts.disk_ro),
        artifacts.disk_ro_sha256,
        show(&artifacts.disk_rw)
    );
    if parsed.flag("boot-qemu") {
        let time = bench::boot_plain_qemu(&artifacts)?;
        println!("xtask: linux: plain QEMU: {time}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_without_the_file_system() {
        assert_eq!(
            normalize(Path::new(
                "/r/tests/manifests/linux/../../../target/linux/vmlinuz"
            )),
            Path::new("/r/target/linux/vmlinuz")
        );
    }

    #[test]
    fn committed_linux_manifests_need_the_artifacts_and_know_the_disk_hash() {
        let folder = paths::root().join("tests").join("manifests").join("linux");
        let entries = std::fs::read_dir(&folder).unwrap();
        let mut seen = 0;
        let manifests = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .chain([paths::default_manifest()]);
        for path in manifests {
            seen += 1;
            assert!(needed_by(&path).is_some(), "{}", path.display());
            let text = std::fs::read_to_string(&path).unwrap();
            for hash in text.split("bulkhead.disk_sha256=").skip(1) {
                assert!(
                    hash.starts_with(disks::RO_SHA256),
                    "{}: the disk hash differs from disks::RO_SHA256",
                    path.display()
                );
            }
        }
        assert!(seen > 1);
    }
}
