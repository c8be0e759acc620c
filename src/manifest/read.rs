//! First pass over the parsed TOML: checks every table's keys and every value's type and
//! syntax, and gathers the raw manifest. Rules that relate several values (CPUs, RAM, names,
//! MACs, switches, modules) are in `validate`.

#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use toml::de::{DeTable, DeValue};

use super::diag::Sink;
use super::fields;
use super::plan::{
    ConsolePlan, EscapeKey, HostConsolePlan, HypervisorPlan, KernelFormat, LogLevel,
};
use super::schema::{
    CrashKind, RawDisk, RawGuest, RawManifest, RawNet, DISK, GUEST, GUEST_CONSOLE, HOST_CONSOLE,
    HYPERVISOR, NET, TOP,
};
use super::value::{boolean, check_keys, choice, missing, table_array, wrong_type, Value};

const LOG_LEVELS: [(&str, LogLevel); 5] = [
    ("error", LogLevel::Error),
    ("warn", LogLevel::Warn),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
    ("trace", LogLevel::Trace),
];
const FORMATS: [(&str, KernelFormat); 3] = [
    ("auto", KernelFormat::Auto),
    ("elf", KernelFormat::Elf),
    ("linux", KernelFormat::Linux),
];
const CRASH_KINDS: [(&str, CrashKind); 2] =
    [("stop", CrashKind::Stop), ("restart", CrashKind::Restart)];

/// What the hypervisor does when the manifest has no `[hypervisor]` table.
pub(super) const DEFAULT_HYPERVISOR: HypervisorPlan = HypervisorPlan {
    log: LogLevel::Info,
    console: HostConsolePlan {
        escape: EscapeKey::CTRL_A,
        prefix_guest_output: true,
    },
};

/// Reads the whole document (apart from `version`, which `parse` checks first).
pub(super) fn read(sink: &mut Sink<'_>, root: &DeTable<'_>) -> RawManifest {
    check_keys(sink, root, TOP, &[]);
    let hypervisor = match root.get("hypervisor") {
        None => DEFAULT_HYPERVISOR,
        Some(v) => match v.get_ref() {
            DeValue::Table(t) => read_hypervisor(sink, t),
            _ => {
                wrong_type(
                    sink,
                    "hypervisor",
                    v,
                    "a table",
                    Some(String::from("write a [hypervisor] header")),
                );
                DEFAULT_HYPERVISOR
            }
        },
    };
    let guests = match root.get("guest") {
        None => Vec::new(),
        Some(v) => table_array(sink, "guest", v, "[[guest]]")
            .into_iter()
            .enumerate()
            .map(|(i, (t, header))| read_guest(sink, t, header, i))
            .collect(),
    };
    RawManifest { hypervisor, guests }
}

fn read_hypervisor(sink: &mut Sink<'_>, t: &DeTable<'_>) -> HypervisorPlan {
    check_keys(sink, t, HYPERVISOR, &[TOP]);
    let mut plan = DEFAULT_HYPERVISOR;
    if let Some(v) = t.get("log") {
        plan.log = choice(sink, "log", v, &LOG_LEVELS).unwrap_or(plan.log);
    }
    if let Some(v) = t.get("console") {
        match v.get_ref() {
            DeValue::Table(c) => {
                check_keys(sink, c, HOST_CONSOLE, &[HYPERVISOR, TOP]);
                if let Some(v) = c.get("escape") {
                    plan.console.escape =
                        fields::escape_key(sink, v).unwrap_or(plan.console.escape);
                }
                if let Some(v) = c.get("prefix_guest_output") {
                    let prefix = boolean(sink, "prefix_guest_output", v);
                    plan.console.prefix_guest_output = prefix.unwrap_or(true);
                }
            }
            _ => wrong_type(
                sink,
                "console",
                v,
                "a table",
                Some(String::from("write a [hypervisor.console] header")),
            ),
        }
    }
    plan
}

fn read_guest(
    sink: &mut Sink<'_>,
    t: &DeTable<'_>,
    header: Range<usize>,
    index: usize,
) -> RawGuest {
    check_keys(sink, t, GUEST, &[TOP]);
    let name = t
        .get("name")
        .and_then(|v| fields::name(sink, "name", "guest name", v));
    let mut guest = RawGuest {
        header: header.clone(),
        name,
        cpus: None,
        memory_bytes: None,
        memory_span: None,
        kernel: None,
        format: KernelFormat::Auto,
        cmdline: String::new(),
        initrd: None,
        on_crash: CrashKind::Stop,
        restart_limit: None,
        time_limit_ms: None,
        disks: Vec::new(),
        nets: Vec::new(),
        console: ConsolePlan::default(),
    };
    let who = guest.label(index);
    if t.get("name").is_none() {
        missing(sink, header.clone(), &who, "name", "name = \"web\"");
    }
    match t.get("cpus") {
        Some(v) => guest.cpus = fields::cpus(sink, v),
        None => missing(sink, header.clone(), &who, "cpus", "cpus = 1"),
    }
    match t.get("memory") {
        Some(v) => {
            guest.memory_bytes = fields::memory(sink, v);
            guest.memory_span = Some(v.span());
        }
        None => missing(sink, header.clone(), &who, "memory", "memory = \"256M\""),
    }
    match t.get("kernel") {
        Some(v) => guest.kernel = fields::image_path(sink, "kernel", v),
        None => missing(
            sink,
            header.clone(),
            &who,
            "kernel",
            "kernel = \"guests/web/bzImage\"",
        ),
    }
    if let Some(v) = t.get("format") {
        guest.format = choice(sink, "format", v, &FORMATS).unwrap_or(KernelFormat::Auto);
    }
    if let Some(v) = t.get("cmdline") {
        guest.cmdline = fields::cmdline(sink, v).unwrap_or_default();
    }
    if let Some(v) = t.get("initrd") {
        guest.initrd = fields::image_path(sink, "initrd", v);
    }
    if let Some(v) = t.get("on_crash") {
        guest.on_crash = choice(sink, "on_crash", v, &CRASH_KINDS).unwrap_or(CrashKind::Stop);
    }
    read_restart_limit(sink, t, &mut guest);
    if let Some(v) = t.get("time_limit_ms") {
        guest.time_limit_ms = fields::time_limit_ms(sink, v);
    }
    if let Some(v) = t.get("disk") {
        guest.disks = table_array(sink, "disk", v, "[[guest.disk]]")
            .into_iter()
            .map(|(d, span)| read_disk(sink, d, span, &who))
            .collect();
    }
    if let Some(v) = t.get("net") {
        guest.nets = table_array(sink, "net", v, "[[guest.net]]")
            .into_iter()
            .map(|(n, span)| read_net(sink, n, span, &who))
            .collect();
    }
    if let Some(v) = t.get("console") {
        guest.console = read_guest_console(sink, v);
    }
    guest
}

