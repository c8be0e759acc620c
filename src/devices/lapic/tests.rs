//! The local APIC against a fake clock: TSC and timer both at 1 MHz unless a test says
//! otherwise, so one TSC tick is one timer tick before the divider.

use super::*;

const KHZ: u64 = 1000;

fn lapic(id: u32) -> Lapic {
    Lapic::new(id, KHZ, KHZ as u32)
}

/// An APIC the guest has switched on (SVR enable, spurious vector 0xFF).
fn enabled(id: u32) -> Lapic {
    let mut a = lapic(id);
    a.mmio_write(u64::from(REG_SVR), SVR_SOFTWARE_ENABLE | 0xFF, 0);
    a
}

fn x2(id: u32) -> Lapic {
    let mut a = enabled(id);
    a.set_mode(true, true);
    a
}

fn ipi(action: Option<ApicAction>) -> Ipi {
    match action {
        Some(ApicAction::Ipi(i)) => i,
        other => panic!("expected an IPI, got {other:?}"),
    }
}

#[test]
fn reset_values_and_round_trips() {
    let mut a = lapic(3);
    let r = |a: &Lapic, off: u32| a.mmio_read(u64::from(off), 0);
    assert_eq!(r(&a, REG_ID), 3 << 24);
    assert_eq!(r(&a, REG_VERSION), 0x0005_0014);
    assert_eq!(r(&a, REG_SVR), 0xFF);
    assert_eq!(r(&a, REG_DFR), 0xFFFF_FFFF);
    assert_eq!(r(&a, REG_LVT_TIMER), LVT_MASKED);
    assert_eq!(r(&a, REG_LVT_CMCI), LVT_MASKED);
    for (off, value, expect) in [
        (REG_TPR, 0x1234_5678, 0x78),
        (REG_LDR, 0x5A00_00FF, 0x5A00_0000),
        (REG_DFR, 0x0000_0000, 0x0FFF_FFFF),
        (REG_SVR, 0xFFFF_FFFF, 0x3FF),
        (REG_ICR_HIGH, 0xFFFF_FFFF, 0xFF00_0000),
        (REG_TIMER_DIVIDE, 0xFFFF_FFFF, 0xB),
        (REG_ID, 0x0700_0000, 0x0700_0000),
        (0x350, 0xFFFF_FFFF, 0x1_A7FF),
        (REG_LVT_TIMER, 0xFFFF_FFFF, 0x7_00FF),
        (REG_LVT_ERROR, 0xFFFF_FFFF, 0x1_00FF),
    ] {
        a.mmio_write(u64::from(off), value, 0);
        assert_eq!(r(&a, off), expect, "register {off:#x}");
    }
    for read_only in [
        REG_VERSION,
        REG_PPR,
        REG_ISR,
        REG_IRR + 0x70,
        REG_TIMER_CURRENT,
    ] {
        let before = r(&a, read_only);
        a.mmio_write(u64::from(read_only), 0xFFFF_FFFF, 0);
        assert_eq!(r(&a, read_only), before, "{read_only:#x} is read-only");
    }
    assert_eq!(r(&a, 0x3F0), 0, "SELF IPI is x2APIC only");
    assert_eq!(r(&a, 0x24), 0, "misaligned");
    assert_eq!(a.mmio_read(0x1_0000_0020, 0), 0, "outside the page");
}

#[test]
fn software_disable_masks_lvts() {
    let mut a = enabled(0);
    a.mmio_write(u64::from(REG_LVT_TIMER), 0x40, 0);
    assert_eq!(a.mmio_read(u64::from(REG_LVT_TIMER), 0), 0x40);
    a.mmio_write(u64::from(REG_SVR), 0xFF, 0);
    assert_eq!(a.mmio_read(u64::from(REG_LVT_TIMER), 0), 0x40 | LVT_MASKED);
    a.mmio_write(u64::from(REG_LVT_TIMER), 0x40, 0);
    assert_eq!(
        a.mmio_read(u64::from(REG_LVT_TIMER), 0),
        0x40 | LVT_MASKED,
        "mask sticks while disabled"
    );
    assert!(
        !a.accept(0x40, false),
        "disabled APIC drops fixed interrupts"
    );
}

