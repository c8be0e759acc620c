//! The local APIC timer: one-shot, periodic and TSC-deadline modes (Intel SDM vol.3 §11.5.4).
//!
//! Time is the guest's TSC, given by the caller; the timer counts at `timer_khz` before the
//! divider. Instead of counting down, the timer remembers the TSC at which the count reaches
//! zero and derives the current count from it, so nothing happens between exits.

#![forbid(unsafe_code)]

/// LVT timer mode field (bits 18:17), SDM §11.5.1 figure 11-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Counts down once from the initial count.
    OneShot,
    /// Reloads the initial count each time it reaches zero.
    Periodic,
    /// Fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

impl TimerMode {
    /// Mode from an LVT timer register value (the reserved encoding 11b counts as one-shot).
    pub fn from_lvt(lvt: u32) -> Self {
        match (lvt >> 17) & 0b11 {
            0b01 => Self::Periodic,
            0b10 => Self::TscDeadline,
            _ => Self::OneShot,
        }
    }
}

/// Divide configuration bits that are writable: 0, 1 and 3 (SDM §11.5.4 figure 11-10).
pub(super) const DCR_MASK: u32 = 0b1011;

/// Counting state of one local APIC timer.
#[derive(Clone, Debug)]
pub(super) struct Timer {
    tsc_khz: u64,
    timer_khz: u64,
    initial_count: u32,
    dcr: u32,
    /// TSC at which the count reaches zero, while counting (one-shot and periodic modes).
    expiry_tsc: Option<u64>,
    /// IA32_TSC_DEADLINE; 0 is disarmed (SDM §11.5.4.1).
    deadline_tsc: u64,
}

impl Timer {
    pub(super) fn new(tsc_khz: u64, timer_khz: u32) -> Self {
        // Zero frequencies would divide by zero below; a 1 kHz floor keeps the maths defined.
        Self {
            tsc_khz: tsc_khz.max(1),
            timer_khz: u64::from(timer_khz.max(1)),
            initial_count: 0,
            dcr: 0,
            expiry_tsc: None,
            deadline_tsc: 0,
        }
    }

    /// Back to the reset state: stopped, divide by 2, no deadline.
    pub(super) fn reset(&mut self) {
        *self = Self {
            initial_count: 0,
            dcr: 0,
            expiry_tsc: None,
            deadline_tsc: 0,
            ..*self
        };
    }

    /// Divider selected by the DCR: bits 3,1,0 = 111b is 1, otherwise 2^(value+1).
    fn divide(&self) -> u64 {
        let value = ((self.dcr >> 1) & 0b100) | (self.dcr & 0b11);
        1 << ((value + 1) & 0b111)
    }

