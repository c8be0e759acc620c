//! The rules for single values: names, sizes, CPU lists, image paths, command lines, MAC
//! addresses and the console's escape key. Each reader reports at the value's position and
//! returns `None` when the value is unusable.

#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use toml::de::DeValue;

use super::diag::Sink;
use super::mac::{MacAddr, MacError};
use super::plan::EscapeKey;
use super::schema::{
    At, RawCpus, GUEST_MEMORY_ALIGN_BYTES, MAX_CMDLINE_BYTES, MAX_NAME_CHARS,
    MIN_GUEST_MEMORY_BYTES,
};
use super::size::{manifest_form, parse_size, SizeError};
use super::value::{integer, shown, string, wrong_type, Value};

/// Keys the terminal sends for editing (Ctrl-H Backspace, Ctrl-I Tab, Ctrl-J and Ctrl-M
/// Enter): as the escape key they would be taken away from every guest.
const RESERVED_ESCAPE_LETTERS: [(u8, &str); 4] = [
    (b'h', "Backspace"),
    (b'i', "Tab"),
    (b'j', "Enter"),
    (b'm', "Enter"),
];

/// A guest or switch name: `[a-z0-9-]`, 1 to 32 characters, not starting or ending in `-`.
pub(super) fn name(
    sink: &mut Sink<'_>,
    key: &str,
    what: &str,
    value: &Value<'_>,
) -> Option<At<String>> {
    let text = string(sink, key, value, "a string like \"web\"")?;
    let span = value.span();
    let suggestion = suggest_name(text);
    let hint =
        (!suggestion.is_empty() && suggestion != text).then(|| format!("try \"{suggestion}\""));
    let count = text.chars().count();
    if text.is_empty() {
        sink.error(span, format!("{what} is empty"));
    } else if count > MAX_NAME_CHARS {
        sink.error_maybe_hint(
            span,
            format!(
                "{what} \"{}\" is {count} characters long; the limit is {MAX_NAME_CHARS}",
                shown(text)
            ),
            hint,
        );
    } else if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        sink.error_maybe_hint(
            span,
            format!("{what} \"{}\" may use only a-z, 0-9 and '-'", shown(text)),
            hint,
        );
    } else if text.starts_with('-') || text.ends_with('-') {
        sink.error_maybe_hint(
            span,
            format!(
                "{what} \"{}\" must start and end with a letter or digit",
                shown(text)
            ),
            hint,
        );
    } else {
        return Some(At::new(String::from(text), span));
    }
    None
}

/// The nearest valid name: lower case, other characters turned into '-', trimmed.
fn suggest_name(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    trimmed
        .chars()
        .take(MAX_NAME_CHARS)
        .collect::<String>()
        .trim_end_matches('-')
        .into()
}

/// `memory = "256M"`: a size, a multiple of 4 KiB, at least the minimum.
pub(super) fn memory(sink: &mut Sink<'_>, value: &Value<'_>) -> Option<u64> {
    let span = value.span();
    let text = match value.get_ref() {
        DeValue::String(s) => s.as_ref(),
        DeValue::Integer(i) => {
            // A bare number is most likely MiB; say how to write that, whatever it meant.
            let hint = i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .filter(|n| *n > 0)
                .map(|n| format!("quote it and add a unit: memory = \"{n}M\" means {n} MiB"));
            wrong_type(sink, "memory", value, "a string like \"256M\"", hint);
            return None;
        }
        _ => {
            wrong_type(sink, "memory", value, "a string like \"256M\"", None);
            return None;
        }
    };
    let bytes = match parse_size(text) {
        Ok(bytes) => bytes,
        Err(e) => {
            let hint = match e {
                SizeError::NoUnit => format!("add a unit: \"{}M\" means {} MiB", text.trim(), text.trim()),
                SizeError::DecimalUnit => String::from("units are powers of 1024 and written without B: \"256M\" or \"256MiB\""),
                SizeError::Fraction => String::from("use a whole number of a smaller unit: \"1536M\", not \"1.5G\""),
                SizeError::TooLarge => String::from("no machine has that much RAM"),
                SizeError::Empty | SizeError::NoNumber | SizeError::BadUnit => {
                    String::from("write a whole number and a unit K, M, G or T (powers of 1024), like \"512K\", \"256M\" or \"2G\"")
                }
            };
            sink.error_hint(span, format!("memory \"{}\" {e}", shown(text)), hint);
            return None;
        }
    };
    if !bytes.is_multiple_of(GUEST_MEMORY_ALIGN_BYTES) {
        let down = bytes - bytes % GUEST_MEMORY_ALIGN_BYTES;
        let up = down.saturating_add(GUEST_MEMORY_ALIGN_BYTES);
        let hint = if down == 0 {
            format!("use \"{}\"", manifest_form(up))
        } else {
            format!(
                "use \"{}\" or \"{}\"",
                manifest_form(down),
                manifest_form(up)
            )
        };
        sink.error_hint(
            span,
            format!("memory \"{}\" is not a multiple of 4 KiB", shown(text)),
            hint,
        );
        return None;
    }
    if bytes < MIN_GUEST_MEMORY_BYTES {
        sink.error_hint(
            span,
            format!(
                "memory \"{}\" is below the minimum of {}",
                shown(text),
                manifest_form(MIN_GUEST_MEMORY_BYTES)
            ),
            format!(
                "give the guest at least \"{}\"",
                manifest_form(MIN_GUEST_MEMORY_BYTES)
            ),
        );
        return None;
    }
    Some(bytes)
}

