//! Boot scenarios: `tests/scenarios/*.toml`, each one scenario run on a list of machines.
//! A file expands into one [`Case`] per machine. The format is described in docs/TESTING.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::machine::{self, Accel, Cpu, Emulator, Firmware, Machine};
use crate::verdict::End;

/// Lines that fail a scenario unless it names its own `forbid` list.
pub const DEFAULT_FORBID: &[&str] = &["PANIC", "FAIL ", "EXCEPTION", "BULKHEAD EXIT fail"];
/// The forbidden end line, dropped from the defaults when a scenario expects `end = "fail"`.
const FAIL_END_MARKER: &str = "BULKHEAD EXIT fail";
pub const DEFAULT_CMDLINE: &str = "log=info test";
const DEFAULT_QEMU_TIMEOUT_S: u64 = 60;
const DEFAULT_BOCHS_TIMEOUT_S: u64 = 240;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[allow(dead_code)] // documentation for readers of the file
    description: Option<String>,
    cmdline: Option<String>,
    manifest: Option<String>,
    #[serde(default)]
    end: End,
    timeout_s: Option<u64>,
    #[serde(default)]
    expect: Vec<String>,
    forbid: Option<Vec<String>>,
    #[serde(default)]
    long: bool,
    #[serde(rename = "machine", default)]
    machines: Vec<MachineEntry>,
    #[serde(rename = "send", default)]
    sends: Vec<SendEntry>,
}

/// `[[send]]`: when a serial line matches `after`, type `text` into the serial port.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendEntry {
    after: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineEntry {
    emulator: Emulator,
    #[serde(default)]
    firmware: Firmware,
    cpu: Option<Cpu>,
    #[serde(default = "one")]
    smp: u32,
    #[serde(default = "default_mem")]
    mem: String,
    timeout_s: Option<u64>,
    cmdline: Option<String>,
    #[serde(default)]
    expect: Vec<String>,
    #[serde(default)]
    long: bool,
}

fn one() -> u32 {
    1
}

fn default_mem() -> String {
    "128M".to_owned()
}

/// A regular expression searched in every serial line, with the text it was written as.
#[derive(Clone, Debug)]
pub struct Marker {
    pub source: String,
    pub regex: Regex,
}

impl Marker {
    pub fn new(source: &str) -> Result<Self, String> {
        let regex = Regex::new(source).map_err(|e| format!("bad marker `{source}`: {e}"))?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }
}

/// Text typed into the machine's serial port once a line matches `after` (searched in the lines
/// that arrive after the previous send was typed).
#[derive(Clone, Debug)]
pub struct Send {
    pub after: Marker,
    pub bytes: Vec<u8>,
}

/// The bytes `text` stands for: `\xNN`, `\r`, `\n`, `\t`, `\e` and `\\` are escapes (write
/// the scenario's `text` as a TOML literal string, `'list\r'`, or double the backslashes).
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some((&kind, tail)) = rest.split_first() else {
            return Err(format!("`{text}` ends in a lone backslash"));
        };
        rest = tail;
        match kind {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'e' => out.push(0x1B),
            b'\\' => out.push(b'\\'),
            b'x' => {
                // Checked digit by digit: from_str_radix would also take a sign (`\x+1`).
                let hex = rest
                    .get(..2)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("`{text}`: \\x needs two hex digits"))?;
                out.push(hex);
                rest = &rest[2..];
            }
            other => {
                return Err(format!(
                    "`{text}`: unknown escape `\\{}` (\\xNN \\r \\n \\t \\e \\\\)",
                    char::from(other)
                ))
            }
        }
    }
    Ok(out)
}

/// One scenario on one machine: what to boot and how to judge it.
#[derive(Clone, Debug)]
pub struct Case {
    /// `<scenario>.<machine label>`, also the log's file name.
    pub name: String,
    pub machine: Machine,
    pub cmdline: String,
    pub manifest: Option<PathBuf>,
    pub expect: Vec<Marker>,
    pub forbid: Vec<Marker>,
    pub end: End,
    pub timeout: Duration,
    /// Only run with `cargo xtask test --long`.
    pub long: bool,
    /// What to type into the serial port, in order (QEMU only).
    pub sends: Vec<Send>,
}

