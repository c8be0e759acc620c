//! Host tests of the manifest: valid files and the Plans they give, and every rule's message,
//! hint and position.

mod cross;
mod files;
mod keys;
mod syntax;
mod units;
mod valid;
mod values;

use alloc::string::String;
use alloc::vec::Vec;

use super::{parse, Diagnostic, Diagnostics, MachineFacts, Plan};

/// Facts of the default test machine: 4 CPUs, 2 GiB free, every module present.
const CPUS: u32 = 4;
const RAM: u64 = 2 << 30;

fn all_modules(_: &str) -> bool {
    true
}

fn try_parse(text: &str) -> Result<Plan, Diagnostics> {
    parse(
        text,
        &MachineFacts {
            cpu_count: CPUS,
            free_ram_bytes: RAM,
            module_exists: &all_modules,
        },
    )
}

/// The Plan of a manifest that must be valid (the diagnostics are shown if not).
fn plan(text: &str) -> Plan {
    match try_parse(text) {
        Ok(plan) => plan,
        Err(d) => panic!("expected a valid manifest, got:\n{}", d.render("test")),
    }
}

/// Every diagnostic of a manifest that must be invalid.
fn errors(text: &str) -> Vec<Diagnostic> {
    errors_with(text, CPUS, RAM, &all_modules)
}

fn errors_with(text: &str, cpus: u32, ram: u64, modules: &dyn Fn(&str) -> bool) -> Vec<Diagnostic> {
    let facts = MachineFacts {
        cpu_count: cpus,
        free_ram_bytes: ram,
        module_exists: modules,
    };
    match parse(text, &facts) {
        Ok(plan) => panic!("expected errors, got a plan:\n{plan}"),
        Err(d) => {
            assert!(!d.is_empty(), "an Err must carry at least one diagnostic");
            d.iter().cloned().collect()
        }
    }
}

/// The single diagnostic of a manifest with exactly one mistake.
fn one_error(text: &str) -> Diagnostic {
    let all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.into_iter().next().unwrap_or_else(|| unreachable!())
}

/// Asserts position and that the message contains `needle`.
#[track_caller]
fn assert_at(d: &Diagnostic, line: u32, column: u32, needle: &str) {
    assert_eq!((d.line, d.column), (line, column), "position of {d:#?}");
    assert!(
        d.message.contains(needle),
        "message {:?} should contain {needle:?}",
        d.message
    );
}

/// Asserts the hint contains `needle`.
#[track_caller]
fn assert_hint(d: &Diagnostic, needle: &str) {
    let hint = d.hint.as_deref().unwrap_or("");
    assert!(
        hint.contains(needle),
        "hint {hint:?} of {:?} should contain {needle:?}",
        d.message
    );
}

/// A valid one-guest manifest with `extra` lines appended to the guest table (line 7 onward).
fn guest_with(extra: &str) -> String {
    let mut s = String::from(
        "version = 1\n\
         [[guest]]\n\
         name = \"web\"\n\
         cpus = 1\n\
         memory = \"64M\"\n\
         kernel = \"web.elf\"\n",
    );
    s.push_str(extra);
    s
}
