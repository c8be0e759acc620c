//! A minimal AML encoder (ACPI 6.5 §20, "ACPI Machine Language Specification") and resource
//! template builder (§6.4, "Resource Data Types for ACPI"): just what the DSDT needs.

use alloc::vec::Vec;

/// §20.2.5.1 / §20.2.5.2 opcodes.
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const NAME_OP: u8 = 0x08;
const BYTE_PREFIX: u8 = 0x0A;
const WORD_PREFIX: u8 = 0x0B;
const DWORD_PREFIX: u8 = 0x0C;
const STRING_PREFIX: u8 = 0x0D;
const QWORD_PREFIX: u8 = 0x0E;
const SCOPE_OP: u8 = 0x10;
const BUFFER_OP: u8 = 0x11;
const PACKAGE_OP: u8 = 0x12;
const EXT_OP_PREFIX: u8 = 0x5B;
const DEVICE_OP: u8 = 0x82;
/// §20.2.2: a NameString starting at the namespace root.
pub(crate) const ROOT_CHAR: u8 = b'\\';

/// A 4-character name segment (§20.2.2 NameSeg), e.g. `*b"_HID"`.
pub(crate) type NameSeg = [u8; 4];

/// PkgLength (§20.2.4): the encoded length counts its own bytes. One byte holds up to 63;
/// otherwise the lead byte's bits 7:6 give 1–3 following bytes, its bits 3:0 the low nibble.
pub(crate) fn pkg_length(content_len: usize) -> Vec<u8> {
    if content_len < 0x3F {
        return alloc::vec![(content_len + 1) as u8];
    }
    // Tables are size-checked against the ACPI region afterwards, so 3 following bytes (2^28)
    // are always enough for anything that gets written.
    let extra = (1..=3usize)
        .find(|&n| content_len + 1 + n < 1 << (4 + 8 * n))
        .unwrap_or(3);
    let total = content_len + 1 + extra;
    let mut out = Vec::with_capacity(1 + extra);
    out.push(((extra as u8) << 6) | (total & 0xF) as u8);
    for i in 0..extra {
        out.push((total >> (4 + 8 * i)) as u8);
    }
    out
}

fn with_pkg_length(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&pkg_length(body.len()));
    out.extend_from_slice(body);
}

/// DefScope := ScopeOp PkgLength NameString TermList.
pub(crate) fn scope(path: &[u8], terms: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(path.len() + terms.len());
    body.extend_from_slice(path);
    body.extend_from_slice(terms);
    let mut out = alloc::vec![SCOPE_OP];
    with_pkg_length(&mut out, &body);
    out
}

/// DefDevice := ExtOpPrefix DeviceOp PkgLength NameString TermList.
pub(crate) fn device(name: NameSeg, terms: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + terms.len());
    body.extend_from_slice(&name);
    body.extend_from_slice(terms);
    let mut out = alloc::vec![EXT_OP_PREFIX, DEVICE_OP];
    with_pkg_length(&mut out, &body);
    out
}

/// DefName := NameOp NameString DataRefObject.
pub(crate) fn name(name: NameSeg, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + value.len());
    out.push(NAME_OP);
    out.extend_from_slice(&name);
    out.extend_from_slice(value);
    out
}

/// String := StringPrefix AsciiCharList NullChar.
pub(crate) fn string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(STRING_PREFIX);
    out.extend(s.bytes().filter(|&b| b != 0 && b < 0x80));
    out.push(0);
    out
}

/// The shortest integer encoding (ZeroOp, OneOp or a sized prefix).
pub(crate) fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => alloc::vec![ZERO_OP],
        1 => alloc::vec![ONE_OP],
        v if v <= 0xFF => alloc::vec![BYTE_PREFIX, v as u8],
        v if v <= 0xFFFF => {
            let mut out = alloc::vec![WORD_PREFIX];
            out.extend_from_slice(&(v as u16).to_le_bytes());
            out
        }
        v if v <= 0xFFFF_FFFF => {
            let mut out = alloc::vec![DWORD_PREFIX];
            out.extend_from_slice(&(v as u32).to_le_bytes());
            out
        }
        v => {
            let mut out = alloc::vec![QWORD_PREFIX];
            out.extend_from_slice(&v.to_le_bytes());
            out
        }
    }
}

