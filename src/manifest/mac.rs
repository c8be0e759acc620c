//! Ethernet MAC addresses: parsing `"52:54:00:12:34:56"`, and a stable address for a guest's
//! net device when the manifest gives none.

#![forbid(unsafe_code)]

use core::fmt;

/// Bit 0 of the first octet: group (multicast/broadcast) address. IEEE 802-2014 §8.2.
const GROUP_BIT: u8 = 0x01;
/// Bit 1 of the first octet: locally administered address. IEEE 802-2014 §8.2.
const LOCAL_BIT: u8 = 0x02;

/// FNV-1a 64-bit offset basis and prime (Fowler/Noll/Vo): small, stable, no tables.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// Why a MAC address string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacError {
    /// Not six two-digit hex bytes separated by colons.
    Syntax,
    /// The group bit is set: the address names many stations, not one.
    Multicast,
    /// 00:00:00:00:00:00 names no station.
    Zero,
}

impl fmt::Display for MacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Syntax => "is not a MAC address",
            Self::Multicast => "is a multicast address (the first byte is odd)",
            Self::Zero => "is all zeros",
        })
    }
}

impl MacAddr {
    /// Parses six two-digit hex bytes separated by `:` (or `-`), and accepts only addresses a
    /// single network card may use.
    pub fn parse(text: &str) -> Result<Self, MacError> {
        let bytes = text.as_bytes();
        // "xx:xx:xx:xx:xx:xx" is 17 bytes.
        if bytes.len() != 17 {
            return Err(MacError::Syntax);
        }
        let separator = bytes.get(2).copied();
        if !matches!(separator, Some(b':' | b'-')) {
            return Err(MacError::Syntax);
        }
        let mut octets = [0u8; 6];
        for (i, chunk) in bytes.chunks(3).enumerate() {
            let (Some(&hi), Some(&lo)) = (chunk.first(), chunk.get(1)) else {
                return Err(MacError::Syntax);
            };
            if chunk.get(2).is_some_and(|&s| Some(s) != separator) {
                return Err(MacError::Syntax);
            }
            let octet = hex(hi)
                .zip(hex(lo))
                .map(|(h, l)| h << 4 | l)
                .ok_or(MacError::Syntax)?;
            *octets.get_mut(i).ok_or(MacError::Syntax)? = octet;
        }
        let mac = Self(octets);
        if mac.is_multicast() {
            Err(MacError::Multicast)
        } else if octets == [0; 6] {
            Err(MacError::Zero)
        } else {
            Ok(mac)
        }
    }

    /// Whether the group bit is set (multicast or broadcast).
    pub fn is_multicast(self) -> bool {
        self.0[0] & GROUP_BIT != 0
    }

    /// Whether the address is locally administered rather than vendor-assigned.
    pub fn is_local(self) -> bool {
        self.0[0] & LOCAL_BIT != 0
    }

    /// A locally administered unicast address derived from the guest's name, the port's index
    /// and `salt` (bumped by the caller when the result collides with another address), so
    /// the same manifest always gives the same addresses.
    pub fn derive(guest: &str, port: usize, salt: u32) -> Self {
        let mut hash = FNV_OFFSET;
        let port = u64::try_from(port).unwrap_or(u64::MAX);
        let input = guest
            .bytes()
            .chain([0])
            .chain(port.to_le_bytes())
            .chain(salt.to_le_bytes());
        for byte in input {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
        let h = hash.to_le_bytes();
        Self([LOCAL_BIT, h[0], h[1], h[2], h[3], h[4]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}
