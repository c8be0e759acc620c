//! The manifest's shape: which keys each table takes, the limits, and the raw values read from
//! the file (still carrying their source spans) before the cross-guest rules run.

#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::mac::MacAddr;
use super::plan::{ConsolePlan, HypervisorPlan, KernelFormat};
use super::size::MIB;

/// The manifest version this Bulkhead reads.
pub const SUPPORTED_VERSION: u32 = 1;
/// The least RAM a guest may have: room for the boot structures, page tables and a small kernel.
pub const MIN_GUEST_MEMORY_BYTES: u64 = 2 * MIB;
/// Guest RAM is mapped in 4 KiB pages at least.
pub const GUEST_MEMORY_ALIGN_BYTES: u64 = crate::addr::PAGE_SIZE;
/// Longest guest or switch name (it prefixes log lines).
pub const MAX_NAME_CHARS: usize = 32;
/// Restarts allowed when `on_crash = "restart"` gives no `restart_limit`.
pub const DEFAULT_RESTART_LIMIT: u32 = 10;
/// virtio-mmio slots a guest has, shared by its disks, nets and virtio console.
pub const MAX_VIRTIO_DEVICES: u32 = crate::layout::VIRTIO_MMIO_SLOTS;
/// Longest kernel command line the loader can place.
pub const MAX_CMDLINE_BYTES: usize = crate::loader::CMDLINE_MAX_LEN;

/// A table's name as messages show it, and the keys it takes.
#[derive(Clone, Copy)]
pub(super) struct TableShape {
    pub place: &'static str,
    pub keys: &'static [&'static str],
}

pub(super) const TOP: TableShape = TableShape {
    place: "the top level",
    keys: &["version", "hypervisor", "guest"],
};
pub(super) const HYPERVISOR: TableShape = TableShape {
    place: "[hypervisor]",
    keys: &["log", "console"],
};
pub(super) const HOST_CONSOLE: TableShape = TableShape {
    place: "[hypervisor.console]",
    keys: &["escape", "prefix_guest_output"],
};
pub(super) const GUEST: TableShape = TableShape {
    place: "[[guest]]",
    keys: &[
        "name",
        "cpus",
        "memory",
        "kernel",
        "format",
        "cmdline",
        "initrd",
        "on_crash",
        "restart_limit",
        "time_limit_ms",
        "disk",
        "net",
        "console",
    ],
};
pub(super) const DISK: TableShape = TableShape {
    place: "[[guest.disk]]",
    keys: &["image", "readonly"],
};
pub(super) const NET: TableShape = TableShape {
    place: "[[guest.net]]",
    keys: &["switch", "mac"],
};
pub(super) const GUEST_CONSOLE: TableShape = TableShape {
    place: "[guest.console]",
    keys: &["virtio"],
};

/// A value read from the manifest and where it was written.
#[derive(Clone, Debug)]
pub(super) struct At<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> At<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Self { value, span }
    }
}

/// The manifest after the first pass: every value has the right type and syntax; what is
/// absent is `None` (and has already been reported when it was required).
pub(super) struct RawManifest {
    pub hypervisor: HypervisorPlan,
    pub guests: Vec<RawGuest>,
}

/// `cpus = 2` or `cpus = [1, 2]`.
#[derive(Clone, Debug)]
pub(super) enum RawCpus {
    Count(u32),
    List(Vec<At<u32>>),
}

/// What `on_crash` says, before `restart_limit` joins it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CrashKind {
    Stop,
    Restart,
}

pub(super) struct RawGuest {
    /// The `[[guest]]` header (or the inline table).
    pub header: Range<usize>,
    pub name: Option<At<String>>,
    pub cpus: Option<At<RawCpus>>,
    pub memory_bytes: Option<u64>,
    /// Where `memory` was written (for the total-RAM message).
    pub memory_span: Option<Range<usize>>,
    pub kernel: Option<At<String>>,
    pub format: KernelFormat,
    pub cmdline: String,
    pub initrd: Option<At<String>>,
    pub on_crash: CrashKind,
    pub restart_limit: Option<u32>,
    pub time_limit_ms: Option<u64>,
    pub disks: Vec<RawDisk>,
    pub nets: Vec<RawNet>,
    pub console: ConsolePlan,
}

impl RawGuest {
    /// The guest's name for messages: its name, or its position when it has none.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(n) => alloc::format!("guest `{}`", n.value),
            None => alloc::format!("guest #{}", index + 1),
        }
    }
}

pub(super) struct RawDisk {
    pub image: Option<At<String>>,
    pub readonly: bool,
}

pub(super) struct RawNet {
    pub switch: Option<At<String>>,
    pub mac: Option<At<MacAddr>>,
}
