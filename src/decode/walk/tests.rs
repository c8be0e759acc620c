use super::*;
use crate::guest_mem::VecGuestMemory;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const RAM_BYTES: usize = 8 << 20;

fn ram() -> VecGuestMemory {
    VecGuestMemory::new(GuestPhysAddr::ZERO, RAM_BYTES)
}

fn gpa(a: u64) -> GuestPhysAddr {
    GuestPhysAddr::new(a)
}

fn gva(a: u64) -> GuestVirtAddr {
    GuestVirtAddr::new(a)
}

fn set64(mem: &VecGuestMemory, table: u64, index: u64, raw: u64) {
    mem.write_u64(gpa(table + index * 8), raw).unwrap();
}

fn set32(mem: &VecGuestMemory, table: u64, index: u64, raw: u64) {
    mem.write_u32(gpa(table + index * 4), raw as u32).unwrap();
}

fn ctx(cr0: u64, cr3: u64, cr4: u64, efer: u64) -> PagingContext {
    PagingContext {
        cr0,
        cr3,
        cr4,
        efer,
    }
}

const PG: u64 = CR0_PG | 1; // PG + PE
const LONG: u64 = EFER_LMA | (1 << 8); // LMA + LME

fn tr(mem: &VecGuestMemory, c: &PagingContext, va: u64) -> Result<GuestPhysAddr, WalkError> {
    translate(mem, c, gva(va), Access::empty())
}

#[test]
fn paging_off_is_identity_in_32_bits() {
    let mem = ram();
    let c = ctx(1, 0xdead_0000, 0, 0);
    assert_eq!(c.mode(), Ok(PagingMode::Off));
    assert_eq!(tr(&mem, &c, 0x1234), Ok(gpa(0x1234)));
    assert_eq!(tr(&mem, &c, 0x1_0000_1234), Ok(gpa(0x1234)));
}

#[test]
fn two_level_with_and_without_pse() {
    let mem = ram();
    let pd = 0x1000;
    let pt = 0x2000;
    set32(&mem, pd, 1, pt | P | RW | US);
    set32(&mem, pt, 5, 0x7000 | P | US);
    // A 4 MiB page, and one with PSE-36 high bits (bits 20:13 → physical 39:32).
    set32(&mem, pd, 3, 0x0040_0000 | P | RW | PS);
    set32(&mem, pd, 4, 0x0040_0000 | (0x12 << 13) | P | RW | PS);
    let c = ctx(PG, pd | 0x18, CR4_PSE, 0); // CR3 flag bits (PWT/PCD) are ignored.
    assert_eq!(c.mode(), Ok(PagingMode::TwoLevel));
    assert_eq!(tr(&mem, &c, 0x0040_5123), Ok(gpa(0x7123)));
    assert_eq!(tr(&mem, &c, 0x00c0_1234), Ok(gpa(0x0040_1234)));
    assert_eq!(tr(&mem, &c, 0x0100_0010), Ok(gpa(0x12_0040_0010)));
    assert_eq!(
        tr(&mem, &c, 0x0040_6000),
        Err(WalkError::NotPresent {
            gva: gva(0x0040_6000),
            level: 1
        })
    );
    assert_eq!(
        tr(&mem, &c, 0x0080_0000),
        Err(WalkError::NotPresent {
            gva: gva(0x0080_0000),
            level: 2
        })
    );
    // Without CR4.PSE the PS bit means nothing: the entry points at a (zeroed) page table.
    let c = ctx(PG, pd, 0, 0);
    assert_eq!(
        tr(&mem, &c, 0x00c0_1234),
        Err(WalkError::NotPresent {
            gva: gva(0x00c0_1234),
            level: 1
        })
    );
    // 32-bit entries have no NX bit, whatever EFER.NXE says.
    assert!(translate(
        &mem,
        &ctx(PG, pd, 0, EFER_NXE),
        gva(0x0040_5000),
        Access::FETCH
    )
    .is_ok());
}

