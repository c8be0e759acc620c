//! What `virtio-drivers` needs from its host: DMA memory from the runtime's page pool (guests
//! are identity-mapped, so physical = virtual and sharing a buffer is free), and register
//! accesses through explicit MOVs (`safe-mmio`'s custom backend over [`guest_rt::mmio`]).

use core::ptr::NonNull;

use guest_rt::{dma, mmio};
use safe_mmio::MmioOps;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// The [`Hal`] of every guest.
pub struct GuestHal;

// SAFETY: dma_alloc returns zeroed, page-aligned RAM that the bump allocator hands out once
// (never aliased), whose address is both the pointer and the device's physical address; shared
// buffers are identity-mapped memory, so the device sees exactly what the driver wrote.
unsafe impl Hal for GuestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match dma::alloc_pages(pages as u64) {
            Ok(addr) => match NonNull::new(addr as *mut u8) {
                Some(ptr) => (addr, ptr),
                None => (0, NonNull::dangling()),
            },
            // virtio-drivers turns physical address 0 into Error::DmaError.
            Err(_) => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // The pool never frees: guests are short-lived and set devices up once.
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// `safe-mmio`'s register accesses, one MOV each.
pub struct ExplicitMov;

impl MmioOps for ExplicitMov {
    unsafe fn read_u8(src: *const u8) -> u8 {
        // SAFETY: safe-mmio only passes pointers into a register window it was given as valid.
        unsafe { mmio::read8(src as u64) }
    }

    unsafe fn read_u16(src: *const u16) -> u16 {
        // SAFETY: as above.
        unsafe { mmio::read16(src as u64) }
    }

    unsafe fn read_u32(src: *const u32) -> u32 {
        // SAFETY: as above.
        unsafe { mmio::read32(src as u64) }
    }

    unsafe fn read_u64(src: *const u64) -> u64 {
        // SAFETY: as above.
        unsafe { mmio::read64(src as u64) }
    }

    unsafe fn write_u8(dst: *mut u8, value: u8) {
        // SAFETY: as above.
        unsafe { mmio::write8(dst as u64, value) }
    }

    unsafe fn write_u16(dst: *mut u16, value: u16) {
        // SAFETY: as above.
        unsafe { mmio::write16(dst as u64, value) }
    }

    unsafe fn write_u32(dst: *mut u32, value: u32) {
        // SAFETY: as above.
        unsafe { mmio::write32(dst as u64, value) }
    }

    unsafe fn write_u64(dst: *mut u64, value: u64) {
        // SAFETY: as above.
        unsafe { mmio::write64(dst as u64, value) }
    }
}

safe_mmio::set_mmio_ops!(ExplicitMov);