#[test]
fn priority_follows_tpr_and_isr() {
    let mut a = enabled(0);
    assert_eq!(a.pending(), None);
    assert!(a.accept(0x31, false));
    assert!(a.accept(0x52, false));
    assert_eq!(a.pending(), Some(0x52), "highest IRR first");
    a.ack(0x52);
    assert_eq!(a.ppr(), 0x50);
    assert_eq!(a.pending(), None, "0x31 is below the in-service class");
    assert!(a.accept(0x5F, false));
    assert_eq!(
        a.pending(),
        None,
        "same class as in service does not preempt"
    );
    assert!(a.accept(0x60, false));
    assert_eq!(a.pending(), Some(0x60));
    a.mmio_write(u64::from(REG_TPR), 0x70, 0);
    assert_eq!(a.ppr(), 0x70);
    assert_eq!(a.pending(), None, "TPR holds back class 6");
    a.mmio_write(u64::from(REG_TPR), 0x00, 0);
    a.ack(0x60);
    assert_eq!(
        a.mmio_write(u64::from(REG_EOI), 0, 0),
        None,
        "edge-triggered EOI"
    );
    assert_eq!(
        a.mmio_read(u64::from(REG_ISR + 0x20), 0),
        1 << (0x52 - 64),
        "only 0x52 still in service"
    );
    a.mmio_write(u64::from(REG_EOI), 0, 0);
    assert_eq!(a.ppr(), 0);
    assert_eq!(a.pending(), Some(0x5F));
    assert_eq!(a.mmio_read(u64::from(REG_IRR + 0x20), 0), 1 << (0x5F - 64));
}

#[test]
fn apr_and_ppr_registers() {
    let mut a = enabled(0);
    a.set_tpr(0x25);
    assert_eq!(a.mmio_read(u64::from(REG_PPR), 0), 0x25);
    assert_eq!(a.mmio_read(u64::from(REG_APR), 0), 0x25);
    a.accept(0x80, false);
    assert_eq!(
        a.mmio_read(u64::from(REG_APR), 0),
        0x80,
        "pending class above TPR"
    );
    a.ack(0x80);
    assert_eq!(a.mmio_read(u64::from(REG_PPR), 0), 0x80);
}

#[test]
fn level_triggered_eoi_is_forwarded() {
    let mut a = enabled(0);
    a.accept(0x41, true);
    a.accept(0x40, false);
    assert_eq!(a.mmio_read(u64::from(REG_TMR + 0x20), 0), 1 << 1);
    a.ack(0x41);
    a.ack(0x40);
    assert_eq!(
        a.mmio_write(u64::from(REG_EOI), 0, 0),
        Some(ApicAction::IoApicEoi(0x41))
    );
    assert_eq!(a.mmio_write(u64::from(REG_EOI), 0, 0), None);
    assert_eq!(
        a.mmio_write(u64::from(REG_EOI), 0, 0),
        None,
        "nothing in service"
    );
}

#[test]
fn illegal_vectors_set_esr() {
    let mut a = enabled(0);
    assert!(!a.accept(15, false));
    assert_eq!(a.pending(), None);
    assert_eq!(
        a.mmio_read(u64::from(REG_ESR), 0),
        0,
        "latched only by a write"
    );
    a.mmio_write(u64::from(REG_ESR), 0, 0);
    assert_eq!(
        a.mmio_read(u64::from(REG_ESR), 0),
        ESR_RECEIVE_ILLEGAL_VECTOR
    );
    // Send side, with the error LVT unmasked: no IPI, the error vector is raised instead.
    a.mmio_write(u64::from(REG_LVT_ERROR), 0xFE, 0);
    assert_eq!(a.mmio_write(u64::from(REG_ICR_LOW), 0x0000_0005, 0), None);
    a.mmio_write(u64::from(REG_ESR), 0, 0);
    assert_eq!(a.mmio_read(u64::from(REG_ESR), 0), ESR_SEND_ILLEGAL_VECTOR);
    assert_eq!(a.pending(), Some(0xFE));
    a.mmio_write(u64::from(REG_ESR), 0, 0);
    assert_eq!(a.mmio_read(u64::from(REG_ESR), 0), 0, "a write clears");
}

