//! The test frames two `virtio-net` guests exchange: Ethernet with a local experimental
//! EtherType, a small header (magic, kind, role, sequence number, data length), data that
//! follows from (role, sequence) and an FNV-1a checksum over header and data.

use core::fmt;

use guest_virtio::hash::fnv1a;

pub(crate) type Mac = [u8; 6];
pub(crate) const BROADCAST: Mac = [0xFF; 6];
/// IEEE 802 "local experimental EtherType 1".
const ETHERTYPE: u16 = 0x88B5;
const MAGIC: [u8; 4] = *b"BHnt";
const ETH_HEADER: usize = 14;
/// magic 4, kind 1, flags 1, role 1, reserved 1, seq 4, count 4, data length 2.
const TEST_HEADER: usize = 18;
const CHECKSUM: usize = 8;
/// Frames shorter than this are padded (Ethernet's minimum without the FCS).
const MIN_FRAME: usize = 60;
/// Longest data, so every frame fits a 1514-byte Ethernet frame.
const MAX_DATA: u64 = 1400;
pub(crate) const MAX_FRAME: usize = ETH_HEADER + TEST_HEADER + MAX_DATA as usize + 16 + CHECKSUM;

/// What a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// "I am up"; `flags` bit 0 says whether the sender has heard the peer.
    Hello,
    /// Sequenced data; `flags` bit 0 says it was sent to the broadcast address.
    Data,
    /// "I have everything I expected."
    Done,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Self::Hello => 1,
            Self::Data => 2,
            Self::Done => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Hello),
            2 => Some(Self::Data),
            3 => Some(Self::Done),
            _ => None,
        }
    }
}

pub(crate) const FLAG_SET: u8 = 1;

/// A test frame's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub dst: Mac,
    pub src: Mac,
    pub kind: Kind,
    pub flags: u8,
    pub role: u8,
    pub seq: u32,
    pub count: u32,
}

/// How a received frame with the test EtherType was malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    Short {
        len: usize,
    },
    BadMagic,
    BadKind(u8),
    Length {
        data_len: usize,
        frame_len: usize,
    },
    Checksum,
    /// Data byte `index` differs from what (role, seq) gives.
    Data {
        index: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { len } => write!(f, "{len}-byte frame too short"),
            Self::BadMagic => f.write_str("bad magic"),
            Self::BadKind(k) => write!(f, "unknown kind {k}"),
            Self::Length {
                data_len,
                frame_len,
            } => write!(
                f,
                "data length {data_len} does not fit a {frame_len}-byte frame"
            ),
            Self::Checksum => f.write_str("checksum mismatch"),
            Self::Data { index } => write!(f, "data byte {index} wrong"),
        }
    }
}

/// How much data a DATA frame of `seq` carries (varying, so lengths are checked too).
fn data_len(kind: Kind, seq: u32) -> usize {
    match kind {
        Kind::Data => (16 + u64::from(seq) * 97 % MAX_DATA) as usize,
        Kind::Hello | Kind::Done => 0,
    }
}

fn data_byte(role: u8, seq: u32, index: usize) -> u8 {
    (u64::from(seq).wrapping_mul(31) ^ (index as u64).wrapping_mul(7) ^ u64::from(role) << 3) as u8
}

/// Writes `frame` into `buf` (at least [`MAX_FRAME`] bytes); returns its length.
pub(crate) fn build(frame: &Frame, buf: &mut [u8]) -> usize {
    let data_len = data_len(frame.kind, frame.seq);
    buf[0..6].copy_from_slice(&frame.dst);
    buf[6..12].copy_from_slice(&frame.src);
    buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    let h = &mut buf[ETH_HEADER..];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = frame.kind.code();
    h[5] = frame.flags;
    h[6] = frame.role;
    h[7] = 0;
    h[8..12].copy_from_slice(&frame.seq.to_le_bytes());
    h[12..16].copy_from_slice(&frame.count.to_le_bytes());
    h[16..18].copy_from_slice(&(data_len as u16).to_le_bytes());
    for (i, b) in h[TEST_HEADER..TEST_HEADER + data_len]
        .iter_mut()
        .enumerate()
    {
        *b = data_byte(frame.role, frame.seq, i);
    }
    let end = TEST_HEADER + data_len;
    let sum = fnv1a(&h[..end]);
    h[end..end + CHECKSUM].copy_from_slice(&sum.to_le_bytes());
    let len = ETH_HEADER + end + CHECKSUM;
    if len < MIN_FRAME {
        buf[len..MIN_FRAME].fill(0);
    }
    len.max(MIN_FRAME)
}

/// Whether `bytes` carries the test EtherType (other traffic is not ours to judge).
pub(crate) fn is_test_frame(bytes: &[u8]) -> bool {
    bytes.len() >= ETH_HEADER && bytes[12..14] == ETHERTYPE.to_be_bytes()
}

fn mac_at(bytes: &[u8], at: usize) -> Mac {
    let mut mac = [0; 6];
    mac.copy_from_slice(&bytes[at..at + 6]);
    mac
}

/// Parses and checks a test frame.
pub(crate) fn parse(bytes: &[u8]) -> Result<Frame, FrameError> {
    let short = FrameError::Short { len: bytes.len() };
    let h = bytes.get(ETH_HEADER..).ok_or(short)?;
    if h.len() < TEST_HEADER + CHECKSUM {
        return Err(short);
    }
    if h[0..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let kind = Kind::from_code(h[4]).ok_or(FrameError::BadKind(h[4]))?;
    let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let (seq, count) = (word(8), word(12));
    let data_len = usize::from(u16::from_le_bytes([h[16], h[17]]));
    let end = TEST_HEADER + data_len;
    let length_error = FrameError::Length {
        data_len,
        frame_len: bytes.len(),
    };
    let sum_bytes = h.get(end..end + CHECKSUM).ok_or(length_error)?;
    if data_len != self::data_len(kind, seq) {
        return Err(length_error);
    }
    let mut sum = [0; CHECKSUM];
    sum.copy_from_slice(sum_bytes);
    if u64::from_le_bytes(sum) != fnv1a(&h[..end]) {
        return Err(FrameError::Checksum);
    }
    let role = h[6];
    if let Some(index) = (0..data_len).find(|&i| h[TEST_HEADER + i] != data_byte(role, seq, i)) {
        return Err(FrameError::Data { index });
    }
    Ok(Frame {
        dst: mac_at(bytes, 0),
        src: mac_at(bytes, 6),
        kind,
        flags: h[5],
        role,
        seq,
        count,
    })
}

/// Formats a MAC as `52:54:00:12:34:56`.
pub(crate) struct MacFmt(pub Mac);

impl fmt::Display for MacFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Parses `52:54:00:12:34:56`.
pub(crate) fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}