#[test]
fn pae_three_level() {
    let mem = ram();
    let (pdpt, pd, pt) = (0x3020, 0x4000, 0x5000); // the PDPT is only 32-byte aligned
    set64(&mem, pdpt, 0, pd | P);
    set64(&mem, pd, 0, pt | P | RW);
    set64(&mem, pt, 3, 0x9000 | P | RW | NX);
    set64(&mem, pd, 1, 0x0020_0000 | P | RW | PS);
    set64(&mem, pdpt, 3, 0x6000 | P);
    set64(&mem, 0x6000, 511, 0x0060_0000 | P | PS);
    let c = ctx(PG, pdpt, CR4_PAE, 0);
    assert_eq!(c.mode(), Ok(PagingMode::Pae));
    assert_eq!(tr(&mem, &c, 0x3abc), Ok(gpa(0x9abc)));
    assert_eq!(tr(&mem, &c, 0x0031_2345), Ok(gpa(0x0031_2345)));
    assert_eq!(tr(&mem, &c, 0xffe0_0042), Ok(gpa(0x0060_0042)));
    assert_eq!(
        tr(&mem, &c, 0x4000_0000),
        Err(WalkError::NotPresent {
            gva: gva(0x4000_0000),
            level: 3
        })
    );
    // NX counts only with EFER.NXE.
    assert!(translate(&mem, &c, gva(0x3000), Access::FETCH).is_ok());
    let nx = ctx(PG, pdpt, CR4_PAE, EFER_NXE);
    assert_eq!(
        translate(&mem, &nx, gva(0x3000), Access::FETCH),
        Err(WalkError::Protection {
            gva: gva(0x3000),
            access: Access::FETCH
        })
    );
}

/// Long-mode tables: low 2 MiB of 4 KiB pages, a 2 MiB page, a 1 GiB page, and a
/// higher-half kernel page at 0xffff_ffff_8000_0000.
fn long_mode_tables(mem: &VecGuestMemory) -> PagingContext {
    let (pml4, pdpt, pd, pt) = (0x10000, 0x11000, 0x12000, 0x13000);
    set64(mem, pml4, 0, pdpt | P | RW | US);
    set64(mem, pdpt, 0, pd | P | RW | US);
    set64(mem, pdpt, 1, 0x4000_0000 | P | RW | US | PS);
    set64(mem, pd, 0, pt | P | RW | US);
    set64(mem, pd, 1, 0x0060_0000 | P | RW | PS);
    set64(mem, pt, 0x10, 0x20000 | P | RW | US);
    set64(mem, pt, 0x11, 0x30000 | P | US); // read-only user page
    set64(mem, pt, 0x12, 0x31000 | P | RW | NX); // supervisor data
    let (hi_pdpt, hi_pd, hi_pt) = (0x14000, 0x15000, 0x16000);
    set64(mem, pml4, 511, hi_pdpt | P | RW);
    set64(mem, hi_pdpt, 510, hi_pd | P | RW);
    set64(mem, hi_pd, 0, hi_pt | P | RW);
    set64(mem, hi_pt, 0, 0x21000 | P);
    ctx(PG | CR0_WP, pml4, CR4_PAE, LONG | EFER_NXE)
}

#[test]
fn four_level_with_large_pages() {
    let mem = ram();
    let c = long_mode_tables(&mem);
    assert_eq!(c.mode(), Ok(PagingMode::FourLevel));
    assert_eq!(tr(&mem, &c, 0x10_123), Ok(gpa(0x20_123)));
    assert_eq!(tr(&mem, &c, 0x0021_2345), Ok(gpa(0x0061_2345)));
    assert_eq!(tr(&mem, &c, 0x7fff_fffe), Ok(gpa(0x7fff_fffe)));
    assert_eq!(tr(&mem, &c, 0xffff_ffff_8000_0abc), Ok(gpa(0x21abc)));
    assert_eq!(
        tr(&mem, &c, 0x8000_0000_0000),
        Err(WalkError::NonCanonical {
            gva: gva(0x8000_0000_0000)
        })
    );
    assert_eq!(
        tr(&mem, &c, 0x0000_0080_0000_0000),
        Err(WalkError::NotPresent {
            gva: gva(0x80_0000_0000),
            level: 4
        })
    );
    let five = PagingContext {
        cr4: CR4_PAE | CR4_LA57,
        ..c
    };
    assert_eq!(tr(&mem, &five, 0), Err(WalkError::FiveLevel));
    assert!(WalkError::FiveLevel.to_string().contains("5-level"));
}

