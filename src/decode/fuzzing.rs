//! The fuzz entry point for the exit-length path: fetch the instruction at RIP through a random
//! guest's page tables ([`walk::fetch_insn`]), then decode it ([`decode`], [`decode_mmio`]).
//! The cargo-fuzz target `decode` calls this; xtask's tests replay its corpus on stable Rust.
//!
//! Assertions here are the oracle: a failed one is a bug in the walker or the decoder wrapper.

#![forbid(unsafe_code)]

use alloc::format;

use super::walk::{fetch_insn, translate, Access, PagingContext};
use super::{decode, decode_mmio, CpuMode, DecodeError, MAX_INSN_LEN};
use crate::addr::{GuestPhysAddr, GuestVirtAddr};
use crate::guest_mem::{GuestMemory, VecGuestMemory};

/// Guest RAM of the fuzzed guest: 16 pages, so table pointers land inside it often.
const RAM_BYTES: usize = 16 << 12;
/// The paging-related bits the fuzzer may set (SDM vol.3 §2.5, §2.2.1): CR0.PE/WP/PG,
/// CR4.PSE/PAE/LA57, EFER.LME/LMA/NXE. The rest would only be ignored.
const CR0_BITS: u64 = 1 | (1 << 16) | (1 << 31);
const CR4_BITS: u64 = (1 << 4) | (1 << 5) | (1 << 12);
const EFER_BITS: u64 = (1 << 8) | (1 << 10) | (1 << 11);
/// CR3 inside the 16 pages, any low bits (PCD/PWT, the PAE 32-byte alignment).
const CR3_MASK: u64 = RAM_BYTES as u64 - 1;
/// cr0, cr3, cr4, efer, cs_base, rip, then one byte for the non-long-mode code size.
const HEADER_BYTES: usize = 6 * 8 + 1;

