//! The fuzz entry point: runs arbitrary bytes through the manifest reader on two machines and
//! checks what it promises. A Plan must obey every rule; diagnostics must have positions and be
//! safe to print on a terminal. The cargo-fuzz target `fuzz/fuzz_targets/manifest.rs` calls
//! this, and a host test runs it over the test manifests.
//!
//! Assertions here are the fuzzer's oracle: a failed one is a bug in the reader, not a problem
//! with the input.

#![forbid(unsafe_code)]

use alloc::collections::BTreeSet;
use alloc::format;

use super::{image_paths, parse_bytes, MachineFacts, Plan, MIN_GUEST_MEMORY_BYTES};

/// Paths that start with this do not exist on the fuzzed machines.
const MISSING_PREFIX: &str = "missing";

fn module_exists(path: &str) -> bool {
    !path.starts_with(MISSING_PREFIX)
}

/// Reads `data` as a manifest on a small and a large machine and checks the outcome.
pub fn manifest(data: &[u8]) {
    let machines = [(1, 32 << 20), (4, 2 << 30)];
    for (cpu_count, free_ram_bytes) in machines {
        let facts = MachineFacts {
            cpu_count,
            free_ram_bytes,
            module_exists: &module_exists,
        };
        match parse_bytes(data, &facts) {
            Ok(plan) => check_plan(&plan, &facts),
            Err(diagnostics) => {
                assert!(!diagnostics.is_empty(), "an error without diagnostics");
                for d in &diagnostics {
                    assert!(
                        d.line >= 1 && d.column >= 1,
                        "position {}:{}",
                        d.line,
                        d.column
                    );
                }
                let text = diagnostics.render("fuzz");
                let bad = text.chars().find(|c| c.is_control() && *c != '\n');
                assert!(bad.is_none(), "control character {bad:?} in {text:?}");
            }
        }
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = image_paths(text);
    }
}

fn check_plan(plan: &Plan, facts: &MachineFacts<'_>) {
    assert!(!plan.guests.is_empty(), "a plan without guests");
    let mut cpus = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let mut total: u64 = 0;
    for g in &plan.guests {
        assert!(names.insert(g.name.as_str()), "guest name {} twice", g.name);
        assert!(!g.name.is_empty() && g.name.len() <= super::MAX_NAME_CHARS);
        assert!(!g.cpus.is_empty(), "guest {} without CPUs", g.name);
        for &cpu in &g.cpus {
            assert!(cpu < facts.cpu_count, "cpu{cpu} does not exist");
            assert!(cpus.insert(cpu), "cpu{cpu} given twice");
        }
        assert!(g.memory_bytes >= MIN_GUEST_MEMORY_BYTES && g.memory_bytes % 4096 == 0);
        total = total.saturating_add(g.memory_bytes);
        for net in &g.nets {
            assert!(macs.insert(net.mac), "mac {} twice", net.mac);
            assert!(!net.mac.is_multicast() && net.mac.0 != [0; 6]);
        }
        if let super::CrashPolicy::Restart { limit } = g.on_crash {
            assert!(limit >= 1);
        }
    }
    assert!(total <= facts.free_ram_bytes, "RAM overcommitted");
    for m in plan.modules() {
        assert!((facts.module_exists)(&m), "module {m} is missing");
    }
    for s in &plan.switches {
        assert!(
            s.ports.len() >= 2,
            "switch {} with {} ports",
            s.name,
            s.ports.len()
        );
        for p in &s.ports {
            let net = plan.guests.get(p.guest).and_then(|g| g.nets.get(p.net));
            assert!(net.is_some_and(|n| n.switch == s.name), "bad port {p:?}");
        }
    }
    let _ = format!("{plan}");
}