#[test]
fn rights_follow_every_level() {
    let mem = ram();
    let c = long_mode_tables(&mem);
    let t = |va: u64, a: Access, c: &PagingContext| translate(&mem, c, gva(va), a).is_ok();
    let user = Access::USER;
    let write = Access::WRITE;
    assert!(t(0x10_000, user | write, &c));
    assert!(!t(0x11_000, user | write, &c), "read-only for user writes");
    assert!(
        !t(0x11_000, write, &c),
        "read-only for supervisor with CR0.WP"
    );
    let no_wp = PagingContext { cr0: PG, ..c };
    assert!(
        t(0x11_000, write, &no_wp),
        "supervisor ignores R/W without CR0.WP"
    );
    assert!(!t(0x11_000, user | write, &no_wp));
    assert!(!t(0x12_000, user, &c), "supervisor page");
    assert!(!t(0x12_000, Access::FETCH, &c), "NX page");
    assert!(
        !t(0xffff_ffff_8000_0000, user, &c),
        "U/S clear above the leaf"
    );
    assert!(t(0xffff_ffff_8000_0000, Access::FETCH, &c));
}

#[test]
fn tables_outside_ram_are_errors() {
    let mem = ram();
    let c = ctx(PG, 0x1_0000_0000, CR4_PAE, LONG);
    assert_eq!(
        tr(&mem, &c, 0x1000),
        Err(WalkError::TableOutsideRam {
            gva: gva(0x1000),
            entry: gpa(0x1_0000_0000)
        })
    );
    set64(&mem, 0x1000, 0, 0x000f_ffff_ffff_f000 | P);
    let c = ctx(PG, 0x1000, CR4_PAE, LONG);
    let err = tr(&mem, &c, 0x8_0000_0000 - 8).unwrap_err();
    assert!(matches!(err, WalkError::TableOutsideRam { .. }), "{err:?}");
    assert!(err.to_string().contains("outside guest RAM"));
    // A 32-bit PD at the very top of the 4 GiB space.
    let c = ctx(PG, 0xffff_f000, 0, 0);
    assert!(matches!(
        tr(&mem, &c, 0xffff_ffff),
        Err(WalkError::TableOutsideRam { .. })
    ));
}

#[test]
fn garbage_tables_never_panic() {
    let mem = ram();
    // Fill the first 64 KiB with pseudo-random entries (an LCG; no RNG needed).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for off in (0..0x10000u64).step_by(8) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Keep some entries pointing back into the first 64 KiB so walks go deep.
        let raw = if x & 1 == 0 {
            (x & 0xf000) | (x & 0xff)
        } else {
            x
        };
        mem.write_u64(gpa(off), raw).unwrap();
    }
    let modes = [
        ctx(PG, 0x3000, 0, 0),
        ctx(PG, 0x3000, CR4_PSE, 0),
        ctx(PG, 0x3fe0, CR4_PAE, EFER_NXE),
        ctx(PG | CR0_WP, 0x5000, CR4_PAE, LONG | EFER_NXE),
    ];
    let mut buf = [0; MAX_INSN_LEN];
    for c in &modes {
        for i in 0..4000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let va = if i % 2 == 0 { x } else { x & 0x7fff_ffff_ffff };
            let _ = translate(&mem, c, gva(va), Access::from_bits_truncate(i as u8));
            let _ = fetch_insn(&mem, c, x >> 7, va, &mut buf);
        }
    }
}

