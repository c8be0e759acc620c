//! Every MSR of the architectural ranges read and written back, then hostile values for the
//! MSRs that matter to isolation.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::cpu::{rdmsr, wrmsr};
use guest_rt::fault::{catch, Fault};
use guest_rt::idt::GP;
use guest_rt::{apic, println, Checks};

/// Ranges swept (inclusive): Intel's architectural MSRs, the hypervisor-defined range (KVM,
/// Hyper-V), AMD's/Intel's 0xC000_xxxx range and AMD's model-specific 0xC001_xxxx range.
const RANGES: [(u32, u32); 4] = [
    (0, 0x1FFF),
    (0x4000_0000, 0x4000_00FF),
    (0xC000_0000, 0xC000_1FFF),
    (0xC001_0000, 0xC001_1FFF),
];
/// MSRs whose value moves by itself, so a write-back does not read back equal: the TSC and
/// the x2APIC timer's current count.
const MOVING: [u32; 2] = [0x10, 0x839];
/// x2APIC registers whose write-back would send an IPI (ICR, SELF IPI) or end an interrupt
/// (EOI): left to the IPI cases.
const X2APIC_SIDE_EFFECTS: [u32; 3] = [0x80B, 0x830, 0x83F];

const MSR_FEATURE_CONTROL: u32 = 0x3A;
const MSR_MCG_STATUS: u32 = 0x17A;
const MSR_EFER: u32 = 0xC000_0080;
const MSR_FS_BASE: u32 = 0xC000_0100;
const MSR_VM_CR: u32 = 0xC001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
const AMD_MODEL_SPECIFIC: (u32, u32) = (0xC001_0000, 0xC001_0113);
/// EFER.SVME (AMD APM vol.2 §3.1.7) and a reserved EFER bit.
const EFER_SVME: u64 = 1 << 12;
const EFER_RESERVED: u64 = 1 << 20;
const APIC_BASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Addresses a guest might hope are the hypervisor's: where Bulkhead is linked (2 MiB host
/// physical), the first MiB, the top of a 52-bit space, a misaligned one.
const HOSTILE_PHYS: [u64; 5] = [0x20_0000, 0x1000, 0x000F_FFFF_FFFF_F000, 0x1234_5678, !0];

fn try_read(msr: u32) -> Result<u64, Fault> {
    // SAFETY: a missing or refused MSR raises #GP, which `catch` turns into an Err.
    catch(|| unsafe { rdmsr(msr) })
}

fn try_write(msr: u32, value: u64) -> Result<(), Fault> {
    // SAFETY: the caller writes back a value just read, or a hostile value it checks is
    // refused; a #GP becomes an Err.
    catch(|| unsafe { wrmsr(msr, value) })
}

/// What the sweep saw.
#[derive(Default)]
struct Sweep {
    readable: u32,
    written_back: u32,
    write_only: u32,
    accesses: u64,
    /// The first access that raised something other than #GP.
    wrong_fault: Option<(u32, &'static str, Fault)>,
    /// The first MSR that read back differently after writing back its own value.
    changed: Option<(u32, u64, u64)>,
}

impl Sweep {
    fn one(&mut self, msr: u32) {
        self.accesses += 2;
        match try_read(msr) {
            Ok(value) => {
                self.readable += 1;
                if X2APIC_SIDE_EFFECTS.contains(&msr) {
                    self.accesses -= 1;
                    return;
                }
                match try_write(msr, value) {
                    Ok(()) => {
                        self.written_back += 1;
                        self.accesses += 1;
                        let again = try_read(msr);
                        if again != Ok(value) && !MOVING.contains(&msr) && self.changed.is_none() {
                            self.changed = Some((msr, value, again.unwrap_or(!0)));
                        }
                    }
                    Err(f) => self.note_fault(msr, "write-back", f),
                }
            }
            Err(f) => {
                self.note_fault(msr, "read", f);
                // Write-only MSRs (PRED_CMD, BIOS_UPDT_TRIG) accept a zero; others refuse it.
                match try_write(msr, 0) {
                    Ok(()) => self.write_only += 1,
                    Err(f) => self.note_fault(msr, "write of 0", f),
                }
            }
        }
    }

    fn note_fault(&mut self, msr: u32, what: &'static str, f: Fault) {
        if f.vector != GP && self.wrong_fault.is_none() {
            self.wrong_fault = Some((msr, what, f));
        }
    }

