//! Where the hostile DMA requests point, and the requests themselves: virtio-blk reads (the
//! device would write the target), writes (it would read it into the disk), header and status
//! descriptors, and virtio-net transmit (it would read the target onto the switch) and receive
//! (it would write a frame there), each aimed at guest-physical addresses this guest does not
//! own.

use core::fmt;

use crate::dev::{write_desc, Dev, Observation, DESC_NEXT, DESC_WRITE};

/// virtio-blk request types and status (virtio 1.2 §5.2.6).
pub(crate) const BLK_T_IN: u32 = 0;
pub(crate) const BLK_T_OUT: u32 = 1;
pub(crate) const BLK_S_IOERR: u8 = 1;
const BLK_HEADER_BYTES: u32 = 16;
pub(crate) const SECTOR_BYTES: u32 = 512;
/// The sector every blk case reads or writes; set up with a pattern first.
pub(crate) const CASE_SECTOR: u64 = 1;
/// virtio-net header (with VERSION_1) and the whole receive buffer.
pub(crate) const NET_HDR_BYTES: u32 = 12;
pub(crate) const FRAME_BYTES: u32 = 60;
pub(crate) const RX_BUFFER_BYTES: u32 = 1526;
/// Bytes a blk data case moves.
const DATA_BYTES: u32 = SECTOR_BYTES;

/// A guest-physical address that is not this guest's RAM (or only partly).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub name: &'static str,
    pub addr: u64,
    /// `addr` is a boundary the buffer straddles: half of it before, half after.
    pub is_straddle: bool,
    /// The byte below the boundary is this guest's RAM.
    pub is_ram_below: bool,
}

impl Target {
    /// Where a buffer of `len` bytes starts for this target.
    pub(crate) fn addr_for(&self, len: u32) -> u64 {
        if self.is_straddle && len < 2 {
            // One byte cannot straddle: put it on the side that is not RAM.
            self.addr.wrapping_sub(u64::from(!self.is_ram_below))
        } else if self.is_straddle {
            self.addr.wrapping_sub(u64::from(len / 2))
        } else {
            self.addr
        }
    }
}

/// The targets for a guest whose RAM ends at `ram_end` (one contiguous block from 0, below
/// 3 GiB): past RAM, straddling its end, the PCI hole, its own and other device windows, the
/// I/O and local APICs, straddling 4 GiB, the start of high RAM, far above it, and a buffer
/// whose end wraps past 2^64 into low RAM.
pub(crate) fn targets(ram_end: u64) -> [Target; 17] {
    [
        t("ram-end", ram_end),
        straddle("straddle-ram-end", ram_end, true),
        t("ram-end+16M", ram_end + (16 << 20)),
        t("1G", 0x4000_0000),
        t("below-hole", 0xBFFF_F000),
        t("hole-start", 0xC000_0000),
        t("own-virtio-window", 0xD000_0000),
        t("own-virtio-config", 0xD000_0100),
        t("next-virtio-slot", 0xD000_F000),
        t("ioapic", 0xFEC0_0000),
        t("lapic", 0xFEE0_0000),
        straddle("straddle-4g", 1 << 32, false),
        t("4g", 0x1_0000_0000),
        t("64g", 0x10_0000_0000),
        t("2^46", 1 << 46),
        t("2^63", 1 << 63),
        straddle("wrap-2^64", 0, false),
    ]
}

const fn t(name: &'static str, addr: u64) -> Target {
    Target {
        name,
        addr,
        is_straddle: false,
        is_ram_below: false,
    }
}

const fn straddle(name: &'static str, boundary: u64, is_ram_below: bool) -> Target {
    Target {
        name,
        addr: boundary,
        is_straddle: true,
        is_ram_below,
    }
}

/// What a request did with its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// blk IN with the data buffer at the target: the device would write it.
    BlkReadInto,
    /// blk OUT with the data buffer at the target: the device would read it into the disk.
    BlkWriteFrom,
    /// The request header at the target.
    BlkHeader,
    /// The status byte at the target.
    BlkStatus,
    /// net transmit of a frame at the target.
    NetTx,
    /// net transmit: header in RAM, frame at the target.
    NetTxSplit,
    /// net receive buffer at the target, a frame sent to it.
    NetRx,
}

pub(crate) const BLK_OPS: [Op; 4] = [
    Op::BlkReadInto,
    Op::BlkWriteFrom,
    Op::BlkHeader,
    Op::BlkStatus,
];
pub(crate) const NET_OPS: [Op; 3] = [Op::NetTx, Op::NetTxSplit, Op::NetRx];

