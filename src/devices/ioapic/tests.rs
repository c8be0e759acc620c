//! The I/O APIC through its register window and its lines.

use super::*;

const LEVEL: u32 = 1 << 15;
const MASKED: u32 = 1 << 16;
const LOGICAL: u32 = 1 << 11;

fn write_reg(io: &mut IoApic, index: u8, value: u32) -> Vec<Delivery> {
    io.mmio_write(IOREGSEL, u32::from(index));
    io.mmio_write(IOWIN, value)
}

fn read_reg(io: &mut IoApic, index: u8) -> u32 {
    io.mmio_write(IOREGSEL, u32::from(index));
    io.mmio_read(IOWIN)
}

/// Programs entry `pin` (destination APIC id in the high dword).
fn program(io: &mut IoApic, pin: u8, low: u32, dest: u32) -> Vec<Delivery> {
    write_reg(io, REG_REDIRECTION + 2 * pin + 1, dest << 24);
    write_reg(io, REG_REDIRECTION + 2 * pin, low)
}

fn fixed(dest: u32, vector: u8, level_triggered: bool) -> Delivery {
    Delivery {
        dest: Destination::Physical(dest),
        mode: DeliveryMode::Fixed(vector),
        level_triggered,
    }
}

#[test]
fn registers() {
    let mut io = IoApic::new(0x12);
    assert_eq!(read_reg(&mut io, REG_ID), 0x0200_0000, "4-bit id");
    write_reg(&mut io, REG_ID, 0xFFFF_FFFF);
    assert_eq!(read_reg(&mut io, REG_ID), 0x0F00_0000);
    assert_eq!(read_reg(&mut io, REG_ARBITRATION), 0x0F00_0000);
    assert_eq!(
        read_reg(&mut io, REG_VERSION),
        0x0020 | ((IOAPIC_PINS - 1) << 16)
    );
    write_reg(&mut io, REG_VERSION, 0);
    assert_eq!(
        read_reg(&mut io, REG_VERSION),
        0x0020 | ((IOAPIC_PINS - 1) << 16),
        "read-only"
    );
    assert_eq!(io.mmio_read(IOREGSEL), u32::from(REG_VERSION));
    for pin in 0..IOAPIC_PINS as u8 {
        assert_eq!(
            read_reg(&mut io, REG_REDIRECTION + 2 * pin),
            MASKED,
            "entry {pin} masked at reset"
        );
    }
    write_reg(&mut io, REG_REDIRECTION + 6, 0xFFFF_FFFF);
    assert_eq!(
        read_reg(&mut io, REG_REDIRECTION + 6),
        0x0001_AFFF,
        "delivery status and remote IRR read-only"
    );
    write_reg(&mut io, REG_REDIRECTION + 7, 0xFFFF_FFFF);
    assert_eq!(read_reg(&mut io, REG_REDIRECTION + 7), 0xFF00_0000);
    let past_end = REG_REDIRECTION + 2 * IOAPIC_PINS as u8;
    assert!(write_reg(&mut io, past_end, 0x30).is_empty());
    assert_eq!(read_reg(&mut io, past_end), 0);
    assert_eq!(read_reg(&mut io, 0xFF), 0);
    assert!(io.mmio_write(0x20, 1).is_empty());
    assert_eq!(io.mmio_read(0x20), 0);
}

#[test]
fn edge_lines_deliver_on_rising_edges() {
    let mut io = IoApic::new(0);
    program(&mut io, 4, 0x31, 1);
    assert_eq!(io.set_line(4, true), Some(fixed(1, 0x31, false)));
    assert_eq!(io.set_line(4, true), None, "no edge");
    assert_eq!(io.set_line(4, false), None);
    assert_eq!(io.set_line(4, true), Some(fixed(1, 0x31, false)));
    // Masked edges are lost, and unmasking does not replay them.
    program(&mut io, 4, 0x31 | MASKED, 1);
    io.set_line(4, false);
    assert_eq!(io.set_line(4, true), None);
    assert!(program(&mut io, 4, 0x31, 1).is_empty());
}

