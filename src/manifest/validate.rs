//! Second pass: the rules that relate values to each other and to the machine (unique names,
//! CPUs, total RAM, boot modules, shared disks, device slots, network), then the `Plan`, built
//! only when nothing at all was wrong.

#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::cpus;
use super::diag::{line_column, Sink};
use super::network::{self, Network};
use super::plan::{CrashPolicy, DiskPlan, GuestPlan, NetPlan, Plan};
use super::schema::{
    At, CrashKind, RawGuest, RawManifest, DEFAULT_RESTART_LIMIT, MAX_VIRTIO_DEVICES,
    SUPPORTED_VERSION,
};
use super::size::human;
use super::MachineFacts;

pub(super) fn validate(
    sink: &mut Sink<'_>,
    raw: RawManifest,
    facts: &MachineFacts<'_>,
) -> Option<Plan> {
    if raw.guests.is_empty() {
        sink.error_hint(
            0..0,
            "the manifest starts no guests",
            "add a [[guest]] table for each guest (see docs/MANIFEST.md)",
        );
    }
    unique_names(sink, &raw.guests);
    let cpus = cpus::assign(sink, &raw.guests, facts.cpu_count);
    total_memory(sink, &raw.guests, facts.free_ram_bytes);
    modules_exist(sink, &raw.guests, facts.module_exists);
    shared_disks(sink, &raw.guests);
    device_slots(sink, &raw.guests);
    let network = network::plan(sink, &raw.guests);
    if sink.has_errors() {
        return None;
    }
    let plan = build(raw, cpus, network);
    if plan.is_none() {
        // Every value a Plan needs was either present or reported missing; reaching this
        // means a rule forgot to report, so fail closed with something to search for.
        sink.error(
            0..0,
            "internal error: the manifest passed every check but is incomplete",
        );
    }
    plan
}

fn unique_names(sink: &mut Sink<'_>, guests: &[RawGuest]) {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for name in guests.iter().filter_map(|g| g.name.as_ref()) {
        if let Some(line) = seen.get(name.value.as_str()) {
            sink.error_hint(
                name.span.clone(),
                format!(
                    "guest name \"{}\" is already used (line {line})",
                    name.value
                ),
                "guest names must be unique: they prefix the guest's log lines and its console",
            );
        } else {
            let (line, _) = line_column(sink.source(), name.span.start);
            seen.insert(&name.value, line);
        }
    }
}

/// Reports once, at the guest whose RAM no longer fits, how much is free and what was asked.
fn total_memory(sink: &mut Sink<'_>, guests: &[RawGuest], free_bytes: u64) {
    let mut total: u64 = 0;
    let mut asked: Vec<String> = Vec::new();
    let mut over = None;
    for (i, guest) in guests.iter().enumerate() {
        let (Some(bytes), Some(span)) = (guest.memory_bytes, guest.memory_span.as_ref()) else {
            continue;
        };
        total = total.saturating_add(bytes);
        asked.push(format!("{} {}", guest.label(i), human(bytes)));
        if total > free_bytes && over.is_none() {
            over = Some((span.clone(), guest.label(i)));
        }
    }
    let Some((span, who)) = over else {
        return;
    };
    let (total, free) = (human(total), human(free_bytes));
    let message = if asked.len() == 1 {
        format!("{who} asks for {total} of RAM, but only {free} is free")
    } else {
        format!("the guests ask for {total} of RAM in total, but only {free} is free")
    };
    sink.error_hint(
        span,
        message,
        format!(
            "asked: {}; lower `memory` or run fewer guests",
            asked.join(", ")
        ),
    );
}

