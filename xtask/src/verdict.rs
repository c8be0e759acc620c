//! Judging one boot from its serial log and how the emulator ended. Pure: the runner feeds it
//! text and an exit status, so the rules are tested here without an emulator.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::machine::Emulator;
use crate::qemu::{EXIT_FAIL, EXIT_OK};
use crate::scenario::Marker;

/// The verdict the hypervisor announces at the end of a test run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    #[default]
    Ok,
    Fail,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            End::Ok => "ok",
            End::Fail => "fail",
        })
    }
}

/// How the emulator process finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited by itself; `code` is None when a signal ended it.
    Exited { code: Option<i32> },
    /// It ran past the scenario's timeout and was killed.
    TimedOut(Duration),
}

/// One reason a case failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The emulator could not be started (or its files not written).
    NotStarted(String),
    TimedOut(Duration),
    WrongEnd {
        expected: End,
        got: String,
    },
    Missing(String),
    Forbidden {
        marker: String,
        line_no: usize,
        line: String,
    },
    /// A `[[send]]` whose marker never appeared (numbered from 1).
    NotTyped {
        index: usize,
        after: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotStarted(why) => write!(f, "the emulator did not start: {why}"),
            Problem::TimedOut(t) => {
                write!(f, "timed out after {} s (emulator killed)", t.as_secs())
            }
            Problem::WrongEnd { expected, got } => {
                write!(f, "expected end `{expected}`, but {got}")
            }
            Problem::Missing(m) => write!(f, "missing expected marker `{m}`"),
            Problem::Forbidden {
                marker,
                line_no,
                line,
            } => write!(
                f,
                "forbidden marker `{marker}` at log line {line_no}: {line}"
            ),
            Problem::NotTyped { index, after } => write!(
                f,
                "send #{index} was never typed: no line matched `{after}` after the previous send"
            ),
        }
    }
}

/// What a case requires of its log.
pub struct Rules<'a> {
    pub emulator: Emulator,
    pub expect: &'a [Marker],
    pub forbid: &'a [Marker],
    pub end: End,
}

const EXIT_LINE: &str = "BULKHEAD EXIT ";

/// The hypervisor's own verdict line, if it printed one (the last wins).
fn end_from_log(log: &str) -> Option<End> {
    log.lines().rev().find_map(|line| {
        let rest = clean_line(line);
        let rest = rest.trim_start().strip_prefix(EXIT_LINE)?;
        if rest.starts_with("ok") {
            Some(End::Ok)
        } else if rest.starts_with("fail") {
            Some(End::Fail)
        } else {
            None
        }
    })
}

/// The end the run reached, or a description of what happened instead.
fn reached_end(rules: &Rules, log: &str, outcome: &Outcome) -> Result<End, String> {
    let Outcome::Exited { code } = outcome else {
        return Err("the run timed out".into());
    };
    match rules.emulator {
        // QEMU's isa-debug-exit turns the value written to port 0xf4 into the exit status.
        Emulator::Qemu => match code {
            Some(EXIT_OK) => Ok(End::Ok),
            Some(EXIT_FAIL) => Ok(End::Fail),
            Some(0) => Err(
                "QEMU exited with status 0: the machine shut down or reset (a triple fault, with -no-reboot) without reporting"
                    .into(),
            ),
            Some(c) => Err(format!(
                "QEMU exited with status {c} (33 = ok, 35 = fail; anything else is QEMU's own error, see its .emu.log)"
            )),
            None => Err("QEMU was killed by a signal".into()),
        },
        // Bochs exits 0 after the debugger's `quit` whatever the verdict: read the log.
        Emulator::Bochs => end_from_log(log).ok_or_else(|| {
            let how = match code {
                Some(c) => format!("status {c}"),
                None => "a signal".into(),
            };
            format!("Bochs ended ({how}) with no `BULKHEAD EXIT` line in the log (see its .bochs.log)")
        }),
    }
}

/// Everything wrong with a run; empty means it passed.
pub fn judge(rules: &Rules, log: &str, outcome: &Outcome) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Outcome::TimedOut(after) = outcome {
        problems.push(Problem::TimedOut(*after));
    } else {
        match reached_end(rules, log, outcome) {
            Ok(end) if end == rules.end => {}
            Ok(end) => problems.push(Problem::WrongEnd {
                expected: rules.end,
                got: format!("the hypervisor ended with `{end}`"),
            }),
            Err(got) => problems.push(Problem::WrongEnd {
                expected: rules.end,
                got,
            }),
        }
    }
    let lines: Vec<String> = log.lines().map(clean_line).collect();
    for marker in rules.expect {
        if !lines.iter().any(|l| marker.regex.is_match(l)) {
            problems.push(Problem::Missing(marker.source.clone()));
        }
    }
    for marker in rules.forbid {
        if let Some((index, line)) = lines
            .iter()
            .enumerate()
            .find(|(_, l)| marker.regex.is_match(l))
        {
            problems.push(Problem::Forbidden {
                marker: marker.source.clone(),
                line_no: index + 1,
                line: line.clone(),
            });
        }
    }
    problems
}

