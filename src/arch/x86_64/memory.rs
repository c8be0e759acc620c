//! The hypervisor's heap and its global frame allocator.
//!
//! The heap starts in .bss so that it exists before the memory map is parsed (parsing needs
//! allocation). Physical memory is identity-mapped, so a frame's host-physical address is also
//! the address the hypervisor uses to reach it.

use linked_list_allocator::LockedHeap;
use spin::Mutex;

use crate::addr::{HostPhysAddr, PAGE_SIZE};
use crate::boot::{BootInfo, RegionKind};
use crate::mm::frames::OutOfFrames;
use crate::mm::FrameAllocator;

/// Size of the hypervisor heap.
pub const HEAP_BYTES: usize = 16 << 20;
/// Memory below this is never handed out (real-mode structures, the AP trampoline).
const LOW_MEMORY_END: u64 = 0x10_0000;
/// End of the memory the hypervisor can reach through its page tables.
const IDENTITY_MAPPED_END: u64 = 0x1_0000_0000;

#[repr(C, align(4096))]
struct HeapArea(core::cell::UnsafeCell<[u8; HEAP_BYTES]>);

// SAFETY: the area is touched only through the allocator, which serialises access with its lock.
unsafe impl Sync for HeapArea {}

static HEAP_AREA: HeapArea = HeapArea(core::cell::UnsafeCell::new([0; HEAP_BYTES]));

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The hypervisor image's physical range `[start, end)`.
pub fn kernel_image() -> (HostPhysAddr, HostPhysAddr) {
    (
        HostPhysAddr::new(core::ptr::addr_of!(__kernel_start) as u64),
        HostPhysAddr::new(core::ptr::addr_of!(__kernel_end) as u64),
    )
}

/// Hands the .bss heap area to the allocator. Call once, on the boot CPU, before any allocation.
pub fn init_heap() {
    let start = HEAP_AREA.0.get() as *mut u8;
    // SAFETY: HEAP_AREA is given to the allocator here, once; nothing else ever touches it.
    unsafe { ALLOCATOR.lock().init(start, HEAP_BYTES) };
}

/// Bytes of heap in use.
pub fn heap_used() -> usize {
    ALLOCATOR.lock().used()
}

/// Fills the frame allocator from the memory map, keeping out low memory, the hypervisor image,
/// the boot information and every module.
pub fn init_frames(info: &BootInfo) {
    let mut frames = FRAMES.lock();
    for r in info.memory.iter().filter(|r| r.kind == RegionKind::Usable) {
        frames.add_free(r.start, r.end());
    }
    // Reserved ranges win over usable ones where firmware maps overlap.
    for r in info.memory.iter().filter(|r| r.kind != RegionKind::Usable) {
        frames.reserve(r.start, r.end());
    }
    frames.reserve(HostPhysAddr::ZERO, HostPhysAddr::new(LOW_MEMORY_END));
    // The boot page tables identity-map only the first 4 GiB.
    frames.reserve(
        HostPhysAddr::new(IDENTITY_MAPPED_END),
        HostPhysAddr::new(u64::MAX),
    );
    let (ks, ke) = kernel_image();
    frames.reserve(ks, ke);
    frames.reserve(info.info_start, info.info_start + info.info_len);
    for m in &info.modules {
        frames.reserve(m.start, m.start + m.len);
    }
}

/// Allocates `size` bytes of zeroed, contiguous physical memory aligned to `align`.
pub fn alloc_zeroed(size: u64, align: u64) -> Result<HostPhysAddr, OutOfFrames> {
    alloc_zeroed_below(size, align, u64::MAX)
}

/// Like [`alloc_zeroed`], below `limit`.
pub fn alloc_zeroed_below(size: u64, align: u64, limit: u64) -> Result<HostPhysAddr, OutOfFrames> {
    let pa = FRAMES.lock().alloc_below(size, align, limit)?;
    let len = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    // SAFETY: the range was just taken from the free list, so nothing else uses it, and all RAM is
    // identity-mapped writable for the hypervisor.
    unsafe { core::ptr::write_bytes(pa.as_u64() as *mut u8, 0, len as usize) };
    Ok(pa)
}

/// Returns memory from [`alloc_zeroed`].
pub fn free(pa: HostPhysAddr, size: u64) {
    FRAMES.lock().free(pa, size);
}

/// Free 4 KiB frames.
pub fn free_frames() -> u64 {
    FRAMES.lock().free_frames()
}

/// Largest free contiguous block in bytes.
pub fn largest_free() -> u64 {
    FRAMES.lock().largest_free()
}

/// Free bytes.
pub fn free_bytes() -> u64 {
    FRAMES.lock().free_bytes()
}

/// Pages in one kernel stack (without its guard page).
pub const STACK_PAGES: u64 = 16;

/// A stack with an unmapped guard page below it.
#[derive(Clone, Copy, Debug)]
pub struct Stack {
    /// The guard page (lowest address).
    pub guard: HostPhysAddr,
    /// One past the highest byte (initial RSP).
    pub top: u64,
}

/// Allocates a stack of [`STACK_PAGES`] plus its guard page.
pub fn alloc_stack() -> Result<Stack, OutOfFrames> {
    let size = (STACK_PAGES + 1) * PAGE_SIZE;
    let base = alloc_zeroed(size, PAGE_SIZE)?;
    super::page_tables::guard_stack(base);
    Ok(Stack {
        guard: base,
        top: base.as_u64() + size,
    })
}

/// The bytes of a boot module.
pub fn module_bytes(m: &crate::boot::Module) -> &'static [u8] {
    // SAFETY: modules lie in RAM that `init_frames` reserved, so nothing ever allocates or writes
    // it; it is identity-mapped and lives as long as the hypervisor.
    unsafe { core::slice::from_raw_parts(m.start.as_u64() as *const u8, m.len as usize) }
}

/// Hands usable RAM above 4 GiB to the frame allocator (after every CPU switched to the
/// hypervisor's own page tables, which map it).
pub fn release_high_memory(info: &BootInfo) {
    let mut frames = FRAMES.lock();
    for r in info
        .memory
        .iter()
        .filter(|r| r.kind == RegionKind::Usable && r.end().as_u64() > IDENTITY_MAPPED_END)
    {
        frames.add_free(
            HostPhysAddr::new(r.start.as_u64().max(IDENTITY_MAPPED_END)),
            r.end(),
        );
    }
    for m in &info.modules {
        frames.reserve(m.start, m.start + m.len);
    }
    log::info!(target: "mm", "{} MiB free for guests (largest block {} MiB)", frames.free_bytes() >> 20, frames.largest_free() >> 20);
}

/// `len` bytes of zeroed hypervisor-owned memory that live as long as the hypervisor (guests'
/// disk copies).
pub fn alloc_owned_bytes(len: u64) -> Result<&'static mut [u8], OutOfFrames> {
    let pa = alloc_zeroed(len.max(1), PAGE_SIZE)?;
    // SAFETY: the block was just taken from the free list and is never freed, so this is the
    // only reference to it; it is identity-mapped writable.
    Ok(unsafe { core::slice::from_raw_parts_mut(pa.as_u64() as *mut u8, len as usize) })
}
