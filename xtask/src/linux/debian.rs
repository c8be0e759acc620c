//! Debian packages for the Linux guest: resolve the concrete kernel package behind the generic
//! `linux-image-amd64`, fetch it and `busybox-static` with `apt-get download`, and unpack them
//! with `dpkg -x`. Nothing is installed on the build machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sys;

/// The generic package that always depends on the current kernel of the release.
pub const KERNEL_META: &str = "linux-image-amd64";
/// A statically linked busybox: runs without any library in the initramfs.
pub const BUSYBOX: &str = "busybox-static";

fn output(program: &str, args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new(program);
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The `linux-image-<version>-amd64` package `apt-cache depends` names for the meta package.
pub fn kernel_package_from_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && *p != KERNEL_META)
        .map(str::to_owned)
}

/// The kernel version directory name inside the package: `linux-image-6.1.0-56-amd64` →
/// `6.1.0-56-amd64`.
pub fn kernel_version(package: &str) -> Option<&str> {
    package
        .strip_prefix("linux-image-")
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// apt-get download and dpkg -x work without root, but `apt-get update` does not, and a
/// half-working mix confuses more than it helps: all of it or none.
fn may_use_apt() -> bool {
    sys::on_path("apt-get") && sys::on_path("dpkg") && sys::is_root()
}

/// What to run by hand where xtask may not (not root, or not Debian).
fn manual_steps(dest: &Path) -> String {
    format!(
        "xtask fetches the guest's packages with apt-get, which needs root on Debian. Run:\n  \
         apt-get update\n  \
         apt-cache depends {KERNEL_META}   # names linux-image-<version>-amd64\n  \
         cd {} && apt-get download linux-image-<version>-amd64 {BUSYBOX}\n\
         then run `cargo xtask linux` again as root",
        dest.display()
    )
}

/// Resolves the concrete kernel package, running `apt-get update` once when the package lists
/// do not know the meta package yet (a fresh machine).
pub fn resolve_kernel(dest: &Path) -> Result<String, String> {
    if !may_use_apt() {
        return Err(manual_steps(dest));
    }
    let ask = || output("apt-cache", &["depends", KERNEL_META], None);
    if let Some(p) = ask().ok().as_deref().and_then(kernel_package_from_depends) {
        return Ok(p);
    }
    println!("xtask: linux: the package lists do not know {KERNEL_META}; apt-get update");
    sys::apt(&["update", "-q"])?;
    let text = ask()?;
    kernel_package_from_depends(&text).ok_or_else(|| {
        format!("`apt-cache depends {KERNEL_META}` names no linux-image package:\n{text}")
    })
}

/// The `.deb` for `package` in `dir`, if one was downloaded before.
fn find_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

/// The `.deb` of `package` in `dir`, downloaded unless already there.
pub fn download(dir: &Path, package: &str) -> Result<PathBuf, String> {
    if let Some(deb) = find_deb(dir, package) {
        return Ok(deb);
    }
    if !may_use_apt() {
        return Err(manual_steps(dir));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    println!("xtask: linux: apt-get download {package}");
    let fetch = || output("apt-get", &["download", "-q", package], Some(dir));
    if fetch().is_err() {
        // The lists may be stale (a package superseded by a security update): refresh once.
        sys::apt(&["update", "-q"])?;
        fetch()?;
    }
    find_deb(dir, package).ok_or_else(|| {
        format!(
            "apt-get download {package} succeeded but left no {package}_*.deb in {}",
            dir.display()
        )
    })
}

/// Unpacks `deb` into `dest` (emptied first) with `dpkg -x`.
pub fn unpack(deb: &Path, dest: &Path) -> Result<(), String> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| format!("removing {}: {e}", dest.display()))?;
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let deb = deb.to_string_lossy();
    let dest_text = dest.to_string_lossy();
    output("dpkg", &["-x", &deb, &dest_text], None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concrete_kernel_package_is_read_from_apt_cache_depends() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        let package = kernel_package_from_depends(text).unwrap();
        assert_eq!(package, "linux-image-6.1.0-56-amd64");
        assert_eq!(kernel_version(&package), Some("6.1.0-56-amd64"));
        assert_eq!(kernel_package_from_depends("linux-image-amd64\n"), None);
        assert_eq!(kernel_version("linux-image-amd64"), None);
    }
}
