//! The Linux guest's disk images: a read-only disk with known contents (its SHA-256 is on the
//! guest's command line, so the guest can tell a block read went right) and a zeroed writable
//! disk for a write/read-back test.

use sha2::{Digest, Sha256};

/// Both disks are 1 MiB: big enough to span many virtio requests, small enough to hash in well
/// under a second in a guest under nested emulation.
pub const DISK_BYTES: usize = 1 << 20;
/// The first line of the read-only disk, so a person looking at it knows what it is.
const RO_HEADER: &[u8] =
    b"Bulkhead Linux guest test disk (read-only); see xtask/src/linux/disks.rs\n";
/// The pattern generator's seed (any odd constant; xorshift64 only needs it non-zero).
const SEED: u64 = 0x0B01_DFAC_E5EE_D001;
/// The read-only disk's SHA-256, as the manifests write it (a unit test checks both).
pub const RO_SHA256: &str = "56d1944e0bf88334e17ae9ebaf951129bf76e8b8ba9b6c076936e645c45d28ee";

/// The read-only disk: a header line, then bytes from xorshift64 (Marsaglia 2003), so every
/// sector differs and a misplaced or repeated sector changes the hash.
pub fn read_only_image() -> Vec<u8> {
    let mut image = Vec::with_capacity(DISK_BYTES);
    image.extend_from_slice(RO_HEADER);
    let mut state = SEED;
    while image.len() < DISK_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image.extend_from_slice(&state.to_le_bytes());
    }
    image.truncate(DISK_BYTES);
    image
}

/// The writable disk: zeros.
pub fn writable_image() -> Vec<u8> {
    vec![0; DISK_BYTES]
}

/// Lower-case hexadecimal SHA-256, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_only_disk_is_fixed() {
        let image = read_only_image();
        assert_eq!(image.len(), DISK_BYTES);
        assert!(image.starts_with(RO_HEADER));
        assert_eq!(sha256_hex(&image), RO_SHA256);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
