//! The local APIC's register file as the guest sees it: the xAPIC MMIO page and the register
//! reads and writes both modes share (Intel SDM vol.3 §11.4.1, Table 11-1).

#![forbid(unsafe_code)]

use super::*;

/// Index in `lvt[]` of the LVT register at `offset`.
fn lvt_index(offset: u32) -> Option<usize> {
    match offset {
        REG_LVT_CMCI => Some(LVT_CMCI),
        REG_LVT_TIMER..=REG_LVT_ERROR if offset.is_multiple_of(16) => {
            Some(((offset - REG_LVT_TIMER) / 16) as usize + LVT_TIMER)
        }
        _ => None,
    }
}

/// Which of the 8 words of ISR/TMR/IRR lives at `offset`, if `offset` is in the bank at `base`.
pub(super) fn bank_word(offset: u32, base: u32) -> Option<usize> {
    (base..base + 0x80)
        .contains(&offset)
        .then(|| ((offset - base) / 16) as usize)
}

impl Lapic {
    /// Register value at `offset` in either mode's layout; `None` for reserved offsets.
    pub(super) fn read_reg(&self, offset: u32, now_tsc: u64) -> Option<u32> {
        let is_x2apic = self.mode == ApicMode::X2Apic;
        if let Some(i) = lvt_index(offset) {
            return Some(self.lvt[i]);
        }
        if let Some(w) = bank_word(offset, REG_ISR) {
            return Some(self.isr[w]);
        }
        if let Some(w) = bank_word(offset, REG_TMR) {
            return Some(self.tmr[w]);
        }
        if let Some(w) = bank_word(offset, REG_IRR) {
            return Some(self.irr[w]);
        }
        Some(match offset {
            REG_ID if is_x2apic => self.id,
            REG_ID => u32::from(self.xapic_id) << XAPIC_ID_SHIFT,
            REG_VERSION => VERSION_VALUE,
            REG_TPR => u32::from(self.tpr),
            REG_APR => u32::from(self.apr()),
            REG_PPR => u32::from(self.ppr()),
            REG_EOI | REG_RRD => 0,
            REG_LDR => self.ldr,
            REG_DFR => self.dfr,
            REG_SVR => self.svr,
            REG_ESR => self.esr,
            REG_ICR_LOW => self.icr_low,
            REG_ICR_HIGH => self.icr_high,
            REG_TIMER_INITIAL => self.timer.initial_count(),
            REG_TIMER_CURRENT => self.timer.current_count(self.timer_mode(), now_tsc),
            REG_TIMER_DIVIDE => self.timer.dcr(),
            _ => return None,
        })
    }

    /// Register write shared by both modes (the x2APIC path filters out what it forbids first).
    pub(super) fn write_reg(
        &mut self,
        offset: u32,
        value: u32,
        now_tsc: u64,
    ) -> Option<ApicAction> {
        if let Some(i) = lvt_index(offset) {
            self.write_lvt(i, value, now_tsc);
            return None;
        }
        match offset {
            REG_ID => self.xapic_id = (value >> XAPIC_ID_SHIFT) as u8,
            REG_TPR => self.tpr = value as u8,
            REG_EOI => return self.eoi(),
            REG_LDR => self.ldr = value & XAPIC_LDR_WRITABLE,
            // Only the model bits 31:28 are writable; the rest read as ones.
            REG_DFR => self.dfr = value | 0x0FFF_FFFF,
            REG_SVR => {
                self.svr = value & SVR_WRITABLE;
                if !self.is_software_enabled() {
                    // SDM §11.4.7.2: software disable masks every LVT entry.
                    self.lvt.iter_mut().for_each(|l| *l |= LVT_MASKED);
                }
            }
            REG_ESR => self.esr = core::mem::take(&mut self.esr_pending),
            REG_ICR_LOW => {
                self.icr_low = value & ICR_LOW_WRITABLE;
                return self.send_ipi();
            }
            REG_ICR_HIGH => self.icr_high = value & XAPIC_ICR_HIGH_WRITABLE,
            REG_TIMER_INITIAL => {
                self.poll(now_tsc);
                self.timer
                    .write_initial_count(value, self.timer_mode(), now_tsc);
            }
            REG_TIMER_DIVIDE => {
                self.poll(now_tsc);
                self.timer.write_dcr(value, self.timer_mode(), now_tsc);
            }
            _ => {}
        }
        None
    }

    fn write_lvt(&mut self, index: usize, value: u32, now_tsc: u64) {
        let Some(&writable) = LVT_WRITABLE.get(index) else {
            return;
        };
        let old = self.timer_mode();
        if index == LVT_TIMER {
            // Settle what fired under the old setting before the mask or mode changes.
            self.poll(now_tsc);
        }
        let mut value = value & writable;
        if !self.is_software_enabled() {
            value |= LVT_MASKED;
        }
        self.lvt[index] = value;
        if index == LVT_TIMER {
            self.timer.change_mode(old, self.timer_mode());
        }
    }

    /// Guest read of the xAPIC page at byte `offset` (32-bit access). Outside xAPIC mode the page
    /// is unpopulated and reads all-ones; reserved or misaligned offsets read 0.
    pub fn mmio_read(&self, offset: u64, now_tsc: u64) -> u32 {
        if self.mode != ApicMode::XApic {
            return u32::MAX;
        }
        match u32::try_from(offset) {
            Ok(off) if off.is_multiple_of(16) && off != REG_SELF_IPI => {
                self.read_reg(off, now_tsc).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Guest write of the xAPIC page at byte `offset` (32-bit access). Writes outside xAPIC
    /// mode, to read-only, reserved or misaligned offsets are dropped.
    pub fn mmio_write(&mut self, offset: u64, value: u32, now_tsc: u64) -> Option<ApicAction> {
        if self.mode != ApicMode::XApic {
            return None;
        }
        match u32::try_from(offset) {
            Ok(off) if off.is_multiple_of(16) && off != REG_SELF_IPI => {
                self.write_reg(off, value, now_tsc)
            }
            _ => None,
        }
    }
}
