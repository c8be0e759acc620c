//! What each exit means: the vendor-neutral exit handlers, generic over [`Vcpu`].

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;

use super::cpuid::{self, CpuidContext};
use super::interrupts::{self, VcpuLinks};
use super::mmio;
use super::msr::{MsrOutcome, MsrState, APIC_BASE_ENABLE, APIC_BASE_X2APIC, MSR_APIC_BASE};
pub use super::platform::GuestDevices;
use super::stats::ExitStats;
use crate::decode::walk::{self, PagingContext};
use crate::decode::{self, CpuMode, Insn, MAX_INSN_LEN};
use crate::devices::lapic::{is_apic_msr, Lapic};
use crate::devices::rtc::{DATA_PORT as RTC_DATA_PORT, INDEX_PORT as RTC_INDEX_PORT};
use crate::guest_mem::GuestMemory;
use crate::layout::{COM1_PORT, GUEST_EXIT_PORT};
use crate::loader::acpi::{
    is_poweroff_write, RESET_PORT, RESET_VALUE, SLEEP_CONTROL_PORT, SLEEP_STATUS_PORT,
};
use crate::virt::{reg, IoAccess, Vcpu, VmExit};

/// #UD.
pub const VECTOR_UD: u8 = 6;
/// #GP.
pub const VECTOR_GP: u8 = 13;
/// Unassigned accesses logged per guest before going quiet (they are still counted).
pub(crate) const UNASSIGNED_LOG_LIMIT: u64 = 8;

/// What the hypervisor around the VMM provides.
pub trait Host {
    /// The physical CPU's answer to CPUID.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// Highest basic and extended CPUID leaves of the host.
    fn cpuid_max(&self) -> (u32, u32);
    /// The current TSC.
    fn tsc(&self) -> u64;
    /// TSC frequency in kHz.
    fn tsc_khz(&self) -> u64;
    /// One line of console output from the guest.
    fn console_line(&mut self, line: &[u8]);
    /// Wall-clock time in Unix seconds.
    fn unix_now(&self) -> u64;
}

/// One vCPU's own emulation state.
#[derive(Debug)]
pub struct VcpuState {
    /// vCPU number in its guest.
    pub index: u32,
    /// vCPUs in the guest.
    pub count: u32,
    /// Emulated MSRs.
    pub msrs: MsrState,
    /// Exit counts.
    pub stats: ExitStats,
    /// The guest's vCPUs' APICs and start-up requests, shared with its other vCPUs.
    pub links: Arc<VcpuLinks>,
}

impl VcpuState {
    /// State at reset.
    pub fn new(index: u32, links: Arc<VcpuLinks>) -> Self {
        Self {
            index,
            count: links.count() as u32,
            msrs: MsrState::new(index),
            stats: ExitStats::default(),
            links,
        }
    }

    /// This vCPU's local APIC.
    pub fn lapic(&self) -> spin::MutexGuard<'_, Lapic> {
        self.links.apic(self.index as usize)
    }
}

/// Why a guest stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest wrote `status` to the exit port (0 = success).
    Exited(u8),
    /// The guest crashed (triple fault, impossible state); the report says how.
    Crashed(String),
    /// The hypervisor could not continue running it.
    Fatal(String),
    /// The guest powered itself off (ACPI S5).
    PowerOff,
    /// The guest asked for a reset (ACPI reset register): start again from its images.
    Reboot,
}

impl StopReason {
    /// Whether this counts as a crash for the `on_crash` policy.
    pub fn is_crash(&self) -> bool {
        matches!(self, Self::Crashed(_) | Self::Fatal(_))
    }
}

/// What the run loop does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Enter the guest again.
    Resume,
    /// The guest executed HLT: wait for an interrupt for it.
    Halt,
    /// Stop the guest.
    Stop(StopReason),
}

/// Fetches (through the guest's own page tables) and decodes the instruction at RIP.
pub fn decode_at_rip<V: Vcpu>(vcpu: &V, mem: &dyn GuestMemory) -> Result<(Insn, Vec<u8>), String> {
    let p = vcpu.paging();
    let ctx = PagingContext {
        cr0: p.cr0,
        cr3: p.cr3,
        cr4: p.cr4,
        efer: p.efer,
    };
    let mode = CpuMode::from_code_bits(p.code_bits).unwrap_or(CpuMode::Bits64);
    let cs_base = if mode == CpuMode::Bits64 {
        0
    } else {
        p.cs_base
    };
    let mut buf = [0u8; MAX_INSN_LEN];
    let n = walk::fetch_insn(mem, &ctx, cs_base, vcpu.rip(), &mut buf).map_err(|e| {
        alloc::format!("cannot fetch the instruction at RIP {:#x}: {e}", vcpu.rip())
    })?;
    let insn = decode::decode(&buf[..n], mode).map_err(|e| {
        alloc::format!(
            "cannot decode the instruction at RIP {:#x}: {e}",
            vcpu.rip()
        )
    })?;
    Ok((insn, buf[..n].to_vec()))
}