/// A compressed EISA ID (the `EisaId("PNP0501")` macro): three letters of 5 bits each, then
/// four hex digits, stored big-endian as a DWORD. `id` must be 3 uppercase letters and 4 hex
/// digits; callers pass constants.
pub(crate) const fn eisa_id(id: &[u8; 7]) -> u32 {
    const fn hex(c: u8) -> u32 {
        match c {
            b'0'..=b'9' => (c - b'0') as u32,
            b'A'..=b'F' => (c - b'A' + 10) as u32,
            _ => 0,
        }
    }
    // 'A' is 1.
    const fn letter(c: u8) -> u32 {
        (c.wrapping_sub(b'A' - 1) & 0x1F) as u32
    }
    let mfg = (letter(id[0]) << 10) | (letter(id[1]) << 5) | letter(id[2]);
    let product = (hex(id[3]) << 12) | (hex(id[4]) << 8) | (hex(id[5]) << 4) | hex(id[6]);
    let be = (mfg << 16) | product;
    be.swap_bytes()
}

/// DefBuffer := BufferOp PkgLength BufferSize ByteList.
pub(crate) fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut body = integer(bytes.len() as u64);
    body.extend_from_slice(bytes);
    let mut out = alloc::vec![BUFFER_OP];
    with_pkg_length(&mut out, &body);
    out
}

/// DefPackage := PackageOp PkgLength NumElements PackageElementList (at most 255 elements).
pub(crate) fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut body = alloc::vec![elements.len().min(0xFF) as u8];
    for e in elements.iter().take(0xFF) {
        body.extend_from_slice(e);
    }
    let mut out = alloc::vec![PACKAGE_OP];
    with_pkg_length(&mut out, &body);
    out
}

/// Builds a resource template buffer (§6.4) descriptor by descriptor.
pub(crate) struct ResourceTemplate {
    bytes: Vec<u8>,
}

/// §6.4.2.5 I/O port descriptor, "decodes 16-bit addresses" information bit.
const IO_TAG: u8 = 0x47;
const IO_DECODE_16: u8 = 0x01;
/// §6.4.2.1 IRQ descriptor without the information byte (edge, active-high, exclusive).
const IRQ_NO_FLAGS_TAG: u8 = 0x22;
/// §6.4.2.9 End tag.
const END_TAG: u8 = 0x79;
/// §6.4.3.4 32-bit fixed memory range descriptor.
const MEMORY32_FIXED_TAG: u8 = 0x86;
const MEMORY32_FIXED_LEN: u16 = 9;
const MEMORY_READ_WRITE: u8 = 0x01;
/// §6.4.3.6 Extended interrupt descriptor.
const EXT_IRQ_TAG: u8 = 0x89;
/// Flags byte, bit 0: consumer; bit 1: edge (else level); bit 2: active-low (else high);
/// bit 3: shared (else exclusive).
pub(crate) const EXT_IRQ_CONSUMER: u8 = 1 << 0;

impl ResourceTemplate {
    pub(crate) fn new() -> Self {
        Self { bytes: Vec::new() }
    }

    /// A fixed 16-bit I/O range `[base, base + len)`.
    pub(crate) fn io(mut self, base: u16, len: u8) -> Self {
        let [lo, hi] = base.to_le_bytes();
        self.bytes
            .extend_from_slice(&[IO_TAG, IO_DECODE_16, lo, hi, lo, hi, 1, len]);
        self
    }

    /// An ISA IRQ (0–15), edge-triggered active-high.
    pub(crate) fn irq_no_flags(mut self, irq: u8) -> Self {
        let mask = 1u16.checked_shl(u32::from(irq)).unwrap_or(0);
        let [lo, hi] = mask.to_le_bytes();
        self.bytes.extend_from_slice(&[IRQ_NO_FLAGS_TAG, lo, hi]);
        self
    }

    /// A read/write fixed memory range.
    pub(crate) fn memory32_fixed(mut self, base: u32, len: u32) -> Self {
        self.bytes.push(MEMORY32_FIXED_TAG);
        self.bytes
            .extend_from_slice(&MEMORY32_FIXED_LEN.to_le_bytes());
        self.bytes.push(MEMORY_READ_WRITE);
        self.bytes.extend_from_slice(&base.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self
    }

    /// One interrupt (a GSI) with the given `EXT_IRQ_*` flags.
    pub(crate) fn extended_interrupt(mut self, flags: u8, gsi: u32) -> Self {
        // Flags byte, count byte, one DWORD; no resource source.
        let len: u16 = 2 + 4;
        self.bytes.push(EXT_IRQ_TAG);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(&[flags, 1]);
        self.bytes.extend_from_slice(&gsi.to_le_bytes());
        self
    }

    /// The template with its end tag, whose checksum byte makes all bytes sum to zero.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.bytes.push(END_TAG);
        let sum = self.bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        self.bytes.push(0u8.wrapping_sub(sum));
        self.bytes
    }
}
