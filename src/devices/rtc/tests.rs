//! The RTC against a fake host clock.

use super::*;

/// 2024-02-29 12:34:56 UTC, a Thursday.
const LEAP_DAY: u64 = 1_709_210_096;
/// 2099-12-31 23:59:59 UTC, a Thursday.
const LAST_SECOND_2099: u64 = 4_102_444_799;

fn dt(year: i64, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> DateTime {
    DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    }
}

fn get(rtc: &mut Rtc, index: u8, now: u64) -> u8 {
    rtc.write(INDEX_PORT, index, now);
    rtc.read(DATA_PORT, now)
}

fn put(rtc: &mut Rtc, index: u8, value: u8, now: u64) {
    rtc.write(INDEX_PORT, index, now);
    rtc.write(DATA_PORT, value, now);
}

/// Seconds, minutes, hours, weekday, day, month, year, century as the guest reads them.
fn clock(rtc: &mut Rtc, now: u64) -> [u8; 8] {
    [
        REG_SECONDS,
        REG_MINUTES,
        REG_HOURS,
        REG_DAY_OF_WEEK,
        REG_DAY,
        REG_MONTH,
        REG_YEAR,
        REG_CENTURY,
    ]
    .map(|r| get(rtc, r, now))
}

#[test]
fn calendar_conversions() {
    for (unix, date, weekday) in [
        (0, dt(1970, 1, 1, 0, 0, 0), 5),
        (-1, dt(1969, 12, 31, 23, 59, 59), 4),
        (1_709_210_096, dt(2024, 2, 29, 12, 34, 56), 5),
        (951_782_400, dt(2000, 2, 29, 0, 0, 0), 3),
        (1_677_628_800, dt(2023, 3, 1, 0, 0, 0), 4),
        (4_102_444_799, dt(2099, 12, 31, 23, 59, 59), 5),
        (4_102_444_800, dt(2100, 1, 1, 0, 0, 0), 6),
        (4_107_542_399, dt(2100, 2, 28, 23, 59, 59), 1),
        (2_147_483_648, dt(2038, 1, 19, 3, 14, 8), 3),
        (-2_203_891_200, dt(1900, 3, 1, 0, 0, 0), 5),
        (253_402_300_799, dt(9999, 12, 31, 23, 59, 59), 6),
        (FIRST_SECOND, dt(0, 1, 1, 0, 0, 0), 7),
    ] {
        assert_eq!(DateTime::from_unix(unix), date, "{unix}");
        assert_eq!(date.to_unix(), unix, "{date:?}");
        assert_eq!(calendar::weekday(unix), weekday, "{date:?}");
    }
    assert_eq!(
        DateTime::from_unix(4_107_542_400),
        dt(2100, 3, 1, 0, 0, 0),
        "2100 is not a leap year"
    );
    assert_eq!(
        dt(2023, 2, 29, 0, 0, 0).to_unix(),
        dt(2023, 3, 1, 0, 0, 0).to_unix(),
        "days roll over"
    );
}

#[test]
fn every_day_follows_the_previous_one() {
    // 1899-01-01 to 2101-12-31 (and beyond both ends of the 1900 and 2100 non-leap years).
    let mut prev = DateTime::from_unix(dt(1899, 1, 1, 0, 0, 0).to_unix());
    for day in
        dt(1899, 1, 2, 0, 0, 0).to_unix() / 86_400..dt(2102, 1, 1, 0, 0, 0).to_unix() / 86_400
    {
        let unix = day * 86_400 + 43_200;
        let d = DateTime::from_unix(unix);
        assert_eq!(d.to_unix(), unix);
        let next_day = d.day == prev.day + 1 && d.month == prev.month && d.year == prev.year;
        let next_month = d.day == 1
            && (d.month == prev.month + 1 && d.year == prev.year
                || d.month == 1 && prev.month == 12 && d.year == prev.year + 1);
        assert!(next_day || next_month, "{prev:?} → {d:?}");
        if d.month == 2 && d.day == 29 {
            assert!(
                d.year % 4 == 0 && (d.year % 100 != 0 || d.year % 400 == 0),
                "{d:?}"
            );
        }
        prev = d;
    }
}