/// Length of the instruction that exited: from the hardware when it says, else decoded (QEMU
/// TCG gives no nRIP), else the instruction's architectural length without prefixes.
fn insn_len<V: Vcpu>(vcpu: &V, mem: &dyn GuestMemory, fixed: u8) -> u8 {
    if let Some(len) = vcpu.exit_insn_len() {
        return len;
    }
    match decode_at_rip(vcpu, mem) {
        Ok((insn, _)) => insn.len,
        Err(why) => {
            log::debug!("{why}; assuming {fixed} bytes");
            fixed
        }
    }
}

pub(crate) fn skip<V: Vcpu>(vcpu: &mut V, len: u8) {
    let rip = vcpu.rip().wrapping_add(u64::from(len));
    vcpu.set_rip(rip);
}

/// A crash report: exit, RIP and registers.
pub fn crash_report<V: Vcpu>(vcpu: &mut V, what: &str) -> String {
    let rip = vcpu.rip();
    let p = vcpu.paging();
    let r = vcpu.regs().gprs;
    let mut s = String::new();
    let _ = write!(
        s,
        "{what} at RIP {rip:#x} (CR0 {:#x} CR3 {:#x} CR4 {:#x} EFER {:#x})",
        p.cr0, p.cr3, p.cr4, p.efer
    );
    const NAMES: [&str; 16] = [
        "RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12",
        "R13", "R14", "R15",
    ];
    for (i, n) in NAMES.iter().enumerate() {
        let _ = write!(
            s,
            "{}{n}={:#x}",
            if i % 4 == 0 { "\n  " } else { " " },
            r[i]
        );
    }
    s
}

/// Handles one exit of `vcpu`.
pub fn handle<V: Vcpu, H: Host>(
    vcpu: &mut V,
    exit: VmExit,
    st: &mut VcpuState,
    dev: &mut GuestDevices,
    mem: &dyn GuestMemory,
    host: &mut H,
) -> Next {
    match &exit {
        VmExit::Io(io) => {
            st.stats.count(io_class(io.port));
            st.stats.count_port(io.port);
        }
        other => st.stats.count(other.name()),
    }
    match exit {
        VmExit::Cpuid => {
            let regs = vcpu.regs();
            let (leaf, sub) = (regs.gpr(reg::RAX) as u32, regs.gpr(reg::RCX) as u32);
            let (max_basic, max_ext) = host.cpuid_max();
            let ctx = CpuidContext {
                vcpu_index: st.index,
                vcpu_count: st.count,
                tsc_khz: host.tsc_khz(),
                guest_cr4: vcpu.paging().cr4,
                x2apic: true,
                tsc_deadline: true,
            };
            let out = cpuid::filter(leaf, sub, host.cpuid(leaf, sub), max_basic, max_ext, &ctx);
            let regs = vcpu.regs();
            for (r, v) in [
                (reg::RAX, out[0]),
                (reg::RBX, out[1]),
                (reg::RCX, out[2]),
                (reg::RDX, out[3]),
            ] {
                regs.set_gpr(r, u64::from(v));
            }
            let len = insn_len(vcpu, mem, 2);
            skip(vcpu, len);
            Next::Resume
        }
        VmExit::MsrRead => handle_msr(vcpu, false, st, dev, mem, host),
        VmExit::MsrWrite => handle_msr(vcpu, true, st, dev, mem, host),
        VmExit::Io(io) => handle_io(vcpu, io, dev, mem, host),
        VmExit::Hlt => {
            let len = insn_len(vcpu, mem, 1);
            skip(vcpu, len);
            Next::Halt
        }
        VmExit::Invd => {
            let len = insn_len(vcpu, mem, 2);
            skip(vcpu, len);
            Next::Resume
        }
        VmExit::Hypercall | VmExit::VirtInstruction => {
            vcpu.inject_exception(VECTOR_UD, None);
            Next::Resume
        }
        VmExit::HostInterrupt | VmExit::InterruptWindow => Next::Resume,
        VmExit::NestedFault {
            gpa,
            is_write,
            is_fetch,
            is_walk,
        } => mmio::handle(
            vcpu,
            mmio::NptAccess {
                gpa,
                is_write,
                is_fetch,
                is_walk,
            },
            st,
            dev,
            mem,
            host.tsc(),
        ),
        VmExit::Shutdown => Next::Stop(StopReason::Crashed(crash_report(
            vcpu,
            "triple fault (shutdown)",
        ))),
        VmExit::EntryFailed(why) => Next::Stop(StopReason::Fatal(crash_report(vcpu, why))),
        VmExit::Unknown { code, info1, info2 } => Next::Stop(StopReason::Fatal(crash_report(
            vcpu,
            &alloc::format!("unhandled exit {code:#x} (info {info1:#x}, {info2:#x})"),
        ))),
    }
}

