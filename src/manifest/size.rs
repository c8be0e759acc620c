//! Sizes as people write them in the manifest (`"512K"`, `"256M"`, `"2G"`) and back again.
//!
//! Units are binary (K = 1024). `"256MiB"` and lower-case units are accepted too; `"256MB"` is
//! refused rather than guessed at, because MB means 10^6 to some readers and 2^20 to others.

#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use core::fmt;

/// 1 KiB.
pub const KIB: u64 = 1 << 10;
/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// 1 GiB.
pub const GIB: u64 = 1 << 30;
/// 1 TiB.
pub const TIB: u64 = 1 << 40;

/// Units from largest to smallest: (letter, bytes, human name).
const UNITS: [(char, u64, &str); 4] = [
    ('T', TIB, "TiB"),
    ('G', GIB, "GiB"),
    ('M', MIB, "MiB"),
    ('K', KIB, "KiB"),
];

/// Why a size string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// The string is empty or only spaces.
    Empty,
    /// It does not start with a digit.
    NoNumber,
    /// A number without a unit (`"256"`).
    NoUnit,
    /// A fraction (`"1.5G"`).
    Fraction,
    /// Decimal units (`"256MB"`), which are ambiguous.
    DecimalUnit,
    /// Anything else after the number.
    BadUnit,
    /// More than 2^64 - 1 bytes.
    TooLarge,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "is empty",
            Self::NoNumber => "does not start with a number",
            Self::NoUnit => "has no unit",
            Self::Fraction => "is not a whole number",
            Self::DecimalUnit => "uses a decimal unit",
            Self::BadUnit => "has an unknown unit",
            Self::TooLarge => "is too large",
        })
    }
}

/// Parses `"<digits>[ ]<K|M|G|T>[iB]"` (unit letter in either case) into bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return Err(SizeError::NoNumber);
    }
    let (digits, rest) = text.split_at(digits_end);
    if rest.starts_with('.') || rest.starts_with(',') {
        return Err(SizeError::Fraction);
    }
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    if unit.is_empty() {
        return Err(SizeError::NoUnit);
    }
    let mut chars = unit.chars();
    let letter = chars.next().map(|c| c.to_ascii_uppercase());
    let tail = chars.as_str();
    let Some(&(_, unit_bytes, _)) = UNITS.iter().find(|(l, _, _)| Some(*l) == letter) else {
        return Err(SizeError::BadUnit);
    };
    if tail.eq_ignore_ascii_case("b") {
        return Err(SizeError::DecimalUnit);
    }
    if !(tail.is_empty() || tail.eq_ignore_ascii_case("ib")) {
        return Err(SizeError::BadUnit);
    }
    let number: u64 = digits.parse().map_err(|_| SizeError::TooLarge)?;
    number.checked_mul(unit_bytes).ok_or(SizeError::TooLarge)
}

/// A size the way the manifest spells it: the largest unit that divides it exactly (`"1536M"`),
/// or plain bytes when none does.
pub fn manifest_form(bytes: u64) -> String {
    for (letter, unit, _) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return format!("{}{letter}", bytes / unit);
        }
    }
    format!("{bytes}")
}

/// A size for people to read: `"2 GiB"`, `"1.5 GiB"`, or with the exact byte count when one
/// decimal would round (`"1.8 GiB (1999999000 bytes)"`).
pub fn human(bytes: u64) -> String {
    let Some(&(_, unit, name)) = UNITS.iter().find(|(_, unit, _)| bytes >= *unit) else {
        return format!("{bytes} bytes");
    };
    let whole = bytes / unit;
    let rem = bytes % unit;
    if rem == 0 {
        return format!("{whole} {name}");
    }
    // rem < unit <= 2^40, so rem * 10 cannot overflow.
    let tenths = rem * 10 / unit;
    if (rem * 10).is_multiple_of(unit) {
        format!("{whole}.{tenths} {name}")
    } else {
        format!("{whole}.{tenths} {name} ({bytes} bytes)")
    }
}
