//! Self-checks over built page tables, run before the tables are trusted: the hypervisor's own
//! (no page both writable and executable, code only in the image's text, never guest RAM
//! executable, every stack guard unmapped) and each guest's nested table (exactly its own RAM,
//! at the right host addresses, and nothing else).

use core::fmt;
use core::ops::Range;

use super::{Entry, MapFlags, Mapping, PageTable, Region, TableMemory};
use crate::addr::PAGE_SIZE;

/// What the hypervisor's own tables are checked against.
#[derive(Clone, Debug)]
pub struct HostLayout<'a> {
    /// The only addresses that may be executable: the image's code.
    pub text: Range<u64>,
    /// Guard pages (their first address) that must not be mapped.
    pub guards: &'a [u64],
    /// Guest RAM blocks (identity-mapped) that must never be executable for the hypervisor.
    pub guest_ram: &'a [Range<u64>],
}

/// How the hypervisor's tables break the rules (the first break found, by address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostTableViolation {
    WritableExecutable(Mapping),
    GuestRamExecutable(Mapping),
    ExecutableOutsideText(Mapping),
    GuardMapped { guard: u64 },
}

impl fmt::Display for HostTableViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WritableExecutable(m) => write!(
                f,
                "page tables: {:#x} ({:?} page at {}) is writable and executable",
                m.virt, m.size, m.phys
            ),
            Self::GuestRamExecutable(m) => write!(
                f,
                "page tables: guest RAM at {:#x} ({:?} page at {}) is executable for the hypervisor",
                m.virt, m.size, m.phys
            ),
            Self::ExecutableOutsideText(m) => write!(
                f,
                "page tables: {:#x} ({:?} page at {}) is executable but not the image's code",
                m.virt, m.size, m.phys
            ),
            Self::GuardMapped { guard } => {
                write!(f, "page tables: stack guard page {guard:#x} is mapped")
            }
        }
    }
}

fn overlaps(m: &Mapping, r: &Range<u64>) -> bool {
    m.virt < r.end && r.start < m.virt_end()
}

/// Checks the hypervisor's own tables against `layout`.
pub fn check_host_tables<E: Entry, M: TableMemory + ?Sized>(
    pt: &PageTable<E>,
    mem: &M,
    layout: &HostLayout<'_>,
) -> Result<(), HostTableViolation> {
    let mut found = None;
    pt.for_each_mapping(mem, |m| {
        if found.is_some() || !m.flags.contains(MapFlags::EXEC) {
            return;
        }
        found = if m.flags.contains(MapFlags::WRITE) {
            Some(HostTableViolation::WritableExecutable(m))
        } else if layout.guest_ram.iter().any(|r| overlaps(&m, r)) {
            Some(HostTableViolation::GuestRamExecutable(m))
        } else if m.virt < layout.text.start || m.virt_end() > layout.text.end {
            Some(HostTableViolation::ExecutableOutsideText(m))
        } else {
            None
        };
    });
    if let Some(v) = found {
        return Err(v);
    }
    match layout
        .guards
        .iter()
        .find(|&&g| pt.translate(mem, g).is_some())
    {
        Some(&guard) => Err(HostTableViolation::GuardMapped { guard }),
        None => Ok(()),
    }
}

/// How a guest's nested table differs from "exactly its RAM".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedViolation {
    /// Something mapped outside the allowed regions, or to the wrong host address.
    Unexpected(Mapping),
    /// A page of an allowed region is not mapped (or not where it should be).
    Missing { gpa: u64 },
}

impl fmt::Display for NestedViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unexpected(m) => write!(
                f,
                "nested page table maps GPA:{:#x}..{:#x} to {} ({:?}), outside the guest's own RAM and devices",
                m.virt,
                m.virt_end(),
                m.phys,
                m.flags
            ),
            Self::Missing { gpa } => write!(
                f,
                "nested page table does not map the guest's RAM at GPA:{gpa:#x} where it should"
            ),
        }
    }
}

/// Checks that a nested table maps exactly `allowed` (each region linearly onto its host
/// range) and nothing else. The whole tree is walked for extra mappings; each region is
/// checked at its first and last page.
pub fn check_nested<E: Entry, M: TableMemory + ?Sized>(
    pt: &PageTable<E>,
    mem: &M,
    allowed: &[Region],
) -> Result<(), NestedViolation> {
    if let Some(m) = pt.find_unexpected(mem, allowed) {
        return Err(NestedViolation::Unexpected(m));
    }
    for r in allowed.iter().filter(|r| r.size_bytes >= PAGE_SIZE) {
        for offset in [0, r.size_bytes - PAGE_SIZE] {
            let gpa = r.virt + offset;
            let at = pt.translate(mem, gpa).map(|(hpa, _, _)| hpa);
            if at != r.phys.checked_add(offset) {
                return Err(NestedViolation::Missing { gpa });
            }
        }
    }
    Ok(())
}
