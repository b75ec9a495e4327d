//! General Purpose Logging pages returned by READ LOG EXT / READ LOG DMA EXT (ACS-3 9.1).
//!
//! The logs of the emulated drive, by address ([`log_pages`], [`smart_log_pages`]): the log
//! directories (00h), the summary error log (01h, SMART only), the extended comprehensive error
//! log (03h), device statistics (04h, [`super::stats_log`]), the SMART and extended self-test
//! logs (06h SMART only, 07h), the NCQ Command Error log (10h, SATA 3.x 13.7.4), SATA Phy
//! Event Counters (11h), the IDENTIFY DEVICE data log (30h, ACS-3 9.10) and the host-specific
//! logs 80h-9Fh (16 pages each, readable and writable). This module builds the directory, the
//! NCQ error page and the IDENTIFY DEVICE data pages (what Linux libata's `ata_log_supported`
//! / `ata_identify_page_supported` / `ata_eh_read_log_10h` look at); [`super::smart`] the
//! SMART pages.

use super::registers::SECTOR_SIZE;

/// A 512-byte log page.
pub type LogPage = [u8; SECTOR_SIZE];

/// Log addresses (ACS-3 table A.2).
pub mod address {
    pub const DIRECTORY: u8 = 0x00;
    pub const SUMMARY_ERROR: u8 = 0x01;
    pub const EXT_COMPREHENSIVE_ERROR: u8 = 0x03;
    pub const DEVICE_STATISTICS: u8 = 0x04;
    pub const SMART_SELF_TEST: u8 = 0x06;
    pub const EXT_SELF_TEST: u8 = 0x07;
    pub const NCQ_COMMAND_ERROR: u8 = 0x10;
    pub const SATA_PHY_EVENT_COUNTERS: u8 = 0x11;
    pub const IDENTIFY_DEVICE_DATA: u8 = 0x30;
    /// Host-specific logs 80h-9Fh.
    pub const HOST_SPECIFIC: std::ops::RangeInclusive<u8> = 0x80..=0x9f;
}

/// Pages of each host-specific log (ACS-3 A.1: 16).
pub const HOST_SPECIFIC_PAGES: u16 = 16;

/// Pages of the IDENTIFY DEVICE data log this device provides. Not 04h (current settings:
/// IDENTIFY words 85-87 and 120 tell the same) nor 07h (parallel ATA: this is a SATA device);
/// both read as zeros.
const IDENTIFY_LOG_PAGES: [u8; 7] = [0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x08];

/// Number of pages of a log READ LOG (DMA) EXT reads, or 0 if it is not a GPL log here.
pub fn log_pages(log: u8) -> u16 {
    match log {
        address::DIRECTORY
        | address::EXT_COMPREHENSIVE_ERROR
        | address::EXT_SELF_TEST
        | address::NCQ_COMMAND_ERROR
        | address::SATA_PHY_EVENT_COUNTERS => 1,
        address::DEVICE_STATISTICS => super::stats_log::DEVICE_STATISTICS_LOG_PAGES,
        // Pages 00h-08h (07h reads as zeros).
        address::IDENTIFY_DEVICE_DATA => 9,
        l if address::HOST_SPECIFIC.contains(&l) => HOST_SPECIFIC_PAGES,
        _ => 0,
    }
}

/// Number of pages of a log SMART READ LOG reads, or 0 (ACS-3 table A.2: 01h and 06h are SMART
/// logs only; 03h, 07h, 10h and 11h GPL only; 04h, 30h and the host-specific logs both).
pub fn smart_log_pages(log: u8) -> u16 {
    match log {
        address::DIRECTORY | address::SUMMARY_ERROR | address::SMART_SELF_TEST => 1,
        address::DEVICE_STATISTICS | address::IDENTIFY_DEVICE_DATA => log_pages(log),
        l if address::HOST_SPECIFIC.contains(&l) => HOST_SPECIFIC_PAGES,
        _ => 0,
    }
}

fn directory_of(pages: fn(u8) -> u16) -> LogPage {
    let mut p = [0u8; SECTOR_SIZE];
    p[0] = 0x01;
    for log in 1..=255u8 {
        let n = pages(log);
        let at = usize::from(log) * 2;
        p[at..at + 2].copy_from_slice(&n.to_le_bytes());
    }
    p
}

/// The General Purpose Log Directory (ACS-3 9.2): word 0 = version 0001h, word n = number of
/// pages of log address n.
pub fn directory() -> LogPage {
    directory_of(log_pages)
}

