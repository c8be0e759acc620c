//! The manifests under tests/manifests, which the docs and boot scenarios use.

use alloc::vec;

use super::super::{parse, CrashPolicy, KernelFormat, MacAddr, MachineFacts, SwitchPort};
use super::{errors_with, plan, CPUS, RAM};

const EXAMPLE: &str = include_str!("../../../tests/manifests/example.toml");
const MINIMAL: &str = include_str!("../../../tests/manifests/minimal.toml");
const FIVE_MISTAKES: &str = include_str!("../../../tests/manifests/five-mistakes.toml");

#[test]
fn the_example_gives_the_documented_plan() {
    let p = plan(EXAMPLE);
    let [web, db] = p.guests.as_slice() else {
        panic!("two guests expected: {p}");
    };
    assert_eq!(web.name, "web");
    assert_eq!(web.cpus, [1, 2]);
    assert_eq!(web.memory_bytes, 512 << 20);
    assert_eq!(web.format, KernelFormat::Linux);
    assert_eq!(web.on_crash, CrashPolicy::Restart { limit: 5 });
    assert_eq!(web.disks.len(), 2);
    assert!(web.disks[1].readonly && !web.disks[0].readonly);
    assert!(web.console.virtio);
    assert_eq!(web.nets[0].mac, MacAddr::derive("web", 0, 0));
    assert_eq!(db.cpus, [3]);
    assert_eq!(db.format, KernelFormat::Auto);
    assert_eq!(db.on_crash, CrashPolicy::Stop);
    assert_eq!(db.nets[0].mac, MacAddr([0x52, 0x54, 0, 0, 0, 2]));
    assert_eq!(p.switches.len(), 1);
    assert_eq!(
        p.switches[0].ports,
        [
            SwitchPort { guest: 0, net: 0 },
            SwitchPort { guest: 1, net: 0 }
        ]
    );
    assert_eq!(
        p.modules(),
        [
            "images/bzImage",
            "images/web-initrd.cpio.gz",
            "images/web-root.img",
            "images/site.img",
            "images/db-root.img",
        ]
    );
}

#[test]
fn the_example_needs_three_free_cpus_and_768m() {
    let e = errors_with(EXAMPLE, 3, 512 << 20, &|_| true);
    let found: vec::Vec<&str> = e.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        found,
        [
            "cpu3 does not exist",
            "the guests ask for 768 MiB of RAM in total, but only 512 MiB is free",
        ]
    );
}

#[test]
fn the_minimal_manifest_is_valid() {
    assert_eq!(plan(MINIMAL).guests[0].cpus, [1]);
}

/// The boot scenario compares the hypervisor's output with these lines.
#[test]
fn five_mistakes_gives_exactly_five_errors_on_any_machine() {
    let expected = "\
manifest:8:8: error: `cpus` must be a CPU count like 2 or a list of CPU numbers like [1, 2], not a string
    hint: write it without quotes: cpus = 1
manifest:9:10: error: memory \"1001K\" is not a multiple of 4 KiB
    hint: use \"1000K\" or \"1004K\"
manifest:11:1: error: unknown key `comdline` in [[guest]]
    hint: did you mean `cmdline`?
manifest:14:8: error: guest name \"hello\" is already used (line 7)
    hint: guest names must be unique: they prefix the guest's log lines and its console
manifest:18:12: error: `on_crash` must be one of \"stop\", \"restart\", not \"reboot\"
    hint: did you mean \"restart\"?
";
    for (cpus, ram) in [(1, 32 << 20), (CPUS, RAM), (64, 1 << 40)] {
        let facts = MachineFacts {
            cpu_count: cpus,
            free_ram_bytes: ram,
            module_exists: &|_| true,
        };
        let d = parse(FIVE_MISTAKES, &facts).err().unwrap_or_default();
        assert_eq!(d.len(), 5);
        assert_eq!(alloc::format!("{d}"), expected);
    }
}

#[test]
fn the_fuzz_oracle_holds_for_the_test_manifests_and_their_prefixes() {
    for text in [EXAMPLE, MINIMAL, FIVE_MISTAKES] {
        super::super::fuzzing::manifest(text.as_bytes());
        // Every prefix is a manifest cut short somewhere: a mix of syntax and other errors.
        for end in (0..text.len())
            .step_by(7)
            .filter(|&e| text.is_char_boundary(e))
        {
            super::super::fuzzing::manifest(&text.as_bytes()[..end]);
        }
    }
}