#[test]
fn bcd_and_binary() {
    let mut rtc = Rtc::new(LEAP_DAY);
    assert_eq!(
        clock(&mut rtc, LEAP_DAY),
        [0x56, 0x34, 0x12, 0x05, 0x29, 0x02, 0x24, 0x20]
    );
    put(&mut rtc, REG_B, B_24_HOUR | B_BINARY, LEAP_DAY);
    assert_eq!(clock(&mut rtc, LEAP_DAY), [56, 34, 12, 5, 29, 2, 24, 20]);
    assert_eq!(get(&mut rtc, REG_B, LEAP_DAY), B_24_HOUR | B_BINARY);
}

#[test]
fn twelve_hour_mode() {
    let mut rtc = Rtc::new(0);
    let midnight = dt(2024, 2, 29, 0, 0, 0).to_unix() as u64;
    put(&mut rtc, REG_B, 0, midnight);
    for (hour, bcd, binary) in [
        (0, 0x12, 12),
        (1, 0x01, 1),
        (11, 0x11, 11),
        (12, 0x92, 0x8C),
        (13, 0x81, 0x81),
        (23, 0x91, 0x8B),
    ] {
        let now = midnight + hour * 3600;
        put(&mut rtc, REG_B, 0, now);
        assert_eq!(get(&mut rtc, REG_HOURS, now), bcd, "{hour}h BCD");
        put(&mut rtc, REG_B, B_BINARY, now);
        assert_eq!(get(&mut rtc, REG_HOURS, now), binary, "{hour}h binary");
    }
    // Writing 12-hour values: 3 PM.
    put(&mut rtc, REG_B, 0, midnight);
    put(&mut rtc, REG_HOURS, 0x83, midnight);
    put(&mut rtc, REG_B, B_24_HOUR, midnight);
    assert_eq!(get(&mut rtc, REG_HOURS, midnight), 0x15);
}

#[test]
fn century_rollover() {
    let mut rtc = Rtc::new(LAST_SECOND_2099);
    assert_eq!(
        clock(&mut rtc, LAST_SECOND_2099),
        [0x59, 0x59, 0x23, 0x05, 0x31, 0x12, 0x99, 0x20]
    );
    assert_eq!(
        clock(&mut rtc, LAST_SECOND_2099 + 1),
        [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x00, 0x21]
    );
}

#[test]
fn guest_sets_the_time() {
    let t0 = LEAP_DAY;
    let mut rtc = Rtc::new(t0);
    // As Linux does: SET on, fields, SET off. Month before day would pass through 31 February.
    put(&mut rtc, REG_B, B_SET | B_24_HOUR, t0);
    for (reg, value) in [
        (REG_MONTH, 0x06),
        (REG_DAY, 0x15),
        (REG_YEAR, 0x30),
        (REG_HOURS, 0x08),
        (REG_MINUTES, 0x00),
        (REG_SECONDS, 0x00),
    ] {
        put(&mut rtc, reg, value, t0);
    }
    assert_eq!(
        get(&mut rtc, REG_SECONDS, t0 + 30),
        0x00,
        "frozen while SET"
    );
    put(&mut rtc, REG_B, B_24_HOUR, t0 + 30);
    assert_eq!(
        clock(&mut rtc, t0 + 91),
        [0x01, 0x01, 0x08, 0x07, 0x15, 0x06, 0x30, 0x20],
        "2030-06-15 08:01:01, Saturday"
    );
    // One field at a time, no SET: the others keep running.
    put(&mut rtc, REG_MINUTES, 0x45, t0 + 91);
    assert_eq!(clock(&mut rtc, t0 + 92)[..3], [0x02, 0x45, 0x08]);
    put(&mut rtc, REG_CENTURY, 0x21, t0 + 92);
    assert_eq!(clock(&mut rtc, t0 + 92)[6..], [0x30, 0x21]);
    put(&mut rtc, REG_DAY_OF_WEEK, 0x01, t0 + 92);
    assert_eq!(
        get(&mut rtc, REG_DAY_OF_WEEK, t0 + 92),
        0x05,
        "derived from the date (2130-06-15 is a Thursday)"
    );
}