/// `restart_limit` only means something with `on_crash = "restart"`; saying it without is
/// likely a forgotten `on_crash`, so it is an error rather than ignored.
fn read_restart_limit(sink: &mut Sink<'_>, t: &DeTable<'_>, guest: &mut RawGuest) {
    let Some((key, v)) = t.get_key_value("restart_limit") else {
        return;
    };
    guest.restart_limit = fields::restart_limit(sink, v);
    if guest.on_crash == CrashKind::Stop
        && t.get("on_crash")
            .is_none_or(|c| c.get_ref().as_str() == Some("stop"))
    {
        sink.error_hint(
            key.span(),
            "`restart_limit` applies only with on_crash = \"restart\"",
            "add on_crash = \"restart\", or remove restart_limit",
        );
    }
}

fn read_disk(sink: &mut Sink<'_>, t: &DeTable<'_>, header: Range<usize>, who: &str) -> RawDisk {
    check_keys(sink, t, DISK, &[GUEST, TOP]);
    let image = match t.get("image") {
        Some(v) => fields::image_path(sink, "image", v),
        None => {
            missing(
                sink,
                header,
                &format!("a disk of {who}"),
                "image",
                "image = \"disks/root.img\"",
            );
            None
        }
    };
    let readonly = t
        .get("readonly")
        .and_then(|v| boolean(sink, "readonly", v))
        .unwrap_or(false);
    RawDisk { image, readonly }
}

fn read_net(sink: &mut Sink<'_>, t: &DeTable<'_>, header: Range<usize>, who: &str) -> RawNet {
    check_keys(sink, t, NET, &[GUEST, TOP]);
    let switch = match t.get("switch") {
        Some(v) => fields::name(sink, "switch", "switch name", v),
        None => {
            missing(
                sink,
                header,
                &format!("a net of {who}"),
                "switch",
                "switch = \"lan\"",
            );
            None
        }
    };
    let mac = t.get("mac").and_then(|v| fields::mac(sink, v));
    RawNet { switch, mac }
}

/// `[guest.console]`, or `[[guest.console]]` written once.
fn read_guest_console(sink: &mut Sink<'_>, v: &Value<'_>) -> ConsolePlan {
    let table = match v.get_ref() {
        DeValue::Table(t) => Some(t),
        DeValue::Array(items) => {
            for extra in items.iter().skip(1) {
                sink.error_hint(
                    extra.span(),
                    "a guest has one console",
                    "merge the [[guest.console]] tables into one",
                );
            }
            match items.first().map(|i| (i, i.get_ref())) {
                Some((_, DeValue::Table(t))) => Some(t),
                Some((item, _)) => {
                    wrong_type(sink, "console", item, "a table", None);
                    None
                }
                None => None,
            }
        }
        _ => {
            wrong_type(
                sink,
                "console",
                v,
                "a table",
                Some(String::from("write a [guest.console] header")),
            );
            None
        }
    };
    let mut plan = ConsolePlan::default();
    if let Some(t) = table {
        check_keys(sink, t, GUEST_CONSOLE, &[GUEST, TOP]);
        plan.virtio = t
            .get("virtio")
            .and_then(|v| boolean(sink, "virtio", v))
            .unwrap_or(false);
    }
    plan
}

/// Every string under `guest[*].kernel`, `guest[*].initrd` and `guest[*].disk[*].image`, each
/// once, whatever else is wrong with the manifest.
pub(super) fn image_paths(root: &DeTable<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: Option<&Value<'_>>| {
        if let Some(path) = v.and_then(|v| v.get_ref().as_str()) {
            if !out.iter().any(|p| p == path) {
                out.push(String::from(path));
            }
        }
    };
    for guest in tables_in(root.get("guest")) {
        add(guest.get("kernel"));
        add(guest.get("initrd"));
        for disk in tables_in(guest.get("disk")) {
            add(disk.get("image"));
        }
    }
    out
}

/// The tables of an array of tables, or the one table; nothing for anything else.
fn tables_in<'a, 'i>(value: Option<&'a Value<'i>>) -> Vec<&'a DeTable<'i>> {
    match value.map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items
            .iter()
            .filter_map(|i| i.get_ref().as_table())
            .collect(),
        Some(DeValue::Table(t)) => alloc::vec![t],
        _ => Vec::new(),
    }
}
