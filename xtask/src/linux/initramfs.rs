//! The guest's initramfs: busybox, `/init` (tests/linux/init), the virtio modules with their
//! dependencies and a load-order list, and the few device nodes the kernel needs before
//! `/init` mounts devtmpfs.

use std::path::Path;

use super::cpio::Archive;
use super::modules::Loaded;

/// The modules `/init` loads: virtio-mmio (the transport; devices are found through ACPI,
/// since Debian builds without `VIRTIO_MMIO_CMDLINE_DEVICES`), block, net and console.
/// Their dependencies (virtio, virtio_ring, failover, net_failover) follow from `.modinfo`.
pub const ROOT_MODULES: &[&str] = &["virtio_mmio", "virtio_blk", "virtio_net", "virtio_console"];

/// The busybox applets `/init` uses, each a symlink in `/bin`.
pub const APPLETS: &[&str] = &[
    "blockdev",
    "cat",
    "cmp",
    "cut",
    "dd",
    "echo",
    "grep",
    "head",
    "insmod",
    "ip",
    "kill",
    "ls",
    "mount",
    "nc",
    "ping",
    "poweroff",
    "printf",
    "reboot",
    "rm",
    "sh",
    "sha256sum",
    "sleep",
    "sync",
    "tail",
    "timeout",
    "tr",
    "uname",
    "usleep",
];

/// Where the load order lives in the initramfs: one module path per line, relative to
/// `/lib/modules/<version>/`, dependencies first.
pub const LOAD_ORDER: &str = "lib/modules/load-order";

/// `/dev/console` (major 5, minor 1) and `/dev/null` (1, 3): the kernel opens the console for
/// PID 1 before anything is mounted (init/main.c, `console_on_rootfs`), so it must exist in the
/// archive itself (devices.txt in the kernel's admin-guide).
const CONSOLE: (u32, u32) = (5, 1);
const NULL: (u32, u32) = (1, 3);

/// What goes into the initramfs.
pub struct Contents<'a> {
    pub busybox: &'a [u8],
    pub init: &'a [u8],
    /// `6.1.0-56-amd64`: the directory below `/lib/modules`.
    pub kernel_version: &'a str,
    /// In load order.
    pub modules: &'a [Loaded],
}

fn parent_dirs(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

/// The newc archive.
pub fn build(contents: &Contents) -> Result<Vec<u8>, String> {
    let mut archive = Archive::new();
    let mut dirs: Vec<String> = ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let module_dir = format!("lib/modules/{}", contents.kernel_version);
    let module_paths: Vec<String> = contents
        .modules
        .iter()
        .map(|m| {
            let relative = m.module.relative.to_string_lossy();
            // Stored uncompressed, whatever the package had.
            relative.strip_suffix(".xz").unwrap_or(&relative).to_owned()
        })
        .collect();
    for path in &module_paths {
        let full = format!("{module_dir}/{path}");
        for dir in parent_dirs(&full) {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
            }
        }
    }
    for dir in &dirs {
        let perm = if dir == "tmp" { 0o1777 } else { 0o755 };
        archive.dir(dir, perm)?;
    }
    archive.char_device("dev/console", 0o600, CONSOLE.0, CONSOLE.1)?;
    archive.char_device("dev/null", 0o666, NULL.0, NULL.1)?;
    archive.file("bin/busybox", 0o755, contents.busybox)?;
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    archive.file("init", 0o755, contents.init)?;
    for (module, path) in contents.modules.iter().zip(&module_paths) {
        archive.file(&format!("{module_dir}/{path}"), 0o644, &module.bytes)?;
    }
    let mut order = String::new();
    for path in &module_paths {
        order.push_str(path);
        order.push('\n');
    }
    archive.file(LOAD_ORDER, 0o644, order.as_bytes())?;
    archive.finish()
}

/// The init script's source in the repository.
pub fn init_source(root: &Path) -> std::path::PathBuf {
    root.join("tests").join("linux").join("init")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::modules::Module;

    #[test]
    fn the_archive_has_init_busybox_modules_and_their_order() {
        let modules = [
            Loaded {
                module: Module {
                    name: "virtio_ring".into(),
                    relative: "kernel/drivers/virtio/virtio_ring.ko".into(),
                },
                bytes: b"ring".to_vec(),
            },
            Loaded {
                module: Module {
                    name: "virtio_blk".into(),
                    relative: "kernel/drivers/block/virtio_blk.ko.xz".into(),
                },
                bytes: b"blk".to_vec(),
            },
        ];
        let bytes = build(&Contents {
            busybox: b"bb",
            init: b"#!/bin/sh\n",
            kernel_version: "6.1.0-1-amd64",
            modules: &modules,
        })
        .unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("lib/modules/6.1.0-1-amd64/kernel/drivers/block\0"));
        assert!(text.contains("lib/modules/6.1.0-1-amd64/kernel/drivers/block/virtio_blk.ko\0"));
        assert!(!text.contains(".ko.xz"));
        assert!(text.contains(
            "kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/block/virtio_blk.ko\n"
        ));
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("bin/sh\0"));
        assert!(text.contains("TRAILER!!!"));
    }
}
