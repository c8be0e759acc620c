//! TOML syntax errors, the version rule, non-UTF-8 bytes and the rendered form.

use super::super::{parse_bytes, MachineFacts};
use super::{assert_at, assert_hint, errors, guest_with, one_error, CPUS, RAM};

#[test]
fn syntax_errors_are_all_reported_with_positions_and_nothing_else() {
    // Line 3 has an unterminated string and line 5 an unclosed array; the guest's missing keys
    // are not reported on top, since the tree after a syntax error is guesswork.
    let e = errors("version = 1\n[[guest]]\nname = \"web\ncpus = 1\nx = [1,\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 3, 12, "invalid TOML");
    assert_at(&e[1], 5, 8, "invalid TOML: unclosed array");
}

#[test]
fn a_missing_value_is_a_syntax_error_at_its_spot() {
    let e = one_error("version = 1\n[[guest]]\nmemory = \n");
    assert_at(&e, 3, 10, "invalid TOML");
}

#[test]
fn duplicate_keys_name_the_key() {
    let e = one_error(&guest_with("name = \"db\"\n"));
    assert_at(&e, 7, 1, "duplicate key `name`");
}

#[test]
fn a_missing_version_is_reported_and_reading_goes_on() {
    let e = errors("[[guest]]\nname = \"a\"\ncpus = 1\nmemory = \"1M\"\nkernel = \"k\"\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 1, 1, "the manifest has no `version`");
    assert_hint(&e[0], "version = 1");
    assert_at(&e[1], 4, 10, "below the minimum of 2M");
}

#[test]
fn another_version_is_reported_alone() {
    let e = one_error("version = 2\n[[guest]]\nnaem = \"a\"\n");
    assert_at(&e, 1, 11, "manifest version 2 is not supported");
    assert_hint(&e, "reads version 1");
}

#[test]
fn a_quoted_version_gets_a_hint() {
    let e = one_error(&guest_with("").replace("version = 1", "version = \"1\""));
    assert_at(&e, 1, 11, "`version` must be the number 1, not a string");
    assert_hint(&e, "write version = 1, without quotes");
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let facts = MachineFacts {
        cpu_count: CPUS,
        free_ram_bytes: RAM,
        module_exists: &|_| true,
    };
    let d = parse_bytes(b"version = 1\nname = \"caf\xe9\"\n", &facts)
        .err()
        .unwrap_or_default();
    assert_eq!(d.len(), 1);
    let e = d.iter().next().cloned().unwrap_or_else(|| unreachable!());
    assert_at(&e, 2, 12, "not UTF-8 text (byte 0xe9)");
}

#[test]
fn rendering_is_one_line_per_error_with_an_indented_hint() {
    let facts = MachineFacts {
        cpu_count: CPUS,
        free_ram_bytes: RAM,
        module_exists: &|_| true,
    };
    let d = super::super::parse(&guest_with("memroy = \"1G\"\n"), &facts)
        .err()
        .unwrap_or_default();
    let rendered = d.render("boot/manifest.toml");
    assert_eq!(
        rendered,
        "boot/manifest.toml:7:1: error: unknown key `memroy` in [[guest]]\n    hint: did you mean `memory`?\n"
    );
    assert_eq!(
        alloc::format!("{d}"),
        rendered.replace("boot/manifest.toml", "manifest")
    );
    assert_eq!(d.len(), 1);
}