    /// TSC ticks for `count` timer decrements at the current divider (at least 1).
    fn count_to_tsc(&self, count: u32) -> u64 {
        let ticks = u128::from(count) * u128::from(self.divide()) * u128::from(self.tsc_khz)
            / u128::from(self.timer_khz);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    /// The count left at `now`: the TSC time left converted to decrements, rounded up.
    fn remaining_count(&self, expiry: u64, now: u64) -> u32 {
        let left_tsc = u128::from(expiry.saturating_sub(now));
        let per_decrement = u128::from(self.tsc_khz) * u128::from(self.divide());
        let count = (left_tsc * u128::from(self.timer_khz)).div_ceil(per_decrement);
        u32::try_from(count)
            .unwrap_or(u32::MAX)
            .min(self.initial_count)
    }

    pub(super) fn initial_count(&self) -> u32 {
        self.initial_count
    }

    pub(super) fn dcr(&self) -> u32 {
        self.dcr
    }

    /// Write of the initial-count register: (re)starts counting; 0 stops the timer. Ignored in
    /// TSC-deadline mode (SDM §11.5.4.1).
    pub(super) fn write_initial_count(&mut self, count: u32, mode: TimerMode, now: u64) {
        if mode == TimerMode::TscDeadline {
            return;
        }
        self.initial_count = count;
        self.expiry_tsc = (count != 0).then(|| now.saturating_add(self.count_to_tsc(count)));
    }

    /// The current-count register at `now`.
    pub(super) fn current_count(&self, mode: TimerMode, now: u64) -> u32 {
        match (mode, self.expiry_tsc) {
            (TimerMode::TscDeadline, _) | (_, None) => 0,
            (TimerMode::OneShot, Some(expiry)) => self.remaining_count(expiry, now),
            (TimerMode::Periodic, Some(expiry)) => {
                // Not yet polled past one or more reloads: fold the lost periods away.
                let period = self.count_to_tsc(self.initial_count);
                let expiry = if now >= expiry {
                    expiry.saturating_add(((now - expiry) / period + 1).saturating_mul(period))
                } else {
                    expiry
                };
                self.remaining_count(expiry, now)
            }
        }
    }

    /// Write of the divide configuration: the count keeps going from where it is, at the new
    /// rate.
    pub(super) fn write_dcr(&mut self, value: u32, mode: TimerMode, now: u64) {
        let remaining = self.current_count(mode, now);
        self.dcr = value & DCR_MASK;
        if self.expiry_tsc.is_some() && remaining != 0 {
            self.expiry_tsc = Some(now.saturating_add(self.count_to_tsc(remaining)));
        }
    }

    /// The LVT timer mode changed. Switching into or out of TSC-deadline mode disarms the timer
    /// (SDM §11.5.4.1); one-shot and periodic keep counting.
    pub(super) fn change_mode(&mut self, old: TimerMode, new: TimerMode) {
        if old != new && (old == TimerMode::TscDeadline || new == TimerMode::TscDeadline) {
            self.initial_count = 0;
            self.expiry_tsc = None;
            self.deadline_tsc = 0;
        }
    }

    /// IA32_TSC_DEADLINE as the guest reads it: 0 unless armed in TSC-deadline mode.
    pub(super) fn deadline(&self, mode: TimerMode) -> u64 {
        if mode == TimerMode::TscDeadline {
            self.deadline_tsc
        } else {
            0
        }
    }

    /// Write of IA32_TSC_DEADLINE: arms (or with 0 disarms) the timer; ignored outside
    /// TSC-deadline mode (SDM §11.5.4.1).
    pub(super) fn write_deadline(&mut self, value: u64, mode: TimerMode) {
        if mode == TimerMode::TscDeadline {
            self.deadline_tsc = value;
        }
    }

    /// TSC at which the timer next fires, if it is armed.
    pub(super) fn next_expiry(&self, mode: TimerMode) -> Option<u64> {
        match mode {
            TimerMode::TscDeadline => (self.deadline_tsc != 0).then_some(self.deadline_tsc),
            _ => self.expiry_tsc,
        }
    }

    /// Advances to `now`; true when the timer fired since the last call (several lost periods
    /// fire once, as the IRR bit would coalesce them anyway).
    pub(super) fn poll(&mut self, mode: TimerMode, now: u64) -> bool {
        match mode {
            TimerMode::TscDeadline => {
                let fired = self.deadline_tsc != 0 && now >= self.deadline_tsc;
                if fired {
                    self.deadline_tsc = 0;
                }
                fired
            }
            TimerMode::OneShot => match self.expiry_tsc {
                Some(expiry) if now >= expiry => {
                    self.expiry_tsc = None;
                    true
                }
                _ => false,
            },
            TimerMode::Periodic => match self.expiry_tsc {
                Some(expiry) if now >= expiry => {
                    let period = self.count_to_tsc(self.initial_count);
                    let periods = (now - expiry) / period + 1;
                    self.expiry_tsc = Some(expiry.saturating_add(periods.saturating_mul(period)));
                    true
                }
                _ => false,
            },
        }
    }
}
