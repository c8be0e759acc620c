//! The boot-time manifest: one TOML file (a multiboot2 module named `manifest`) that says which
//! guests run, on which CPUs, with how much RAM, which images and devices, and what happens when
//! one crashes. `parse` turns it into a validated [`Plan`] or into [`Diagnostics`] that list
//! every mistake with its line and column; nothing after the Plan sees TOML.
//!
//! The format is documented key by key in docs/MANIFEST.md.
//!
//! Reading happens in two passes over the `toml` crate's spanned tree: `read` checks each
//! table's keys and each value's type and syntax; `validate` checks what relates values to
//! each other and to the machine. Any error means no Plan (fail closed).

#![forbid(unsafe_code)]

mod cpus;
mod diag;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod mac;
mod network;
mod plan;
mod read;
mod schema;
mod size;
mod suggest;
mod validate;
mod value;

#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use toml::de::{DeTable, DeValue};

pub use diag::{Diagnostic, Diagnostics, DEFAULT_SOURCE_NAME};
pub use mac::{MacAddr, MacError};
pub use plan::{
    ConsolePlan, CrashPolicy, DiskPlan, EscapeKey, GuestPlan, HostConsolePlan, HypervisorPlan,
    KernelFormat, LogLevel, NetPlan, Plan, SwitchPlan, SwitchPort,
};
pub use schema::{
    DEFAULT_RESTART_LIMIT, MAX_NAME_CHARS, MAX_VIRTIO_DEVICES, MIN_GUEST_MEMORY_BYTES,
    SUPPORTED_VERSION,
};
pub use size::{human as human_size, parse_size, SizeError};

use diag::Sink;

/// What the manifest is checked against: the machine it is about to run on (or, for
/// `cargo xtask check`, the machine described on the command line).
pub struct MachineFacts<'a> {
    /// CPUs the hypervisor brought up; valid CPU numbers are `0..cpu_count`.
    pub cpu_count: u32,
    /// RAM left for guests after the hypervisor took its own.
    pub free_ram_bytes: u64,
    /// Whether a boot module with exactly this string was loaded.
    pub module_exists: &'a dyn Fn(&str) -> bool,
}

/// Reads and validates a manifest. Every problem is reported, not just the first; any problem
/// means no Plan.
///
/// TOML syntax errors are reported alone: what follows a syntax error is guesswork, and
/// reporting guesses as mistakes would send people after problems that are not there. An
/// unsupported `version` is also reported alone, since the rest was written for another format.
pub fn parse(text: &str, facts: &MachineFacts<'_>) -> Result<Plan, Diagnostics> {
    let root = parse_toml(text)?;
    let mut sink = Sink::new(text);
    if !version_is_supported(&mut sink, &root) {
        return Err(sink.finish());
    }
    let raw = read::read(&mut sink, &root);
    match validate::validate(&mut sink, raw, facts) {
        Some(plan) if !sink.has_errors() => Ok(plan),
        _ => Err(sink.finish()),
    }
}

/// The image paths a manifest names (kernels, initrds, disk images), each once, in manifest
/// order, read leniently: only a TOML syntax error stops it. Tools that pack boot media use it
/// so that even a manifest with mistakes boots far enough for the hypervisor to print them.
pub fn image_paths(text: &str) -> Result<Vec<String>, Diagnostics> {
    parse_toml(text).map(|root| read::image_paths(&root))
}

/// The TOML tree, or every syntax error.
fn parse_toml(text: &str) -> Result<DeTable<'_>, Diagnostics> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if syntax_errors.is_empty() {
        return Ok(root.into_inner());
    }
    let mut sink = Sink::new(text);
    for e in syntax_errors {
        let span = e.span().unwrap_or(0..0);
        let message = match e.message() {
            "duplicate key" => {
                let key = text.get(span.clone()).unwrap_or_default();
                format!("duplicate key `{}`", value::shown(key))
            }
            other => format!("invalid TOML: {other}"),
        };
        sink.error(span, message);
    }
    Err(sink.finish())
}

/// Like [`parse`], for the module's raw bytes: refuses text that is not UTF-8 (saying where),
/// and ignores NUL padding at the end.
pub fn parse_bytes(bytes: &[u8], facts: &MachineFacts<'_>) -> Result<Plan, Diagnostics> {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    let bytes = bytes.get(..end).unwrap_or(bytes);
    match core::str::from_utf8(bytes) {
        Ok(text) => parse(text, facts),
        Err(e) => {
            let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let prefix = core::str::from_utf8(good).unwrap_or_default();
            let bad = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
            let mut sink = Sink::new(prefix);
            sink.error_hint(
                prefix.len()..prefix.len(),
                format!("the manifest is not UTF-8 text (byte 0x{bad:02x})"),
                "save the file as UTF-8",
            );
            Err(sink.finish())
        }
    }
}

/// `version = 1` must be there (reported, and reading goes on, when it is missing); any other
/// number stops reading.
fn version_is_supported(sink: &mut Sink<'_>, root: &DeTable<'_>) -> bool {
    let Some(v) = root.get("version") else {
        sink.error_hint(
            0..0,
            "the manifest has no `version`",
            format!("put version = {SUPPORTED_VERSION} on the first line; it lets later Bulkheads read today's manifests"),
        );
        return true;
    };
    let expected = format!("the number {SUPPORTED_VERSION}");
    if let DeValue::String(s) = v.get_ref() {
        let hint = s
            .trim()
            .parse::<u32>()
            .ok()
            .map(|n| format!("write version = {n}, without quotes"));
        value::wrong_type(sink, "version", v, &expected, hint);
        return true;
    }
    let Some(n) = value::integer(sink, "version", v, &expected) else {
        return true;
    };
    if n != i64::from(SUPPORTED_VERSION) {
        sink.error_hint(
            v.span(),
            format!("manifest version {n} is not supported"),
            format!("this Bulkhead reads version {SUPPORTED_VERSION}; other keys were not checked"),
        );
        return false;
    }
    true
}