    fn report(&self, checks: &mut Checks, name: &str) {
        println!(
            "hostile-cpu: {name}: {} readable, {} written back, {} write-only, {} accesses",
            self.readable, self.written_back, self.write_only, self.accesses
        );
        match (self.wrong_fault, self.changed) {
            (Some((msr, what, f)), _) => {
                checks.fail(name, format_args!("{what} of MSR {msr:#x} raised {f}"))
            }
            (None, Some((msr, was, now))) => checks.fail(
                name,
                format_args!("MSR {msr:#x} read {was:#x}, was written back and now reads {now:#x}"),
            ),
            (None, None) => checks.pass(name),
        }
    }
}

/// Reads and writes back every MSR of every range, in xAPIC mode and then (for the x2APIC
/// block 0x800..0x8FF) in x2APIC mode when offered. Returns the number of accesses.
pub(crate) fn sweep(checks: &mut Checks) -> u64 {
    let mut total = 0;
    for (first, last) in RANGES {
        let mut s = Sweep::default();
        for msr in first..=last {
            s.one(msr);
        }
        let name = match first {
            0 => "msr-sweep-0000",
            0x4000_0000 => "msr-sweep-4000",
            0xC000_0000 => "msr-sweep-c000",
            _ => "msr-sweep-c001",
        };
        s.report(checks, name);
        total += s.accesses;
    }
    if apic::has_x2apic() && apic::enable(apic::Mode::X2Apic).is_ok() {
        let mut s = Sweep::default();
        for msr in 0x800..=0x8FF {
            s.one(msr);
        }
        s.report(checks, "msr-sweep-x2apic");
        total += s.accesses;
        if let Err(e) = apic::enable(apic::Mode::XApic) {
            checks.fail("msr-sweep-x2apic", format_args!("back to xAPIC: {e}"));
        }
    } else {
        println!("hostile-cpu: x2APIC not offered; its MSR block was swept in xAPIC mode");
    }
    total
}

/// A hostile write that must raise #GP and leave the MSR as it was.
fn refused(checks: &mut Checks, name: &str, msr: u32, value: u64) {
    let before = try_read(msr);
    let write = try_write(msr, value);
    let after = try_read(msr);
    match write {
        Err(f) if f.vector == GP && after == before => checks.pass(name),
        Err(f) => checks.fail(
            name,
            format_args!("raised {f}; MSR {msr:#x} {before:x?} -> {after:x?}"),
        ),
        Ok(()) => checks.fail(
            name,
            format_args!("{value:#x} accepted; MSR {msr:#x} {before:x?} -> {after:x?}"),
        ),
    }
}

fn efer(checks: &mut Checks) {
    // SAFETY: EFER exists on every long-mode CPU.
    let efer = unsafe { rdmsr(MSR_EFER) };
    for (name, value) in [
        ("msr-hostile-efer-svme", efer | EFER_SVME),
        ("msr-hostile-efer-reserved", efer | EFER_RESERVED),
    ] {
        let write = try_write(MSR_EFER, value);
        // SAFETY: as above.
        let after = unsafe { rdmsr(MSR_EFER) };
        if after != efer {
            // SAFETY: puts back the value this guest has been running with.
            unsafe { wrmsr(MSR_EFER, efer) };
        }
        match write {
            Err(f) if f.vector == GP && after == efer => checks.pass(name),
            _ => checks.fail(
                name,
                format_args!("EFER {efer:#x} <- {value:#x}: {write:x?}, reads {after:#x}"),
            ),
        }
    }
}

/// APIC_BASE pointed elsewhere: the APIC must stay at its address (or the write be refused),
/// the guest's RAM at the new address must stay RAM, and nothing else may appear there.
fn apic_base(checks: &mut Checks) -> u64 {
    #[repr(C, align(4096))]
    struct Page([AtomicU64; 512]);
    static TARGET: Page = Page([const { AtomicU64::new(0) }; 512]);
    // Identity-mapped: the page's address is its guest-physical address.
    let target = &TARGET as *const Page as u64;
    let pattern = |i: usize| 0xA11C_E000_0000_0000 | i as u64;
    for (i, word) in TARGET.0.iter().enumerate() {
        word.store(pattern(i), Ordering::SeqCst);
    }
    let original = apic::base_msr();
    let mut attempts = 0;
    let mut problem = None;
    for base in HOSTILE_PHYS.iter().copied().chain([target]) {
        attempts += 1;
        let value = (base & APIC_BASE_ADDR_MASK) | (original & !APIC_BASE_ADDR_MASK);
        let write = try_write(apic::MSR_APIC_BASE, value);
        let now = apic::base_msr();
        let moved = now & APIC_BASE_ADDR_MASK != original & APIC_BASE_ADDR_MASK;
        let page_intact = TARGET
            .0
            .iter()
            .enumerate()
            .all(|(i, word)| word.load(Ordering::SeqCst) == pattern(i));
        // SAFETY: the xAPIC page is identity-mapped uncacheable by the boot stub; the version
        // register has no read side effects. Its low byte is the version (0x1X for an
        // integrated APIC); 0xFF means nothing answers at the xAPIC page any more.
        let version = unsafe {
            guest_rt::mmio::read32(apic::DEFAULT_XAPIC_BASE + u64::from(apic::reg::VERSION))
        } & 0xFF;
        if moved || !page_intact || version == 0xFF {
            problem.get_or_insert((base, write, now, page_intact, version));
        }
        let _ = try_write(apic::MSR_APIC_BASE, original);
    }
    match problem {
        None => checks.pass("msr-hostile-apic-base"),
        Some((base, write, now, intact, version)) => checks.fail(
            "msr-hostile-apic-base",
            format_args!(
                "APIC_BASE <- {base:#x}: {write:x?}, reads {now:#x}, RAM page intact {intact}, APIC version {version:#x}"
            ),
        ),
    }
    attempts * 3
}

/// A non-canonical FS base: hardware raises #GP (Intel SDM vol.4 IA32_FS_BASE, AMD APM vol.2
/// §4.5.3). The MSR is the guest's own (switched by the VMCB/VMCS), so an emulator that takes
/// the value (QEMU 7.2's TCG does) only harms the guest; the base is put back either way.
fn fs_base_noncanonical(checks: &mut Checks) {
    const NAME: &str = "msr-hostile-fs-base-noncanonical";
    let before = try_read(MSR_FS_BASE);
    match try_write(MSR_FS_BASE, NON_CANONICAL) {
        Err(f) if f.vector == GP => checks.pass(NAME),
        Err(f) => checks.fail(NAME, format_args!("raised {f}")),
        Ok(()) => {
            let restored = before.map(|v| try_write(MSR_FS_BASE, v));
            println!(
                "hostile-cpu: {NAME}: accepted (the guest's own MSR); restored: {restored:x?}"
            );
            checks.pass(NAME)
        }
    }
}

/// Hostile values for the MSRs that matter; returns the number of accesses.
pub(crate) fn hostile(checks: &mut Checks) -> u64 {
    let mut n = 0;
    efer(checks);
    n += 6;
    for (i, &pa) in HOSTILE_PHYS.iter().enumerate() {
        let name = [
            "msr-hostile-hsave-2m",
            "msr-hostile-hsave-low",
            "msr-hostile-hsave-top",
            "msr-hostile-hsave-odd",
            "msr-hostile-hsave-ones",
        ][i];
        refused(checks, name, MSR_VM_HSAVE_PA, pa);
        n += 3;
    }
    refused(checks, "msr-hostile-vm-cr-clear", MSR_VM_CR, 0);
    refused(checks, "msr-hostile-vm-cr-lock", MSR_VM_CR, 0x18);
    refused(
        checks,
        "msr-hostile-feature-control",
        MSR_FEATURE_CONTROL,
        0x7,
    );
    refused(checks, "msr-hostile-mcg-status", MSR_MCG_STATUS, 0x5);
    fs_base_noncanonical(checks);
    n += 15;
    let fc = try_read(MSR_FEATURE_CONTROL);
    checks.expect(
        "msr-hostile-feature-control-after",
        matches!(fc, Ok(v) if v & 1 != 0 && v & 0x6 == 0) || matches!(fc, Err(f) if f.vector == GP),
        format_args!("FEATURE_CONTROL reads {fc:x?} after the attempts: VMX on or unlocked"),
    );
    n += 1;
    n += apic_base(checks);
    // All-ones into every AMD model-specific MSR the hypervisor lets guests touch: accepted and
    // dropped, or refused; never a different fault.
    let (first, last) = AMD_MODEL_SPECIFIC;
    let mut wrong = None;
    for msr in first..=last {
        let before = try_read(msr);
        if let Err(f) = try_write(msr, !0) {
            if f.vector != GP {
                wrong.get_or_insert((msr, f));
            }
        }
        if let Ok(v) = before {
            let _ = try_write(msr, v);
        }
        n += 3;
    }
    match wrong {
        None => checks.pass("msr-hostile-amd-all-ones"),
        Some((msr, f)) => checks.fail(
            "msr-hostile-amd-all-ones",
            format_args!("MSR {msr:#x} raised {f}"),
        ),
    }
    n
}
