use super::*;

const GOOD_LOG: &str = "\
[hostile-dev] HOSTILE SUMMARY hostile-dev cases=7 iterations=14000 refused=1892 seed=0xdefaced5eed
[hostile-dev] PASS hostile-dev
[checker] NEIGHBOUR SUMMARY disk-checker rounds=144 wrong=0 stalls=0 max_round_ms=88
[checker] PASS disk-checker rounds=144
[cpu1 hostile-dev] INFO  guest: stopped (Stopped, status 0, 0 restarts); exits total 5
[cpu2 checker] INFO  guest: stopped (Stopped, status 0, 0 restarts); exits total 5
GUEST hostile-dev stopped status 0 restarts 0
PASS hypervisor-canary (256 KiB intact)
BULKHEAD EXIT ok
";

#[test]
fn the_battery_is_hostile_scenarios_and_the_named_guest_ones() {
    assert!(is_hostile_case("hostile-dev.qemu-bios-smp4-256M"));
    assert!(is_hostile_case("hostile-mem-balloon.bochs-vmx-smp4-256M"));
    assert!(is_hostile_case("virtio-hostile.qemu-bios-smp3-256M"));
    assert!(is_hostile_case("guests-crash-restart.qemu-bios-smp3-256M"));
    assert!(!is_hostile_case("boot.qemu-bios-smp1-128M"));
    assert!(!is_hostile_case("virtio-blk.qemu-bios-smp3-256M"));
}

#[test]
fn summaries_are_added_up_and_nothing_is_lost_on_a_good_run() {
    let f = figures("hostile-dev.q", true, Duration::from_secs(4), GOOD_LOG);
    assert_eq!(f.hostile_guests, ["hostile-dev"]);
    assert_eq!((f.hostile_cases, f.iterations, f.refused), (7, 14000, 1892));
    assert_eq!(f.checker_rounds, 144);
    assert_eq!(
        (f.neighbour_stalls, f.wrong_bytes, f.hypervisor_failures),
        (0, 0, 0)
    );
    assert_eq!(total_lost(&[f], &Fuzz::NotRun), 0);
}

#[test]
fn stalls_wrong_bytes_and_hypervisor_failures_are_counted() {
    let log = "\
[checker] NEIGHBOUR SUMMARY disk-checker rounds=3 wrong=1 stalls=0 max_round_ms=9
[checker] NEIGHBOUR SUMMARY disk-checker rounds=2 wrong=0 stalls=1 max_round_ms=9000
[heartbeat] FAIL heartbeat: canary at GPA:0x1000 changed: expected 1, found 2 (beat 3)
GUEST heartbeat stopped status 1 restarts 0
FAIL hypervisor-canary: byte 3 is 0x00, expected 0x5a
BULKHEAD EXIT fail: a guest failed
";
    let f = figures("hostile-x.q", false, Duration::ZERO, log);
    assert_eq!(f.checker_rounds, 5);
    assert_eq!(f.neighbour_stalls, 1);
    assert_eq!(
        f.wrong_bytes, 2,
        "the checker's wrong round and the heartbeat canary"
    );
    assert_eq!(f.hypervisor_failures, 2, "canary and exit line");
}

#[test]
fn a_run_that_never_reached_the_canary_is_a_hypervisor_failure() {
    let log = "[hostile-dev] HOSTILE SUMMARY hostile-dev cases=1 iterations=1\nGUEST a stopped\n";
    let f = figures("hostile-dev.q", false, Duration::ZERO, log);
    assert_eq!(f.hypervisor_failures, 1);
}

#[test]
fn a_failed_case_with_a_clean_log_still_loses_something() {
    let log =
        "[hostile-dma] FAIL hostile-dma/lapic: not refused\nPASS hypervisor-canary\nGUEST x\n";
    let f = figures("hostile-dma.q", false, Duration::ZERO, log);
    assert_eq!(total_lost(&[f], &Fuzz::NotRun), 1);
}

