//! An emulated MC146818 real-time clock and its CMOS RAM, at I/O ports 0x70 (index) and 0x71
//! (data).
//!
//! The clock is the host's Unix time, given by the caller on every access, plus an offset the
//! guest sets by writing the time registers. Register values are computed when read, in BCD or
//! binary and 12- or 24-hour form as register B asks, so there is no update cycle to emulate:
//! UIP never reads as set. The RTC raises no interrupts (IRQ 8); register C still reports the
//! update-ended flag for guests that poll it.

#![forbid(unsafe_code)]

mod calendar;

#[cfg(test)]
mod tests;

pub use calendar::DateTime;

/// Index port; bit 7 of the value written is the NMI mask, which is ignored.
pub const INDEX_PORT: u16 = 0x70;
/// Data port for the register the index selects.
pub const DATA_PORT: u16 = 0x71;
/// Bytes of CMOS RAM, registers included.
pub const CMOS_SIZE: usize = 128;

// Register indices (MC146818 datasheet; century at 0x32 as on the PC/AT).
const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY_OF_WEEK: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0A;
const REG_B: u8 = 0x0B;
const REG_C: u8 = 0x0C;
const REG_D: u8 = 0x0D;
const REG_CENTURY: u8 = 0x32;
const INDEX_MASK: u8 = 0x7F;

/// Register A: update in progress (never set here), and its reset value (32.768 kHz time base,
/// 1024 Hz periodic rate).
const A_UIP: u8 = 1 << 7;
const A_RESET: u8 = 0x26;
/// Register B bits.
const B_SET: u8 = 1 << 7;
const B_PIE: u8 = 1 << 6;
const B_AIE: u8 = 1 << 5;
const B_UIE: u8 = 1 << 4;
const B_BINARY: u8 = 1 << 2;
const B_24_HOUR: u8 = 1 << 1;
/// Reset value of register B: 24-hour, BCD.
const B_RESET: u8 = B_24_HOUR;
/// Register C flags: interrupt request, periodic, alarm, update ended.
const C_IRQF: u8 = 1 << 7;
const C_UF: u8 = 1 << 4;
const C_FLAGS: u8 = 0x70;
/// Register D: valid RAM and time (the battery is fine).
const D_VRT: u8 = 1 << 7;
/// 0000-01-01 00:00:00 and 9999-12-31 23:59:59 in Unix seconds: the range of a BCD century
/// and year.
const FIRST_SECOND: i64 = -62_167_219_200;
const LAST_SECOND: i64 = 253_402_300_799;
/// PM flag of the hours register in 12-hour mode.
const HOURS_PM: u8 = 1 << 7;

/// One guest's RTC and CMOS.
#[derive(Clone, Debug)]
pub struct Rtc {
    index: u8,
    /// Plain bytes and registers A, B and the alarms; time registers are computed instead.
    cmos: [u8; CMOS_SIZE],
    /// Guest time minus host time, in seconds.
    offset_secs: i64,
    /// While register B's SET bit is on: the frozen time the guest is editing.
    latched: Option<DateTime>,
    /// Guest time when register C was last read (for its update-ended flag).
    last_c_read_secs: i64,
}

fn to_i64(unix: u64) -> i64 {
    i64::try_from(unix).unwrap_or(i64::MAX)
}

impl Rtc {
    /// An RTC showing the host's time; `unix_now` is the host time now.
    pub fn new(unix_now: u64) -> Self {
        let mut cmos = [0; CMOS_SIZE];
        cmos[usize::from(REG_A)] = A_RESET;
        cmos[usize::from(REG_B)] = B_RESET;
        Self {
            index: 0,
            cmos,
            offset_secs: 0,
            latched: None,
            last_c_read_secs: to_i64(unix_now),
        }
    }

    /// Presets a plain CMOS byte (firmware configuration); clock registers are left alone.
    pub fn set_cmos(&mut self, index: u8, value: u8) {
        if Self::is_plain(index) {
            self.cmos[usize::from(index)] = value;
        }
    }

    /// Bytes with no behaviour: alarms, and everything from 0x0E up but the century.
    fn is_plain(index: u8) -> bool {
        matches!(index, 0x01 | 0x03 | 0x05 | 0x0E..=0x7F) && index != REG_CENTURY
    }

    fn reg_b(&self) -> u8 {
        self.cmos[usize::from(REG_B)]
    }

    /// Guest time now, kept within the years the registers can show (0000–9999).
    fn guest_secs(&self, now_unix: u64) -> i64 {
        to_i64(now_unix)
            .saturating_add(self.offset_secs)
            .clamp(FIRST_SECOND, LAST_SECOND)
    }

    /// The time the registers show: the latched one while SET is on.
    fn now(&self, now_unix: u64) -> DateTime {
        self.latched
            .unwrap_or_else(|| DateTime::from_unix(self.guest_secs(now_unix)))
    }

