//! Rules for single values: types, sizes, names, CPU lists, paths, MACs, choices.

use alloc::format;
use alloc::string::String;

use super::{assert_at, assert_hint, errors, guest_with, one_error};

/// A one-guest manifest whose line 5 is `memory = <value>` (the value starts at column 10).
fn with_memory(value: &str) -> String {
    guest_with("").replace("memory = \"64M\"", &format!("memory = {value}"))
}

#[test]
fn memory_must_be_a_string_with_a_unit() {
    let e = one_error(&with_memory("256"));
    assert_at(
        &e,
        5,
        10,
        "`memory` must be a string like \"256M\", not an integer",
    );
    assert_hint(&e, "memory = \"256M\" means 256 MiB");
    let e = one_error(&with_memory("\"256\""));
    assert_at(&e, 5, 10, "memory \"256\" has no unit");
    assert_hint(&e, "\"256M\" means 256 MiB");
}

#[test]
fn memory_refuses_ambiguous_and_unknown_units() {
    let e = one_error(&with_memory("\"256MB\""));
    assert_at(&e, 5, 10, "uses a decimal unit");
    assert_hint(&e, "\"256MiB\"");
    let e = one_error(&with_memory("\"1.5G\""));
    assert_at(&e, 5, 10, "is not a whole number");
    assert_hint(&e, "\"1536M\"");
    let e = one_error(&with_memory("\"lots\""));
    assert_at(&e, 5, 10, "memory \"lots\" does not start with a number");
    let e = one_error(&with_memory("\"99999999999T\""));
    assert_at(&e, 5, 10, "is too large");
}

#[test]
fn memory_must_be_page_aligned_and_at_least_the_minimum() {
    let e = one_error(&with_memory("\"1001K\""));
    assert_at(&e, 5, 10, "memory \"1001K\" is not a multiple of 4 KiB");
    assert_hint(&e, "use \"1000K\" or \"1004K\"");
    let e = one_error(&with_memory("\"3K\""));
    assert_hint(&e, "use \"4K\"");
    let e = one_error(&with_memory("\"1M\""));
    assert_at(&e, 5, 10, "memory \"1M\" is below the minimum of 2M");
    assert_hint(&e, "at least \"2M\"");
    let e = one_error(&with_memory("\"0M\""));
    assert_at(&e, 5, 10, "below the minimum");
}

#[test]
fn names_are_short_lowercase_words() {
    let cases = [
        (
            "\"Web_1\"",
            "guest name \"Web_1\" may use only a-z, 0-9 and '-'",
            Some("try \"web-1\""),
        ),
        ("\"\"", "guest name is empty", None),
        (
            "\"-web\"",
            "must start and end with a letter or digit",
            Some("try \"web\""),
        ),
        (
            "\"a-very-long-guest-name-that-goes-on-and-on\"",
            "is 42 characters long; the limit is 32",
            Some("try \"a-very-long-guest-name-that-goes\""),
        ),
        (
            "7",
            "`name` must be a string like \"web\", not an integer",
            None,
        ),
    ];
    for (value, message, hint) in cases {
        let text = guest_with("").replace("name = \"web\"", &format!("name = {value}"));
        let e = one_error(&text);
        assert_at(&e, 3, 8, message);
        if let Some(hint) = hint {
            assert_hint(&e, hint);
        }
    }
}

#[test]
fn escaped_control_characters_are_not_echoed() {
    let text = guest_with("").replace("name = \"web\"", "name = \"w\\u001b[2Jeb\"");
    let e = one_error(&text);
    assert!(!e.message.contains('\u{1b}'), "{:?}", e.message);
    assert!(e.message.contains("\\u{1b}[2Jeb"), "{:?}", e.message);
}

#[test]
fn cpus_are_a_count_or_a_list_of_numbers() {
    let at = |value: &str| {
        let text = guest_with("").replace("cpus = 1", &format!("cpus = {value}"));
        one_error(&text)
    };
    let e = at("\"2\"");
    assert_at(
        &e,
        4,
        8,
        "`cpus` must be a CPU count like 2 or a list of CPU numbers like [1, 2], not a string",
    );
    assert_hint(&e, "write it without quotes: cpus = 2");
    assert_at(
        &at("0"),
        4,
        8,
        "`cpus` is 0; a guest needs at least one CPU",
    );
    assert_at(&at("-1"), 4, 8, "`cpus` is -1");
    assert_at(&at("[]"), 4, 8, "`cpus` is an empty list");
    assert_at(&at("[1, -2]"), 4, 12, "CPU number -2 is negative");
    assert_at(
        &at("[1, \"2\"]"),
        4,
        12,
        "`cpus` must be a list of CPU numbers like [1, 2], not a string",
    );
    assert_at(&at("1.0"), 4, 8, "not a number with a fraction");
    assert_at(&at("99999999999999999999"), 4, 8, "`cpus` is too large");
}

#[test]
fn image_paths_must_be_usable_module_strings() {
    let e = one_error(&guest_with("").replace("kernel = \"web.elf\"", "kernel = \"\""));
    assert_at(&e, 6, 10, "`kernel` is empty");
    let e = one_error(&guest_with("initrd = \"a\\nb\"\n"));
    assert_at(&e, 7, 10, "`initrd` \"a\\nb\" contains a control character");
    let e = one_error(&guest_with("initrd = [\"a\"]\n"));
    assert_at(
        &e,
        7,
        10,
        "`initrd` must be a path string like \"guests/web/bzImage\", not an array",
    );
}

