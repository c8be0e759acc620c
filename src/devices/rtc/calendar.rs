//! Unix seconds ⇄ proleptic Gregorian calendar fields, for the RTC's time registers.
//!
//! Days are counted in 400-year eras starting on 1 March, so that the leap day is the last day
//! of its year and every era has the same length.

#![forbid(unsafe_code)]

const SECONDS_PER_DAY: i64 = 86_400;
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 (the start of era 0) to 1970-01-01.
const UNIX_EPOCH_DAY: i64 = 719_468;
/// Month lengths from March; February comes last, so its length never bounds a search.
const MONTH_DAYS_FROM_MARCH: [i64; 12] = [31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 29];
/// 1970-01-01 was a Thursday; the RTC numbers Sunday 1 … Saturday 7.
const EPOCH_WEEKDAY: i64 = 5;

/// A calendar date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year (e.g. 2024).
    pub year: i64,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
}

/// Days before March-based year `year_of_era` (0–400) within its era.
fn days_before_year(year_of_era: i64) -> i64 {
    365 * year_of_era + year_of_era / 4 - year_of_era / 100
}

impl DateTime {
    /// The date and time `unix_secs` seconds after 1970-01-01 00:00:00 UTC (negative: before).
    pub fn from_unix(unix_secs: i64) -> Self {
        let days = unix_secs.div_euclid(SECONDS_PER_DAY) + UNIX_EPOCH_DAY;
        let secs_of_day = unix_secs.rem_euclid(SECONDS_PER_DAY);
        let era = days.div_euclid(DAYS_PER_ERA);
        let day_of_era = days.rem_euclid(DAYS_PER_ERA);
        // Every year has at most 366 days, so this starts at or below the answer.
        let mut year_of_era = day_of_era / 366;
        while year_of_era < 399 && days_before_year(year_of_era + 1) <= day_of_era {
            year_of_era += 1;
        }
        let mut day_of_year = day_of_era - days_before_year(year_of_era);
        let mut month_from_march = 0;
        while month_from_march < 11 && day_of_year >= MONTH_DAYS_FROM_MARCH[month_from_march] {
            day_of_year -= MONTH_DAYS_FROM_MARCH[month_from_march];
            month_from_march += 1;
        }
        // March..December belong to the March-based year; January and February to the next.
        let (month, year_carry) = if month_from_march < 10 {
            (month_from_march + 3, 0)
        } else {
            (month_from_march - 9, 1)
        };
        Self {
            year: era * 400 + year_of_era + year_carry,
            month: month as u8,
            day: day_of_year as u8 + 1,
            hour: (secs_of_day / 3600) as u8,
            minute: (secs_of_day / 60 % 60) as u8,
            second: (secs_of_day % 60) as u8,
        }
    }

    /// Unix seconds of this date and time. Out-of-range fields roll over (day 31 of a 30-day
    /// month is the 1st of the next, hour 24 is the next day); months are clamped to 1–12.
    pub fn to_unix(&self) -> i64 {
        let month = i64::from(self.month.clamp(1, 12));
        let (year, month_from_march) = if month >= 3 {
            (self.year, month - 3)
        } else {
            (self.year - 1, month + 9)
        };
        let era = year.div_euclid(400);
        let year_of_era = year.rem_euclid(400);
        let days_before_month: i64 = MONTH_DAYS_FROM_MARCH[..month_from_march as usize]
            .iter()
            .sum();
        let day_of_era =
            days_before_year(year_of_era) + days_before_month + i64::from(self.day) - 1;
        // Saturating: a far-out year from a caller must not overflow (the RTC keeps 0–9999).
        let days = era
            .saturating_mul(DAYS_PER_ERA)
            .saturating_add(day_of_era - UNIX_EPOCH_DAY);
        days.saturating_mul(SECONDS_PER_DAY).saturating_add(
            i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second),
        )
    }
}

/// Day of the week of `unix_secs`, Sunday = 1 … Saturday = 7.
pub fn weekday(unix_secs: i64) -> u8 {
    ((unix_secs.div_euclid(SECONDS_PER_DAY) + EPOCH_WEEKDAY - 1).rem_euclid(7) + 1) as u8
}
