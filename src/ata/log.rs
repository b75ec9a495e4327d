//! General Purpose Logging pages returned by READ LOG EXT / READ LOG DMA EXT (ACS-3 9.1).
//!
//! Supported logs: the log directory (00h), the NCQ Command Error log (10h, SATA 3.x 13.7.4)
//! and the IDENTIFY DEVICE data log (30h, ACS-3 9.10) with pages 00h (list of supported
//! pages), 01h (copy of IDENTIFY DEVICE data) and 02h (capacity), which is what Linux libata's
//! `ata_log_supported` / `ata_identify_page_supported` / `ata_eh_read_log_10h` look at.

use super::registers::SECTOR_SIZE;

/// A 512-byte log page.
pub type LogPage = [u8; SECTOR_SIZE];

/// Log addresses (ACS-3 table A.2).
pub mod address {
    pub const DIRECTORY: u8 = 0x00;
    pub const NCQ_COMMAND_ERROR: u8 = 0x10;
    pub const IDENTIFY_DEVICE_DATA: u8 = 0x30;
}

/// Pages of the IDENTIFY DEVICE data log this device provides.
const IDENTIFY_LOG_PAGES: [u8; 3] = [0x00, 0x01, 0x02];

/// Number of pages in a log, or 0 if the log is not supported.
pub fn log_pages(log: u8) -> u16 {
    match log {
        address::DIRECTORY | address::NCQ_COMMAND_ERROR => 1,
        address::IDENTIFY_DEVICE_DATA => IDENTIFY_LOG_PAGES.len() as u16,
        _ => 0,
    }
}

/// The General Purpose Log Directory (ACS-3 9.2): word 0 = version 0001h, word n = number of
/// pages of log address n.
pub fn directory() -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    p[0] = 0x01;
    for log in 1..=255u8 {
        let n = log_pages(log);
        let at = usize::from(log) * 2;
        p[at..at + 2].copy_from_slice(&n.to_le_bytes());
    }
    p
}

/// What the NCQ Command Error log reports about the failed queued command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NcqError {
    pub tag: u8,
    pub status: u8,
    pub error: u8,
    pub lba: u64,
    pub device: u8,
    /// The command's Count register (tag in bits 7:3).
    pub count: u16,
}

/// Set the last byte so that the 512 bytes sum to 0 modulo 256 (the data structure checksum
/// of ACS-3 9.1).
pub fn seal_checksum(p: &mut LogPage) {
    let sum = p[..SECTOR_SIZE - 1]
        .iter()
        .fold(0u8, |s, b| s.wrapping_add(*b));
    p[SECTOR_SIZE - 1] = sum.wrapping_neg();
}

/// The NCQ Command Error log page (SATA 3.x 13.7.4): byte 0 bit 7 NQ (set: no queued command
/// failed), bits 4:0 the tag; then Status, Error, LBA 7:0..23:16, Device, LBA 31:24..47:40,
/// Count 7:0 and 15:8; byte 511 a checksum.
pub fn ncq_command_error(err: Option<&NcqError>) -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    match err {
        None => p[0] = 0x80,
        Some(e) => {
            p[0] = e.tag & 0x1f;
            p[2] = e.status;
            p[3] = e.error;
            p[4] = e.lba as u8;
            p[5] = (e.lba >> 8) as u8;
            p[6] = (e.lba >> 16) as u8;
            p[7] = e.device;
            p[8] = (e.lba >> 24) as u8;
            p[9] = (e.lba >> 32) as u8;
            p[10] = (e.lba >> 40) as u8;
            p[12] = e.count as u8;
            p[13] = (e.count >> 8) as u8;
        }
    }
    seal_checksum(&mut p);
    p
}

/// Header qword of an IDENTIFY DEVICE data log page (ACS-3 9.10.1): bit 63 valid, bits 23:16
/// page number, bits 15:0 revision 0001h.
fn identify_page_header(page: u8) -> u64 {
    1 << 63 | u64::from(page) << 16 | 0x0001
}

/// Page `page` of the IDENTIFY DEVICE data log; `identify` is the IDENTIFY DEVICE data block
/// and `capacity` the user-addressable sectors. None for pages not provided.
pub fn identify_device_data(page: u8, identify: &LogPage, capacity: u64) -> Option<LogPage> {
    let mut p = [0u8; SECTOR_SIZE];
    match page {
        // 00h: list of supported pages: revision 0001h, byte 8 = count, bytes 9.. = pages.
        0x00 => {
            p[0] = 0x01;
            p[8] = IDENTIFY_LOG_PAGES.len() as u8;
            p[9..9 + IDENTIFY_LOG_PAGES.len()].copy_from_slice(&IDENTIFY_LOG_PAGES);
        }
        // 01h: a copy of the IDENTIFY DEVICE data.
        0x01 => p = *identify,
        // 02h: capacity: header, then qword 1 bit 63 valid + accessible capacity, qword 2
        // bit 63 valid + logical/physical sector relationship (0: 1 logical per physical),
        // qword 3 bit 63 valid + logical sector size in words... left 0: 512 bytes implied.
        0x02 => {
            p[0..8].copy_from_slice(&identify_page_header(0x02).to_le_bytes());
            let cap = 1u64 << 63 | (capacity & 0xffff_ffff_ffff);
            p[8..16].copy_from_slice(&cap.to_le_bytes());
            p[16..24].copy_from_slice(&(1u64 << 63).to_le_bytes());
        }
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(p: &LogPage) -> u8 {
        p.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    #[test]
    fn directory_lists_supported_logs() {
        let d = directory();
        assert_eq!(u16::from_le_bytes([d[0], d[1]]), 1);
        assert_eq!(u16::from_le_bytes([d[0x20], d[0x21]]), 1);
        assert_eq!(u16::from_le_bytes([d[0x60], d[0x61]]), 3);
        assert_eq!(u16::from_le_bytes([d[0x26], d[0x27]]), 0);
    }

    #[test]
    fn ncq_error_page_layout() {
        let p = ncq_command_error(Some(&NcqError {
            tag: 7,
            status: 0x41,
            error: 0x40,
            lba: 0x0102_0304_0506,
            device: 0x40,
            count: 7 << 3,
        }));
        assert_eq!(p[0], 7);
        assert_eq!(&p[2..14], &[0x41, 0x40, 6, 5, 4, 0x40, 3, 2, 1, 0, 56, 0]);
        assert_eq!(sum(&p), 0);
        let idle = ncq_command_error(None);
        assert_eq!(idle[0] & 0x80, 0x80);
        assert_eq!(sum(&idle), 0);
    }

    #[test]
    fn identify_log_pages() {
        let id = [0x5au8; 512];
        let list = identify_device_data(0, &id, 100).unwrap();
        assert_eq!(&list[8..12], &[3, 0, 1, 2]);
        assert_eq!(identify_device_data(1, &id, 100).unwrap(), id);
        let cap = identify_device_data(2, &id, 100).unwrap();
        assert_eq!(
            u64::from_le_bytes(cap[8..16].try_into().unwrap()),
            1 << 63 | 100
        );
        assert!(identify_device_data(3, &id, 100).is_none());
    }
}
