//! SMART data structures (ACS-3 7.48 SMART feature set, and the SMART logs of annex A):
//! READ DATA, READ THRESHOLDS, the summary error log (01h), the SMART self-test log (06h), the
//! extended self-test log (07h) and the extended comprehensive error log (03h). Every
//! structure is one 512-byte page whose byte 511 makes the page sum to 0 (the data structure
//! checksum, ACS-3 7.48.6.2).
//!
//! The attribute table follows the layout every drive and smartctl use (ACS-3 leaves the
//! attributes vendor specific): revision 0010h, then 30 entries of 12 bytes (id, flags,
//! normalized value, worst, 6 raw bytes, reserved).

use super::log::{seal_checksum, LogPage};
use super::registers::SECTOR_SIZE;

/// What the attributes report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub power_on_hours: u64,
    pub power_cycles: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
    /// Degrees Celsius.
    pub temperature: u8,
}

/// Attribute flags (the vendor-neutral meaning smartctl prints).
mod flag {
    /// Pre-failure (the threshold is a warranty one).
    pub const PREFAIL: u16 = 1 << 0;
    /// Updated during normal operation.
    pub const ONLINE: u16 = 1 << 1;
    /// An event count.
    pub const EVENT_COUNT: u16 = 1 << 4;
    /// Self-preserving: kept across power cycles.
    pub const SELF_PRESERVING: u16 = 1 << 5;
}

/// One attribute: id, flags, threshold.
struct Attribute {
    id: u8,
    flags: u16,
    threshold: u8,
}

/// The attributes, in table order.
const ATTRIBUTES: [Attribute; 7] = [
    // Reallocated sectors: none, ever (the image has no spare area to remap into).
    Attribute {
        id: 5,
        flags: flag::PREFAIL | flag::ONLINE | flag::EVENT_COUNT | flag::SELF_PRESERVING,
        threshold: 10,
    },
    Attribute {
        id: 9,
        flags: flag::ONLINE | flag::EVENT_COUNT | flag::SELF_PRESERVING,
        threshold: 0,
    },
    Attribute {
        id: 12,
        flags: flag::ONLINE | flag::EVENT_COUNT | flag::SELF_PRESERVING,
        threshold: 0,
    },
    Attribute {
        id: 194,
        flags: flag::ONLINE | flag::SELF_PRESERVING,
        threshold: 0,
    },
    // UDMA CRC errors: none on an emulated link.
    Attribute {
        id: 199,
        flags: flag::ONLINE | flag::EVENT_COUNT | flag::SELF_PRESERVING,
        threshold: 0,
    },
    Attribute {
        id: 241,
        flags: flag::ONLINE | flag::SELF_PRESERVING,
        threshold: 0,
    },
    Attribute {
        id: 242,
        flags: flag::ONLINE | flag::SELF_PRESERVING,
        threshold: 0,
    },
];

fn raw(id: u8, c: &Counters) -> u64 {
    match id {
        9 => c.power_on_hours,
        12 => c.power_cycles,
        194 => u64::from(c.temperature),
        241 => c.sectors_written,
        242 => c.sectors_read,
        _ => 0,
    }
}

/// What the off-line data collection and self-test fields of READ DATA report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelfTestStatus {
    /// Byte 362: off-line data collection status.
    pub offline_status: u8,
    /// Byte 363: self-test execution status (bits 7:4) and percent remaining / 10 (3:0).
    pub execution_status: u8,
    /// Minutes an extended self-test takes (bytes 373, 375-376).
    pub extended_minutes: u16,
}

