//! Building the guests of the manifest's [`Plan`]: RAM, nested page table, devices, loader.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::guest::{CrashPolicy, Guest};
use super::host::MachineHost;
use super::storage::disk_copy;
use crate::addr::{HostPhysAddr, LARGE_PAGE_SIZE};
use crate::arch::x86_64::guest_ram::GuestRam;
use crate::arch::x86_64::page_tables::{self, FrameTables};
use crate::arch::x86_64::{memory, smp, time};
use crate::boot::BootInfo;
use crate::devices::switch::{Switch, DEFAULT_INBOX_FRAMES};
use crate::devices::virtio::blk::{Blk, BlkOptions};
use crate::devices::virtio::console::{Console, ConsoleInput, ConsoleSink};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::Net;
use crate::loader::{self, AcpiConfig, BootRequest, Format, GuestRamLayout, LoadError};
use crate::manifest::{self, EscapeKey, GuestPlan, KernelFormat, MachineFacts, Plan};
use crate::paging::{
    check_nested, Entry, EptEntry, MapFlags, NptEntry, PageSize, PageTable, PagingError, Region,
};
use crate::println;
use crate::virt::{Caps, EntryState};
use crate::vmm::dispatch::Host;
use crate::vmm::platform::GuestDevices;

/// The module string of the manifest (`module2 /boot/… manifest`).
pub const MANIFEST_MODULE: &str = "manifest";
/// RAM the hypervisor keeps for itself beyond what it has already allocated (vCPU structures,
/// nested page tables, disk copies are accounted separately as they are made).
const HYPERVISOR_RESERVE_BYTES: u64 = 16 << 20;

/// Reads the manifest and builds every guest it describes, with the console's escape key;
/// `Ok(empty)` when there is no manifest. Any error means no guest starts.
pub fn build_guests(info: &BootInfo, caps: &Caps) -> Result<(Vec<Arc<Guest>>, EscapeKey), String> {
    let Some(module) = info.module(MANIFEST_MODULE) else {
        log::warn!(
            "no manifest module (a module2 line whose string is `manifest`): no guests to run"
        );
        return Ok((Vec::new(), EscapeKey::CTRL_A));
    };
    let exists = |path: &str| info.module(path).is_some();
    let facts = MachineFacts {
        cpu_count: smp::online() as u32,
        free_ram_bytes: memory::free_bytes().saturating_sub(HYPERVISOR_RESERVE_BYTES),
        module_exists: &exists,
    };
    let plan = match manifest::parse_bytes(memory::module_bytes(module), &facts) {
        Ok(plan) => plan,
        Err(diags) => {
            let text = diags.render("manifest");
            for line in text.lines() {
                println!("{line}");
            }
            return Err(alloc::format!(
                "the manifest has {} error(s); no guest started",
                diags.len()
            ));
        }
    };
    log::set_max_level(plan.hypervisor.log.to_level_filter().max(log::max_level()));
    let refused = check_images(info, &plan);
    if !refused.is_empty() {
        for line in &refused {
            println!("{line}");
        }
        return Err(alloc::format!(
            "{} guest image(s) refused; no guest started",
            refused.len()
        ));
    }
    let guests = build_plan(info, caps, &plan)?;
    Ok((guests, plan.hypervisor.console.escape))
}

/// Runs every guest's kernel and initrd through the loader against its RAM size, before any
/// guest gets memory, so one bad image stops the whole manifest and every bad image is named.
/// Each line says the guest, the file and what is wrong in it.
fn check_images(info: &BootInfo, plan: &Plan) -> Vec<String> {
    let mut refused = Vec::new();
    for g in &plan.guests {
        let images = image_of(info, &g.kernel).and_then(|k| {
            let initrd = g.initrd.as_deref().map(|p| image_of(info, p)).transpose()?;
            Ok((k, initrd))
        });
        let (kernel, initrd) = match images {
            Ok(found) => found,
            Err(e) => {
                refused.push(alloc::format!("guest {}: {e}", g.name));
                continue;
            }
        };
        // The slots setup will fill (disks, nets, console), for the ACPI tables' size.
        let slot_count = g.disks.len() + g.nets.len() + usize::from(g.console.virtio);
        let slots: Vec<u32> = (0..slot_count as u32).collect();
        let req = BootRequest {
            kernel,
            format: loader_format(g.format),
            cmdline: &g.cmdline,
            initrd,
            acpi: Some(AcpiConfig {
                vcpus: g.cpus.len() as u32,
                virtio_slots: &slots,
            }),
        };
        if let Err(e) = loader::validate(&GuestRamLayout::new(g.memory_bytes), &req) {
            let (what, path) = match (e, &g.initrd) {
                (LoadError::InitrdTooLarge { .. }, Some(p)) => ("initrd", p),
                _ => ("kernel", &g.kernel),
            };
            refused.push(alloc::format!("guest {}: {what} {path:?}: {e}", g.name));
        }
    }
    refused
}

