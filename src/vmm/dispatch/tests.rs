//! The dispatcher against a fake vCPU and a fake host.

use super::*;
use crate::addr::GuestPhysAddr;
use crate::guest_mem::VecGuestMemory;
use crate::virt::{EntryState, GuestRegs, PagingState};
use crate::vmm::msr::MSR_EFER;

#[derive(Default)]
struct FakeVcpu {
    regs: GuestRegs,
    rip: u64,
    efer: u64,
    len: Option<u8>,
    injected: Vec<(u8, Option<u32>)>,
}

impl Vcpu for FakeVcpu {
    fn run(&mut self) -> VmExit {
        VmExit::Hlt
    }
    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, rip: u64) {
        self.rip = rip;
    }
    fn exit_insn_len(&self) -> Option<u8> {
        self.len
    }
    fn paging(&self) -> PagingState {
        PagingState::default()
    }
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        self.injected.push((vector, error_code));
    }
    fn inject_interrupt(&mut self, _vector: u8) -> bool {
        false
    }
    fn request_interrupt_window(&mut self, _enable: bool) {}
    fn interrupts_enabled(&self) -> bool {
        false
    }
    fn efer(&self) -> u64 {
        self.efer
    }
    fn set_efer(&mut self, efer: u64) {
        self.efer = efer;
    }
    fn reset(&mut self, state: &EntryState) {
        self.regs = state.regs;
        self.rip = state.rip;
    }
}

#[derive(Default)]
struct FakeHost {
    lines: Vec<Vec<u8>>,
}

impl Host for FakeHost {
    fn cpuid(&self, leaf: u32, _subleaf: u32) -> [u32; 4] {
        [leaf, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF]
    }
    fn cpuid_max(&self) -> (u32, u32) {
        (0x16, 0x8000_0008)
    }
    fn tsc(&self) -> u64 {
        1234
    }
    fn tsc_khz(&self) -> u64 {
        3_000_000
    }
    fn console_line(&mut self, line: &[u8]) {
        self.lines.push(line.to_vec());
    }
    fn unix_now(&self) -> u64 {
        1_700_000_000
    }
}

fn setup() -> (FakeVcpu, VcpuState, GuestDevices, VecGuestMemory, FakeHost) {
    let v = FakeVcpu {
        rip: 0x1000,
        ..Default::default()
    };
    (
        v,
        VcpuState::new(
            0,
            alloc::sync::Arc::new(crate::vmm::interrupts::VcpuLinks::new(
                1,
                3_000_000,
                alloc::boxed::Box::new(|_| {}),
            )),
        ),
        GuestDevices::default(),
        VecGuestMemory::new(GuestPhysAddr::new(0), 0x1000),
        FakeHost::default(),
    )
}

fn out(port: u16, size: u8) -> VmExit {
    VmExit::Io(IoAccess {
        port,
        size,
        is_in: false,
        is_string: false,
        is_rep: false,
    })
}

fn inp(port: u16, size: u8) -> VmExit {
    VmExit::Io(IoAccess {
        port,
        size,
        is_in: true,
        is_string: false,
        is_rep: false,
    })
}

#[test]
fn cpuid_is_filtered_and_skipped() {
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    v.regs.set_gpr(reg::RAX, 1);
    assert_eq!(
        handle(&mut v, VmExit::Cpuid, &mut st, &mut dev, &mem, &mut host),
        Next::Resume
    );
    assert_eq!(v.regs.gpr(reg::RCX) & (1 << 5), 0, "no VMX");
    assert_ne!(v.regs.gpr(reg::RCX) & (1 << 31), 0, "hypervisor bit");
    assert_eq!(
        v.rip, 0x1002,
        "CPUID is two bytes when the hardware gives no length"
    );
    v.len = Some(3);
    handle(&mut v, VmExit::Cpuid, &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.rip, 0x1005, "hardware length wins");
    assert_eq!(st.stats.get("cpuid"), 2);
}