/// `cpus = 2` (a count) or `cpus = [1, 2]` (Bulkhead CPU numbers).
pub(super) fn cpus(sink: &mut Sink<'_>, value: &Value<'_>) -> Option<At<RawCpus>> {
    const EXPECTED: &str = "a CPU count like 2 or a list of CPU numbers like [1, 2]";
    let span = value.span();
    match value.get_ref() {
        DeValue::Integer(_) => {
            let n = integer(sink, "cpus", value, EXPECTED)?;
            if n < 1 {
                sink.error_hint(
                    span,
                    format!("`cpus` is {n}; a guest needs at least one CPU"),
                    "write cpus = 1",
                );
                return None;
            }
            let Ok(count) = u32::try_from(n) else {
                sink.error(
                    span,
                    format!("`cpus` asks for {n} CPUs; no machine has that many"),
                );
                return None;
            };
            Some(At::new(RawCpus::Count(count), span))
        }
        DeValue::Array(items) => {
            if items.is_empty() {
                sink.error_hint(
                    span,
                    "`cpus` is an empty list; a guest needs at least one CPU",
                    "write cpus = [1] or cpus = 1",
                );
                return None;
            }
            let mut list = Vec::new();
            let mut is_ok = true;
            for item in items.iter() {
                let Some(n) = integer(sink, "cpus", item, "a list of CPU numbers like [1, 2]")
                else {
                    is_ok = false;
                    continue;
                };
                match u32::try_from(n) {
                    Ok(cpu) => list.push(At::new(cpu, item.span())),
                    Err(_) => {
                        sink.error_hint(
                            item.span(),
                            format!("CPU number {n} is negative"),
                            "CPU numbers start at 0 (cpu0 is the boot CPU)",
                        );
                        is_ok = false;
                    }
                }
            }
            is_ok.then(|| At::new(RawCpus::List(list), span))
        }
        DeValue::String(s) => {
            let hint = s
                .trim()
                .parse::<u32>()
                .ok()
                .map(|n| format!("write it without quotes: cpus = {n}"));
            wrong_type(sink, "cpus", value, EXPECTED, hint);
            None
        }
        _ => {
            wrong_type(sink, "cpus", value, EXPECTED, None);
            None
        }
    }
}

/// `kernel`, `initrd`, `image`: a path as written, which is also the module string at boot.
pub(super) fn image_path(sink: &mut Sink<'_>, key: &str, value: &Value<'_>) -> Option<At<String>> {
    let text = string(
        sink,
        key,
        value,
        "a path string like \"guests/web/bzImage\"",
    )?;
    if text.trim().is_empty() {
        sink.error_hint(
            value.span(),
            format!("`{key}` is empty"),
            "give the image's path relative to the manifest's folder",
        );
        return None;
    }
    if text.chars().any(char::is_control) {
        sink.error(
            value.span(),
            format!("`{key}` \"{}\" contains a control character", shown(text)),
        );
        return None;
    }
    Some(At::new(String::from(text), value.span()))
}