#[test]
fn icr_decodes_every_mode_and_shorthand() {
    let mut a = enabled(0);
    let mut send = |high: u32, low: u32| {
        a.mmio_write(u64::from(REG_ICR_HIGH), high, 0);
        a.mmio_write(u64::from(REG_ICR_LOW), low, 0)
    };
    let i = ipi(send(0x0300_0000, 0x0000_4031));
    assert_eq!(
        i,
        Ipi {
            dest: Destination::Physical(3),
            mode: DeliveryMode::Fixed(0x31),
            level: true,
            level_triggered: false
        }
    );
    assert_eq!(
        ipi(send(0x0C00_0000, 0x0000_0932)).dest,
        Destination::Logical(0x0C)
    );
    assert_eq!(
        ipi(send(0x0C00_0000, 0x0000_0132)).mode,
        DeliveryMode::LowestPriority(0x32)
    );
    assert_eq!(
        ipi(send(0xFF00_0000, 0x0000_0033)).dest,
        Destination::AllIncludingSelf,
        "physical 0xFF broadcasts"
    );
    assert_eq!(ipi(send(0, 0x0004_0034)).dest, Destination::SelfOnly);
    assert_eq!(
        ipi(send(0, 0x0008_0035)).dest,
        Destination::AllIncludingSelf
    );
    assert_eq!(
        ipi(send(0, 0x000C_0036)).dest,
        Destination::AllExcludingSelf
    );
    assert_eq!(ipi(send(0x0100_0000, 0x0000_4400)).mode, DeliveryMode::Nmi);
    assert_eq!(ipi(send(0x0100_0000, 0x0000_0200)).mode, DeliveryMode::Smi);
    let init = ipi(send(0x0100_0000, 0x0000_C500));
    assert_eq!(
        (
            init.mode,
            init.level,
            init.level_triggered,
            init.is_init_deassert()
        ),
        (DeliveryMode::Init, true, true, false)
    );
    assert!(ipi(send(0x0100_0000, 0x0000_8500)).is_init_deassert());
    assert_eq!(
        ipi(send(0x0100_0000, 0x0000_4608)).mode,
        DeliveryMode::Startup(0x08),
        "vector < 16 is fine for SIPI"
    );
    assert_eq!(send(0x0100_0000, 0x0000_0330), None, "reserved mode");
    assert_eq!(send(0x0100_0000, 0x0000_0730), None, "ExtINT is not an IPI");
    assert_eq!(
        a.mmio_read(u64::from(REG_ICR_LOW), 0),
        0x730,
        "delivery status reads idle"
    );
}

#[test]
fn destinations_match_ids() {
    let mut a = enabled(2);
    assert!(a.is_target(Destination::Physical(2), false));
    assert!(!a.is_target(Destination::Physical(3), false));
    assert!(a.is_target(Destination::SelfOnly, true) && !a.is_target(Destination::SelfOnly, false));
    assert!(
        a.is_target(Destination::AllExcludingSelf, false)
            && !a.is_target(Destination::AllExcludingSelf, true)
    );
    assert!(a.is_target(Destination::AllIncludingSelf, true));
    // Flat model: logical id is a bit mask.
    a.mmio_write(u64::from(REG_LDR), 0x0400_0000, 0);
    assert!(a.is_target(Destination::Logical(0x06), false));
    assert!(!a.is_target(Destination::Logical(0x03), false));
    assert!(a.is_target(Destination::Logical(0xFF), false));
    // Cluster model: cluster 1, member bit 2.
    a.mmio_write(u64::from(REG_DFR), 0x0FFF_FFFF, 0);
    a.mmio_write(u64::from(REG_LDR), 0x1400_0000, 0);
    assert!(a.is_target(Destination::Logical(0x1C), false));
    assert!(
        !a.is_target(Destination::Logical(0x2C), false),
        "other cluster"
    );
    assert!(
        !a.is_target(Destination::Logical(0x13), false),
        "other members"
    );
    // x2APIC: full ids, derived logical id.
    let b = x2(0x123);
    assert!(b.is_target(Destination::Physical(0x123), false));
    assert!(!b.is_target(Destination::Physical(0x23), false));
    assert_eq!(x2apic_logical_id(0x123), 0x0012_0008);
    assert!(b.is_target(Destination::Logical(0x0012_0009), false));
    assert!(!b.is_target(Destination::Logical(0x0013_0008), false));
    assert!(b.is_target(Destination::Logical(u32::MAX), false));
    let mut c = lapic(0);
    c.set_mode(false, false);
    assert!(
        !c.is_target(Destination::AllIncludingSelf, false),
        "disabled APIC hears nothing"
    );
}