#[test]
fn uart_output_reaches_the_host_in_lines_and_exit_port_stops() {
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    for b in b"ok\n" {
        v.regs.set_gpr(reg::RAX, u64::from(*b));
        handle(
            &mut v,
            out(COM1_PORT, 1),
            &mut st,
            &mut dev,
            &mem,
            &mut host,
        );
    }
    assert_eq!(host.lines, [b"ok".to_vec()]);
    v.regs.set_gpr(reg::RAX, b'x'.into());
    handle(
        &mut v,
        out(COM1_PORT, 1),
        &mut st,
        &mut dev,
        &mem,
        &mut host,
    );
    v.regs.set_gpr(reg::RAX, 3);
    assert_eq!(
        handle(
            &mut v,
            out(GUEST_EXIT_PORT, 1),
            &mut st,
            &mut dev,
            &mem,
            &mut host
        ),
        Next::Stop(StopReason::Exited(3))
    );
    assert_eq!(
        host.lines.last().unwrap(),
        b"x",
        "partial line flushed at exit"
    );
}

#[test]
fn unassigned_ports_read_all_ones_and_keep_upper_bits() {
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    v.regs.set_gpr(reg::RAX, 0x1122_3344_5566_7788);
    handle(&mut v, inp(0xCFC, 1), &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.regs.gpr(reg::RAX), 0x1122_3344_5566_77FF);
    handle(&mut v, inp(0xCFC, 2), &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.regs.gpr(reg::RAX), 0x1122_3344_5566_FFFF);
    handle(&mut v, inp(0xCFC, 4), &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.regs.gpr(reg::RAX), 0xFFFF_FFFF, "32-bit IN zero-extends");
    handle(&mut v, out(0xCF9, 1), &mut st, &mut dev, &mem, &mut host);
    assert_eq!(dev.unassigned_io, 4);
}

#[test]
fn msr_policy_applies() {
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    v.regs.set_gpr(reg::RCX, 0xC001_0117);
    handle(&mut v, VmExit::MsrRead, &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.injected, [(VECTOR_GP, Some(0))]);
    assert_eq!(v.rip, 0x1000, "a faulting RDMSR does not advance");
    v.regs.set_gpr(reg::RCX, u64::from(MSR_EFER));
    v.regs.set_gpr(reg::RAX, 0x501);
    v.regs.set_gpr(reg::RDX, 0);
    handle(&mut v, VmExit::MsrWrite, &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.efer, 0x501);
    v.regs.set_gpr(reg::RAX, 1 << 12);
    handle(&mut v, VmExit::MsrWrite, &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.injected.len(), 2, "EFER.SVME write faults");
    v.regs.set_gpr(reg::RCX, 0x10);
    handle(&mut v, VmExit::MsrRead, &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.regs.gpr(reg::RAX), 1234);
}