fn loader_format(format: KernelFormat) -> Format {
    match format {
        KernelFormat::Auto => Format::Auto,
        KernelFormat::Elf => Format::Elf,
        KernelFormat::Linux => Format::Linux,
    }
}

fn build_plan(info: &BootInfo, caps: &Caps, plan: &Plan) -> Result<Vec<Arc<Guest>>, String> {
    let switches: Vec<Arc<Switch>> = plan
        .switches
        .iter()
        .map(|s| Switch::new(&s.name, DEFAULT_INBOX_FRAMES))
        .collect();
    log_own_footprint(info);
    let mut guests = Vec::new();
    for (index, g) in plan.guests.iter().enumerate() {
        let (free_before, heap_before) = (memory::free_bytes(), memory::heap_used());
        let guest = build_guest(info, caps, plan, &switches, index, g)
            .map_err(|e| alloc::format!("guest {}: {e}", g.name))?;
        // `cargo xtask bench` reads these lines (xtask/src/bench/parse.rs): what a guest costs
        // beyond its RAM (nested page table, disk copies in frames; device state in the heap).
        let frames = free_before.saturating_sub(memory::free_bytes());
        log::info!(
            "footprint: guest {}: RAM {} KiB, overhead {} KiB frames + {} KiB heap",
            g.name,
            g.memory_bytes >> 10,
            frames.saturating_sub(g.memory_bytes) >> 10,
            memory::heap_used().saturating_sub(heap_before) >> 10
        );
        guests.push(Arc::new(guest));
    }
    Ok(guests)
}

/// The hypervisor's own memory before any guest is built: its image (which holds the heap),
/// the heap in use, and the other frames it took (stacks, page tables, low memory), boot
/// modules not counted.
fn log_own_footprint(info: &BootInfo) {
    let (start, end) = memory::kernel_image();
    let image = end.as_u64().saturating_sub(start.as_u64());
    let modules: u64 = info.modules.iter().map(|m| m.len).sum();
    let other = info
        .usable_bytes()
        .saturating_sub(memory::free_bytes())
        .saturating_sub(image)
        .saturating_sub(modules);
    log::info!(
        "footprint: hypervisor image {} KiB (heap {} KiB in use of {} KiB), other frames {} KiB, boot modules {} KiB",
        image >> 10,
        memory::heap_used() >> 10,
        memory::HEAP_BYTES >> 10,
        other >> 10,
        modules >> 10
    );
}

