//! The SPC-4 commands of the drive that do not depend on the disc: INQUIRY with its vital
//! product data pages, MODE SENSE(10), and the REQUEST SENSE data.

use super::cdb::be;
use super::sense::Sense;
use super::View;

/// T10 vendor identification (INQUIRY bytes 8-15).
pub const VENDOR: &str = "SATAVM";
/// Product revision level (INQUIRY bytes 32-35).
pub const REVISION: &str = "0.1";

/// `s` as a fixed-length ASCII field of `len` bytes, space padded.
fn ascii(s: &str, len: usize) -> Vec<u8> {
    s.bytes()
        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'?' })
        .chain(std::iter::repeat(b' '))
        .take(len)
        .collect()
}

/// INQUIRY (SPC-4 6.6): standard data or (EVPD) a vital product data page.
pub fn inquiry(cdb: &[u8], v: &View<'_>) -> Result<Vec<u8>, Sense> {
    let evpd = cdb.get(1).is_some_and(|b| b & 1 != 0);
    let page = cdb.get(2).copied().unwrap_or(0);
    if !evpd {
        if page != 0 {
            return Err(Sense::INVALID_FIELD);
        }
        let mut d = vec![0u8; 36];
        // Peripheral device type 05h: CD/DVD device; RMB: removable medium.
        d[0] = 0x05;
        d[1] = 0x80;
        // Version 05h: SPC-3; response data format 2.
        d[2] = 0x05;
        d[3] = 0x02;
        d[4] = (d.len() - 5) as u8;
        d[8..16].copy_from_slice(&ascii(VENDOR, 8));
        d[16..32].copy_from_slice(&ascii(v.model, 16));
        d[32..36].copy_from_slice(&ascii(REVISION, 4));
        return Ok(d);
    }
    let body: Vec<u8> = match page {
        // Supported VPD pages (SPC-4 7.8.14).
        0x00 => vec![0x00, 0x80, 0x83],
        // Unit serial number (7.8.15).
        0x80 => v
            .serial
            .bytes()
            .filter(|b| (0x20..0x7f).contains(b))
            .collect(),
        // Device identification (7.8.6): one T10 vendor ID designator, ASCII, associated
        // with the logical unit: the vendor and the serial number.
        0x83 => {
            let mut id = ascii(VENDOR, 8);
            id.extend(v.serial.bytes().filter(|b| (0x20..0x7f).contains(b)));
            let mut d = vec![0x02, 0x01, 0x00, id.len() as u8];
            d.extend(id);
            d
        }
        _ => return Err(Sense::INVALID_FIELD),
    };
    let mut d = vec![0x05, page];
    d.extend((body.len() as u16).to_be_bytes());
    d.extend(body);
    Ok(d)
}

/// Page 01h, Read-Write Error Recovery (SBC-3 6.4.9, MMC-6 7.3): 5 read retries.
fn error_recovery_page(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = 0x01;
    p[1] = 10;
    if !changeable {
        p[3] = 5;
    }
    p
}

/// Page 2Ah, CD/DVD Capabilities and Mechanical Status (MMC-3 5.5.10; what Linux's sr
/// get_capabilities reads): reads CD-R, CD-RW and DVD-ROM, writes nothing, tray loading with
/// eject and lock, the lock state, 40x speed.
fn capabilities_page(v: &View<'_>, changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 30];
    p[0] = 0x2a;
    p[1] = 28;
    if changeable {
        return p;
    }
    // Read: CD-R (0), CD-RW (1), DVD-ROM (3).
    p[2] = 0x0b;
    p[3] = 0x00;
    // Mode 2 form 1 (4), form 2 (5), multi-session (6).
    p[4] = 0x70;
    p[5] = 0x00;
    // Lock (0), lock state (1), eject (3), loading mechanism 001b tray (7:5).
    p[6] = 0x01 | u8::from(v.prevent) << 1 | 0x08 | 0x20;
    // Maximum read speed (obsolete), buffer size, current read speed: kB/s, 40x CD.
    let speed = super::mmc::READ_SPEED_KBS.to_be_bytes();
    p[8..10].copy_from_slice(&speed);
    p[12..14].copy_from_slice(&512u16.to_be_bytes());
    p[14..16].copy_from_slice(&speed);
    p
}

