//! The small pieces on their own: sizes, MAC addresses, suggestions, line:column.

use super::super::diag::line_column;
use super::super::mac::{MacAddr, MacError};
use super::super::size::{human, manifest_form, parse_size, SizeError, GIB, KIB, MIB, TIB};
use super::super::suggest::nearest;

#[test]
fn sizes_parse_in_binary_units() {
    assert_eq!(parse_size("512K"), Ok(512 * KIB));
    assert_eq!(parse_size("256M"), Ok(256 * MIB));
    assert_eq!(parse_size("2G"), Ok(2 * GIB));
    assert_eq!(parse_size("1T"), Ok(TIB));
    assert_eq!(parse_size("256m"), Ok(256 * MIB));
    assert_eq!(parse_size("256MiB"), Ok(256 * MIB));
    assert_eq!(parse_size("256 MiB"), Ok(256 * MIB));
    assert_eq!(parse_size(" 2G "), Ok(2 * GIB));
    assert_eq!(parse_size("0M"), Ok(0));
}

#[test]
fn sizes_refuse_what_they_would_have_to_guess() {
    assert_eq!(parse_size(""), Err(SizeError::Empty));
    assert_eq!(parse_size("M"), Err(SizeError::NoNumber));
    assert_eq!(parse_size("-1M"), Err(SizeError::NoNumber));
    assert_eq!(parse_size("256"), Err(SizeError::NoUnit));
    assert_eq!(parse_size("1.5G"), Err(SizeError::Fraction));
    assert_eq!(parse_size("256MB"), Err(SizeError::DecimalUnit));
    assert_eq!(parse_size("256X"), Err(SizeError::BadUnit));
    assert_eq!(parse_size("256Mi"), Err(SizeError::BadUnit));
    assert_eq!(parse_size("256  M"), Err(SizeError::BadUnit));
    assert_eq!(
        parse_size("99999999999999999999K"),
        Err(SizeError::TooLarge)
    );
    assert_eq!(parse_size("16777216T"), Err(SizeError::TooLarge));
}

#[test]
fn sizes_print_exactly() {
    assert_eq!(manifest_form(1536 * MIB), "1536M");
    assert_eq!(manifest_form(2 * GIB), "2G");
    assert_eq!(manifest_form(4 * KIB), "4K");
    assert_eq!(manifest_form(1000), "1000");
    assert_eq!(human(2 * GIB), "2 GiB");
    assert_eq!(human(1536 * MIB), "1.5 GiB");
    assert_eq!(human(1_999_999_000), "1.8 GiB (1999999000 bytes)");
    assert_eq!(human(100), "100 bytes");
}

#[test]
fn macs_parse_and_print() {
    let mac = MacAddr::parse("52:54:00:AB:cd:0f");
    assert_eq!(mac, Ok(MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f])));
    assert_eq!(
        mac.map(|m| alloc::format!("{m}")),
        Ok(alloc::string::String::from("52:54:00:ab:cd:0f"))
    );
    assert_eq!(
        MacAddr::parse("52-54-00-12-34-56"),
        Ok(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
    );
}

#[test]
fn macs_refuse_bad_syntax_multicast_and_zero() {
    for bad in [
        "",
        "52:54:00:12:34",
        "52:54:00:12:34:567",
        "52:54-00:12:34:56",
        "52:54:00:12:34:5g",
        "525400123456",
        "52:54:00:12:34:5",
        "+2:54:00:12:34:56",
    ] {
        assert_eq!(MacAddr::parse(bad), Err(MacError::Syntax), "{bad:?}");
    }
    assert_eq!(
        MacAddr::parse("01:00:5e:00:00:01"),
        Err(MacError::Multicast)
    );
    assert_eq!(
        MacAddr::parse("ff:ff:ff:ff:ff:ff"),
        Err(MacError::Multicast)
    );
    assert_eq!(MacAddr::parse("00:00:00:00:00:00"), Err(MacError::Zero));
}

#[test]
fn derived_macs_are_stable_local_unicast_and_differ_by_port_and_name() {
    let a = MacAddr::derive("web", 0, 0);
    assert_eq!(a, MacAddr::derive("web", 0, 0));
    assert!(a.is_local() && !a.is_multicast());
    assert_ne!(a, MacAddr::derive("web", 1, 0));
    assert_ne!(a, MacAddr::derive("db", 0, 0));
    assert_ne!(a, MacAddr::derive("web", 0, 1));
}

#[test]
fn suggestions_find_typos_and_aliases_only() {
    let keys = ["name", "cpus", "memory", "on_crash", "restart_limit"];
    assert_eq!(nearest("memroy", &keys), Some("memory"));
    assert_eq!(nearest("Memory", &keys), Some("memory"));
    assert_eq!(nearest("on-crash", &keys), Some("on_crash"));
    assert_eq!(nearest("ram", &keys), Some("memory"));
    assert_eq!(nearest("vcpus", &keys), Some("cpus"));
    assert_eq!(nearest("restart_limt", &keys), Some("restart_limit"));
    assert_eq!(nearest("colour", &keys), None);
    assert_eq!(nearest("x", &keys), None);
    assert_eq!(nearest(&"m".repeat(1000), &keys), None);
}

#[test]
fn line_and_column_are_one_based_and_count_characters() {
    let text = "ab\ncé\tz\n";
    assert_eq!(line_column(text, 0), (1, 1));
    assert_eq!(line_column(text, 1), (1, 2));
    assert_eq!(line_column(text, 3), (2, 1));
    // 'é' is two bytes: the tab is the third character of line 2.
    assert_eq!(line_column(text, 6), (2, 3));
    // Inside 'é' counts as 'é'.
    assert_eq!(line_column(text, 5), (2, 2));
    assert_eq!(line_column(text, 9), (3, 1));
    assert_eq!(line_column(text, 1000), (3, 1));
    // A byte-order mark takes no column.
    assert_eq!(line_column("\u{feff}version", 3), (1, 1));
}