/// Replaces `{smp}`, `{mem_mib}` and `{virt}` with the machine's values (escaped for regex).
/// Other braces (`\d{2}`) are left to the regex.
pub fn substitute(marker: &str, m: &Machine) -> String {
    marker
        .replace("{smp}", &m.smp.to_string())
        .replace("{mem_mib}", &m.mem_mib.to_string())
        .replace("{virt}", &regex::escape(m.virt_name()))
}

fn markers(sources: &[String], m: &Machine) -> Result<Vec<Marker>, String> {
    sources
        .iter()
        .map(|s| Marker::new(&substitute(s, m)))
        .collect()
}

/// Expands one scenario file's text into its cases. `scenario` is its name (the file stem).
pub fn parse(scenario: &str, text: &str) -> Result<Vec<Case>, String> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.machines.is_empty() {
        return Err("no [[machine]] entries".into());
    }
    let manifest = file
        .manifest
        .as_deref()
        .map(|m| crate::paths::root().join(m));
    let forbid_sources: Vec<String> = match &file.forbid {
        Some(list) => list.clone(),
        None => DEFAULT_FORBID
            .iter()
            .filter(|m| file.end == End::Ok || **m != FAIL_END_MARKER)
            .map(|m| m.to_string())
            .collect(),
    };
    let mut cases = Vec::new();
    for (index, entry) in file.machines.iter().enumerate() {
        let at = |e: String| format!("machine #{}: {e}", index + 1);
        let machine = Machine {
            emulator: entry.emulator,
            firmware: entry.firmware,
            accel: Accel::Tcg,
            cpu: entry
                .cpu
                .unwrap_or_else(|| Machine::default_cpu(entry.emulator, Accel::Tcg)),
            smp: entry.smp,
            mem_mib: machine::parse_mem(&entry.mem).map_err(at)?,
        };
        machine.validate().map_err(at)?;
        let mut expect = markers(&file.expect, &machine).map_err(at)?;
        expect.extend(markers(&entry.expect, &machine).map_err(at)?);
        let default_timeout_s = match machine.emulator {
            Emulator::Qemu => DEFAULT_QEMU_TIMEOUT_S,
            Emulator::Bochs => DEFAULT_BOCHS_TIMEOUT_S,
        };
        let timeout_s = entry
            .timeout_s
            .or(file.timeout_s)
            .unwrap_or(default_timeout_s);
        let name = format!("{scenario}.{}", machine.label());
        if !file.sends.is_empty() && machine.emulator != Emulator::Qemu {
            return Err(at(
                "[[send]] types into the serial port, which only QEMU cases can do (Bochs \
                 writes COM1 to a file); leave Bochs machines out of this scenario"
                    .into(),
            ));
        }
        let mut sends = Vec::new();
        for (i, entry) in file.sends.iter().enumerate() {
            let at_send = |e: String| format!("send #{}: {e}", i + 1);
            sends.push(Send {
                after: Marker::new(&substitute(&entry.after, &machine)).map_err(at_send)?,
                bytes: unescape(&entry.text).map_err(at_send)?,
            });
        }
        if cases.iter().any(|c: &Case| c.name == name) {
            return Err(at(format!("machine repeats an earlier one ({name})")));
        }
        cases.push(Case {
            name,
            cmdline: entry
                .cmdline
                .clone()
                .or_else(|| file.cmdline.clone())
                .unwrap_or_else(|| DEFAULT_CMDLINE.to_owned()),
            manifest: manifest.clone(),
            expect,
            forbid: markers(&forbid_sources, &machine).map_err(at)?,
            end: file.end,
            timeout: Duration::from_secs(timeout_s),
            long: file.long || entry.long,
            sends,
            machine,
        });
    }
    Ok(cases)
}

