//! Per-CPU GDT and TSS. Each CPU gets its own TSS so that its double-fault, NMI and
//! machine-check handlers run on stacks of their own (IST), even when the faulting stack is bad.

use alloc::boxed::Box;

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in the TSS, 0-based in `interrupt_stack_table`) for double faults.
pub const IST_DOUBLE_FAULT: u16 = 1;
/// IST slot for NMIs (also used to stop CPUs on panic).
pub const IST_NMI: u16 = 2;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u16 = 3;

/// Stack tops for one CPU's emergency handlers.
pub struct IstStacks {
    /// Top of the double-fault stack.
    pub double_fault: u64,
    /// Top of the NMI stack.
    pub nmi: u64,
    /// Top of the machine-check stack.
    pub machine_check: u64,
}

/// Builds and loads a GDT with a 64-bit code segment (0x08), a data segment (0x10) and this
/// CPU's TSS, then reloads every segment register.
pub fn load(ist: &IstStacks) {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[usize::from(IST_DOUBLE_FAULT - 1)] = VirtAddr::new(ist.double_fault);
    tss.interrupt_stack_table[usize::from(IST_NMI - 1)] = VirtAddr::new(ist.nmi);
    tss.interrupt_stack_table[usize::from(IST_MACHINE_CHECK - 1)] =
        VirtAddr::new(ist.machine_check);
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));

    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = Box::leak(Box::new(gdt));
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded; code is a 64-bit ring-0 segment and
    // data a ring-0 data segment, so reloading them keeps executing the same code and stack.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
}

/// The hypervisor's code selector (what VMCS/VMCB host state must restore).
pub const KERNEL_CS: SegmentSelector = SegmentSelector(0x08);
/// The hypervisor's data selector.
pub const KERNEL_DS: SegmentSelector = SegmentSelector(0x10);
/// The TSS selector.
pub const KERNEL_TSS: SegmentSelector = SegmentSelector(0x18);