/// RDMSR/WRMSR: the local APIC's MSRs go to the vCPU's APIC, everything else to the MSR policy;
/// a refusal is #GP(0) without advancing RIP, as on hardware.
fn handle_msr<V: Vcpu, H: Host>(
    vcpu: &mut V,
    is_write: bool,
    st: &mut VcpuState,
    dev: &mut GuestDevices,
    mem: &dyn GuestMemory,
    host: &mut H,
) -> Next {
    let regs = vcpu.regs();
    let msr = regs.gpr(reg::RCX) as u32;
    let value = (regs.gpr(reg::RDX) << 32) | (regs.gpr(reg::RAX) & 0xFFFF_FFFF);
    let now = host.tsc();
    let mut result = None;
    let ok = if is_apic_msr(msr) {
        if is_write {
            let written = st.lapic().msr_write(msr, value, now);
            match written {
                Ok(action) => {
                    if let Some(a) = action {
                        interrupts::apply_apic_action(st, a, &mut |v| dev.ioapic_eoi(v));
                    }
                    true
                }
                Err(_) => false,
            }
        } else {
            let read = st.lapic().msr_read(msr, now);
            read.map(|v| result = Some(v)).is_ok()
        }
    } else if is_write {
        match st.msrs.write(msr, value, true) {
            MsrOutcome::Fault => false,
            MsrOutcome::Efer(v) => {
                vcpu.set_efer(v);
                true
            }
            _ => {
                if msr == MSR_APIC_BASE {
                    let base = st.msrs.apic_base();
                    st.lapic()
                        .set_mode(base & APIC_BASE_ENABLE != 0, base & APIC_BASE_X2APIC != 0);
                }
                true
            }
        }
    } else {
        match st.msrs.read(msr, vcpu.efer(), now) {
            MsrOutcome::Value(v) => {
                result = Some(v);
                true
            }
            _ => false,
        }
    };
    if !ok {
        log::debug!(
            "{} {msr:#x} refused (#GP)",
            if is_write { "wrmsr" } else { "rdmsr" }
        );
        vcpu.inject_exception(VECTOR_GP, Some(0));
        return Next::Resume;
    }
    if let Some(v) = result {
        let regs = vcpu.regs();
        regs.set_gpr(reg::RAX, v & 0xFFFF_FFFF);
        regs.set_gpr(reg::RDX, v >> 32);
    }
    let len = insn_len(vcpu, mem, 2);
    skip(vcpu, len);
    Next::Resume
}

/// The statistics name of a port access: which emulated device paid for the exit, so a boot's
/// I/O exits can be told apart (a chatty serial console versus a probing driver).
fn io_class(port: u16) -> &'static str {
    match port {
        p if (COM1_PORT..COM1_PORT + 8).contains(&p) => "io-uart",
        RTC_INDEX_PORT | RTC_DATA_PORT => "io-rtc",
        SLEEP_CONTROL_PORT | SLEEP_STATUS_PORT | RESET_PORT | GUEST_EXIT_PORT => "io-power",
        PCI_CONF1_FIRST..=PCI_CONF1_LAST => "io-pci",
        PIT_FIRST..=PIT_LAST => "io-pit",
        _ => "io-other",
    }
}

/// PCI configuration mechanism #1 (address at 0xCF8, data at 0xCFC–0xCFF): no device there,
/// but counted apart because Linux probes it.
const PCI_CONF1_FIRST: u16 = 0xCF8;
const PCI_CONF1_LAST: u16 = 0xCFF;