/// MODE SENSE(10) (SPC-4 6.10): pages 01h, 2Ah or all (3Fh), current, changeable or default
/// values; saved values are not supported. No block descriptors.
pub fn mode_sense_10(cdb: &[u8], v: &View<'_>) -> Result<Vec<u8>, Sense> {
    let pc = be(cdb, 2, 1) as u8 >> 6;
    let page = be(cdb, 2, 1) as u8 & 0x3f;
    let subpage = be(cdb, 3, 1) as u8;
    if pc == 3 {
        return Err(Sense::SAVING_NOT_SUPPORTED);
    }
    if subpage != 0 && subpage != 0xff {
        return Err(Sense::INVALID_FIELD);
    }
    let changeable = pc == 1;
    let pages = match page {
        0x01 => error_recovery_page(changeable),
        0x2a => capabilities_page(v, changeable),
        0x3f => {
            let mut p = error_recovery_page(changeable);
            p.extend(capabilities_page(v, changeable));
            p
        }
        _ => return Err(Sense::INVALID_FIELD),
    };
    // Mode parameter header(10): mode data length (bytes after it), medium type 0, device
    // specific 0, block descriptor length 0.
    let mut d = vec![0u8; 8];
    d.extend(pages);
    let len = (d.len() - 2) as u16;
    d[0..2].copy_from_slice(&len.to_be_bytes());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View<'static> {
        View {
            blocks: Some(1000),
            dvd: false,
            tray_open: false,
            prevent: true,
            model: "SATAVM DVD-ROM",
            serial: "SN42",
        }
    }

    #[test]
    fn standard_inquiry() {
        let d = inquiry(&[0x12, 0, 0, 0, 36, 0], &view()).unwrap();
        assert_eq!(d[0] & 0x1f, 5);
        assert_eq!(d[1], 0x80);
        assert_eq!(&d[8..16], b"SATAVM  ");
        assert_eq!(&d[16..32], b"SATAVM DVD-ROM  ");
        assert_eq!(
            inquiry(&[0x12, 0, 0x80, 0, 36, 0], &view()),
            Err(Sense::INVALID_FIELD)
        );
    }

    #[test]
    fn vpd_pages() {
        let d = inquiry(&[0x12, 1, 0, 0, 255, 0], &view()).unwrap();
        assert_eq!(d, vec![5, 0, 0, 3, 0, 0x80, 0x83]);
        let d = inquiry(&[0x12, 1, 0x80, 0, 255, 0], &view()).unwrap();
        assert_eq!(&d[4..], b"SN42");
        let d = inquiry(&[0x12, 1, 0x83, 0, 255, 0], &view()).unwrap();
        assert_eq!(d[1], 0x83);
        assert_eq!(&d[8..20], b"SATAVM  SN42");
        assert_eq!(
            inquiry(&[0x12, 1, 0xb0, 0, 255, 0], &view()),
            Err(Sense::INVALID_FIELD)
        );
    }

    #[test]
    fn mode_sense_pages() {
        let d = mode_sense_10(&[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 255, 0], &view()).unwrap();
        assert_eq!(u16::from_be_bytes([d[0], d[1]]) as usize, d.len() - 2);
        assert_eq!(d[8], 0x2a);
        assert_eq!(d[8 + 6] & 0x02, 0x02, "locked");
        assert_eq!(d[8 + 6] >> 5, 1, "tray");
        let all = mode_sense_10(&[0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 255, 0], &view()).unwrap();
        assert_eq!((all[8], all[8 + 12]), (0x01, 0x2a));
        assert_eq!(
            mode_sense_10(&[0x5a, 0, 0xc1, 0, 0, 0, 0, 0, 255, 0], &view()),
            Err(Sense::SAVING_NOT_SUPPORTED)
        );
        assert_eq!(
            mode_sense_10(&[0x5a, 0, 0x05, 0, 0, 0, 0, 0, 255, 0], &view()),
            Err(Sense::INVALID_FIELD)
        );
    }
}