#[test]
fn fetch_crosses_pages_and_stops_short() {
    let mem = ram();
    let c = long_mode_tables(&mem);
    // Code at the last 8 bytes of the page at 0x10000 (→ GPA 0x20000); the next virtual page
    // maps to GPA 0x30000, not contiguous.
    let code: [u8; 15] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    mem.write(gpa(0x20ff8), &code[..8]).unwrap();
    mem.write(gpa(0x30000), &code[8..]).unwrap();
    let mut buf = [0; MAX_INSN_LEN];
    assert_eq!(fetch_insn(&mem, &c, 0, 0x10ff8, &mut buf), Ok(15));
    assert_eq!(buf, code);

    // The next page is NX: stop at the page end.
    let mut buf = [0; MAX_INSN_LEN];
    assert_eq!(fetch_insn(&mem, &c, 0, 0x11ffa, &mut buf), Ok(6));
    // The next page is unmapped.
    set64(&mem, 0x13000, 0x14, 0x32000 | P);
    assert_eq!(fetch_insn(&mem, &c, 0, 0x14ff8, &mut buf), Ok(8));
    // The first page itself cannot be fetched from.
    let err = fetch_insn(&mem, &c, 0, 0x12ff0, &mut buf);
    assert_eq!(
        err,
        Err(WalkError::Protection {
            gva: gva(0x12ff0),
            access: Access::FETCH
        })
    );
    let err = fetch_insn(&mem, &c, 0, 0x13ff9, &mut buf);
    assert_eq!(
        err,
        Err(WalkError::NotPresent {
            gva: gva(0x13ff9),
            level: 1
        })
    );
    // The 1 GiB page maps beyond guest RAM.
    let err = fetch_insn(&mem, &c, 0, 0x4000_0000, &mut buf).unwrap_err();
    assert_eq!(
        err,
        WalkError::CodeOutsideRam {
            gva: gva(0x4000_0000),
            gpa: gpa(0x4000_0000)
        }
    );

    // Inside a 2 MiB page.
    mem.write(gpa(0x0061_0000), &code).unwrap();
    let mut buf = [0; MAX_INSN_LEN];
    assert_eq!(fetch_insn(&mem, &c, 0, 0x0021_0000, &mut buf), Ok(15));
    assert_eq!(buf, code);
}

#[test]
fn fetch_stops_at_ram_end_and_wraps_in_32_bits() {
    let mem = ram();
    let mut buf = [0; MAX_INSN_LEN];
    // Real mode: CS base 0xf0000 + IP 0xfff0 = the reset vector's linear address.
    let real = ctx(0, 0, 0, 0);
    mem.write(gpa(0xffff0), &[0xea, 0x5b, 0xe0, 0x00, 0xf0])
        .unwrap();
    assert_eq!(fetch_insn(&mem, &real, 0xf0000, 0xfff0, &mut buf), Ok(15));
    assert_eq!(&buf[..5], &[0xea, 0x5b, 0xe0, 0x00, 0xf0]);
    // The last bytes of RAM: the next page is outside, so only 4 bytes come back.
    let end = RAM_BYTES as u64;
    assert_eq!(fetch_insn(&mem, &real, 0, end - 4, &mut buf), Ok(4));
    // Outside long mode, CS base + EIP wraps at 4 GiB.
    mem.write(gpa(0x10), &[0xf4]).unwrap();
    assert_eq!(
        fetch_insn(&mem, &real, 0xffff_f000, 0x1010, &mut buf),
        Ok(15)
    );
    assert_eq!(buf[0], 0xf4);
    assert_eq!(
        fetch_insn(&mem, &real, 0, end, &mut buf),
        Err(WalkError::CodeOutsideRam {
            gva: gva(end),
            gpa: gpa(end)
        })
    );
}