/// The 8254 PIT's ports. Guests have no PIT (the FADT says hardware-reduced), but Linux still
/// times its CPU clock against channel 2 at boot. Reading its counter as all-ones, like any
/// absent device, keeps Linux's `pit_expect_msb` loop spinning for its full 50,000 rounds of
/// two reads (100,000 exits, most of a boot's); a counter that reads 0 never matches the
/// expected MSB, so the calibration gives up at once and Linux uses `tsc_early_khz`.
const PIT_FIRST: u16 = 0x40;
const PIT_LAST: u16 = 0x43;

fn handle_io<V: Vcpu, H: Host>(
    vcpu: &mut V,
    io: IoAccess,
    dev: &mut GuestDevices,
    mem: &dyn GuestMemory,
    host: &mut H,
) -> Next {
    let len = insn_len(vcpu, mem, 1);
    let mask: u64 = match io.size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    };
    if io.is_string {
        // INS/OUTS are not used by the guests Bulkhead runs; treat them as unassigned. Logged
        // within the same limit as other unassigned ports: a guest repeating them must not
        // flood the serial line every guest and the hypervisor share.
        if count_unassigned_io(dev) {
            log::warn!("string I/O on port {:#x} ignored", io.port);
        }
        skip(vcpu, len);
        return Next::Resume;
    }
    let mut result: Option<u64> = None;
    match io.port {
        p if (COM1_PORT..COM1_PORT + 8).contains(&p) => {
            let off = p - COM1_PORT;
            if io.is_in {
                result = Some(u64::from(dev.uart.read(off)));
            } else if let Some(line) = dev.uart.write(off, vcpu.regs().gpr(reg::RAX) as u8) {
                host.console_line(&line);
            }
            dev.update_uart_line();
        }
        p @ (RTC_INDEX_PORT | RTC_DATA_PORT) => {
            let now = host.unix_now();
            if io.is_in {
                result = Some(u64::from(dev.rtc.read(p, now)));
            } else {
                dev.rtc.write(p, vcpu.regs().gpr(reg::RAX) as u8, now);
            }
        }
        SLEEP_CONTROL_PORT if !io.is_in => {
            skip(vcpu, len);
            if is_poweroff_write(vcpu.regs().gpr(reg::RAX) as u8) {
                return Next::Stop(StopReason::PowerOff);
            }
            return Next::Resume;
        }
        // Wake status set: the guest never waits for a sleep it asked for.
        SLEEP_STATUS_PORT if io.is_in => result = Some(0x80),
        RESET_PORT if !io.is_in => {
            skip(vcpu, len);
            if vcpu.regs().gpr(reg::RAX) as u8 == RESET_VALUE {
                return Next::Stop(StopReason::Reboot);
            }
            return Next::Resume;
        }
        PIT_FIRST..=PIT_LAST if io.is_in => result = Some(0),
        GUEST_EXIT_PORT if !io.is_in => {
            let status = vcpu.regs().gpr(reg::RAX) as u8;
            skip(vcpu, len);
            if let Some(line) = dev.uart.take_partial_line() {
                host.console_line(&line);
            }
            return Next::Stop(StopReason::Exited(status));
        }
        port => {
            if count_unassigned_io(dev) {
                log::debug!(
                    "{} of unassigned port {port:#x} ({} bytes)",
                    if io.is_in { "read" } else { "write" },
                    io.size
                );
            }
            if io.is_in {
                result = Some(mask);
            }
        }
    }
    if let Some(v) = result {
        let regs = vcpu.regs();
        let old = regs.gpr(reg::RAX);
        // IN to AL/AX keeps the rest of RAX; IN to EAX zero-extends (as any 32-bit write).
        let new = if io.size == 4 {
            v & mask
        } else {
            (old & !mask) | (v & mask)
        };
        regs.set_gpr(reg::RAX, new);
    }
    skip(vcpu, len);
    Next::Resume
}

/// Counts an access to a port with nothing behind it; true while such accesses are still
/// logged (the first [`UNASSIGNED_LOG_LIMIT`]).
fn count_unassigned_io(dev: &mut GuestDevices) -> bool {
    dev.unassigned_io += 1;
    dev.unassigned_io <= UNASSIGNED_LOG_LIMIT
}

/// Flushes a guest's unfinished console line (when it stops).
pub fn flush_console<H: Host>(dev: &mut GuestDevices, host: &mut H) {
    if let Some(line) = dev.uart.take_partial_line() {
        host.console_line(&line);
    }
}

/// Lines of text for a guest's exit statistics.
pub fn stats_lines(stats: &ExitStats) -> Vec<String> {
    alloc::vec![stats.summary()]
}

#[cfg(test)]
mod tests;