/// A log line without terminal escape sequences (GRUB draws its menu with them) or CRs.
pub fn clean_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters... final byte in '@'..='~'; other escapes: one char.
                if chars.next_if_eq(&'[').is_some() {
                    for p in chars.by_ref() {
                        if ('@'..='~').contains(&p) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The last `count` lines of `log`, cleaned for a terminal.
pub fn tail(log: &str, count: usize) -> Vec<String> {
    let lines: Vec<String> = log.lines().map(clean_line).collect();
    let start = lines.len().saturating_sub(count);
    lines[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers(sources: &[&str]) -> Vec<Marker> {
        sources.iter().map(|s| Marker::new(s).unwrap()).collect()
    }

    const GOOD_LOG: &str = "\u{1b}[2J\u{1b}[0;0HGRUB loading\r\n[cpu0] INFO  boot: memory map\n\
        [cpu0] INFO  smp: all 2 CPUs online\n[cpu0] INFO  virt: AMD-V (SVM) with NPT\nBULKHEAD EXIT ok\n";

    fn rules<'a>(emulator: Emulator, expect: &'a [Marker], forbid: &'a [Marker]) -> Rules<'a> {
        Rules {
            emulator,
            expect,
            forbid,
            end: End::Ok,
        }
    }

    #[test]
    fn a_good_qemu_run_passes() {
        let expect = markers(&["boot: memory map", r"all 2 CPUs online", "virt: AMD-V"]);
        let forbid = markers(&["PANIC", "FAIL "]);
        let problems = judge(
            &rules(Emulator::Qemu, &expect, &forbid),
            GOOD_LOG,
            &Outcome::Exited {
                code: Some(EXIT_OK),
            },
        );
        assert_eq!(problems, vec![]);
    }

    /// The harness must be able to fail: a marker the kernel never prints fails the case, and
    /// the report names the marker.
    #[test]
    fn a_wrong_marker_fails_with_a_readable_report() {
        let expect = markers(&["all 4 CPUs online"]);
        let problems = judge(
            &rules(Emulator::Qemu, &expect, &[]),
            GOOD_LOG,
            &Outcome::Exited {
                code: Some(EXIT_OK),
            },
        );
        assert_eq!(problems, vec![Problem::Missing("all 4 CPUs online".into())]);
        assert_eq!(
            problems[0].to_string(),
            "missing expected marker `all 4 CPUs online`"
        );
    }

    #[test]
    fn forbidden_lines_are_reported_with_their_line_number() {
        let log = "one\nPANIC at src/x.rs:1: boom\nBULKHEAD EXIT fail: panic\n";
        let forbid = markers(&["PANIC"]);
        let problems = judge(
            &rules(Emulator::Qemu, &[], &forbid),
            log,
            &Outcome::Exited {
                code: Some(EXIT_FAIL),
            },
        );
        assert_eq!(problems.len(), 2);
        assert_eq!(
            problems[0].to_string(),
            "expected end `ok`, but the hypervisor ended with `fail`"
        );
        assert_eq!(
            problems[1].to_string(),
            "forbidden marker `PANIC` at log line 2: PANIC at src/x.rs:1: boom"
        );
    }

    #[test]
    fn qemu_exit_codes_other_than_33_and_35_are_explained() {
        let r = rules(Emulator::Qemu, &[], &[]);
        let p = judge(&r, "", &Outcome::Exited { code: Some(0) });
        assert!(p[0].to_string().contains("shut down or reset"));
        let p = judge(&r, "", &Outcome::Exited { code: Some(1) });
        assert!(p[0].to_string().contains("status 1"));
    }

    #[test]
    fn bochs_is_judged_by_the_exit_line() {
        let expect = markers(&["memory map"]);
        let r = rules(Emulator::Bochs, &expect, &[]);
        assert!(judge(&r, GOOD_LOG, &Outcome::Exited { code: Some(0) }).is_empty());
        let p = judge(&r, "memory map\n", &Outcome::Exited { code: Some(0) });
        assert!(p[0].to_string().contains("no `BULKHEAD EXIT` line"));
        let mut r = r;
        r.end = End::Fail;
        let log = "memory map\nBULKHEAD EXIT fail: bad manifest\n";
        assert!(judge(&r, log, &Outcome::Exited { code: Some(0) }).is_empty());
    }

    #[test]
    fn a_timeout_still_lists_missing_markers() {
        let expect = markers(&["never"]);
        let p = judge(
            &rules(Emulator::Bochs, &expect, &[]),
            "",
            &Outcome::TimedOut(Duration::from_secs(9)),
        );
        assert_eq!(
            p,
            vec![
                Problem::TimedOut(Duration::from_secs(9)),
                Problem::Missing("never".into())
            ]
        );
        assert_eq!(p[0].to_string(), "timed out after 9 s (emulator killed)");
    }

    #[test]
    fn escapes_and_carriage_returns_are_cleaned() {
        assert_eq!(clean_line("\u{1b}[1;24r\u{1b}[HBoot\r"), "Boot");
        assert_eq!(clean_line("a\u{1b}7b"), "ab");
        assert_eq!(tail("1\n2\n3\n", 2), vec!["2", "3"]);
        assert_eq!(tail("1\n", 5), vec!["1"]);
    }
}
