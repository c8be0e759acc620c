//! Runs scenario cases in emulators, a few at a time, each with its own log and a timeout.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::machine::{Emulator, Firmware};
use crate::scenario::{Case, Send};
use crate::verdict::{self, Outcome, Problem, Rules};
use crate::{bochs, qemu};

/// How often a running emulator is checked for having exited.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bochs' rfb server binds the first free port from 5900 up; two Bochs binding at the same
/// instant can race for one port, so their starts are spaced by this much.
const BOCHS_START_SPACING: Duration = Duration::from_millis(500);

/// A case and the ISO it boots.
pub struct Job {
    pub case: Case,
    pub iso: PathBuf,
}

/// What happened to one case.
pub struct CaseResult {
    pub name: String,
    pub problems: Vec<Problem>,
    pub elapsed: Duration,
    pub log_path: PathBuf,
    pub log: String,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Files a case writes in the output directory, all named `<case>.<what>`.
struct CaseFiles {
    out_dir: PathBuf,
    name: String,
    serial_log: PathBuf,
}

impl CaseFiles {
    fn new(out_dir: &Path, name: &str) -> Self {
        Self {
            out_dir: out_dir.to_path_buf(),
            name: name.to_owned(),
            serial_log: out_dir.join(format!("{name}.log")),
        }
    }

    /// `<case>.<what>`: `emu.log` (the emulator's stdout and stderr), `bochsrc`, `rc`,
    /// `bochs.log`, `vars.fd`.
    fn file(&self, what: &str) -> PathBuf {
        self.out_dir.join(format!("{}.{what}", self.name))
    }
}

fn spawn(
    case: &Case,
    iso: &Path,
    files: &CaseFiles,
    bochs_gate: &Mutex<Option<Instant>>,
) -> Result<Child, String> {
    let _ = std::fs::remove_file(&files.serial_log);
    let mut command: Command = match case.machine.emulator {
        Emulator::Qemu => {
            let vars = match case.machine.firmware {
                Firmware::Uefi => Some(qemu::copy_ovmf_vars(&files.file("vars.fd"))?),
                Firmware::Bios => None,
            };
            qemu::command(&qemu::Boot {
                machine: &case.machine,
                iso,
                serial: if case.sends.is_empty() {
                    qemu::Serial::File(&files.serial_log)
                } else {
                    qemu::Serial::Pipes
                },
                ovmf_vars: vars.as_deref(),
                gdb: false,
            })?
        }
        Emulator::Bochs => {
            let command = bochs::command(
                &bochs::Boot {
                    machine: &case.machine,
                    iso,
                    serial_log: &files.serial_log,
                    bochs_log: &files.file("bochs.log"),
                },
                &files.file("bochsrc"),
                &files.file("rc"),
            )?;
            // Hold the gate while starting so the next Bochs waits its turn.
            let mut last = bochs_gate.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = *last {
                std::thread::sleep(BOCHS_START_SPACING.saturating_sub(at.elapsed()));
            }
            *last = Some(Instant::now());
            command
        }
    };
    let emulator_log = files.file("emu.log");
    let out = File::create(&emulator_log)
        .map_err(|e| format!("creating {}: {e}", emulator_log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("duplicating a file handle: {e}"))?;
    if case.sends.is_empty() {
        command.stdin(Stdio::null()).stdout(out);
    } else {
        // Serial on stdin/stdout: the runner copies the output to the log and types input.
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
    }
    command
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))
}

/// Waits for `child` until `timeout`, killing it then. The bench and `cargo xtask linux`
/// wait on their emulators with this too.
pub fn wait(child: &mut Child, timeout: Duration) -> Outcome {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Outcome::Exited {
                    code: status.code(),
                }
            }
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(POLL_INTERVAL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::TimedOut(timeout);
            }
            // Cannot happen for a child we own; treat it like an unexplained death.
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Exited { code: None };
            }
        }
    }
}