    fn encode(&self, value: u8) -> u8 {
        if self.reg_b() & B_BINARY != 0 {
            value
        } else {
            // Two BCD digits; a field the guest wrote out of range (latched) keeps its last two.
            let value = value % 100;
            ((value / 10) << 4) | (value % 10)
        }
    }

    fn decode(&self, value: u8) -> u8 {
        if self.reg_b() & B_BINARY != 0 {
            value
        } else {
            (value >> 4) * 10 + (value & 0xF)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.reg_b() & B_24_HOUR != 0 {
            return self.encode(hour);
        }
        // 12-hour clock: 12 AM is midnight, 12 PM noon.
        let twelve = if hour.is_multiple_of(12) {
            12
        } else {
            hour % 12
        };
        self.encode(twelve) | if hour >= 12 { HOURS_PM } else { 0 }
    }

    fn decode_hour(&self, value: u8) -> u8 {
        if self.reg_b() & B_24_HOUR != 0 {
            return self.decode(value);
        }
        self.decode(value & !HOURS_PM) % 12 + if value & HOURS_PM != 0 { 12 } else { 0 }
    }

    /// Guest IN from `port`.
    pub fn read(&mut self, port: u16, now_unix: u64) -> u8 {
        if port != DATA_PORT {
            // The index port is write-only.
            return 0xFF;
        }
        let t = self.now(now_unix);
        match self.index {
            REG_SECONDS => self.encode(t.second),
            REG_MINUTES => self.encode(t.minute),
            REG_HOURS => self.encode_hour(t.hour),
            REG_DAY_OF_WEEK => self.encode(calendar::weekday(t.to_unix())),
            REG_DAY => self.encode(t.day),
            REG_MONTH => self.encode(t.month),
            REG_YEAR => self.encode(t.year.rem_euclid(100) as u8),
            REG_CENTURY => self.encode(t.year.div_euclid(100).rem_euclid(100) as u8),
            REG_A => self.cmos[usize::from(REG_A)] & !A_UIP,
            REG_C => self.read_flags(now_unix),
            REG_D => D_VRT,
            i => self.cmos.get(usize::from(i)).copied().unwrap_or(0xFF),
        }
    }

    /// Register C: flags raised since the last read, cleared by reading.
    fn read_flags(&mut self, now_unix: u64) -> u8 {
        let secs = self.guest_secs(now_unix);
        let updated = self.latched.is_none() && secs != self.last_c_read_secs;
        self.last_c_read_secs = secs;
        let flags = if updated { C_UF } else { 0 };
        let enabled = self.reg_b() & (B_PIE | B_AIE | B_UIE);
        flags
            | if flags & enabled & C_FLAGS != 0 {
                C_IRQF
            } else {
                0
            }
    }

    /// Guest OUT to `port`.
    pub fn write(&mut self, port: u16, value: u8, now_unix: u64) {
        match port {
            INDEX_PORT => self.index = value & INDEX_MASK,
            DATA_PORT => self.write_data(value, now_unix),
            _ => {}
        }
    }

    fn write_data(&mut self, value: u8, now_unix: u64) {
        let mut t = self.now(now_unix);
        match self.index {
            REG_SECONDS => t.second = self.decode(value),
            REG_MINUTES => t.minute = self.decode(value),
            REG_HOURS => t.hour = self.decode_hour(value),
            REG_DAY => t.day = self.decode(value),
            REG_MONTH => t.month = self.decode(value),
            REG_YEAR => t.year = t.year.div_euclid(100) * 100 + i64::from(self.decode(value)),
            REG_CENTURY => t.year = i64::from(self.decode(value)) * 100 + t.year.rem_euclid(100),
            REG_B => return self.write_b(value, now_unix),
            REG_A => {
                self.cmos[usize::from(REG_A)] = value & !A_UIP;
                return;
            }
            i if Self::is_plain(i) => {
                self.cmos[usize::from(i)] = value;
                return;
            }
            // Day of week is derived from the date; C and D are read-only.
            _ => return,
        }
        self.set_time(t, now_unix);
    }

    /// The guest set the clock: edited while SET is on, or at once.
    fn set_time(&mut self, t: DateTime, now_unix: u64) {
        if self.latched.is_some() {
            self.latched = Some(t);
        } else {
            self.offset_secs = t.to_unix().saturating_sub(to_i64(now_unix));
        }
    }

    fn write_b(&mut self, value: u8, now_unix: u64) {
        let was_set = self.reg_b() & B_SET != 0;
        let mut value = value;
        if value & B_SET != 0 {
            // Datasheet: setting SET stops updates and clears UIE.
            value &= !B_UIE;
            if !was_set {
                self.latched = Some(self.now(now_unix));
            }
        } else if let Some(t) = self.latched.take() {
            // Clearing SET starts the clock from the time the guest wrote.
            self.offset_secs = t.to_unix().saturating_sub(to_i64(now_unix));
        }
        self.cmos[usize::from(REG_B)] = value;
    }
}
