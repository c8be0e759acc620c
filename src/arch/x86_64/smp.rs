//! Starting the application processors with INIT-SIPI-SIPI (Intel SDM vol.3 §9.4.4.1,
//! AMD APM vol.2 §15.27.8) through the trampoline in `boot/ap_trampoline.S`.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{apic, cpu, time};
use crate::addr::HostPhysAddr;

/// Layout of the slots at the end of the trampoline (must match `ap_tramp_slots`).
#[repr(C)]
struct Slots {
    cr3: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);
static STARTED: AtomicUsize = AtomicUsize::new(0);
static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// Whether a panic asked every CPU to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Acquire)
}

/// Asks every other CPU to stop (NMI); used by the panic handler.
pub fn stop_others() {
    STOP.store(true, Ordering::Release);
    apic::nmi_all_others();
}

/// Number of CPUs that reported in (the boot CPU included).
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Called by each AP once it runs Rust code on its own stack.
pub fn report_online() {
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

extern "C" {
    static boot_pml4: u8;
    static ap_tramp_start: u8;
    static ap_tramp_slots: u8;
    static ap_tramp_end: u8;
}

/// Why an AP did not start.
#[derive(Clone, Copy, Debug)]
pub enum StartError {
    /// The AP did not reach its Rust entry within the timeout.
    Timeout { index: usize, apic_id: u32 },
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout { index, apic_id } => write!(
                f,
                "cpu{index} (APIC id {apic_id}) did not start within 1 s of INIT-SIPI-SIPI"
            ),
        }
    }
}

/// Starts the AP with local APIC id `apic_id` as CPU `index`: it runs `entry(index)` on the stack
/// whose top is `stack_top`. It starts on the boot page tables (which map the trampoline page
/// executable) and switches to the hypervisor's own in `ap_main`.
///
/// # Safety
/// `page` must be a free, identity-mapped, 4 KiB-aligned page below 1 MiB that nothing else uses
/// while APs start; `stack_top` must be the top of a stack owned by this AP alone; `entry` must
/// never return.
pub unsafe fn start_ap(
    page: HostPhysAddr,
    apic_id: u32,
    index: usize,
    stack_top: u64,
    entry: extern "C" fn(usize) -> !,
) -> Result<(), StartError> {
    let (start, slots, end) = (
        core::ptr::addr_of!(ap_tramp_start) as usize,
        core::ptr::addr_of!(ap_tramp_slots) as usize,
        core::ptr::addr_of!(ap_tramp_end) as usize,
    );
    let len = end - start;
    let dst = page.as_u64() as *mut u8;
    // SAFETY: the caller guarantees `page` is free, identity-mapped and ours; `len` < 4096.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, dst, len);
        let s = dst.add(slots - start) as *mut Slots;
        core::ptr::write_volatile(
            s,
            Slots {
                cr3: core::ptr::addr_of!(boot_pml4) as u64,
                stack_top,
                entry: entry as usize as u64,
                arg: index as u64,
            },
        );
    }
    let before = STARTED.load(Ordering::Acquire);
    let vector = (page.as_u64() >> 12) as u8;
    apic::send_init(apic_id);
    time::delay_us(10_000);
    apic::send_startup(apic_id, vector);
    time::delay_us(200);
    if STARTED.load(Ordering::Acquire) == before {
        apic::send_startup(apic_id, vector);
    }
    let deadline = time::now_us() + 1_000_000;
    while STARTED.load(Ordering::Acquire) == before {
        if time::now_us() > deadline {
            return Err(StartError::Timeout { index, apic_id });
        }
        cpu::relax();
    }
    Ok(())
}

/// Called first thing by an AP: tells the boot CPU the trampoline page is free again.
pub fn ap_arrived() {
    STARTED.fetch_add(1, Ordering::AcqRel);
}

type Job = alloc::boxed::Box<dyn FnOnce() + Send>;

static JOBS: [spin::Mutex<Option<Job>>; super::percpu::MAX_CPUS] =
    [const { spin::Mutex::new(None) }; super::percpu::MAX_CPUS];

/// Gives CPU `index` a job to run (it must be idle in [`run_jobs`]) and wakes it.
pub fn post_job(index: usize, job: Job) {
    *JOBS[index].lock() = Some(job);
    apic::send_ipi(super::percpu::apic_id(index), super::idt::KICK_VECTOR);
}

/// Wakes CPU `index` (out of HLT or guest mode) without giving it a job.
pub fn kick(index: usize) {
    apic::send_ipi(super::percpu::apic_id(index), super::idt::KICK_VECTOR);
}

/// An idle CPU's loop: run jobs as they arrive, sleep in between.
pub fn run_jobs(index: usize) -> ! {
    loop {
        let job = JOBS[index].lock().take();
        match job {
            Some(job) => job(),
            None => cpu::wait_for_interrupt(),
        }
    }
}
