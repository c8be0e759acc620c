//! Platform-level escapes: PCI configuration space, INIT/SIPI through the local APIC, and the
//! PC's reset ports. None may reach beyond the guest.

use guest_rt::cpu::{self, inb, inl, outb, outl, wrmsr};
use guest_rt::fault::catch;
use guest_rt::idt::GP;
use guest_rt::time::spin_ms;
use guest_rt::{println, Checks};

use crate::msrs::{describe, try_rdmsr};
use crate::Mode;

const MSR_APIC_BASE: u32 = 0x1B;
const MSR_X2APIC_ICR: u32 = 0x830;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// xAPIC register offsets (Intel SDM vol.3 §11.4.1, table 11-1).
const XAPIC_SVR: u64 = 0xF0;
const XAPIC_ICR_LOW: u64 = 0x300;
const XAPIC_ICR_HIGH: u64 = 0x310;
const SVR_APIC_ENABLE: u32 = 1 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// ICR low words (SDM vol.3 §11.6.1): INIT and STARTUP (vector 0x08 = 0x8000), level assert,
/// optionally with the all-excluding-self shorthand.
const ICR_INIT: u32 = 0x4500;
const ICR_SIPI: u32 = 0x4608;
const ICR_ALL_BUT_SELF: u32 = 0xC_0000;
const ICR_POLLS: u32 = 10_000;
/// PCI configuration mechanism #1 (PCI Local Bus spec 3.0 §3.2.2.3.2).
const PCI_CONFIG_ADDRESS: u16 = 0xCF8;
const PCI_CONFIG_DATA: u16 = 0xCFC;
const PCI_ENABLE: u32 = 1 << 31;
const PCI_COMMAND_OFFSET: u32 = 0x04;
const PCI_COMMAND_IO_MEM_MASTER: u32 = 0x7;
/// Reset sources on a PC: keyboard controller pulse, port 0x92 fast reset, 0xCF9 reset control.
const KBC_COMMAND: u16 = 0x64;
const KBC_PULSE_RESET: u8 = 0xFE;
const PORT92: u16 = 0x92;
const PORT92_FAST_RESET: u8 = 0x01;
const RESET_CONTROL: u16 = 0xCF9;
const RCR_SYS_RST: u8 = 0x02;
const RCR_SYS_RST_CPU: u8 = 0x06;
/// How long to wait after a reset or IPI attempt for anything to happen.
const SETTLE_MS: u64 = 20;

fn pci_read(bus_dev_fn_reg: u32) -> u32 {
    // SAFETY: configuration mechanism #1; reading the host bridge's ID has no side effect.
    unsafe {
        outl(PCI_CONFIG_ADDRESS, PCI_ENABLE | bus_dev_fn_reg);
        inl(PCI_CONFIG_DATA)
    }
}

pub(crate) fn check_pci(checks: &mut Checks, mode: Mode) {
    let id = pci_read(0);
    match mode {
        Mode::Bulkhead => {
            // SAFETY: on Bulkhead there is no PCI bus; the write must go nowhere.
            unsafe {
                outl(PCI_CONFIG_ADDRESS, PCI_ENABLE | PCI_COMMAND_OFFSET);
                outl(PCI_CONFIG_DATA, PCI_COMMAND_IO_MEM_MASTER);
            }
            let command = pci_read(PCI_COMMAND_OFFSET);
            checks.expect(
                "pci-config",
                id == u32::MAX && command == u32::MAX,
                format_args!("00:00.0 id reads {id:#x}, command {command:#x}; expected all-ones"),
            );
        }
        Mode::Bare => println!("privileged: pci-config: 00:00.0 id {id:#010x}"),
    }
    // SAFETY: clearing the address register disables configuration access again.
    unsafe { outl(PCI_CONFIG_ADDRESS, 0) };
}

