//! Valid manifests and the Plans they give: defaults, CPU assignment, MACs, switches, modules.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::super::{
    image_paths, parse_bytes, ConsolePlan, CrashPolicy, DiskPlan, EscapeKey, GuestPlan,
    KernelFormat, LogLevel, MacAddr, MachineFacts, SwitchPort, DEFAULT_RESTART_LIMIT,
};
use super::{guest_with, plan};

const MINIMAL: &str = "version = 1\n\
                       [[guest]]\n\
                       name = \"hello\"\n\
                       cpus = 1\n\
                       memory = \"16M\"\n\
                       kernel = \"hello.elf\"\n";

#[test]
fn minimal_manifest_gets_every_default() {
    let p = plan(MINIMAL);
    assert_eq!(p.version, 1);
    assert_eq!(p.hypervisor.log, LogLevel::Info);
    assert_eq!(p.hypervisor.console.escape, EscapeKey::CTRL_A);
    assert_eq!(p.hypervisor.console.escape.byte(), 0x01);
    assert!(p.hypervisor.console.prefix_guest_output);
    assert_eq!(
        p.guests,
        vec![GuestPlan {
            name: String::from("hello"),
            cpus: vec![1],
            memory_bytes: 16 << 20,
            kernel: String::from("hello.elf"),
            format: KernelFormat::Auto,
            cmdline: String::new(),
            initrd: None,
            on_crash: CrashPolicy::Stop,
            time_limit_ms: None,
            disks: Vec::new(),
            nets: Vec::new(),
            console: ConsolePlan { virtio: false },
        }]
    );
    assert!(p.switches.is_empty());
    assert_eq!(p.modules(), vec![String::from("hello.elf")]);
}

#[test]
fn every_guest_key_lands_in_the_plan() {
    let p = plan(&guest_with(
        "format = \"linux\"\n\
         cmdline = \"console=ttyS0 quiet\"\n\
         initrd = \"initrd.cpio\"\n\
         on_crash = \"restart\"\n\
         restart_limit = 3\n\
         console = { virtio = true }\n\
         [[guest.disk]]\n\
         image = \"root.img\"\n\
         [[guest.disk]]\n\
         image = \"data.img\"\n\
         readonly = true\n",
    ));
    let g = &p.guests[0];
    assert_eq!(g.format, KernelFormat::Linux);
    assert_eq!(g.cmdline, "console=ttyS0 quiet");
    assert_eq!(g.initrd.as_deref(), Some("initrd.cpio"));
    assert_eq!(g.on_crash, CrashPolicy::Restart { limit: 3 });
    assert!(g.console.virtio);
    assert_eq!(
        g.disks,
        vec![
            DiskPlan {
                image: String::from("root.img"),
                readonly: false
            },
            DiskPlan {
                image: String::from("data.img"),
                readonly: true
            },
        ]
    );
    assert_eq!(
        p.modules(),
        ["web.elf", "initrd.cpio", "root.img", "data.img"]
    );
}

#[test]
fn time_limit_lands_in_the_plan() {
    let p = plan(&guest_with("time_limit_ms = 2500\n"));
    assert_eq!(p.guests[0].time_limit_ms, Some(2500));
    assert!(p.to_string().contains("time limit 2500 ms"), "{p}");
}

#[test]
fn restart_without_limit_gets_the_default_limit() {
    let p = plan(&guest_with("on_crash = \"restart\"\n"));
    assert_eq!(
        p.guests[0].on_crash,
        CrashPolicy::Restart {
            limit: DEFAULT_RESTART_LIMIT
        }
    );
}

#[test]
fn hypervisor_settings_are_read() {
    let p = plan(
        "version = 1\n\
         [hypervisor]\n\
         log = \"debug\"\n\
         console.escape = \"Ctrl-T\"\n\
         console.prefix_guest_output = false\n\
         [[guest]]\nname = \"a\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"a\"\n",
    );
    assert_eq!(p.hypervisor.log, LogLevel::Debug);
    assert_eq!(p.hypervisor.log.to_level_filter(), log::LevelFilter::Debug);
    assert_eq!(
        p.hypervisor.console.escape,
        EscapeKey::ctrl(b't').unwrap_or(EscapeKey::CTRL_A)
    );
    assert_eq!(p.hypervisor.console.escape.byte(), 0x14);
    assert!(!p.hypervisor.console.prefix_guest_output);
}

#[test]
fn listed_cpus_are_kept_and_counts_take_the_lowest_free_from_cpu1() {
    // The count-form guest comes first in the file but cannot take cpu1: it is listed later.
    let p = plan(
        "version = 1\n\
         [[guest]]\nname = \"a\"\ncpus = 2\nmemory = \"2M\"\nkernel = \"k\"\n\
         [[guest]]\nname = \"b\"\ncpus = [1]\nmemory = \"2M\"\nkernel = \"k\"\n",
    );
    assert_eq!(p.guests[0].cpus, [2, 3]);
    assert_eq!(p.guests[1].cpus, [1]);
}

#[test]
fn cpu0_goes_to_a_guest_only_when_listed() {
    let p = plan(
        "version = 1\n\
         [[guest]]\nname = \"a\"\ncpus = [3, 0]\nmemory = \"2M\"\nkernel = \"k\"\n\
         [[guest]]\nname = \"b\"\ncpus = 2\nmemory = \"2M\"\nkernel = \"k\"\n",
    );
    assert_eq!(p.guests[0].cpus, [3, 0]);
    assert_eq!(p.guests[1].cpus, [1, 2]);
}