/// `cmdline`: passed to the kernel NUL-terminated, so it may not contain NUL.
pub(super) fn cmdline(sink: &mut Sink<'_>, value: &Value<'_>) -> Option<String> {
    let text = string(sink, "cmdline", value, "a string like \"console=ttyS0\"")?;
    if text.contains('\0') {
        sink.error(value.span(), "`cmdline` contains a NUL character");
        return None;
    }
    if text.len() > MAX_CMDLINE_BYTES {
        sink.error(
            value.span(),
            format!(
                "`cmdline` is {} bytes long; the limit is {MAX_CMDLINE_BYTES}",
                text.len()
            ),
        );
        return None;
    }
    Some(String::from(text))
}

/// `time_limit_ms`: how long the guest may run, at least one millisecond.
pub(super) fn time_limit_ms(sink: &mut Sink<'_>, value: &Value<'_>) -> Option<u64> {
    let n = integer(sink, "time_limit_ms", value, "milliseconds like 30000")?;
    match u64::try_from(n) {
        Ok(ms) if ms >= 1 => Some(ms),
        _ => {
            sink.error_hint(
                value.span(),
                format!("`time_limit_ms` is {n}; it must be at least 1"),
                "to let the guest run until it stops by itself, drop time_limit_ms",
            );
            None
        }
    }
}

/// `restart_limit`: how many restarts, at least one.
pub(super) fn restart_limit(sink: &mut Sink<'_>, value: &Value<'_>) -> Option<u32> {
    let n = integer(sink, "restart_limit", value, "a number of restarts like 10")?;
    if n < 1 {
        sink.error_hint(
            value.span(),
            format!("`restart_limit` is {n}; it must be at least 1"),
            "to never restart, write on_crash = \"stop\" and drop restart_limit",
        );
        return None;
    }
    let limit = u32::try_from(n).ok();
    if limit.is_none() {
        sink.error(
            value.span(),
            format!("`restart_limit` must be at most {}", u32::MAX),
        );
    }
    limit
}

/// `mac = "52:54:00:12:34:56"`: a unicast address a card may use.
pub(super) fn mac(sink: &mut Sink<'_>, value: &Value<'_>) -> Option<At<MacAddr>> {
    let text = string(sink, "mac", value, "a string like \"52:54:00:12:34:56\"")?;
    match MacAddr::parse(text) {
        Ok(mac) => Some(At::new(mac, value.span())),
        Err(e) => {
            let hint = match e {
                MacError::Syntax => "write six two-digit hex bytes separated by colons, like \"52:54:00:12:34:56\"",
                MacError::Multicast => "the first byte must be even; locally administered addresses such as 52:54:00:xx:xx:xx are safe to use",
                MacError::Zero => "leave `mac` out and Bulkhead derives one from the guest's name",
            };
            sink.error_hint(value.span(), format!("mac \"{}\" {e}", shown(text)), hint);
            None
        }
    }
}

/// `escape = "ctrl-a"`: Ctrl plus a letter, except the editing keys.
pub(super) fn escape_key(sink: &mut Sink<'_>, value: &Value<'_>) -> Option<EscapeKey> {
    let text = string(sink, "escape", value, "a control key like \"ctrl-a\"")?;
    let lower = text.trim().to_ascii_lowercase();
    let letter = ["ctrl-", "ctrl+", "c-", "^"]
        .iter()
        .find_map(|prefix| lower.strip_prefix(prefix))
        .filter(|rest| rest.len() == 1)
        .and_then(|rest| rest.bytes().next());
    let Some(key) = letter.and_then(EscapeKey::ctrl) else {
        sink.error_hint(
            value.span(),
            format!("escape key \"{}\" is not Ctrl plus a letter", shown(text)),
            "write escape = \"ctrl-a\" (any letter a to z)",
        );
        return None;
    };
    if let Some((_, name)) = RESERVED_ESCAPE_LETTERS
        .iter()
        .find(|(l, _)| Some(*l) == letter)
    {
        sink.error_hint(
            value.span(),
            format!("escape key {key} is {name} on most terminals; guests need it"),
            "pick another letter, like \"ctrl-a\" or \"ctrl-t\"",
        );
        return None;
    }
    Some(key)
}