/// SMART READ DATA (ACS-3 7.48.6, table 139 "Device SMART data structure").
pub fn read_data(c: &Counters, st: &SelfTestStatus) -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    p[0] = 0x10;
    for (i, a) in ATTRIBUTES.iter().enumerate() {
        let e = &mut p[2 + 12 * i..2 + 12 * (i + 1)];
        e[0] = a.id;
        e[1..3].copy_from_slice(&a.flags.to_le_bytes());
        // Normalized current and worst values: 100, nothing ever degrades.
        e[3] = 100;
        e[4] = 100;
        let r = raw(a.id, c).min((1 << 48) - 1);
        e[5..11].copy_from_slice(&r.to_le_bytes()[..6]);
    }
    p[362] = st.offline_status;
    p[363] = st.execution_status;
    // 364-365: seconds the off-line data collection takes: none (it is immediate).
    // 367: off-line capability: bit 0 EXECUTE OFF-LINE IMMEDIATE, bit 4 self-tests (short and
    // extended).
    p[367] = 0x11;
    // 368-369: SMART capability: bit 0 saves data before entering a power-saving mode,
    // bit 1 supports attribute autosave (ENABLE/DISABLE ATTRIBUTE AUTOSAVE).
    p[368] = 0x03;
    // 370: error logging capability: bit 0 supported.
    p[370] = 0x01;
    // 372: short self-test polling time, minutes; 373 extended (FFh: see 375-376).
    p[372] = 1;
    let ext = st.extended_minutes.max(1);
    p[373] = u8::try_from(ext).ok().filter(|&m| m < 0xff).unwrap_or(0xff);
    p[375..377].copy_from_slice(&ext.to_le_bytes());
    seal_checksum(&mut p);
    p
}

/// SMART READ THRESHOLDS (obsolete in ACS-3, still what every monitor reads): revision
/// 0010h, then per attribute its id and threshold in 12-byte entries matching READ DATA.
pub fn read_thresholds() -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    p[0] = 0x10;
    for (i, a) in ATTRIBUTES.iter().enumerate() {
        p[2 + 12 * i] = a.id;
        p[3 + 12 * i] = a.threshold;
    }
    seal_checksum(&mut p);
    p
}

/// Self-test execution status values (ACS-3 table 140, byte 363 bits 7:4).
pub mod status {
    pub const COMPLETED: u8 = 0x0;
    pub const ABORTED_BY_HOST: u8 = 0x1;
    pub const INTERRUPTED_BY_RESET: u8 = 0x2;
    /// The read element of the test failed.
    pub const READ_FAILURE: u8 = 0x7;
    pub const IN_PROGRESS: u8 = 0xf;
}

/// One self-test the drive ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfTestEntry {
    /// The EXECUTE OFF-LINE IMMEDIATE subcommand (LBA 7:0): 01h short, 02h extended.
    pub subcommand: u8,
    /// Status (bits 7:4) and percent remaining / 10 (bits 3:0), as byte 363.
    pub status: u8,
    /// Power-on hours when it ended.
    pub hours: u16,
    /// The first LBA that failed, if any.
    pub failing_lba: Option<u64>,
}

/// Entries in the SMART self-test log (ACS-3 A.19: 21 descriptors).
pub const SMART_SELF_TEST_ENTRIES: usize = 21;
/// Entries in one page of the extended self-test log (ACS-3 A.12: 19 descriptors).
pub const EXT_SELF_TEST_ENTRIES: usize = 19;

/// The SMART self-test log (06h, ACS-3 A.19): revision 0001h, 21 descriptors of 24 bytes
/// (a circular buffer), byte 508 the index (1-based) of the newest. `entries` oldest first.
pub fn smart_self_test_log(entries: &[SelfTestEntry]) -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    p[0] = 0x01;
    let recent = &entries[entries.len().saturating_sub(SMART_SELF_TEST_ENTRIES)..];
    for (i, e) in recent.iter().enumerate() {
        let d = &mut p[2 + 24 * i..2 + 24 * (i + 1)];
        d[0] = e.subcommand;
        d[1] = e.status;
        d[2..4].copy_from_slice(&e.hours.to_le_bytes());
        // 5-8: failing LBA (28 bits; FFFFFFFh where it does not fit).
        let lba = e.failing_lba.map_or(0, |l| l.min(0x0fff_ffff)) as u32;
        d[5..9].copy_from_slice(&lba.to_le_bytes());
    }
    p[508] = recent.len() as u8;
    seal_checksum(&mut p);
    p
}

/// The extended self-test log (07h, ACS-3 A.12), page 0: version 01h, bytes 2-3 the index of
/// the newest descriptor, 19 descriptors of 26 bytes from byte 4 (48-bit failing LBA).
pub fn ext_self_test_log(entries: &[SelfTestEntry]) -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    p[0] = 0x01;
    let recent = &entries[entries.len().saturating_sub(EXT_SELF_TEST_ENTRIES)..];
    for (i, e) in recent.iter().enumerate() {
        let d = &mut p[4 + 26 * i..4 + 26 * (i + 1)];
        d[0] = e.subcommand;
        d[1] = e.status;
        d[2..4].copy_from_slice(&e.hours.to_le_bytes());
        let lba = e.failing_lba.unwrap_or(0);
        d[5..11].copy_from_slice(&lba.to_le_bytes()[..6]);
    }
    p[2..4].copy_from_slice(&(recent.len() as u16).to_le_bytes());
    seal_checksum(&mut p);
    p
}