/// Reads every `*.toml` in `dir`, in name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let parsed =
            parse(&stem, &text).map_err(|e| format!("{}: {e}", crate::paths::display(&file)))?;
        cases.extend(parsed);
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = r#"
        description = "boots"
        expect = ["boot: memory map", "all {smp} CPUs online", "virt: {virt}"]

        [[machine]]
        emulator = "qemu"
        smp = 2

        [[machine]]
        emulator = "bochs"
        cpu = "svm"
        mem = "2G"
        smp = 4
        expect = ["extra"]
        timeout_s = 5
    "#;

    #[test]
    fn a_file_expands_into_one_case_per_machine() {
        let cases = parse("boot", BOOT).unwrap();
        assert_eq!(cases.len(), 2);
        let (q, b) = (&cases[0], &cases[1]);
        assert_eq!(q.name, "boot.qemu-bios-smp2-128M");
        assert_eq!(q.cmdline, DEFAULT_CMDLINE);
        assert_eq!(q.timeout, Duration::from_secs(DEFAULT_QEMU_TIMEOUT_S));
        assert_eq!(q.expect[1].source, "all 2 CPUs online");
        assert_eq!(q.expect[2].source, r"virt: AMD\-V \(SVM\)");
        assert_eq!(b.name, "boot.bochs-svm-smp4-2G");
        assert_eq!(b.expect.len(), 4);
        assert_eq!(b.expect[1].source, "all 4 CPUs online");
        assert_eq!(b.timeout, Duration::from_secs(5));
        assert_eq!(b.end, End::Ok);
        let forbid: Vec<_> = q.forbid.iter().map(|m| m.source.as_str()).collect();
        assert_eq!(forbid, DEFAULT_FORBID);
    }

    #[test]
    fn expecting_failure_drops_the_fail_end_from_the_default_forbid_list() {
        let text = "end = \"fail\"\n[[machine]]\nemulator = \"qemu\"\n";
        let cases = parse("neg", text).unwrap();
        assert_eq!(cases[0].end, End::Fail);
        assert!(cases[0].forbid.iter().all(|m| m.source != FAIL_END_MARKER));
        let text = "forbid = []\n[[machine]]\nemulator = \"qemu\"\n";
        assert!(parse("neg", text).unwrap()[0].forbid.is_empty());
    }

    #[test]
    fn mistakes_are_reported() {
        let err = |t: &str| parse("x", t).unwrap_err();
        assert!(err("[[machine]]\nemulator = \"qemu\"\nsmpp = 2\n").contains("smpp"));
        assert!(err("expect = [\"(\"]\n[[machine]]\nemulator = \"qemu\"\n").contains("bad marker"));
        assert!(
            err("[[machine]]\nemulator = \"bochs\"\nfirmware = \"uefi\"\n").contains("machine #1")
        );
        assert!(err("description = \"none\"\n").contains("no [[machine]]"));
        assert!(
            err("[[machine]]\nemulator = \"qemu\"\n[[machine]]\nemulator = \"qemu\"\n")
                .contains("repeats")
        );
    }

    #[test]
    fn sends_are_read_with_their_escapes() {
        let text = r#"
            [[send]]
            after = "focus: \\w+"
            text = '\x01list\r'
            [[send]]
            after = "x"
            text = "plain\r"
            [[machine]]
            emulator = "qemu"
        "#;
        let cases = parse("s", text).unwrap();
        let sends = &cases[0].sends;
        assert_eq!(sends.len(), 2);
        assert!(sends[0].after.regex.is_match("focus: hello"));
        assert_eq!(sends[0].bytes, b"\x01list\r");
        assert_eq!(sends[1].bytes, b"plain\r");
        assert_eq!(unescape(r"a\\b\e\t\n").unwrap(), b"a\\b\x1b\t\n");
        assert!(unescape(r"\x1").unwrap_err().contains("two hex digits"));
        assert!(unescape(r"\x+1").unwrap_err().contains("two hex digits"));
        assert!(unescape(r"\q").unwrap_err().contains("unknown escape"));
        assert!(unescape("end\\").unwrap_err().contains("lone backslash"));
    }

    #[test]
    fn bochs_cannot_be_typed_into() {
        let text = "[[send]]\nafter = \"x\"\ntext = \"y\"\n[[machine]]\nemulator = \"bochs\"\n";
        assert!(parse("s", text).unwrap_err().contains("only QEMU"));
    }

    #[test]
    fn the_committed_scenarios_parse() {
        let cases = load_dir(&crate::paths::scenarios_dir()).unwrap();
        assert!(cases.iter().any(|c| c.name.starts_with("boot.")));
    }
}