#[test]
fn virtualization_instructions_raise_ud_and_triple_fault_crashes() {
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    handle(
        &mut v,
        VmExit::VirtInstruction,
        &mut st,
        &mut dev,
        &mem,
        &mut host,
    );
    handle(
        &mut v,
        VmExit::Hypercall,
        &mut st,
        &mut dev,
        &mem,
        &mut host,
    );
    assert_eq!(v.injected, [(VECTOR_UD, None), (VECTOR_UD, None)]);
    match handle(&mut v, VmExit::Shutdown, &mut st, &mut dev, &mem, &mut host) {
        Next::Stop(r @ StopReason::Crashed(_)) => assert!(r.is_crash()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn acpi_power_ports_stop_or_reset_the_guest() {
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    v.regs.set_gpr(reg::RAX, 0x14);
    assert_eq!(
        handle(
            &mut v,
            out(SLEEP_CONTROL_PORT, 1),
            &mut st,
            &mut dev,
            &mem,
            &mut host
        ),
        Next::Resume,
        "no SLP_EN"
    );
    v.regs.set_gpr(reg::RAX, 0x34);
    assert_eq!(
        handle(
            &mut v,
            out(SLEEP_CONTROL_PORT, 1),
            &mut st,
            &mut dev,
            &mem,
            &mut host
        ),
        Next::Stop(StopReason::PowerOff)
    );
    v.regs.set_gpr(reg::RAX, u64::from(RESET_VALUE));
    assert_eq!(
        handle(
            &mut v,
            out(RESET_PORT, 1),
            &mut st,
            &mut dev,
            &mem,
            &mut host
        ),
        Next::Stop(StopReason::Reboot)
    );
    assert!(!StopReason::PowerOff.is_crash() && !StopReason::Reboot.is_crash());
}

#[test]
fn rtc_answers_through_its_ports() {
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    dev.rtc = crate::devices::rtc::Rtc::new(host.unix_now());
    v.regs.set_gpr(reg::RAX, 0x0B);
    handle(
        &mut v,
        out(RTC_INDEX_PORT, 1),
        &mut st,
        &mut dev,
        &mem,
        &mut host,
    );
    handle(
        &mut v,
        inp(RTC_DATA_PORT, 1),
        &mut st,
        &mut dev,
        &mem,
        &mut host,
    );
    assert_eq!(v.regs.gpr(reg::RAX) & 0x02, 0x02, "24-hour mode by default");
    assert_eq!(dev.unassigned_io, 0);
}

/// Counts the log records whose message mentions string I/O (other tests may log meanwhile).
struct StringIoLogCounter(std::sync::atomic::AtomicUsize);

impl log::Log for StringIoLogCounter {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if alloc::format!("{}", record.args()).contains("string I/O") {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn flush(&self) {}
}

static STRING_IO_LOGS: StringIoLogCounter =
    StringIoLogCounter(std::sync::atomic::AtomicUsize::new(0));

/// Found by the hostile-dev guest: every INS/OUTS logged a warning, so a guest looping on
/// `rep outsb` flooded the serial line that every guest and the hypervisor share.
#[test]
fn string_io_is_counted_and_its_log_is_bounded() {
    if log::set_logger(&STRING_IO_LOGS).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    let (mut v, mut st, mut dev, mem, mut host) = setup();
    let outs = || {
        VmExit::Io(IoAccess {
            port: 0x7799,
            size: 1,
            is_in: false,
            is_string: true,
            is_rep: true,
        })
    };
    let before = STRING_IO_LOGS.0.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..100 {
        v.len = Some(2);
        let rip = v.rip;
        handle(&mut v, outs(), &mut st, &mut dev, &mem, &mut host);
        assert_eq!(v.rip, rip + 2, "the instruction is skipped");
    }
    let logged = STRING_IO_LOGS.0.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(dev.unassigned_io, 100);
    assert!(
        logged <= UNASSIGNED_LOG_LIMIT as usize,
        "{logged} log lines for 100 string I/O exits"
    );
}

/// A nested fault in the guest's page-table walk (a table placed on the local APIC page) is
/// not an access to the APIC: the load reads all-ones, and a store programs nothing. The same
/// GPA as the instruction's own access reaches the APIC.
#[test]
fn page_walk_faults_never_reach_the_device_under_the_table() {
    let (mut v, mut st, mut dev, _, mut host) = setup();
    let mem = VecGuestMemory::new(GuestPhysAddr::new(0), 0x2000);
    // mov eax, [rdi] ; mov [rdi], eax at 0x1000 (paging off: RIP is the guest-physical address).
    mem.write(GuestPhysAddr::new(0x1000), &[0x8b, 0x07, 0x89, 0x07])
        .unwrap();
    let version = crate::layout::LAPIC_BASE.as_u64() + 0x30;
    let npf = |is_write, is_walk| VmExit::NestedFault {
        gpa: GuestPhysAddr::new(version),
        is_write,
        is_fetch: false,
        is_walk,
    };
    v.regs.gprs[reg::RAX] = 0;
    let next = handle(&mut v, npf(false, true), &mut st, &mut dev, &mem, &mut host);
    assert!(matches!(next, Next::Resume));
    assert_eq!(v.regs.gprs[reg::RAX], 0xFFFF_FFFF, "walk read: all-ones");
    assert_eq!(v.rip, 0x1002);
    v.rip = 0x1000;
    handle(
        &mut v,
        npf(false, false),
        &mut st,
        &mut dev,
        &mem,
        &mut host,
    );
    let real = v.regs.gprs[reg::RAX];
    assert_ne!(real, 0xFFFF_FFFF, "the APIC version register itself");
    // A store through a table on the APIC's timer initial count must not start the timer.
    let initial_count = crate::layout::LAPIC_BASE.as_u64() + 0x380;
    v.rip = 0x1002;
    v.regs.gprs[reg::RAX] = 0x1000;
    let store = VmExit::NestedFault {
        gpa: GuestPhysAddr::new(initial_count),
        is_write: true,
        is_fetch: false,
        is_walk: true,
    };
    handle(&mut v, store, &mut st, &mut dev, &mem, &mut host);
    assert_eq!(v.rip, 0x1004);
    assert_eq!(
        st.lapic().mmio_read(0x380, host.tsc()),
        0,
        "timer untouched"
    );
}