fn build_guest(
    info: &BootInfo,
    caps: &Caps,
    plan: &Plan,
    switches: &[Arc<Switch>],
    index: usize,
    g: &GuestPlan,
) -> Result<Guest, String> {
    let align = if g.memory_bytes >= crate::addr::HUGE_PAGE_SIZE {
        crate::addr::HUGE_PAGE_SIZE
    } else {
        LARGE_PAGE_SIZE
    };
    let base = memory::alloc_zeroed(g.memory_bytes, align)
        .or_else(|_| memory::alloc_zeroed(g.memory_bytes, LARGE_PAGE_SIZE))
        .map_err(|e| alloc::format!("no room for {} MiB of RAM: {e}", g.memory_bytes >> 20))?;
    // SAFETY: the block was just allocated for this guest alone; all RAM is identity-mapped.
    let ram = unsafe { GuestRam::new(base, g.memory_bytes) };
    let nested = build_nested(&ram, caps)?;
    log::info!(
        "guest {}: nested page table checked: {} MiB of RAM, nothing else mapped",
        g.name,
        g.memory_bytes >> 20
    );
    // The hypervisor must never be able to execute what the guest writes.
    let block = base.as_u64()..base.as_u64() + g.memory_bytes;
    page_tables::check(core::slice::from_ref(&block))
        .map_err(|v| alloc::format!("refused: {v}"))?;

    // Work from other CPUs (frames, typed input) wakes the guest's boot vCPU.
    let wake_cpu = g.cpus.first().map_or(0, |&c| c as usize);
    let mut devices = GuestDevices::new(time::unix_now());
    let mut slot = 0u32;
    for (i, d) in g.disks.iter().enumerate() {
        let module = info
            .module(&d.image)
            .ok_or_else(|| alloc::format!("disk image {:?} was not loaded", d.image))?;
        let image = disk_copy(memory::module_bytes(module))
            .map_err(|e| alloc::format!("disk {:?}: {e}", d.image))?;
        let mut serial = [0u8; 20];
        let id = alloc::format!("{}-disk{i}", g.name);
        let n = id.len().min(20);
        serial[..n].copy_from_slice(&id.as_bytes()[..n]);
        let blk = Blk::new(
            image,
            BlkOptions {
                is_readonly: d.readonly,
                serial,
            },
        );
        devices
            .virtio
            .attach(slot, Box::new(MmioTransport::new(blk)))
            .map_err(|e| e.to_string())?;
        slot += 1;
    }
    for (i, n) in g.nets.iter().enumerate() {
        let Some(sw) = plan.switches.iter().position(|s| s.name == n.switch) else {
            // A switch with one port is refused by validation; nothing to plug into here.
            log::warn!(
                "net {i} names switch {:?}, which has no other port",
                n.switch
            );
            continue;
        };
        let port = switches[sw].add_port();
        devices.switch_ports.push((switches[sw].clone(), port.id()));
        // Frames for this guest wait in the port's inbox until its boot vCPU's CPU drains them
        // after an exit: wake that CPU when the first one arrives.
        port.set_waker(Box::new(move || smp::kick(wake_cpu)));
        devices
            .virtio
            .attach(slot, Box::new(MmioTransport::new(Net::new(port, n.mac.0))))
            .map_err(|e| e.to_string())?;
        slot += 1;
    }
    if g.console.virtio {
        let name: &'static str = alloc::boxed::Box::leak(g.name.clone().into_boxed_str());
        let mut host = MachineHost::new(name);
        let sink: ConsoleSink = Box::new(move |line: &[u8]| host.console_line(line));
        let input = ConsoleInput::new();
        devices.console_input = Some(Arc::clone(&input));
        let console = Console::new(sink, input);
        devices
            .virtio
            .attach(slot, Box::new(MmioTransport::new(console)))
            .map_err(|e| e.to_string())?;
    }
    // Typed input waits in the device until the guest's boot vCPU takes it after an exit.
    let inputs = devices.uart_input.clone();
    inputs.set_waker(Box::new(move || smp::kick(wake_cpu)));
    if let Some(input) = &devices.console_input {
        input.set_waker(Box::new(move || smp::kick(wake_cpu)));
    }
    let slots: Vec<u32> = devices.virtio.devices().map(|d| d.slot).collect();
    let kernel = image_of(info, &g.kernel)?;
    let linux = g.format == KernelFormat::Linux || loader::is_linux(kernel);
    let cmdline = guest_cmdline(&g.cmdline, linux, &devices);
    let initrd = g.initrd.as_deref().map(|p| image_of(info, p)).transpose()?;
    let format = loader_format(g.format);
    let vcpus = g.cpus.len() as u32;
    let loader = Box::new(move |ram: &GuestRam| -> Result<EntryState, String> {
        let req = BootRequest {
            kernel,
            format,
            cmdline: &cmdline,
            initrd,
            acpi: Some(AcpiConfig {
                vcpus,
                virtio_slots: &slots,
            }),
        };
        loader::load(ram, &ram.layout(), &req)
            .map(|s| s.entry)
            .map_err(|e| alloc::format!("{e}"))
    });
    let on_crash = match g.on_crash {
        manifest::CrashPolicy::Stop => CrashPolicy::Stop,
        manifest::CrashPolicy::Restart { limit } => CrashPolicy::Restart { limit },
    };
    let cpus = g.cpus.iter().map(|&c| c as usize).collect();
    let guest = Guest::new(
        &g.name,
        cpus,
        ram,
        nested,
        index as u32 + 1,
        on_crash,
        loader,
        devices,
    )
    .with_time_limit(g.time_limit_ms);
    // Check the image loads now, so a bad image is refused before any guest starts.
    guest.prepare()?;
    Ok(guest)
}