impl Op {
    /// Length of the descriptor that points at the target.
    pub(crate) fn target_len(self) -> u32 {
        match self {
            Self::BlkReadInto | Self::BlkWriteFrom => DATA_BYTES,
            Self::BlkHeader => BLK_HEADER_BYTES,
            Self::BlkStatus => 1,
            Self::NetTx => NET_HDR_BYTES + FRAME_BYTES,
            Self::NetTxSplit => FRAME_BYTES,
            Self::NetRx => RX_BUFFER_BYTES,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BlkReadInto => "blk-read-into",
            Self::BlkWriteFrom => "blk-write-from",
            Self::BlkHeader => "blk-header",
            Self::BlkStatus => "blk-status",
            Self::NetTx => "net-tx",
            Self::NetTxSplit => "net-tx-split",
            Self::NetRx => "net-rx",
        })
    }
}

fn write32(addr: u64, v: u32) {
    // SAFETY: `addr` is in this driver's own DMA-pool header page.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

fn write64(addr: u64, v: u64) {
    // SAFETY: as for write32.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// Writes a blk request of `kind` for [`CASE_SECTOR`] whose parts lie at `header`, `data` and
/// `status`; the header (when in RAM) is filled in, the status byte reset. Submits it.
pub(crate) fn submit_blk(dev: &mut Dev, kind: u32, header: u64, data: u64, status: u64) {
    let own_header = dev.mem.header;
    write32(own_header, kind);
    write32(own_header + 4, 0);
    write64(own_header + 8, CASE_SECTOR);
    crate::dev::write8(own_header + u64::from(BLK_HEADER_BYTES), 0xFF);
    let table = dev.mem.desc;
    let data_flags = if kind == BLK_T_IN { DESC_WRITE } else { 0 };
    write_desc(table, 0, header, BLK_HEADER_BYTES, DESC_NEXT, 1);
    write_desc(table, 1, data, DATA_BYTES, data_flags | DESC_NEXT, 2);
    write_desc(table, 2, status, 1, DESC_WRITE, 0);
    dev.publish(0);
    dev.notify();
}

/// The address of the status byte in the driver's own header page.
pub(crate) fn own_status(dev: &Dev) -> u64 {
    dev.mem.header + u64::from(BLK_HEADER_BYTES)
}

/// Writes a broadcast test frame (EtherType 0x88B5, local experimental) with its virtio-net
/// header into `at` and returns its length.
pub(crate) fn write_frame(at: u64, tag: u8) -> u32 {
    let len = NET_HDR_BYTES + FRAME_BYTES;
    // SAFETY: `at` is a page of this driver's own DMA pool.
    unsafe { core::ptr::write_bytes(at as *mut u8, 0, len as usize) };
    for i in 0..6 {
        crate::dev::write8(at + u64::from(NET_HDR_BYTES) + i, 0xFF);
    }
    crate::dev::write8(at + u64::from(NET_HDR_BYTES) + 6, 0x02);
    crate::dev::write8(at + u64::from(NET_HDR_BYTES) + 12, 0x88);
    crate::dev::write8(at + u64::from(NET_HDR_BYTES) + 13, 0xB5);
    crate::dev::write8(at + u64::from(NET_HDR_BYTES) + 14, tag);
    len
}

/// Submits one transmit chain on `tx`: the whole frame at `frame`, or (split) the header from
/// the driver's own page and the frame at `frame`.
pub(crate) fn submit_tx(tx: &mut Dev, frame: u64, is_split: bool) {
    let table = tx.mem.desc;
    write_frame(tx.mem.header, 0x77);
    if is_split {
        write_desc(table, 0, tx.mem.header, NET_HDR_BYTES, DESC_NEXT, 1);
        write_desc(table, 1, frame, FRAME_BYTES, 0, 0);
    } else {
        write_desc(table, 0, frame, NET_HDR_BYTES + FRAME_BYTES, 0, 0);
    }
    tx.publish(0);
    tx.notify();
}

/// Posts one receive buffer at `addr` on `rx`.
pub(crate) fn post_rx(rx: &mut Dev, addr: u64) {
    write_desc(rx.mem.desc, 0, addr, RX_BUFFER_BYTES, DESC_WRITE, 0);
    rx.publish(0);
    rx.notify();
}

/// Whether an observation refuses the request: NEEDS_RESET, or a blk completion with
/// VIRTIO_BLK_S_IOERR.
pub(crate) fn is_refused(obs: Observation) -> bool {
    matches!(
        obs,
        Observation::NeedsReset
            | Observation::Used {
                blk_status: Some(BLK_S_IOERR),
                ..
            }
    )
}
