//! MC146818 RTC/CMOS on ports 0x70/0x71: enough for Linux to read the wall clock and move on
//! (the time registers answer the host's UTC time in BCD, update-in-progress is never set).

use std::time::{SystemTime, UNIX_EPOCH};

/// Index port (bit 7 is the NMI mask).
pub const INDEX_PORT: u16 = 0x70;
/// Data port.
pub const DATA_PORT: u16 = 0x71;

// Register indices.
const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY_OF_WEEK: u8 = 0x06;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;

/// The CMOS device.
#[derive(Debug)]
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
    now: fn() -> u64,
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
    }
}

fn bcd(v: u64) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Cmos {
    /// A CMOS whose clock reads `now()` seconds since the Unix epoch.
    pub fn new(now: fn() -> u64) -> Self {
        let mut ram = [0u8; 128];
        ram[usize::from(STATUS_A)] = 0x26; // 32.768 kHz time base, 1024 Hz rate, UIP clear
        ram[usize::from(STATUS_B)] = 0x02; // 24-hour mode, BCD
        ram[usize::from(STATUS_D)] = 0x80; // valid RAM and time
        Cmos { index: 0, ram, now }
    }

    /// Port read.
    pub fn read(&mut self, port: u16) -> u8 {
        if port != DATA_PORT {
            return 0xff;
        }
        let t = (self.now)();
        let days = (t / 86_400) as i64;
        let secs = t % 86_400;
        let (year, month, day) = civil_from_days(days);
        match self.index {
            SECONDS => bcd(secs % 60),
            MINUTES => bcd(secs / 60 % 60),
            HOURS => bcd(secs / 3600),
            DAY_OF_WEEK => bcd(((days + 4).rem_euclid(7) + 1) as u64),
            DAY_OF_MONTH => bcd(day),
            MONTH => bcd(month),
            YEAR => bcd(year.rem_euclid(100) as u64),
            CENTURY => bcd(year.div_euclid(100) as u64),
            STATUS_C => 0,
            i => self.ram[usize::from(i & 0x7f)],
        }
    }

    /// Port write.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            INDEX_PORT => self.index = value & 0x7f,
            DATA_PORT => match self.index {
                STATUS_A | STATUS_C | STATUS_D => {}
                i => self.ram[usize::from(i)] = value,
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_clock_in_bcd() {
        // 2026-11-21 12:34:56 UTC
        let mut c = Cmos::new(|| 1_795_264_496);
        let mut reg = |i: u8| {
            c.write(INDEX_PORT, i | 0x80);
            c.read(DATA_PORT)
        };
        assert_eq!(reg(SECONDS), 0x56);
        assert_eq!(reg(MINUTES), 0x34);
        assert_eq!(reg(HOURS), 0x12);
        assert_eq!(reg(DAY_OF_MONTH), 0x21);
        assert_eq!(reg(MONTH), 0x11);
        assert_eq!(reg(YEAR), 0x26);
        assert_eq!(reg(CENTURY), 0x20);
        assert_eq!(reg(DAY_OF_WEEK), 0x07, "a Saturday");
        assert_eq!(reg(STATUS_A) & 0x80, 0, "never update-in-progress");
    }
}