#[test]
fn cmdline_must_be_a_string_without_nul() {
    let e = one_error(&guest_with("cmdline = \"a\\u0000b\"\n"));
    assert_at(&e, 7, 11, "`cmdline` contains a NUL character");
    let e = one_error(&guest_with("cmdline = [\"quiet\"]\n"));
    assert_at(
        &e,
        7,
        11,
        "`cmdline` must be a string like \"console=ttyS0\", not an array",
    );
    let long = "x".repeat(super::super::schema::MAX_CMDLINE_BYTES + 1);
    let e = one_error(&guest_with(&format!("cmdline = \"{long}\"\n")));
    assert_at(&e, 7, 11, "bytes long; the limit is");
}

#[test]
fn choices_suggest_the_nearest_word() {
    let e = one_error(&guest_with("format = \"bzImage\"\n"));
    assert_at(
        &e,
        7,
        10,
        "`format` must be one of \"auto\", \"elf\", \"linux\", not \"bzImage\"",
    );
    assert_hint(&e, "did you mean \"linux\"?");
    let e = one_error(&guest_with("on_crash = \"reboot\"\n"));
    assert_at(&e, 7, 12, "`on_crash` must be one of \"stop\", \"restart\"");
    assert_hint(&e, "did you mean \"restart\"?");
    let e = one_error(&guest_with("[hypervisor]\nlog = \"verbose\"\n"));
    assert_at(
        &e,
        8,
        7,
        "`log` must be one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
    );
}

#[test]
fn restart_limit_needs_restart_and_a_positive_count() {
    let e = one_error(&guest_with("restart_limit = 5\n"));
    assert_at(
        &e,
        7,
        1,
        "`restart_limit` applies only with on_crash = \"restart\"",
    );
    assert_hint(&e, "add on_crash = \"restart\"");
    let e = one_error(&guest_with("on_crash = \"stop\"\nrestart_limit = 5\n"));
    assert_at(&e, 8, 1, "applies only with");
    let e = one_error(&guest_with("on_crash = \"restart\"\nrestart_limit = 0\n"));
    assert_at(&e, 8, 17, "`restart_limit` is 0; it must be at least 1");
    let e = one_error(&guest_with(
        "on_crash = \"restart\"\nrestart_limit = 5000000000\n",
    ));
    assert_at(&e, 8, 17, "at most 4294967295");
    // A misspelt on_crash is one mistake, not two.
    let e = one_error(&guest_with("on_crash = \"restrat\"\nrestart_limit = 5\n"));
    assert_at(&e, 7, 12, "`on_crash` must be one of");
}

#[test]
fn time_limit_is_a_positive_number_of_milliseconds() {
    let e = one_error(&guest_with("time_limit_ms = 0\n"));
    assert_at(&e, 7, 17, "`time_limit_ms` is 0; it must be at least 1");
    assert_hint(&e, "drop time_limit_ms");
    let e = one_error(&guest_with("time_limit_ms = -5\n"));
    assert_at(&e, 7, 17, "it must be at least 1");
    let e = one_error(&guest_with("time_limit_ms = \"3s\"\n"));
    assert_at(&e, 7, 17, "`time_limit_ms` must be");
}

#[test]
fn booleans_are_unquoted() {
    let e = one_error(&guest_with(
        "[[guest.disk]]\nimage = \"d\"\nreadonly = \"yes\"\n",
    ));
    assert_at(&e, 9, 12, "`readonly` must be true or false, not a string");
    assert_hint(&e, "write readonly = true, without quotes");
    let e = one_error(&guest_with("[guest.console]\nvirtio = 1\n"));
    assert_at(&e, 8, 10, "`virtio` must be true or false, not an integer");
}

#[test]
fn macs_must_be_unicast_and_well_formed() {
    let net = |mac: &str| {
        guest_with(&format!(
            "[[guest.net]]\nswitch = \"lan\"\nmac = {mac}\n[[guest.net]]\nswitch = \"lan\"\n"
        ))
    };
    let e = one_error(&net("\"52:54:00:12:34\""));
    assert_at(&e, 9, 7, "mac \"52:54:00:12:34\" is not a MAC address");
    assert_hint(&e, "six two-digit hex bytes");
    let e = one_error(&net("\"01:00:5e:00:00:01\""));
    assert_at(&e, 9, 7, "is a multicast address");
    let e = one_error(&net("\"00:00:00:00:00:00\""));
    assert_at(&e, 9, 7, "is all zeros");
    assert_hint(&e, "leave `mac` out");
    let e = one_error(&net("52"));
    assert_at(
        &e,
        9,
        7,
        "`mac` must be a string like \"52:54:00:12:34:56\", not an integer",
    );
}

#[test]
fn switch_names_follow_the_name_rules() {
    let e = errors(&guest_with("[[guest.net]]\nswitch = \"LAN\"\n"));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_at(
        &e[0],
        8,
        10,
        "switch name \"LAN\" may use only a-z, 0-9 and '-'",
    );
    assert_hint(&e[0], "try \"lan\"");
}

#[test]
fn the_escape_key_is_ctrl_and_a_letter_but_not_an_editing_key() {
    let at = |value: &str| {
        one_error(&guest_with(&format!(
            "[hypervisor.console]\nescape = {value}\n"
        )))
    };
    let e = at("\"ctrl-1\"");
    assert_at(&e, 8, 10, "escape key \"ctrl-1\" is not Ctrl plus a letter");
    let e = at("\"ctrl-m\"");
    assert_at(&e, 8, 10, "escape key ctrl-m is Enter on most terminals");
    assert_hint(&e, "pick another letter");
    let e = at("\"a\"");
    assert_at(&e, 8, 10, "is not Ctrl plus a letter");
    let e = one_error(&guest_with(
        "[hypervisor.console]\nprefix_guest_output = 1\n",
    ));
    assert_at(&e, 8, 23, "`prefix_guest_output` must be true or false");
}
