//! Typed physical and virtual addresses: host-physical, guest-physical and guest-virtual
//! addresses are distinct types with no conversions between them, so an address from one
//! space can never be used in another by accident.

#![forbid(unsafe_code)]

use core::fmt;
use core::ops::{Add, Sub};

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The address zero.
            pub const ZERO: Self = Self(0);

            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }

            /// Rounds up to a multiple of `align` (a power of two); `None` on overflow.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// Adds `offset`, or `None` on overflow.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl Add<u64> for $name {
            type Output = Self;
            fn add(self, rhs: u64) -> Self {
                Self(self.0 + rhs)
            }
        }

        impl Sub<$name> for $name {
            type Output = u64;
            fn sub(self, rhs: $name) -> u64 {
                self.0 - rhs.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, ":{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

address_type!(
    /// An address in the machine's physical address space.
    HostPhysAddr,
    "HPA"
);
address_type!(
    /// An address in a guest's physical address space (translated by EPT/NPT).
    GuestPhysAddr,
    "GPA"
);
address_type!(
    /// An address in a guest's virtual address space (translated by the guest's page tables).
    GuestVirtAddr,
    "GVA"
);

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (2 MiB) page.
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// Size of a huge (1 GiB) page.
pub const HUGE_PAGE_SIZE: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_with_space_prefix() {
        assert_eq!(format!("{}", GuestPhysAddr::new(0x1000)), "GPA:0x1000");
        assert_eq!(
            format!("{:?}", HostPhysAddr::new(0xfee0_0000)),
            "HPA:0xfee00000"
        );
    }

    #[test]
    fn alignment_helpers() {
        let a = HostPhysAddr::new(0x1234);
        assert_eq!(a.align_down(PAGE_SIZE), HostPhysAddr::new(0x1000));
        assert_eq!(
            a.checked_align_up(PAGE_SIZE),
            Some(HostPhysAddr::new(0x2000))
        );
        assert!(!a.is_aligned(PAGE_SIZE));
        assert_eq!(
            HostPhysAddr::new(u64::MAX).checked_align_up(PAGE_SIZE),
            None
        );
        assert_eq!(GuestPhysAddr::new(u64::MAX).checked_add(1), None);
    }
}