fn u64_at(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = data.get(i * 8..i * 8 + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// `data` = paging registers, CS base, RIP and a code-size byte, then guest RAM contents.
pub fn exit_path(data: &[u8]) {
    let ctx = PagingContext {
        cr0: u64_at(data, 0) & CR0_BITS,
        cr3: u64_at(data, 1) & CR3_MASK,
        cr4: u64_at(data, 2) & CR4_BITS,
        efer: u64_at(data, 3) & EFER_BITS,
    };
    let cs_base = u64_at(data, 4);
    let rip = u64_at(data, 5);
    let is_long = ctx.efer & (1 << 10) != 0 && ctx.cr0 & (1 << 31) != 0;
    let mode = match (
        is_long,
        data.get(HEADER_BYTES - 1).copied().unwrap_or(0) & 1,
    ) {
        (true, _) => CpuMode::Bits64,
        (false, 0) => CpuMode::Bits32,
        (false, _) => CpuMode::Bits16,
    };
    let ram_bytes = data.get(HEADER_BYTES..).unwrap_or(&[]);

    // The decoder alone, straight on the RAM bytes, so it is exercised even when the walk fails.
    check_decode(ram_bytes, mode);

    let mem = VecGuestMemory::new(GuestPhysAddr::ZERO, RAM_BYTES);
    let n = ram_bytes.len().min(RAM_BYTES);
    assert!(mem.write(GuestPhysAddr::ZERO, &ram_bytes[..n]).is_ok());
    let mut buf = [0u8; MAX_INSN_LEN];
    let base = if is_long { 0 } else { cs_base };
    match fetch_insn(&mem, &ctx, base, rip, &mut buf) {
        Ok(got) => {
            assert!((1..=MAX_INSN_LEN).contains(&got), "fetched {got} bytes");
            check_decode(&buf[..got], mode);
            check_translations(&mem, &ctx, base, rip);
        }
        Err(e) => {
            let _ = format!("{e}");
        }
    }
}

/// A fetch-permitted address is also readable by the supervisor, at the same place.
fn check_translations(mem: &dyn GuestMemory, ctx: &PagingContext, base: u64, rip: u64) {
    let linear = base.wrapping_add(rip);
    let gva = GuestVirtAddr::new(linear);
    let fetch = translate(mem, ctx, gva, Access::FETCH);
    // fetch_insn wraps non-long addresses to 32 bits itself; compare on what it translated.
    if let Ok(gpa) = fetch {
        assert_eq!(
            translate(mem, ctx, gva, Access::empty()),
            Ok(gpa),
            "fetch and read of {gva} disagree"
        );
    }
}

/// Decoding is a function of the instruction's own bytes: the same instruction comes back from
/// exactly its `len` bytes, and the MMIO view agrees with the general one.
fn check_decode(bytes: &[u8], mode: CpuMode) {
    match decode(bytes, mode) {
        Ok(insn) => {
            let len = usize::from(insn.len);
            assert!(
                (1..=MAX_INSN_LEN).contains(&len) && len <= bytes.len(),
                "length {len} of {} bytes",
                bytes.len()
            );
            assert_eq!(
                decode(&bytes[..len], mode),
                Ok(insn),
                "prefix decodes differently"
            );
            match decode_mmio(bytes, mode) {
                Ok(m) => {
                    assert_eq!(Some(m.access), insn.mmio);
                    assert_eq!(m.len, insn.len);
                }
                Err(DecodeError::UnsupportedMmio(b)) => {
                    assert!(insn.mmio.is_none());
                    assert_eq!(b.as_slice(), &bytes[..len]);
                }
                Err(e) => panic!("decode succeeded but decode_mmio failed with {e}"),
            }
            let _ = format!("{insn}");
        }
        Err(e) => {
            let _ = format!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    const CR0_PE_PG: u64 = 1 | (1 << 31);
    const CR4_PAE: u64 = 1 << 5;
    const EFER_LME_LMA: u64 = (1 << 8) | (1 << 10);

    /// A fuzz input: registers, code size, then RAM with `bytes` placed at their addresses.
    fn input(regs: [u64; 6], is_16_bit: bool, ram: &[(usize, &[u8])]) -> Vec<u8> {
        let mut out: Vec<u8> = regs.iter().flat_map(|r| r.to_le_bytes()).collect();
        out.push(u8::from(is_16_bit));
        let len = ram.iter().map(|(at, b)| at + b.len()).max().unwrap_or(0);
        let mut mem = alloc::vec![0u8; len];
        for (at, b) in ram {
            mem[*at..*at + b.len()].copy_from_slice(b);
        }
        out.extend(mem);
        out
    }

    /// The seeds: real mode, flat 32-bit, and long mode through a 1 GiB page (PML4 at 0, PDPT
    /// at 0x1000) with code at its end so the fetch crosses onto the next page.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mov_load = [0x8b, 0x03]; // mov eax, [rbx]
        let mov_store = [0x89, 0x08]; // mov [rax], ecx
        let long_tables: [(usize, &[u8]); 3] = [
            (0, &0x1003u64.to_le_bytes()),
            (0x1000, &0x83u64.to_le_bytes()),
            (0x1ffe, &[0x48, 0xc7, 0x00, 0x01, 0x00, 0x00, 0x00]), // mov qword [rax], 1
        ];
        alloc::vec![
            (
                "real-mode-mov",
                input([0, 0, 0, 0, 0x100, 0x10], true, &[(0x110, &mov_load)])
            ),
            (
                "flat32-store",
                input([1, 0, 0, 0, 0, 0x40], false, &[(0x40, &mov_store)])
            ),
            (
                "long-1g-page-crossing",
                input(
                    [CR0_PE_PG, 0, CR4_PAE, EFER_LME_LMA, 0, 0x1ffe],
                    false,
                    &long_tables
                ),
            ),
        ]
    }

    #[test]
    fn seeds_and_random_inputs_pass_the_oracle() {
        for (_, seed) in seeds() {
            exit_path(&seed);
        }
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..400 {
            let data: Vec<u8> = (0..len * 8)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            exit_path(&data);
        }
    }

    #[test]
    fn the_long_mode_seed_fetches_across_the_page_end() {
        let (_, seed) = &seeds()[2];
        let ram = &seed[HEADER_BYTES..];
        let mem = VecGuestMemory::new(GuestPhysAddr::ZERO, RAM_BYTES);
        mem.write(GuestPhysAddr::ZERO, ram).unwrap();
        let ctx = PagingContext {
            cr0: CR0_PE_PG,
            cr3: 0,
            cr4: CR4_PAE,
            efer: EFER_LME_LMA,
        };
        let mut buf = [0u8; MAX_INSN_LEN];
        assert_eq!(
            fetch_insn(&mem, &ctx, 0, 0x1ffe, &mut buf),
            Ok(MAX_INSN_LEN)
        );
        let insn = decode(&buf, CpuMode::Bits64).unwrap();
        assert_eq!(insn.len, 7);
        assert!(insn.mmio.is_some());
    }

    /// `cargo test --lib decode::fuzzing::tests::write_seeds -- --ignored`
    #[test]
    #[ignore = "regenerates committed files"]
    fn write_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