fn modules_exist(sink: &mut Sink<'_>, guests: &[RawGuest], exists: &dyn Fn(&str) -> bool) {
    for guest in guests {
        let images = guest
            .kernel
            .iter()
            .map(|k| ("kernel", k))
            .chain(guest.initrd.iter().map(|i| ("initrd", i)))
            .chain(
                guest
                    .disks
                    .iter()
                    .filter_map(|d| d.image.as_ref())
                    .map(|d| ("disk image", d)),
            );
        for (what, path) in images {
            if !exists(&path.value) {
                sink.error_hint(
                    path.span.clone(),
                    format!("{what} \"{}\" was not found", path.value),
                    format!(
                        "on the build host the path is relative to the manifest's folder; at boot GRUB must load it with module2 and the string \"{}\"",
                        path.value
                    ),
                );
            }
        }
    }
}

/// One use of a disk image: (who, disk index, read-only, the image's path).
type DiskUse<'a> = (String, usize, bool, &'a At<String>);

/// A disk image is one block of RAM: two guests writing it would share memory, so an image
/// used more than once must be read-only everywhere.
fn shared_disks(sink: &mut Sink<'_>, guests: &[RawGuest]) {
    let mut uses: BTreeMap<&str, Vec<DiskUse<'_>>> = BTreeMap::new();
    for (g, guest) in guests.iter().enumerate() {
        for (d, disk) in guest.disks.iter().enumerate() {
            if let Some(image) = &disk.image {
                uses.entry(&image.value).or_default().push((
                    guest.label(g),
                    d,
                    disk.readonly,
                    image,
                ));
            }
        }
    }
    for list in uses.values() {
        let Some((first_who, first_disk, _, first)) = list.first() else {
            continue;
        };
        let (line, _) = line_column(sink.source(), first.span.start);
        for (_, _, readonly, image) in list.iter().skip(1) {
            let all_readonly = *readonly && list.iter().all(|u| u.2);
            if !all_readonly {
                sink.error_hint(
                    image.span.clone(),
                    format!(
                        "disk image \"{}\" is already used by {first_who} disk{first_disk} (line {line}), and a shared image must be read-only",
                        image.value
                    ),
                    "give every use readonly = true, or give each guest its own image",
                );
            }
        }
    }
}

fn device_slots(sink: &mut Sink<'_>, guests: &[RawGuest]) {
    for (i, guest) in guests.iter().enumerate() {
        let count = guest.disks.len() + guest.nets.len() + usize::from(guest.console.virtio);
        if count > MAX_VIRTIO_DEVICES as usize {
            sink.error_hint(
                guest.header.clone(),
                format!(
                    "{} has {count} virtio devices; a guest has room for {MAX_VIRTIO_DEVICES}",
                    guest.label(i)
                ),
                "disks, nets and a virtio console each take one slot",
            );
        }
    }
}

fn build(raw: RawManifest, mut cpus: Vec<Option<Vec<u32>>>, network: Network) -> Option<Plan> {
    let mut macs = network.macs.into_iter();
    let mut guests = Vec::with_capacity(raw.guests.len());
    for (i, g) in raw.guests.into_iter().enumerate() {
        let nets = g
            .nets
            .into_iter()
            .zip(macs.next()?)
            .map(|(n, mac)| {
                Some(NetPlan {
                    switch: n.switch?.value,
                    mac,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let disks = g
            .disks
            .into_iter()
            .map(|d| {
                Some(DiskPlan {
                    image: d.image?.value,
                    readonly: d.readonly,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        guests.push(GuestPlan {
            name: g.name?.value,
            cpus: cpus.get_mut(i)?.take()?,
            memory_bytes: g.memory_bytes?,
            kernel: g.kernel?.value,
            format: g.format,
            cmdline: g.cmdline,
            initrd: g.initrd.map(|i| i.value),
            on_crash: match g.on_crash {
                CrashKind::Stop => CrashPolicy::Stop,
                CrashKind::Restart => CrashPolicy::Restart {
                    limit: g.restart_limit.unwrap_or(DEFAULT_RESTART_LIMIT),
                },
            },
            time_limit_ms: g.time_limit_ms,
            disks,
            nets,
            console: g.console,
        });
    }
    Some(Plan {
        version: SUPPORTED_VERSION,
        hypervisor: raw.hypervisor,
        guests,
        switches: network.switches,
    })
}