#[test]
fn index_data_protocol_and_plain_cmos() {
    let mut rtc = Rtc::new(LEAP_DAY);
    assert_eq!(
        get(&mut rtc, 0x80 | REG_A, LEAP_DAY),
        A_RESET,
        "NMI-mask bit ignored"
    );
    assert_eq!(rtc.read(INDEX_PORT, LEAP_DAY), 0xFF);
    assert_eq!(rtc.read(0x72, LEAP_DAY), 0xFF);
    put(&mut rtc, REG_A, 0xA6, LEAP_DAY);
    assert_eq!(get(&mut rtc, REG_A, LEAP_DAY), 0x26, "UIP never reads set");
    assert_eq!(get(&mut rtc, REG_D, LEAP_DAY), D_VRT);
    put(&mut rtc, REG_D, 0, LEAP_DAY);
    assert_eq!(get(&mut rtc, REG_D, LEAP_DAY), D_VRT, "read-only");
    for index in [0x01, 0x03, 0x05, 0x0E, 0x31, 0x33, 0x7F] {
        put(&mut rtc, index, index ^ 0xA5, LEAP_DAY);
        assert_eq!(
            get(&mut rtc, index, LEAP_DAY),
            index ^ 0xA5,
            "byte {index:#x}"
        );
    }
    rtc.set_cmos(0x34, 0x12);
    rtc.set_cmos(REG_B, 0xFF);
    assert_eq!(get(&mut rtc, 0x34, LEAP_DAY), 0x12);
    assert_eq!(
        get(&mut rtc, REG_B, LEAP_DAY),
        B_RESET,
        "set_cmos leaves registers alone"
    );
    assert_eq!(
        clock(&mut rtc, LEAP_DAY)[0],
        0x56,
        "alarm writes do not move the clock"
    );
}

#[test]
fn register_c_reports_updates() {
    let mut rtc = Rtc::new(LEAP_DAY);
    assert_eq!(get(&mut rtc, REG_C, LEAP_DAY), 0);
    assert_eq!(get(&mut rtc, REG_C, LEAP_DAY + 1), C_UF);
    assert_eq!(get(&mut rtc, REG_C, LEAP_DAY + 1), 0, "read clears");
    put(&mut rtc, REG_B, B_24_HOUR | B_UIE, LEAP_DAY + 1);
    assert_eq!(get(&mut rtc, REG_C, LEAP_DAY + 2), C_IRQF | C_UF);
    put(&mut rtc, REG_B, B_SET | B_UIE, LEAP_DAY + 2);
    assert_eq!(get(&mut rtc, REG_B, LEAP_DAY + 2), B_SET, "SET clears UIE");
    assert_eq!(
        get(&mut rtc, REG_C, LEAP_DAY + 5),
        0,
        "no updates while SET"
    );
}

#[test]
fn garbage_never_panics() {
    for b in [0x00, B_BINARY, B_24_HOUR, B_SET, B_SET | B_BINARY] {
        let mut rtc = Rtc::new(u64::MAX);
        put(&mut rtc, REG_B, b, u64::MAX);
        for index in 0..=0xFF {
            put(&mut rtc, index, 0xFF, u64::MAX);
        }
        for index in 0..=0xFF {
            get(&mut rtc, index, 0);
            get(&mut rtc, index, u64::MAX);
        }
    }
}
