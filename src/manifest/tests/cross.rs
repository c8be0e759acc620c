//! Rules across values and against the machine: names, CPUs, RAM, modules, shared disks,
//! device slots, MACs and switches.

use alloc::format;
use alloc::string::String;

use super::{assert_at, assert_hint, errors, errors_with, one_error, CPUS, RAM};

/// A guest table starting with `[[guest]]` on its own line, with the given values.
fn guest(name: &str, cpus: &str, memory: &str, extra: &str) -> String {
    format!("[[guest]]\nname = \"{name}\"\ncpus = {cpus}\nmemory = \"{memory}\"\nkernel = \"k\"\n{extra}")
}

fn manifest(guests: &[String]) -> String {
    let mut s = String::from("version = 1\n");
    for g in guests {
        s.push_str(g);
    }
    s
}

#[test]
fn guest_names_are_unique() {
    let e = one_error(&manifest(&[
        guest("web", "1", "2M", ""),
        guest("web", "1", "2M", ""),
    ]));
    assert_at(&e, 8, 8, "guest name \"web\" is already used (line 3)");
}

#[test]
fn a_listed_cpu_must_exist() {
    let e = one_error(&manifest(&[guest("a", "[1, 4]", "2M", "")]));
    assert_at(&e, 4, 12, "cpu4 does not exist");
    assert_hint(&e, "this machine has 4 CPUs: cpu0 to cpu3");
}

#[test]
fn a_cpu_is_listed_once_within_a_guest() {
    let e = one_error(&manifest(&[guest("a", "[2, 2]", "2M", "")]));
    assert_at(&e, 4, 12, "cpu2 is listed twice in guest `a`");
}

#[test]
fn a_cpu_runs_one_guest() {
    let e = one_error(&manifest(&[
        guest("a", "[1, 2]", "2M", ""),
        guest("b", "[3, 2]", "2M", ""),
    ]));
    assert_at(&e, 9, 12, "cpu2 is already given to guest `a` (line 4)");
    assert_hint(&e, "each CPU runs one guest");
}

#[test]
fn a_count_cannot_take_more_cpus_than_are_free() {
    let e = one_error(&manifest(&[
        guest("a", "[1, 2]", "2M", ""),
        guest("b", "2", "2M", ""),
    ]));
    assert_at(
        &e,
        9,
        8,
        "guest `b` asks for 2 CPUs but only 1 is free: cpu3",
    );
    assert_hint(&e, "cpu0 stays with the hypervisor unless a guest lists it");
    assert_hint(&e, "taken: cpu1 (guest `a`), cpu2 (guest `a`)");
}

#[test]
fn a_one_cpu_machine_has_no_cpu_to_count_from() {
    let e = errors_with(&manifest(&[guest("a", "1", "2M", "")]), 1, RAM, &|_| true);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_at(&e[0], 4, 8, "guest `a` asks for 1 CPU but none is free");
    assert_hint(&e[0], "this machine has 1 CPU: cpu0");
}

#[test]
fn the_guests_ram_must_fit_in_free_ram() {
    let text = manifest(&[
        guest("a", "1", "1G", ""),
        guest("b", "1", "768M", ""),
        guest("c", "1", "512M", ""),
    ]);
    let e = one_error(&text);
    assert_at(
        &e,
        15,
        10,
        "the guests ask for 2.2 GiB (2415919104 bytes) of RAM in total, but only 2 GiB is free",
    );
    assert_hint(
        &e,
        "asked: guest `a` 1 GiB, guest `b` 768 MiB, guest `c` 512 MiB",
    );
    let e = errors_with(&manifest(&[guest("a", "1", "4G", "")]), CPUS, RAM, &|_| {
        true
    });
    assert_at(
        &e[0],
        5,
        10,
        "guest `a` asks for 4 GiB of RAM, but only 2 GiB is free",
    );
}