/// The SMART Log Directory (ACS-3 A.2, what SMART READ LOG 00h returns): the same layout,
/// for the logs SMART READ LOG reads.
pub fn smart_directory() -> LogPage {
    directory_of(smart_log_pages)
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
    /// Sense key, ASC, ASCQ of the failure for NCQ autosense (SATA 3.x 13.7.4 bytes 14-16;
    /// IDENTIFY word 78 bit 7), if the device has sense data for it.
    pub sense: Option<(u8, u8, u8)>,
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
            if let Some((key, asc, ascq)) = e.sense {
                p[14] = key;
                p[15] = asc;
                p[16] = ascq;
            }
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

/// An IDENTIFY DEVICE word.
fn word(identify: &LogPage, n: usize) -> u64 {
    u64::from(u16::from_le_bytes([identify[2 * n], identify[2 * n + 1]]))
}

/// Page `page` of the IDENTIFY DEVICE data log; `identify` is the IDENTIFY DEVICE data block
/// and `capacity` the user-addressable sectors. None for pages past the log's end; 07h (the
/// parallel ATA page) and 04h read as zeros. Every qword with bit 63 set is valid (ACS-3 9.10.1).
pub fn identify_device_data(page: u8, identify: &LogPage, capacity: u64) -> Option<LogPage> {
    let mut p = [0u8; SECTOR_SIZE];
    let valid = 1u64 << 63;
    let put = |p: &mut LogPage, qword: usize, v: u64| {
        p[8 * qword..8 * qword + 8].copy_from_slice(&v.to_le_bytes())
    };
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
        // 03h: supported capabilities (ACS-3 9.10.5): qword 1 valid with no capability bit
        // claimed (each bit there names an optional feature this drive does not have, such as
        // command duration limits, which newer libata reads from it); qword 3 the nominal
        // media rotation rate (IDENTIFY word 217: 1, non-rotating).
        0x03 => {
            put(&mut p, 0, identify_page_header(0x03));
            put(&mut p, 1, valid);
            put(&mut p, 3, valid | word(identify, 217));
        }
        // 05h: ATA strings (ACS-3 9.10.7): serial number (bytes 8-27), firmware revision
        // (28-35), model number (36-75), as IDENTIFY words 10-19, 23-26, 27-46 hold them.
        0x05 => {
            put(&mut p, 0, identify_page_header(0x05));
            p[8..28].copy_from_slice(&identify[20..40]);
            p[28..36].copy_from_slice(&identify[46..54]);
            p[36..76].copy_from_slice(&identify[54..94]);
        }
        // 06h: security (ACS-3 9.10.8): the security feature set is not supported: qword 1
        // valid, all zero.
        0x06 => {
            put(&mut p, 0, identify_page_header(0x06));
            put(&mut p, 1, valid);
        }
        0x04 | 0x07 => {}
        // 08h: Serial ATA (ACS-3 9.10.10): qword 1 SATA capabilities (IDENTIFY words 76 and
        // 77 in bits 15:0 and 31:16), qword 2 current SATA settings (words 78/79).
        0x08 => {
            put(&mut p, 0, identify_page_header(0x08));
            put(
                &mut p,
                1,
                valid | word(identify, 77) << 16 | word(identify, 76),
            );
            put(
                &mut p,
                2,
                valid | word(identify, 79) << 16 | word(identify, 78),
            );
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
        let n = |d: &LogPage, log: usize| u16::from_le_bytes([d[2 * log], d[2 * log + 1]]);
        assert_eq!(n(&d, 0), 1);
        assert_eq!(
            [0x01, 0x03, 0x04, 0x06, 0x07, 0x10, 0x11, 0x30, 0x80, 0x9f, 0xa0, 0x13]
                .map(|l| n(&d, l)),
            [0, 1, 8, 0, 1, 1, 1, 9, 16, 16, 0, 0]
        );
        let s = smart_directory();
        assert_eq!(
            [0x01, 0x03, 0x04, 0x06, 0x07, 0x10, 0x30, 0x80].map(|l| n(&s, l)),
            [1, 0, 8, 1, 0, 0, 9, 16]
        );
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
            sense: Some((7, 0x27, 0)),
        }));
        assert_eq!(p[0], 7);
        assert_eq!(&p[2..14], &[0x41, 0x40, 6, 5, 4, 0x40, 3, 2, 1, 0, 56, 0]);
        assert_eq!(&p[14..17], &[7, 0x27, 0], "NCQ autosense");
        assert_eq!(sum(&p), 0);
        let idle = ncq_command_error(None);
        assert_eq!(idle[0] & 0x80, 0x80);
        assert_eq!(sum(&idle), 0);
    }

    #[test]
    fn identify_log_pages() {
        let id = [0x5au8; 512];
        let list = identify_device_data(0, &id, 100).unwrap();
        assert_eq!(&list[8..16], &[7, 0, 1, 2, 3, 5, 6, 8]);
        assert_eq!(identify_device_data(1, &id, 100).unwrap(), id);
        let cap = identify_device_data(2, &id, 100).unwrap();
        assert_eq!(
            u64::from_le_bytes(cap[8..16].try_into().unwrap()),
            1 << 63 | 100
        );
        for page in [3u8, 5, 6, 8] {
            let p = identify_device_data(page, &id, 100).unwrap();
            assert_eq!(
                u64::from_le_bytes(p[..8].try_into().unwrap()),
                1 << 63 | u64::from(page) << 16 | 1,
                "page {page} header"
            );
        }
        assert_eq!(identify_device_data(7, &id, 100), Some([0; 512]));
        assert_eq!(identify_device_data(4, &id, 100), Some([0; 512]));
        assert!(identify_device_data(9, &id, 100).is_none());
        let strings = identify_device_data(5, &id, 100).unwrap();
        assert_eq!(&strings[8..76], &id[20..88]);
    }
}