#[test]
fn x2apic_msr_view() {
    let mut a = x2(0x1_0005);
    let msr = |off: u32| MSR_X2APIC_FIRST + off / 16;
    assert_eq!(a.msr_read(msr(REG_ID), 0), Ok(0x1_0005));
    assert_eq!(
        a.msr_read(msr(REG_LDR), 0),
        Ok(u64::from(x2apic_logical_id(0x1_0005)))
    );
    assert_eq!(a.msr_read(msr(REG_VERSION), 0), Ok(0x0005_0014));
    assert_eq!(a.msr_write(msr(REG_TPR), 0x20, 0), Ok(None));
    assert_eq!(a.msr_read(msr(REG_TPR), 0), Ok(0x20));
    assert_eq!(
        a.mmio_read(u64::from(REG_TPR), 0),
        u32::MAX,
        "no MMIO in x2APIC mode"
    );
    assert_eq!(a.mmio_write(u64::from(REG_TPR), 0, 0), None);
    let i = ipi(a.msr_write(0x830, 0x0000_0007_0000_0041, 0).unwrap());
    assert_eq!(i.dest, Destination::Physical(7));
    assert_eq!(a.msr_read(0x830, 0), Ok(0x0000_0007_0000_0041));
    assert_eq!(
        ipi(a.msr_write(0x830, 0xFFFF_FFFF_0000_0041, 0).unwrap()).dest,
        Destination::AllIncludingSelf
    );
    assert_eq!(
        ipi(a.msr_write(0x830, 0x0000_0100_0000_0841, 0).unwrap()).dest,
        Destination::Logical(0x100)
    );
    // #GP rules.
    for (m, fault) in [
        (msr(REG_EOI), ApicFault::WriteOnly(0x80B)),
        (0x83F, ApicFault::WriteOnly(0x83F)),
        (msr(REG_APR), ApicFault::Reserved(0x809)),
        (msr(REG_DFR), ApicFault::Reserved(0x80E)),
        (0x831, ApicFault::Reserved(0x831)),
        (0x804, ApicFault::Reserved(0x804)),
        (0x8FF, ApicFault::Reserved(0x8FF)),
    ] {
        assert_eq!(a.msr_read(m, 0), Err(fault));
    }
    for (m, value, fault) in [
        (msr(REG_ID), 0, ApicFault::ReadOnly(0x802)),
        (msr(REG_LDR), 0, ApicFault::ReadOnly(0x80D)),
        (msr(REG_PPR), 0, ApicFault::ReadOnly(0x80A)),
        (msr(REG_ISR), 0, ApicFault::ReadOnly(0x810)),
        (msr(REG_IRR + 0x70), 0, ApicFault::ReadOnly(0x827)),
        (msr(REG_TIMER_CURRENT), 0, ApicFault::ReadOnly(0x839)),
        (msr(REG_EOI), 1, ApicFault::ReservedBits(0x80B)),
        (msr(REG_ESR), 1, ApicFault::ReservedBits(0x828)),
        (msr(REG_TPR), 1 << 32, ApicFault::ReservedBits(0x808)),
        (0x83F, 0x100, ApicFault::ReservedBits(0x83F)),
        (msr(REG_DFR), 0, ApicFault::Reserved(0x80E)),
        (0x8FF, 0, ApicFault::Reserved(0x8FF)),
    ] {
        assert_eq!(a.msr_write(m, value, 0), Err(fault), "wrmsr {m:#x}");
    }
    assert_eq!(a.msr_read(0x10, 0), Err(ApicFault::NotApicMsr(0x10)));
    assert_eq!(
        lapic(0).msr_read(msr(REG_ID), 0),
        Err(ApicFault::NotX2Apic(0x802))
    );
}

#[test]
fn x2apic_self_ipi_and_eoi() {
    let mut a = x2(1);
    assert_eq!(a.msr_write(0x83F, 0x45, 0), Ok(None));
    assert_eq!(a.pending(), Some(0x45));
    a.ack(0x45);
    assert_eq!(a.msr_read(0x810 + 0x45 / 32, 0), Ok(1 << (0x45 % 32)));
    assert_eq!(a.msr_write(0x80B, 0, 0), Ok(None));
    assert_eq!(a.msr_read(0x812, 0), Ok(0));
    a.msr_write(0x83F, 3, 0).unwrap();
    a.msr_write(0x828, 0, 0).unwrap();
    assert_eq!(a.msr_read(0x828, 0), Ok(u64::from(ESR_SEND_ILLEGAL_VECTOR)));
}

#[test]
fn mode_switches() {
    let mut a = enabled(4);
    a.mmio_write(u64::from(REG_LDR), 0x0100_0000, 0);
    a.accept(0x50, false);
    a.set_mode(true, true);
    assert_eq!(a.mode(), ApicMode::X2Apic);
    assert_eq!(a.msr_read(0x80D, 0), Ok(u64::from(x2apic_logical_id(4))));
    assert_eq!(a.pending(), Some(0x50), "xAPIC → x2APIC keeps state");
    a.set_mode(false, false);
    assert_eq!(a.mode(), ApicMode::Disabled);
    assert_eq!(a.pending(), None);
    assert_eq!(a.mmio_read(u64::from(REG_ID), 0), u32::MAX);
    a.set_mode(true, false);
    assert_eq!(
        a.mmio_read(u64::from(REG_SVR), 0),
        0xFF,
        "re-enabled at power-up state"
    );
    assert_eq!(a.mmio_read(u64::from(REG_LDR), 0), 0);
    a.mmio_write(u64::from(REG_SVR), 0x1FF, 0);
    a.accept(0x50, false);
    a.init_reset();
    assert_eq!((a.pending(), a.mode(), a.id()), (None, ApicMode::XApic, 4));
}