#[test]
fn every_image_must_be_a_boot_module() {
    let text = manifest(&[guest(
        "a",
        "1",
        "2M",
        "initrd = \"i\"\n[[guest.disk]]\nimage = \"d\"\n[[guest.disk]]\nimage = \"here\"\n",
    )]);
    let e = errors_with(&text, CPUS, RAM, &|m| m == "here");
    let found: alloc::vec::Vec<(u32, u32, &str)> = e
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (6, 10, "kernel \"k\" was not found"),
            (7, 10, "initrd \"i\" was not found"),
            (9, 9, "disk image \"d\" was not found"),
        ]
    );
    assert_hint(&e[0], "relative to the manifest's folder");
    assert_hint(&e[0], "module2");
}

#[test]
fn a_shared_disk_image_must_be_read_only_everywhere() {
    let ro = "[[guest.disk]]\nimage = \"d\"\nreadonly = true\n";
    let rw = "[[guest.disk]]\nimage = \"d\"\n";
    let e = one_error(&manifest(&[
        guest("a", "1", "2M", rw),
        guest("b", "1", "2M", ro),
    ]));
    assert_at(&e, 15, 9, "disk image \"d\" is already used by guest `a` disk0 (line 8), and a shared image must be read-only");
    let e = one_error(&manifest(&[
        guest("a", "1", "2M", ro),
        guest("b", "1", "2M", rw),
    ]));
    assert_at(&e, 16, 9, "already used by guest `a` disk0");
    // Twice in one guest, writable, is the same mistake.
    let e = one_error(&manifest(&[guest("a", "1", "2M", &format!("{rw}{rw}"))]));
    assert_at(&e, 10, 9, "already used by guest `a` disk0");
    let p = super::plan(&manifest(&[
        guest("a", "1", "2M", ro),
        guest("b", "1", "2M", ro),
    ]));
    assert_eq!(p.guests.len(), 2);
}

#[test]
fn a_guest_has_sixteen_virtio_slots() {
    let mut devices = String::from("console = { virtio = true }\n");
    for i in 0..8 {
        devices.push_str(&format!("[[guest.disk]]\nimage = \"d{i}\"\n"));
        devices.push_str("[[guest.net]]\nswitch = \"lan\"\n");
    }
    let e = one_error(&manifest(&[guest("a", "1", "2M", &devices)]));
    assert_at(
        &e,
        2,
        1,
        "guest `a` has 17 virtio devices; a guest has room for 16",
    );
}

#[test]
fn a_mac_is_used_once() {
    let net = "[[guest.net]]\nswitch = \"lan\"\nmac = \"52:54:00:00:00:01\"\n";
    let e = one_error(&manifest(&[
        guest("a", "1", "2M", net),
        guest("b", "1", "2M", net),
    ]));
    assert_at(
        &e,
        17,
        7,
        "mac 52:54:00:00:00:01 is already used by guest `a` net0 (line 9)",
    );
}

#[test]
fn a_switch_needs_two_ports_and_a_near_name_is_suggested() {
    let lan = "[[guest.net]]\nswitch = \"lan\"\n";
    let e = one_error(&manifest(&[guest("a", "1", "2M", lan)]));
    assert_at(
        &e,
        8,
        10,
        "switch \"lan\" has only one port (guest `a` net0)",
    );
    assert_hint(&e, "a switch connects two or more guests");
    let e = errors(&manifest(&[
        guest("a", "1", "2M", lan),
        guest("b", "1", "2M", lan),
        guest("c", "1", "2M", "[[guest.net]]\nswitch = \"lna\"\n"),
    ]));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_at(
        &e[0],
        22,
        10,
        "switch \"lna\" has only one port (guest `c` net0)",
    );
    assert_hint(&e[0], "did you mean switch \"lan\"?");
}

#[test]
fn five_different_mistakes_give_five_errors() {
    let text = manifest(&[
        guest("a", "[1, 9]", "2M", "initrd = \"missing\"\n"),
        guest("b", "1", "5001K", ""),
        guest("B", "1", "2M", "cmdlin = \"quiet\"\n"),
    ]);
    let e = errors_with(&text, CPUS, RAM, &|m| m != "missing");
    let lines: alloc::vec::Vec<u32> = e.iter().map(|d| d.line).collect();
    assert_eq!(lines, [4, 7, 11, 14, 18], "{e:#?}");
}
