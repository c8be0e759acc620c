//! Typed access to the parsed TOML tree: each getter returns the value, or reports at the
//! value's position what was expected and what was found. Unknown keys are reported here too,
//! with the nearest valid key.

#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::Sink;
use super::schema::{TableShape, GUEST, HYPERVISOR};
use super::suggest::nearest;

/// A parsed value and its span.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// What a value is, for "found ..." messages.
pub(super) fn found(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a number with a fraction",
        DeValue::Boolean(_) => "true/false",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Reports a value of the wrong type: "`key` must be EXPECTED, not FOUND".
pub(super) fn wrong_type(
    sink: &mut Sink<'_>,
    key: &str,
    value: &Value<'_>,
    expected: &str,
    hint: Option<String>,
) {
    let found = found(value.get_ref());
    sink.error_maybe_hint(
        value.span(),
        format!("`{key}` must be {expected}, not {found}"),
        hint,
    );
}

/// A string value.
pub(super) fn string<'v>(
    sink: &mut Sink<'_>,
    key: &str,
    value: &'v Value<'_>,
    expected: &str,
) -> Option<&'v str> {
    match value.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => {
            wrong_type(sink, key, value, expected, None);
            None
        }
    }
}

/// An integer value that fits in an `i64`.
pub(super) fn integer(
    sink: &mut Sink<'_>,
    key: &str,
    value: &Value<'_>,
    expected: &str,
) -> Option<i64> {
    match value.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(n),
            Err(_) => {
                sink.error(value.span(), format!("`{key}` is too large"));
                None
            }
        },
        _ => {
            wrong_type(sink, key, value, expected, None);
            None
        }
    }
}

/// `true` or `false`; a quoted `"true"` gets a hint to drop the quotes.
pub(super) fn boolean(sink: &mut Sink<'_>, key: &str, value: &Value<'_>) -> Option<bool> {
    match value.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        DeValue::String(s) => {
            let hint = match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Some(format!("write {key} = true, without quotes")),
                "false" | "no" | "off" => Some(format!("write {key} = false, without quotes")),
                _ => None,
            };
            wrong_type(sink, key, value, "true or false", hint);
            None
        }
        _ => {
            wrong_type(sink, key, value, "true or false", None);
            None
        }
    }
}

/// One of a fixed set of words.
pub(super) fn choice<T: Copy>(
    sink: &mut Sink<'_>,
    key: &str,
    value: &Value<'_>,
    options: &[(&'static str, T)],
) -> Option<T> {
    let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
    let listed = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let expected = format!("one of {listed}");
    let text = string(sink, key, value, &expected)?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == text) {
        return Some(*v);
    }
    let hint = nearest(text, &names).map(|n| format!("did you mean \"{n}\"?"));
    sink.error_maybe_hint(
        value.span(),
        format!("`{key}` must be {expected}, not \"{}\"", shown(text)),
        hint,
    );
    None
}

/// Reports every key of `table` that `shape` does not take, with the nearest valid key, or
/// the table it belongs to (`outer`: keys written below a sub-table header land in the
/// sub-table; `inner`: keys written before any header land at the top level).
pub(super) fn check_keys(
    sink: &mut Sink<'_>,
    table: &DeTable<'_>,
    shape: TableShape,
    outer: &[TableShape],
) {
    for (key, _) in table.iter() {
        let name: &str = key.get_ref();
        if shape.keys.contains(&name) {
            continue;
        }
        let hint = unknown_key_hint(name, shape, outer);
        sink.error_hint(
            key.span(),
            format!("unknown key `{}` in {}", shown(name), shape.place),
            hint,
        );
    }
}

fn unknown_key_hint(key: &str, shape: TableShape, outer: &[TableShape]) -> String {
    if let Some(near) = nearest(key, shape.keys) {
        return format!("did you mean `{near}`?");
    }
    for o in outer {
        if o.keys.contains(&key) {
            return format!(
                "`{key}` belongs in {}: every key after a {} header goes into that table, so \
                 move it above the header",
                o.place, shape.place
            );
        }
    }
    if outer.is_empty() {
        for inner in [GUEST, HYPERVISOR] {
            if inner.keys.contains(&key) {
                return format!(
                    "`{key}` is a {} setting: put it below a {} header",
                    inner.place, inner.place
                );
            }
        }
    }
    format!("{} takes: {}", shape.place, shape.keys.join(", "))
}

/// The tables of an array-of-tables key (`[[guest]]`, `[[guest.disk]]`, or an array of inline
/// tables). A lone `[guest]` table is reported, then read anyway so that its own mistakes show
/// up in the same run.
pub(super) fn table_array<'a, 'i>(
    sink: &mut Sink<'_>,
    key: &str,
    value: &'a Value<'i>,
    header: &str,
) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
    match value.get_ref() {
        DeValue::Array(items) => {
            let mut out = Vec::new();
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::Table(t) => out.push((t, item.span())),
                    _ => wrong_type(
                        sink,
                        key,
                        item,
                        "a list of tables",
                        Some(format!("write one {header} header per entry")),
                    ),
                }
            }
            out
        }
        DeValue::Table(t) => {
            sink.error_hint(
                value.span(),
                format!("`{key}` must be a list of tables"),
                format!("write {header} with double brackets, once per entry"),
            );
            alloc::vec![(t, value.span())]
        }
        _ => {
            wrong_type(
                sink,
                key,
                value,
                "a list of tables",
                Some(format!("write one {header} header per entry")),
            );
            Vec::new()
        }
    }
}

/// Reports a required key that is absent, at the table's header.
pub(super) fn missing(
    sink: &mut Sink<'_>,
    header: Range<usize>,
    who: &str,
    key: &str,
    example: &str,
) {
    sink.error_hint(
        header,
        format!("{who} has no `{key}`"),
        format!("add a line like: {example}"),
    );
}

/// User text made safe to echo: shortened, so a runaway value cannot flood the console, and
/// with control characters escaped, so a string cannot drive the terminal.
pub(super) fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}