/// The manifest's command line plus what the guest needs to know about this platform, unless
/// the manifest already says it.
fn guest_cmdline(manifest: &str, linux: bool, devices: &GuestDevices) -> String {
    let mut cmdline = String::from(manifest.trim());
    let mut add = |word: &str| {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(word);
    };
    if linux {
        if !manifest.contains("tsc_early_khz=") {
            // Linux would calibrate the TSC against a PIT, which guests do not have: tell it.
            add(&alloc::format!("tsc_early_khz={}", time::tsc_khz()));
        }
        if !manifest.contains("pci=") {
            // There is no PCI here. Without `pci=off` Linux's early quirks still scan bus 0
            // through conf1 (about 33,000 port exits per boot, a quarter of all exits).
            add("pci=off");
        }
    } else if !manifest.contains("virtio=") && devices.virtio.devices().next().is_some() {
        // Test guests find their devices here; Linux finds them in the DSDT.
        let list: Vec<String> = devices
            .virtio
            .devices()
            .map(|d| alloc::format!("{:#x}@{}:{}", d.base.as_u64(), d.gsi, d.name))
            .collect();
        add(&alloc::format!("virtio={}", list.join(",")));
    }
    cmdline
}

fn image_of(info: &BootInfo, path: &str) -> Result<&'static [u8], String> {
    info.module(path)
        .map(memory::module_bytes)
        .ok_or_else(|| alloc::format!("image {path:?} was not loaded"))
}

/// Builds the guest's nested page table (NPT or EPT, by vendor): exactly its RAM, nothing
/// else; then walks it and refuses the guest if it maps anything more (or less).
fn build_nested(ram: &GuestRam, caps: &Caps) -> Result<HostPhysAddr, String> {
    let max = page_tables::max_page();
    let built = |e: PagingError| alloc::format!("nested page table: {e}");
    match caps {
        Caps::Svm(_) => {
            let t = map_ram::<NptEntry>(ram, max).map_err(built)?;
            checked(t, ram)
        }
        Caps::Vmx(v) => {
            let max = if v.ept_1g { max } else { PageSize::Size2M };
            let t = map_ram::<EptEntry>(ram, max).map_err(built)?;
            checked(t, ram)
        }
    }
}

fn map_ram<E: Entry>(ram: &GuestRam, max: PageSize) -> Result<PageTable<E>, PagingError> {
    let mem = &mut FrameTables;
    let mut t = PageTable::<E>::new(mem)?;
    for r in ram.regions() {
        t.map(mem, r.gpa.as_u64(), r.hpa, r.len, MapFlags::RWX, max)?;
    }
    Ok(t)
}

/// The nested-table self-check: its RAM regions, linearly, and nothing else (no device is
/// mapped: every MMIO page exits). A failure frees the table and refuses the guest.
fn checked<E: Entry>(t: PageTable<E>, ram: &GuestRam) -> Result<HostPhysAddr, String> {
    let allowed: Vec<Region> = ram
        .regions()
        .map(|r| Region {
            virt: r.gpa.as_u64(),
            phys: r.hpa,
            size_bytes: r.len,
        })
        .collect();
    if let Err(v) = check_nested(&t, &FrameTables, &allowed) {
        t.destroy(&mut FrameTables);
        return Err(alloc::format!("refused: {v}"));
    }
    Ok(t.root())
}
