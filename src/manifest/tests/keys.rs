//! Unknown, misplaced and missing keys, and tables written the wrong way.

use super::{assert_at, assert_hint, errors, guest_with, one_error};

#[test]
fn a_misspelt_key_gets_the_nearest_valid_key() {
    let e = one_error(&guest_with("comdline = \"quiet\"\n"));
    assert_at(&e, 7, 1, "unknown key `comdline` in [[guest]]");
    assert_hint(&e, "did you mean `cmdline`?");
}

#[test]
fn keys_from_other_tools_are_recognised() {
    let e = one_error(&guest_with("append = \"quiet\"\n"));
    assert_at(&e, 7, 1, "unknown key `append`");
    assert_hint(&e, "did you mean `cmdline`?");
    let e = one_error(&guest_with("on-crash = \"stop\"\n"));
    assert_hint(&e, "did you mean `on_crash`?");
}

#[test]
fn an_unrelated_key_lists_the_valid_ones() {
    let e = one_error(&guest_with("colour = \"blue\"\n"));
    assert_hint(&e, "[[guest]] takes: name, cpus, memory, kernel");
}

#[test]
fn a_guest_key_below_a_disk_header_is_sent_back_to_the_guest() {
    let e = one_error(&guest_with(
        "[[guest.disk]]\nimage = \"d\"\ncmdline = \"quiet\"\n",
    ));
    assert_at(&e, 9, 1, "unknown key `cmdline` in [[guest.disk]]");
    assert_hint(&e, "`cmdline` belongs in [[guest]]");
    assert_hint(&e, "move it above the header");
}

#[test]
fn guest_keys_at_the_top_level_ask_for_a_guest_header() {
    let e = errors("version = 1\nname = \"web\"\n[[guest]]\nname = \"a\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"k\"\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_at(&e[0], 2, 1, "unknown key `name` in the top level");
    assert_hint(&e[0], "put it below a [[guest]] header");
}

#[test]
fn unknown_keys_are_found_in_every_table() {
    let e = errors(&guest_with(
        "consle = {}\n\
         [[guest.disk]]\nimage = \"d\"\nread_only = true\n\
         [[guest.net]]\nswitch = \"lan\"\nmca = \"52:54:00:00:00:01\"\n\
         [[guest.net]]\nswitch = \"lan\"\n\
         [guest.console]\nvirtio = true\nvirt = 1\n\
         [hypervisor]\nlogs = \"info\"\nconsole = { escpae = \"ctrl-b\" }\n\
         [guests]\n",
    ));
    let found: alloc::vec::Vec<(u32, &str)> =
        e.iter().map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(
        found,
        [
            (7, "unknown key `consle` in [[guest]]"),
            (10, "unknown key `read_only` in [[guest.disk]]"),
            (13, "unknown key `mca` in [[guest.net]]"),
            (18, "unknown key `virt` in [guest.console]"),
            (20, "unknown key `logs` in [hypervisor]"),
            (21, "unknown key `escpae` in [hypervisor.console]"),
            (22, "unknown key `guests` in the top level"),
        ]
    );
    assert_hint(&e[0], "did you mean `console`?");
    assert_hint(&e[1], "did you mean `readonly`?");
    assert_hint(&e[2], "did you mean `mac`?");
    assert_hint(&e[6], "did you mean `guest`?");
}

#[test]
fn a_single_guest_table_asks_for_double_brackets_and_is_still_checked() {
    let e =
        errors("version = 1\n[guest]\nname = \"a\"\ncpus = 1\nmemory = \"3K\"\nkernel = \"k\"\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 2, 1, "`guest` must be a list of tables");
    assert_hint(&e[0], "write [[guest]] with double brackets");
    assert_at(&e[1], 5, 10, "not a multiple of 4 KiB");
}

#[test]
fn a_disk_table_asks_for_double_brackets() {
    let e = one_error(&guest_with("[guest.disk]\nimage = \"d\"\n"));
    assert_at(&e, 7, 1, "`disk` must be a list of tables");
    assert_hint(&e, "[[guest.disk]]");
}

#[test]
fn missing_required_keys_are_reported_at_the_header() {
    let e = errors("version = 1\n\n[[guest]]\ncmdline = \"x\"\n[[guest.disk]]\nreadonly = true\n[[guest.net]]\n");
    let found: alloc::vec::Vec<(u32, u32, &str)> = e
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (3, 1, "guest #1 has no `name`"),
            (3, 1, "guest #1 has no `cpus`"),
            (3, 1, "guest #1 has no `memory`"),
            (3, 1, "guest #1 has no `kernel`"),
            (5, 1, "a disk of guest #1 has no `image`"),
            (7, 1, "a net of guest #1 has no `switch`"),
        ]
    );
    assert_hint(&e[2], "memory = \"256M\"");
}

#[test]
fn a_manifest_without_guests_is_an_error() {
    let e = one_error("version = 1\n[hypervisor]\nlog = \"warn\"\n");
    assert_at(&e, 1, 1, "the manifest starts no guests");
    assert_hint(&e, "[[guest]]");
}

#[test]
fn wrongly_typed_tables_are_reported() {
    let text = guest_with("console = true\ndisk = \"root.img\"\n");
    let e = errors(&text.replace("version = 1\n", "version = 1\nhypervisor = 3\n"));
    let found: alloc::vec::Vec<&str> = e.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        found,
        [
            "`hypervisor` must be a table, not an integer",
            "`console` must be a table, not true/false",
            "`disk` must be a list of tables, not a string",
        ]
    );
}