fn run_case(job: &Job, out_dir: &Path, bochs_gate: &Mutex<Option<Instant>>) -> CaseResult {
    let case = &job.case;
    let files = CaseFiles::new(out_dir, &case.name);
    let start = Instant::now();
    let (problems, log) = match spawn(case, &job.iso, &files, bochs_gate) {
        Err(why) => (vec![Problem::NotStarted(why)], String::new()),
        Ok(mut child) => {
            let typist = match (child.stdout.take(), child.stdin.take()) {
                (Some(out), Some(input)) => match File::create(&files.serial_log) {
                    Ok(log) => Some(follow(out, input, log, case.sends.clone())),
                    Err(_) => None,
                },
                _ => None,
            };
            let outcome = wait(&mut child, case.timeout);
            // QEMU has exited (or was killed): its stdout ends and the follower with it.
            let typed = typist.map(|t| t.join().unwrap_or(0));
            let log = read_log(&files.serial_log);
            let rules = Rules {
                emulator: case.machine.emulator,
                expect: &case.expect,
                forbid: &case.forbid,
                end: case.end,
            };
            let mut problems = verdict::judge(&rules, &log, &outcome);
            if let Some(typed) = typed {
                if let Some(send) = case.sends.get(typed) {
                    problems.push(Problem::NotTyped {
                        index: typed + 1,
                        after: send.after.source.clone(),
                    });
                }
            }
            (problems, log)
        }
    };
    CaseResult {
        name: case.name.clone(),
        problems,
        elapsed: start.elapsed(),
        log,
        log_path: files.serial_log,
    }
}

/// Decides when to type: each complete serial line is checked against the next send's marker.
struct Typist {
    sends: Vec<Send>,
    next: usize,
    partial: Vec<u8>,
}

impl Typist {
    fn new(sends: Vec<Send>) -> Self {
        Self {
            sends,
            next: 0,
            partial: Vec::new(),
        }
    }

    /// Serial output arrived; returns what to type now, in order. One line triggers at most
    /// one send, so each send waits for a line that came after the previous one was typed.
    fn feed(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut typed = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                self.partial.push(b);
                continue;
            }
            let line = verdict::clean_line(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
            if let Some(send) = self.sends.get(self.next) {
                if send.after.regex.is_match(&line) {
                    typed.push(send.bytes.clone());
                    self.next += 1;
                }
            }
        }
        typed
    }
}

/// Copies QEMU's serial output to `log` and types the sends into its serial input; returns how
/// many sends were typed when the output ends.
fn follow(
    mut out: ChildStdout,
    mut input: ChildStdin,
    mut log: File,
    sends: Vec<Send>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut typist = Typist::new(sends);
        let mut buf = [0u8; 4096];
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let _ = log.write_all(&buf[..n]);
            for bytes in typist.feed(&buf[..n]) {
                let _ = input.write_all(&bytes);
                let _ = input.flush();
            }
        }
        typist.next
    })
}

/// A serial log as text (invalid UTF-8 replaced; empty when it cannot be read).
pub fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Runs every job, `jobs` at a time, calling `done` as each finishes; results keep job order.
pub fn run_all(
    work: &[Job],
    jobs: usize,
    out_dir: &Path,
    done: &(dyn Fn(&CaseResult) + Sync),
) -> Vec<CaseResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CaseResult>>> =
        Mutex::new((0..work.len()).map(|_| None).collect());
    let bochs_gate = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(work.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = work.get(index) else { break };
                let result = run_case(job, out_dir, &bochs_gate);
                done(&result);
                if let Some(slot) = results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(index)
                {
                    *slot = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// Lines of serial log shown under a failure.
pub const TAIL_LINES: usize = 40;

/// The failure report for one case: its name, every problem, and the end of its log.
pub fn failure_report(result: &CaseResult) -> String {
    let mut report = format!(
        "---- {} FAILED ({:.1} s)\n",
        result.name,
        result.elapsed.as_secs_f64()
    );
    for p in &result.problems {
        report.push_str(&format!("  - {p}\n"));
    }
    let tail = verdict::tail(&result.log, TAIL_LINES);
    if tail.is_empty() {
        report.push_str(&format!(
            "  serial log {} is empty\n",
            crate::paths::display(&result.log_path)
        ));
    } else {
        report.push_str(&format!(
            "  last {} lines of {}:\n",
            tail.len(),
            crate::paths::display(&result.log_path)
        ));
        for line in tail {
            report.push_str(&format!("  | {line}\n"));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Marker;

    fn send(after: &str, text: &str) -> Send {
        Send {
            after: Marker::new(after).unwrap(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn each_send_waits_for_its_own_later_line() {
        let mut t = Typist::new(vec![send("ready", "a"), send("ready|more", "b")]);
        assert!(
            t.feed(b"not yet\r\nrea").is_empty(),
            "partial lines do not count"
        );
        assert_eq!(t.feed(b"dy\r\n"), vec![b"a".to_vec()]);
        assert_eq!(t.next, 1);
        assert_eq!(t.feed(b"\x1b[0mmore\nready\n"), vec![b"b".to_vec()]);
        assert!(t.feed(b"ready\n").is_empty(), "all typed");
        assert_eq!(t.next, 2);
    }
}
