//! Interrupt messages between APICs: where they go, what they ask for, and how a local APIC
//! decides whether a message is addressed to it.
//!
//! The I/O APIC's redirection entries and the local APIC's ICR share the delivery-mode and
//! destination encodings (Intel SDM vol.3 §11.6.1, 82093AA datasheet §3.2.4), so both devices
//! describe their messages with these types and the VMM routes them with one function.

#![forbid(unsafe_code)]

/// Where an interrupt message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The APIC with this id (8 bits in xAPIC mode, 32 bits in x2APIC mode).
    Physical(u32),
    /// The APICs whose logical id matches this message destination address (SDM §11.6.2.2).
    Logical(u32),
    /// The sender only.
    SelfOnly,
    /// Every APIC of the guest, the sender included.
    AllIncludingSelf,
    /// Every APIC of the guest except the sender.
    AllExcludingSelf,
}

/// What an interrupt message asks the target to do (SDM §11.6.1, delivery mode field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Raise this vector.
    Fixed(u8),
    /// Raise this vector on the lowest-priority target (any one target is acceptable).
    LowestPriority(u8),
    /// System management interrupt (guests get no SMM; the VMM drops it).
    Smi,
    /// Non-maskable interrupt.
    Nmi,
    /// INIT: reset the target vCPU into wait-for-SIPI.
    Init,
    /// Start-up IPI: the target starts in real mode at `page << 12`.
    Startup(u8),
    /// The vector comes from an external 8259 PIC (I/O APIC only; Bulkhead has no PIC).
    ExtInt,
}

/// Delivery-mode field values.
const MODE_FIXED: u32 = 0b000;
const MODE_LOWEST: u32 = 0b001;
const MODE_SMI: u32 = 0b010;
const MODE_NMI: u32 = 0b100;
const MODE_INIT: u32 = 0b101;
const MODE_STARTUP: u32 = 0b110;
const MODE_EXTINT: u32 = 0b111;

impl DeliveryMode {
    /// Decodes the 3-bit delivery-mode field together with the vector field; `None` for the
    /// reserved encoding.
    pub fn decode(mode_field: u32, vector: u8) -> Option<Self> {
        Some(match mode_field & 0b111 {
            MODE_FIXED => Self::Fixed(vector),
            MODE_LOWEST => Self::LowestPriority(vector),
            MODE_SMI => Self::Smi,
            MODE_NMI => Self::Nmi,
            MODE_INIT => Self::Init,
            MODE_STARTUP => Self::Startup(vector),
            MODE_EXTINT => Self::ExtInt,
            _ => return None,
        })
    }

    /// The vector a fixed or lowest-priority message raises.
    pub fn vector(self) -> Option<u8> {
        match self {
            Self::Fixed(v) | Self::LowestPriority(v) => Some(v),
            _ => None,
        }
    }
}

/// An inter-processor interrupt written to the ICR, for the VMM to route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// Who receives it.
    pub dest: Destination,
    /// What it asks for.
    pub mode: DeliveryMode,
    /// The level bit: assert (true) or de-assert.
    pub level: bool,
    /// The trigger-mode bit: level (true) or edge.
    pub level_triggered: bool,
}

impl Ipi {
    /// An INIT level de-assert (SDM §11.6.1): a synchronisation message from the P6 era that
    /// current processors ignore. Linux still sends one after each INIT; the VMM drops it.
    pub fn is_init_deassert(&self) -> bool {
        self.mode == DeliveryMode::Init && self.level_triggered && !self.level
    }
}

/// The logical id an x2APIC derives from its APIC id: cluster in bits 31:16, one bit of
/// 16 in bits 15:0 (SDM §11.12.10.2).
pub fn x2apic_logical_id(apic_id: u32) -> u32 {
    ((apic_id >> 4) << 16) | (1 << (apic_id & 0xF))
}

/// xAPIC DFR model value for the flat model (SDM §11.6.2.2); 0 is the cluster model.
const DFR_MODEL_FLAT: u32 = 0xF;
/// xAPIC message destination address that addresses every APIC in either logical model.
const XAPIC_LOGICAL_BROADCAST: u32 = 0xFF;
/// x2APIC message destination address that addresses every APIC in logical mode.
const X2APIC_LOGICAL_BROADCAST: u32 = u32::MAX;

/// Whether a logical destination address selects an APIC with logical id `ldr` (the full
/// register value) and DFR model `dfr_model` (ignored in x2APIC mode).
pub(super) fn logical_match(mda: u32, ldr: u32, dfr_model: u32, is_x2apic: bool) -> bool {
    if is_x2apic {
        // SDM §11.12.10.2: cluster must match, then any of the 16 member bits.
        return mda == X2APIC_LOGICAL_BROADCAST
            || (mda >> 16 == ldr >> 16 && mda & ldr & 0xFFFF != 0);
    }
    let mda = mda & 0xFF;
    let logical_id = ldr >> 24;
    if mda == XAPIC_LOGICAL_BROADCAST {
        return true;
    }
    if dfr_model == DFR_MODEL_FLAT {
        mda & logical_id != 0
    } else {
        // Cluster model: cluster in bits 7:4, up to four members in bits 3:0.
        mda >> 4 == logical_id >> 4 && mda & logical_id & 0xF != 0
    }
}