const TWO_ON_A_SWITCH: &str = "version = 1\n\
     [[guest]]\nname = \"a\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"k\"\n\
     [[guest.net]]\nswitch = \"lan\"\n\
     [[guest.net]]\nswitch = \"mgmt\"\nmac = \"52:54:00:00:00:01\"\n\
     [[guest]]\nname = \"b\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"k\"\n\
     [[guest.net]]\nswitch = \"mgmt\"\n\
     [[guest.net]]\nswitch = \"lan\"\n";

#[test]
fn switches_list_their_ports_in_order_of_first_mention() {
    let p = plan(TWO_ON_A_SWITCH);
    assert_eq!(p.switches.len(), 2);
    assert_eq!(p.switches[0].name, "lan");
    assert_eq!(
        p.switches[0].ports,
        [
            SwitchPort { guest: 0, net: 0 },
            SwitchPort { guest: 1, net: 1 }
        ]
    );
    assert_eq!(p.switches[1].name, "mgmt");
    assert_eq!(
        p.switches[1].ports,
        [
            SwitchPort { guest: 0, net: 1 },
            SwitchPort { guest: 1, net: 0 }
        ]
    );
}

#[test]
fn macs_are_kept_or_derived_stably_and_never_repeat() {
    let p = plan(TWO_ON_A_SWITCH);
    let a = &p.guests[0].nets;
    let b = &p.guests[1].nets;
    assert_eq!(a[1].mac, MacAddr([0x52, 0x54, 0, 0, 0, 1]));
    assert_eq!(a[0].mac, MacAddr::derive("a", 0, 0));
    assert_eq!(b[0].mac, MacAddr::derive("b", 0, 0));
    assert_eq!(b[1].mac, MacAddr::derive("b", 1, 0));
    let mut all: Vec<MacAddr> = a.iter().chain(b).map(|n| n.mac).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4);
    assert_eq!(
        plan(TWO_ON_A_SWITCH),
        p,
        "the same manifest gives the same plan"
    );
}

#[test]
fn a_derived_mac_steps_aside_for_a_given_one() {
    let taken = MacAddr::derive("b", 0, 0);
    let text = alloc::format!(
        "version = 1\n\
         [[guest]]\nname = \"a\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"k\"\n\
         [[guest.net]]\nswitch = \"lan\"\nmac = \"{taken}\"\n\
         [[guest]]\nname = \"b\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"k\"\n\
         [[guest.net]]\nswitch = \"lan\"\n"
    );
    let p = plan(&text);
    assert_eq!(p.guests[0].nets[0].mac, taken);
    assert_eq!(p.guests[1].nets[0].mac, MacAddr::derive("b", 0, 1));
}

#[test]
fn inline_tables_and_single_console_arrays_are_the_same_manifest() {
    let inline = plan(
        "version = 1\n\
         guest = [{ name = \"a\", cpus = [1], memory = \"2M\", kernel = \"k\", console = [{ virtio = true }] }]\n",
    );
    let headers = plan(
        "version = 1\n\
         [[guest]]\nname = \"a\"\ncpus = [1]\nmemory = \"2M\"\nkernel = \"k\"\n\
         [guest.console]\nvirtio = true\n",
    );
    assert_eq!(inline, headers);
}

#[test]
fn modules_are_listed_once_in_manifest_order() {
    let p = plan(
        "version = 1\n\
         [[guest]]\nname = \"a\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"k\"\ninitrd = \"i\"\n\
         [[guest.disk]]\nimage = \"shared.img\"\nreadonly = true\n\
         [[guest]]\nname = \"b\"\ncpus = 1\nmemory = \"2M\"\nkernel = \"k2\"\ninitrd = \"i\"\n\
         [[guest.disk]]\nimage = \"shared.img\"\nreadonly = true\n",
    );
    assert_eq!(p.modules(), ["k", "i", "shared.img", "k2"]);
}

#[test]
fn image_paths_are_found_even_in_a_manifest_with_mistakes() {
    let text = "version = 7\n\
                [[guest]]\ncpus = \"x\"\nkernel = \"k\"\ninitrd = \"i\"\n\
                [[guest.disk]]\nimage = \"d\"\n\
                [[guest]]\nkernel = \"k\"\n";
    assert_eq!(
        image_paths(text),
        Ok(vec![
            String::from("k"),
            String::from("i"),
            String::from("d")
        ])
    );
    assert!(image_paths("version = ").is_err());
}

#[test]
fn bytes_with_a_bom_crlf_and_nul_padding_parse() {
    let mut bytes: Vec<u8> = Vec::from("\u{feff}".as_bytes());
    bytes.extend_from_slice(MINIMAL.replace('\n', "\r\n").as_bytes());
    bytes.extend_from_slice(&[0, 0, 0]);
    let facts = MachineFacts {
        cpu_count: 2,
        free_ram_bytes: 64 << 20,
        module_exists: &|m| m == "hello.elf",
    };
    let p = parse_bytes(&bytes, &facts).map_err(|d| d.render("test"));
    assert_eq!(
        p.map(|p| p.guests[0].name.clone()),
        Ok(String::from("hello"))
    );
}

#[test]
fn the_summary_names_every_guest_device_and_switch() {
    let text = alloc::format!("{}", plan(TWO_ON_A_SWITCH));
    assert!(
        text.starts_with(
            "manifest version 1: 2 guest(s) on 2 CPU(s) with 4 MiB of RAM, 2 switch(es)"
        ),
        "{text}"
    );
    assert!(
        text.contains("  guest a: cpu1, 2 MiB, kernel k (auto), on crash stop\n"),
        "{text}"
    );
    assert!(
        text.contains("    net1: switch mgmt, mac 52:54:00:00:00:01\n"),
        "{text}"
    );
    assert!(text.contains("  switch lan: a.net0 b.net1\n"), "{text}");
}
