//! Statistics logs: the Device Statistics log (04h, ACS-3 9.5) and the SATA Phy Event
//! Counters log (11h, SATA 3.x 13.7.6).
//!
//! Device statistics pages provided: 00h (list of supported pages), 01h (general statistics),
//! 05h (temperature statistics), 07h (solid state device statistics; IDENTIFY word 217 says
//! non-rotating). Every statistic is a qword: bit 63 supported, bit 62 valid, bits 55:0 the
//! value (ACS-3 9.5.2, table 149 "Device statistics location").

use super::log::{seal_checksum, LogPage};
use super::registers::SECTOR_SIZE;

/// The device statistics pages provided (page 00h lists them).
pub const DEVICE_STATISTICS_PAGES: [u8; 4] = [0x00, 0x01, 0x05, 0x07];
/// Pages in the Device Statistics log: up to the highest page provided.
pub const DEVICE_STATISTICS_LOG_PAGES: u16 = 8;

/// What the general statistics page reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeneralStatistics {
    pub power_on_resets: u64,
    pub power_on_hours: u64,
    pub sectors_written: u64,
    pub write_commands: u64,
    pub sectors_read: u64,
    pub read_commands: u64,
    /// Milliseconds since power-on (the "date and time timestamp").
    pub timestamp_ms: u64,
    /// Degrees Celsius.
    pub temperature: u8,
}

/// A supported, valid statistic.
fn stat(value: u64) -> [u8; 8] {
    (3u64 << 62 | (value & ((1 << 56) - 1))).to_le_bytes()
}

/// Page header (qword 0): revision 0001h, page number in bits 23:16.
fn header(page: u8) -> [u8; 8] {
    (u64::from(page) << 16 | 1).to_le_bytes()
}

/// Page `page` of the Device Statistics log; None for a page past the log's end. Pages inside
/// the log that are not provided read as zeros (not listed in page 00h).
pub fn device_statistics(page: u8, s: &GeneralStatistics) -> Option<LogPage> {
    let mut p = [0u8; SECTOR_SIZE];
    let mut put = |qword: usize, v: [u8; 8]| p[8 * qword..8 * qword + 8].copy_from_slice(&v);
    match page {
        0x00 => {
            put(0, header(0));
            let mut list = [0u8; 8];
            list[0] = DEVICE_STATISTICS_PAGES.len() as u8;
            put(1, list);
            p[9..9 + DEVICE_STATISTICS_PAGES.len()].copy_from_slice(&DEVICE_STATISTICS_PAGES);
            return Some(p);
        }
        // General Statistics (ACS-3 9.5.4).
        0x01 => {
            put(0, header(1));
            put(1, stat(s.power_on_resets));
            put(2, stat(s.power_on_hours));
            put(3, stat(s.sectors_written));
            put(4, stat(s.write_commands));
            put(5, stat(s.sectors_read));
            put(6, stat(s.read_commands));
            put(7, stat(s.timestamp_ms));
        }
        // Temperature Statistics (ACS-3 9.5.8): current temperature, signed degrees C.
        0x05 => {
            put(0, header(5));
            put(1, stat(u64::from(s.temperature)));
        }
        // Solid State Device Statistics (ACS-3 9.5.10): percentage used endurance 0.
        0x07 => {
            put(0, header(7));
            put(1, stat(0));
        }
        p if u16::from(p) < DEVICE_STATISTICS_LOG_PAGES => {}
        _ => return None,
    }
    Some(p)
}

/// Phy event counter identifiers (SATA 3.x table 171) this link reports, each 32 bits wide.
const PHY_EVENTS: [u16; 5] = [
    // Command failed and ICRC bit set to one in the Error register.
    0x001, // R_ERR response for data FIS.
    0x002, // R_ERR response for non-data FIS.
    0x005, // Transitions from drive PhyRdy to drive PhyRdyN.
    0x009, // Device-to-host register FISes sent due to a COMRESET.
    0x00a,
];

/// The SATA Phy Event Counters log (11h): bytes 0-3 reserved, then per counter a word
/// identifier (bits 14:12 the counter's size in words, bits 11:0 the event) followed by its
/// value; identifier 0 ends the list; byte 511 a checksum. `comresets` counts the COMRESETs
/// (each one a signature FIS) since the counters were last reset; nothing else happens on an
/// emulated link, which never drops PhyRdy on its own.
pub fn phy_event_counters(comresets: u32) -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    let mut at = 4;
    for id in PHY_EVENTS {
        let value = if id == 0x00a { comresets } else { 0 };
        p[at..at + 2].copy_from_slice(&(2 << 12 | id).to_le_bytes());
        p[at + 2..at + 6].copy_from_slice(&value.to_le_bytes());
        at += 6;
    }
    seal_checksum(&mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(p: &LogPage, i: usize) -> u64 {
        u64::from_le_bytes(p[8 * i..8 * i + 8].try_into().unwrap())
    }

    #[test]
    fn device_statistics_pages() {
        let s = GeneralStatistics {
            power_on_resets: 1,
            power_on_hours: 5,
            sectors_written: 100,
            write_commands: 3,
            sectors_read: 200,
            read_commands: 4,
            timestamp_ms: 1234,
            temperature: 35,
        };
        let list = device_statistics(0, &s).unwrap();
        assert_eq!(&list[8..13], &[4, 0, 1, 5, 7]);
        let g = device_statistics(1, &s).unwrap();
        assert_eq!(q(&g, 0), 1 << 16 | 1);
        assert_eq!(q(&g, 3), 3 << 62 | 100);
        assert_eq!(q(&g, 5) & 0xff_ffff, 200);
        assert_eq!(q(&device_statistics(5, &s).unwrap(), 1) & 0xff, 35);
        assert_eq!(device_statistics(3, &s), Some([0; 512]));
        assert_eq!(device_statistics(8, &s), None);
    }

    #[test]
    fn phy_event_counters_layout_and_checksum() {
        let p = phy_event_counters(2);
        assert_eq!(u16::from_le_bytes([p[4], p[5]]), 0x2001);
        assert_eq!(u16::from_le_bytes([p[28], p[29]]), 0x200a);
        assert_eq!(u32::from_le_bytes([p[30], p[31], p[32], p[33]]), 2);
        assert_eq!(u16::from_le_bytes([p[34], p[35]]), 0, "end of list");
        assert_eq!(p.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
    }
}