/// Sends INIT and SIPI to every other CPU and to APIC IDs 0..4 (except our own): with one
/// vCPU per guest these must reach nobody.
pub(crate) fn check_init_sipi(checks: &mut Checks) {
    let own_id = cpu::initial_apic_id();
    let apic_base = try_rdmsr(MSR_APIC_BASE);
    let is_x2apic = matches!(apic_base, Ok(v) if v & APIC_BASE_X2APIC != 0);
    let xapic = apic_base.map_or(0xFEE0_0000, |v| v & APIC_BASE_ADDR_MASK);
    println!(
        "privileged: APIC base {}, {} mode, own APIC ID {own_id}",
        describe(apic_base),
        if is_x2apic { "x2APIC" } else { "xAPIC" }
    );
    let mut ipis: [(u32, u32); 10] = [(0, 0); 10];
    ipis[0] = (ICR_ALL_BUT_SELF | ICR_INIT, 0);
    ipis[1] = (ICR_ALL_BUT_SELF | ICR_SIPI, 0);
    ipis[2] = (ICR_ALL_BUT_SELF | ICR_SIPI, 0);
    let mut n = 3;
    for dest in (0..4).filter(|&d| d != own_id) {
        ipis[n] = (ICR_INIT, dest);
        ipis[n + 1] = (ICR_SIPI, dest);
        n += 2;
    }
    let sent = catch(|| {
        if !is_x2apic {
            xapic_write(
                xapic,
                XAPIC_SVR,
                xapic_read(xapic, XAPIC_SVR) | SVR_APIC_ENABLE,
            );
        }
        for &(low, dest) in &ipis[..n] {
            if is_x2apic {
                // SAFETY: the x2APIC ICR only sends the IPI (to nobody, if isolation holds).
                unsafe { wrmsr(MSR_X2APIC_ICR, (u64::from(dest) << 32) | u64::from(low)) };
            } else {
                xapic_write(xapic, XAPIC_ICR_HIGH, dest << 24);
                xapic_write(xapic, XAPIC_ICR_LOW, low);
                for _ in 0..ICR_POLLS {
                    if xapic_read(xapic, XAPIC_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
                        break;
                    }
                    core::hint::spin_loop();
                }
            }
            spin_ms(1);
        }
    });
    spin_ms(SETTLE_MS);
    match sent {
        Ok(()) => checks.pass("init-sipi-contained"),
        Err(fault) if fault.vector == GP => {
            println!("privileged: init-sipi-contained: IPI refused with {fault}");
            checks.pass("init-sipi-contained")
        }
        Err(fault) => checks.fail(
            "init-sipi-contained",
            format_args!("sending IPIs raised {fault}"),
        ),
    }
}

// MMIO goes through explicit MOVs, as an OS does (Linux's readl/writel): LLVM may fuse a
// volatile load, an OR and a volatile store into one read-modify-write instruction.
fn xapic_read(base: u64, reg: u64) -> u32 {
    let v: u32;
    // SAFETY: the xAPIC page below 4 GiB is identity-mapped uncacheable by the boot stub.
    unsafe {
        core::arch::asm!("mov {0:e}, [{1}]", out(reg) v, in(reg) base + reg, options(nostack, preserves_flags))
    };
    v
}

fn xapic_write(base: u64, reg: u64, value: u32) {
    // SAFETY: as for xapic_read; writes only program this CPU's local APIC.
    unsafe {
        core::arch::asm!("mov [{0}], {1:e}", in(reg) base + reg, in(reg) value, options(nostack, preserves_flags))
    };
}

pub(crate) fn check_resets(checks: &mut Checks) {
    let attempts: [(&str, u16, &[u8]); 3] = [
        ("reset-kbc-ignored", KBC_COMMAND, &[KBC_PULSE_RESET]),
        ("reset-port92-ignored", PORT92, &[PORT92_FAST_RESET]),
        (
            "reset-cf9-ignored",
            RESET_CONTROL,
            &[RCR_SYS_RST, RCR_SYS_RST_CPU],
        ),
    ];
    for (name, port, values) in attempts {
        for &value in values {
            println!("privileged: writing {value:#04x} to port {port:#x}");
            // SAFETY: the point is to ask for a reset and see that none happens; if one does,
            // the scenario sees the guest start over instead of this PASS line.
            unsafe { outb(port, value) };
        }
        spin_ms(SETTLE_MS);
        checks.pass(name);
    }
    // SAFETY: reading back the port 0x92 latch has no side effect.
    let port92 = unsafe { inb(PORT92) };
    println!("privileged: port 0x92 reads {port92:#04x} after the reset attempts");
}