#[test]
fn fuzz_reports_of_several_shapes_are_read() {
    let map = r#"{"targets": {"virtqueue": {"execs": 1000, "crashes": 0}, "manifest": {"execs": 5, "crashes": 1}}}"#;
    let t = parse_fuzz(map).unwrap();
    assert_eq!(t.len(), 2);
    assert!(t.contains(&FuzzTarget {
        name: "manifest".into(),
        execs: 5,
        crashes: 1
    }));
    let list = r#"{"targets": [{"name": "decoder", "execs": 7, "crashes": 0}]}"#;
    assert_eq!(parse_fuzz(list).unwrap()[0].name, "decoder");
    assert!(parse_fuzz("not json").is_err());
    let fuzz = Fuzz::Ran(t);
    assert_eq!(total_lost(&[], &fuzz), 1, "a fuzz crash is lost");
}

#[test]
fn the_report_has_the_table_totals_and_fuzz_state() {
    let f = figures("hostile-dev.q", true, Duration::from_secs(4), GOOD_LOG);
    let md = render(&[f], &Fuzz::NotRun, "target/fuzz/report.json");
    assert!(md.contains(
        "| hostile-dev.q | PASS | 4.0 s | hostile-dev | 7 | 14000 | 1892 | | 144 | yes | 0 | 0 | 0 |"
    ));
    assert!(md.contains("not run (no target/fuzz/report.json"));
    assert!(md.contains("**Lost: 0**"));
    let fuzz = Fuzz::Ran(vec![FuzzTarget {
        name: "virtqueue".into(),
        execs: 1000,
        crashes: 0,
    }]);
    let md = render(&[], &fuzz, "r.json");
    assert!(md.contains("| fuzz: virtqueue | PASS | | | | | | 1000 | | | | | 0 |"));
    assert!(md.contains("| **total** (0 runs) | | | | 0 | 0 | 0 | 1000 | | | 0 | 0 | 0 |"));
}

#[test]
fn the_fuzz_report_reader_takes_nesting_escapes_and_numbers_and_refuses_junk() {
    let text = r#" {"a": [1, -2.5e1, true, null], "t": {"name": "x\\y\"z", "execs": 2.9e3, "crashes": -1}} "#;
    assert_eq!(
        parse_fuzz(text).unwrap(),
        vec![FuzzTarget {
            name: "x\\y\"z".into(),
            execs: 2900,
            crashes: 0
        }]
    );
    for junk in ["", "{", "[1,]", "{\"a\" 1}", "{\"a\": 1} x", "\"open"] {
        assert!(parse_fuzz(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn a_neighbour_that_stopped_before_the_attacker_is_reported() {
    let log = "\
[hostile-vq] HOSTILE SUMMARY hostile-vq cases=2 iterations=10
[cpu2 checker] INFO  guest: stopped (Stopped, status 0, 0 restarts); exits total 5
[cpu1 hostile-vq] INFO  guest: stopped (Stopped, status 0, 0 restarts); exits total 5
PASS hypervisor-canary
GUEST hostile-vq stopped status 0
";
    let f = figures("hostile-vq.q", true, Duration::ZERO, log);
    assert_eq!(f.neighbours_outlived, Some(false));
    assert_eq!(f.hypervisor_failures, 0);
    let g = figures(
        "virtio-hostile.q",
        true,
        Duration::ZERO,
        "PASS hypervisor-canary\n",
    );
    assert_eq!(g.neighbours_outlived, None);
}

#[test]
fn attackers_are_named_as_the_manifest_names_them() {
    // hostile-life's guest calls itself `hostile-life-crash`; the manifest calls it life-crash.
    let log = "\
[life-crash] HOSTILE SUMMARY hostile-life-crash cases=1 iterations=1
[life-crash] HOSTILE SUMMARY hostile-life-crash cases=1 iterations=1
[cpu1 life-crash] INFO  guest: stopped (Crashed, status 255, 2 restarts); exits total 5
[cpu2 checker] INFO  guest: stopped (Stopped, status 0, 0 restarts); exits total 5
PASS hypervisor-canary
";
    let f = figures("hostile-life.q", true, Duration::ZERO, log);
    assert_eq!(f.hostile_guests, ["life-crash"]);
    assert_eq!(f.hostile_cases, 2);
    assert_eq!(f.neighbours_outlived, Some(true));
}
