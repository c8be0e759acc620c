//! Where things are: the repository, cargo's target directory and the artifacts in it.

use std::path::{Path, PathBuf};

/// The hypervisor's target triple.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// The repository root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory for the root workspace: `$CARGO_TARGET_DIR` (relative paths are
/// taken from the root, where xtask runs cargo) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// The hypervisor ELF that `cargo xtask build` produces.
pub fn kernel_elf() -> PathBuf {
    target_dir()
        .join(KERNEL_TARGET)
        .join("release")
        .join("bulkhead")
}

/// The test guests' workspace (built with its own toolchain file and target directory).
pub fn guests_dir() -> PathBuf {
    root().join("tests").join("guests")
}

/// Where built test guests land.
pub fn guests_out_dir() -> PathBuf {
    guests_dir()
        .join("target")
        .join(KERNEL_TARGET)
        .join("release")
}

/// Scenario descriptions.
pub fn scenarios_dir() -> PathBuf {
    root().join("tests").join("scenarios")
}

/// The manifest `run` boots when none is named.
pub fn default_manifest() -> PathBuf {
    root().join("tests").join("manifests").join("default.toml")
}

/// Scenario logs and everything generated for one test run.
pub fn scenario_out_dir() -> PathBuf {
    target_dir().join("scenarios")
}

/// ISO staging trees and images.
pub fn iso_work_dir() -> PathBuf {
    target_dir().join("iso")
}

/// Shows `path` relative to the repository root when it lies inside it.
pub fn display(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}