#[test]
fn level_lines_wait_for_eoi() {
    let mut io = IoApic::new(0);
    program(&mut io, 16, 0x40 | LEVEL | LOGICAL, 0x03);
    let d = Delivery {
        dest: Destination::Logical(3),
        mode: DeliveryMode::Fixed(0x40),
        level_triggered: true,
    };
    assert_eq!(io.set_line(16, true), Some(d));
    assert_eq!(
        read_reg(&mut io, REG_REDIRECTION + 32) & (1 << 14),
        1 << 14,
        "remote IRR set"
    );
    assert_eq!(io.set_line(16, true), None, "blocked by remote IRR");
    assert_eq!(io.eoi(0x41), vec![], "other vector");
    assert_eq!(io.eoi(0x40), vec![d], "still asserted: delivered again");
    io.set_line(16, false);
    assert_eq!(
        io.mmio_write(IOEOI, 0x40),
        vec![],
        "EOI register; line low now"
    );
    assert_eq!(
        read_reg(&mut io, REG_REDIRECTION + 32) & (1 << 14),
        0,
        "remote IRR clear"
    );
    assert_eq!(io.set_line(16, true), Some(d));
}

#[test]
fn masked_level_line_delivers_when_unmasked() {
    let mut io = IoApic::new(0);
    program(&mut io, 17, 0x50 | LEVEL | MASKED, 2);
    assert_eq!(io.set_line(17, true), None);
    assert_eq!(
        program(&mut io, 17, 0x50 | LEVEL, 2),
        vec![fixed(2, 0x50, true)]
    );
    // Deasserted before unmasking: nothing.
    program(&mut io, 18, 0x51 | LEVEL | MASKED, 2);
    io.set_line(18, true);
    io.set_line(18, false);
    assert!(program(&mut io, 18, 0x51 | LEVEL, 2).is_empty());
}

#[test]
fn switching_to_edge_clears_remote_irr() {
    let mut io = IoApic::new(0);
    program(&mut io, 5, 0x60 | LEVEL, 0);
    assert!(io.set_line(5, true).is_some());
    program(&mut io, 5, 0x60, 0);
    assert_eq!(read_reg(&mut io, REG_REDIRECTION + 10) & (1 << 14), 0);
    program(&mut io, 5, 0x60 | LEVEL, 0);
    assert_eq!(
        read_reg(&mut io, REG_REDIRECTION + 10) & (1 << 14),
        1 << 14,
        "redelivered: line is high"
    );
}

#[test]
fn delivery_modes_and_destinations() {
    let mut io = IoApic::new(0);
    for (mode_bits, expect) in [
        (0b001, Some(DeliveryMode::LowestPriority(0x70))),
        (0b010, Some(DeliveryMode::Smi)),
        (0b100, Some(DeliveryMode::Nmi)),
        (0b101, Some(DeliveryMode::Init)),
        (0b111, Some(DeliveryMode::ExtInt)),
        (0b011, None),
        (0b110, None),
    ] {
        program(&mut io, 1, 0x70 | (mode_bits << 8), 4);
        io.set_line(1, false);
        assert_eq!(
            io.set_line(1, true).map(|d| d.mode),
            expect,
            "mode {mode_bits:#b}"
        );
    }
    program(&mut io, 2, 0x71, 0xFF);
    assert_eq!(
        io.set_line(2, true).map(|d| d.dest),
        Some(Destination::AllIncludingSelf),
        "physical broadcast"
    );
}

#[test]
fn out_of_range_lines_are_ignored() {
    let mut io = IoApic::new(0);
    for gsi in [IOAPIC_PINS, 255, u32::MAX] {
        assert_eq!(io.set_line(gsi, true), None);
    }
    assert!(io.eoi(0).is_empty());
}