/// The summary error log (01h, ACS-3 A.21): version 01h, no error log data structures (index
/// 0), device error count 0. The drive records no device errors of its own: host I/O errors
/// are answered per command (UNC with the LBA) and never come from the medium's wear.
pub fn summary_error_log() -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    p[0] = 0x01;
    seal_checksum(&mut p);
    p
}

/// The extended comprehensive error log (03h, ACS-3 A.7), page `page`: version 01h, error log
/// index 0 (no entries), device error count 0 (bytes 500-501).
pub fn ext_comprehensive_error_log() -> LogPage {
    summary_error_log()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(p: &LogPage) -> u8 {
        p.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    fn attribute(p: &LogPage, id: u8) -> (u16, u8, u64) {
        let e = p[2..362]
            .chunks_exact(12)
            .find(|e| e[0] == id)
            .unwrap_or_else(|| panic!("attribute {id} missing"));
        let mut r = [0u8; 8];
        r[..6].copy_from_slice(&e[5..11]);
        (
            u16::from_le_bytes([e[1], e[2]]),
            e[3],
            u64::from_le_bytes(r),
        )
    }

    #[test]
    fn read_data_reports_the_counters_with_a_checksum() {
        let c = Counters {
            power_on_hours: 27,
            power_cycles: 1,
            sectors_read: 0x1_2345_6789,
            sectors_written: 8,
            temperature: 35,
        };
        let p = read_data(
            &c,
            &SelfTestStatus {
                offline_status: 0,
                execution_status: 0xf3,
                extended_minutes: 300,
            },
        );
        assert_eq!((p[0], p[1]), (0x10, 0));
        assert_eq!(attribute(&p, 9).2, 27);
        assert_eq!(attribute(&p, 12).2, 1);
        assert_eq!(attribute(&p, 5), (0x33, 100, 0));
        assert_eq!(attribute(&p, 194).2, 35);
        assert_eq!(attribute(&p, 241).2, 8);
        assert_eq!(attribute(&p, 242).2, 0x1_2345_6789);
        assert_eq!((p[363], p[367], p[370]), (0xf3, 0x11, 1));
        assert_eq!((p[373], u16::from_le_bytes([p[375], p[376]])), (0xff, 300));
        assert_eq!(sum(&p), 0);
    }

    #[test]
    fn thresholds_match_the_attribute_table() {
        let t = read_thresholds();
        let d = read_data(&Counters::default(), &SelfTestStatus::default());
        for i in 0..30 {
            assert_eq!(t[2 + 12 * i], d[2 + 12 * i], "entry {i}");
        }
        assert_eq!((t[2], t[3]), (5, 10));
        assert_eq!(sum(&t), 0);
    }

    #[test]
    fn self_test_logs_keep_the_newest_entries() {
        let entries: Vec<SelfTestEntry> = (0..25)
            .map(|i| SelfTestEntry {
                subcommand: 1 + (i % 2) as u8,
                status: 0,
                hours: i,
                failing_lba: (i == 24).then_some(0x0012_3456_789a),
            })
            .collect();
        let s = smart_self_test_log(&entries);
        assert_eq!(s[508], 21);
        assert_eq!(u16::from_le_bytes([s[2 + 2], s[2 + 3]]), 4, "oldest kept");
        let last = &s[2 + 24 * 20..2 + 24 * 21];
        assert_eq!(
            u32::from_le_bytes([last[5], last[6], last[7], last[8]]),
            0x0fff_ffff
        );
        assert_eq!(sum(&s), 0);
        let x = ext_self_test_log(&entries);
        assert_eq!(u16::from_le_bytes([x[2], x[3]]), 19);
        let last = &x[4 + 26 * 18..4 + 26 * 19];
        assert_eq!(&last[5..11], &[0x9a, 0x78, 0x56, 0x34, 0x12, 0]);
        assert_eq!(sum(&x), 0);
        let empty = smart_self_test_log(&[]);
        assert_eq!((empty[0], empty[508], sum(&empty)), (1, 0, 0));
        assert_eq!(sum(&summary_error_log()), 0);
    }
}
