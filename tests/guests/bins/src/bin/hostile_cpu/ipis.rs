//! IPIs of every delivery mode aimed at APIC IDs this one-vCPU guest does not own, through the
//! xAPIC ICR (MMIO) and the x2APIC ICR (MSR 0x830). They must reach nobody: no fault but #GP,
//! no NMI or INIT back at this vCPU, no fixed vector pending here afterwards.

use guest_rt::apic::{self, reg, Mode};
use guest_rt::fault::catch;
use guest_rt::idt::GP;
use guest_rt::time::spin_ms;
use guest_rt::{println, Checks};

/// ICR fields (Intel SDM vol.3 §11.6.1): delivery mode bits 10:8, logical destination bit 11,
/// level assert bit 14, destination shorthand bits 19:18.
const MODE_SHIFT: u32 = 8;
const LOGICAL: u32 = 1 << 11;
const ASSERT: u32 = 1 << 14;
const ALL_BUT_SELF: u32 = 0b11 << 18;
/// Delivery modes 0..=7: fixed, lowest priority, SMI, reserved, NMI, INIT, start-up, ExtINT.
const DELIVERY_MODES: u32 = 8;
const MODE_STARTUP: u32 = 6;
/// The vector fixed and lowest-priority IPIs carry (start-up: page 0x40000).
const VECTOR: u8 = 0x40;
/// Physical xAPIC destinations other than this vCPU (ID 0). 0xFF is the xAPIC broadcast,
/// which includes this vCPU, so it is left out.
const XAPIC_DESTS: [u32; 11] = [1, 2, 3, 4, 5, 6, 7, 0x0F, 0x7F, 0x80, 0xFE];
/// x2APIC destinations: small and large IDs, the top of the 32-bit space but not its
/// broadcast 0xFFFF_FFFF.
const X2APIC_DESTS: [u32; 7] = [1, 2, 3, 0xFF, 0x100, 0xFFFF, 0xFFFF_FFFE];
/// How long to let anything that was delivered arrive.
const SETTLE_MS: u64 = 20;

/// Sends every mode to every destination in `dests`, plus logical 0xFF (nobody: this vCPU's
/// logical ID is 0) and the all-but-self shorthand. Returns sends attempted and the first
/// fault other than #GP.
fn blast(dests: &[u32], logical_all: u32) -> (u64, Option<(u32, u32, guest_rt::fault::Fault)>) {
    let mut sent = 0;
    let mut wrong = None;
    for mode in 0..DELIVERY_MODES {
        let vector = if mode == MODE_STARTUP {
            0x08
        } else {
            u32::from(VECTOR)
        };
        let low = (mode << MODE_SHIFT) | ASSERT | vector;
        let targets = dests
            .iter()
            .map(|&d| (low, d))
            .chain([(low | LOGICAL, logical_all), (low | ALL_BUT_SELF, 0)]);
        for (low, dest) in targets {
            sent += 1;
            // SAFETY: no target is this vCPU: `dests` leave out its ID 0, `logical_all` its
            // logical ID, and the shorthand is all-but-self. Delivery status is not judged.
            if let Err(f) = catch(|| unsafe { apic::send_icr(low, dest) }) {
                if f.vector != GP {
                    wrong.get_or_insert((low, dest, f));
                }
            }
        }
    }
    spin_ms(SETTLE_MS);
    (sent, wrong)
}

fn judge(checks: &mut Checks, name: &str, wrong: Option<(u32, u32, guest_rt::fault::Fault)>) {
    // A fixed or lowest-priority IPI that came back would wait in this vCPU's IRR (IF is 0).
    let pending = apic::bank_bit(reg::IRR0, VECTOR);
    match wrong {
        Some((low, dest, f)) => {
            checks.fail(name, format_args!("ICR {low:#x} to {dest:#x} raised {f}"))
        }
        None if pending => checks.fail(
            name,
            format_args!("vector {VECTOR:#x} is pending here: an IPI came back to the sender"),
        ),
        None => checks.pass(name),
    }
}

/// Runs the IPI cases; returns the number of IPIs sent.
pub(crate) fn check(checks: &mut Checks) -> u64 {
    let mut sent = 0;
    match apic::enable(Mode::XApic) {
        Ok(()) => {
            let (n, wrong) = blast(&XAPIC_DESTS, 0xFF);
            sent += n;
            judge(checks, "ipi-xapic", wrong);
            println!(
                "hostile-cpu: ipi-xapic: {n} IPIs, ESR {:#x}",
                apic::error_status()
            );
        }
        Err(e) => checks.fail("ipi-xapic", format_args!("cannot enable the xAPIC: {e}")),
    }
    if !apic::has_x2apic() {
        println!("hostile-cpu: x2APIC not offered; x2APIC IPIs skipped");
        return sent;
    }
    match apic::enable(Mode::X2Apic) {
        Ok(()) => {
            // Logical 0xFFFF_FFFF is the x2APIC broadcast; cluster 0 without member 0 (this vCPU)
            // reaches nobody here.
            let (n, wrong) = blast(&X2APIC_DESTS, 0x0000_FFFE);
            sent += n;
            judge(checks, "ipi-x2apic", wrong);
        }
        Err(e) => checks.fail("ipi-x2apic", format_args!("cannot enable the x2APIC: {e}")),
    }
    if let Err(e) = apic::enable(Mode::XApic) {
        checks.fail("ipi-x2apic", format_args!("back to xAPIC: {e}"));
    }
    sent
}
