//! The MMC-6 commands that describe the disc and the drive: READ CAPACITY, READ TOC/PMA/ATIP,
//! GET CONFIGURATION, GET EVENT STATUS NOTIFICATION, READ DISC INFORMATION, READ TRACK
//! INFORMATION, MECHANISM STATUS and GET PERFORMANCE. The disc is one complete session of
//! one data track (mode 1) starting at LBA 0: what an ISO 9660 image is.

use super::cdb::be;
use super::sense::Sense;
use super::View;

/// Bytes per logical block of a CD/DVD data track.
pub const BLOCK: u64 = 2048;
/// The read speed the drive reports (kB/s): 40x CD (176 kB/s each).
pub const READ_SPEED_KBS: u16 = 7040;

/// Profiles (MMC-6 table 89).
pub mod profile {
    pub const CD_ROM: u16 = 0x0008;
    pub const DVD_ROM: u16 = 0x0010;
}

/// Media event codes of GET EVENT STATUS NOTIFICATION (MMC-6 table 148).
pub mod media_event {
    pub const NO_CHANGE: u8 = 0;
    pub const EJECT_REQUEST: u8 = 1;
    pub const NEW_MEDIA: u8 = 2;
    pub const MEDIA_REMOVAL: u8 = 3;
}

/// LBA `lba` as MSF (MMC-6 4.2.3.3: 150 frames of pre-gap; 75 frames a second).
pub fn msf(lba: u64) -> [u8; 3] {
    let f = lba + 150;
    [
        (f / (75 * 60)).min(255) as u8,
        (f / 75 % 60) as u8,
        (f % 75) as u8,
    ]
}

/// An address in a TOC: 4 bytes, LBA or (0, M, S, F).
fn address(lba: u64, as_msf: bool) -> [u8; 4] {
    if as_msf {
        let m = msf(lba);
        [0, m[0], m[1], m[2]]
    } else {
        (lba as u32).to_be_bytes()
    }
}

/// `d` with its first two bytes set to the length of what follows them.
fn with_len16(mut d: Vec<u8>) -> Vec<u8> {
    let n = (d.len() - 2) as u16;
    d[0..2].copy_from_slice(&n.to_be_bytes());
    d
}

/// ADR 1 (current position), control 4 (data track, recorded uninterrupted).
const ADR_CONTROL_DATA: u8 = 0x14;
/// The lead-out's track number.
const LEAD_OUT: u8 = 0xaa;

/// READ CAPACITY (MMC-6 6.23): the last LBA and the block length.
pub fn read_capacity(blocks: u64) -> Vec<u8> {
    let mut d = (blocks.saturating_sub(1).min(u64::from(u32::MAX)) as u32)
        .to_be_bytes()
        .to_vec();
    d.extend((BLOCK as u32).to_be_bytes());
    d
}

/// READ TOC/PMA/ATIP (MMC-6 6.26) formats 0 (TOC), 1 (session information) and 2 (full
/// TOC); the format in byte 2, or for older hosts in byte 9 bits 7:6.
pub fn read_toc(cdb: &[u8], blocks: u64) -> Result<Vec<u8>, Sense> {
    let as_msf = be(cdb, 1, 1) & 0x02 != 0;
    let mut format = be(cdb, 2, 1) as u8 & 0x0f;
    if format == 0 {
        format = be(cdb, 9, 1) as u8 >> 6;
    }
    let track = be(cdb, 6, 1) as u8;
    match format {
        0 => {
            if track > 1 && track != LEAD_OUT {
                return Err(Sense::INVALID_FIELD);
            }
            let mut d = vec![0, 0, 1, 1];
            let mut descriptor = |number: u8, lba: u64| {
                d.extend([0, ADR_CONTROL_DATA, number, 0]);
                d.extend(address(lba, as_msf));
            };
            if track <= 1 {
                descriptor(1, 0);
            }
            descriptor(LEAD_OUT, blocks);
            Ok(with_len16(d))
        }
        1 => {
            let mut d = vec![0, 0, 1, 1, 0, ADR_CONTROL_DATA, 1, 0];
            d.extend(address(0, as_msf));
            Ok(with_len16(d))
        }
        2 => {
            // Session 1: points A0h (first track; disc type 00h, CD-DA or CD-ROM), A1h (last
            // track), A2h (lead-out start), then track 1; always MSF.
            let mut d = vec![0, 0, 1, 1];
            let mut entry = |point: u8, p: [u8; 3]| {
                d.extend([1, ADR_CONTROL_DATA, 0, point, 0, 0, 0, 0]);
                d.extend(p);
            };
            entry(0xa0, [1, 0, 0]);
            entry(0xa1, [1, 0, 0]);
            entry(0xa2, msf(blocks));
            entry(1, msf(0));
            Ok(with_len16(d))
        }
        _ => Err(Sense::INVALID_FIELD),
    }
}

/// One feature descriptor (MMC-6 5.2): code, version, persistent, current, data.
fn feature(code: u16, version: u8, persistent: bool, current: bool, data: &[u8]) -> Vec<u8> {
    let mut d = code.to_be_bytes().to_vec();
    d.push(version << 2 | u8::from(persistent) << 1 | u8::from(current));
    d.push(data.len() as u8);
    d.extend(data);
    d
}

/// The profile the medium has: DVD-ROM for images over 700 MiB, else CD-ROM; none without
/// a medium.
pub fn current_profile(v: &View<'_>) -> u16 {
    match v.blocks {
        None => 0,
        Some(_) if v.dvd => profile::DVD_ROM,
        Some(_) => profile::CD_ROM,
    }
}

/// GET CONFIGURATION (MMC-6 6.6): RT 0 (every feature from the starting one), 1 (the current
/// ones), 2 (the starting one only). Features: Profile List, Core (ATAPI), Morphing,
/// Removable Medium (tray, eject, lock), Random Readable, CD Read, DVD Read, Power
/// Management.
pub fn get_configuration(cdb: &[u8], v: &View<'_>) -> Result<Vec<u8>, Sense> {
    let rt = be(cdb, 1, 1) as u8 & 0x03;
    let start = be(cdb, 2, 2) as u16;
    let current = current_profile(v);
    let present = v.blocks.is_some();
    let mut profiles = Vec::new();
    for p in [profile::DVD_ROM, profile::CD_ROM] {
        profiles.extend(p.to_be_bytes());
        profiles.extend([u8::from(p == current), 0]);
    }
    let blocking: u16 = if v.dvd { 16 } else { 1 };
    let mut random = (BLOCK as u32).to_be_bytes().to_vec();
    random.extend(blocking.to_be_bytes());
    random.extend([0, 0]);
    let all: Vec<(u16, bool, Vec<u8>)> = vec![
        (0x0000, true, feature(0x0000, 0, true, true, &profiles)),
        // Core: physical interface 2 (ATAPI); DBE (bit 0 of byte 4): device busy events.
        (
            0x0001,
            true,
            feature(0x0001, 2, true, true, &[0, 0, 0, 2, 1, 0, 0, 0]),
        ),
        // Morphing: OCEvent (operational change events) reported by polling.
        (
            0x0002,
            true,
            feature(0x0002, 1, true, true, &[0x02, 0, 0, 0]),
        ),
        // Removable Medium: tray (001b), eject, lock.
        (
            0x0003,
            true,
            feature(0x0003, 0, true, true, &[0x29, 0, 0, 0]),
        ),
        (0x0010, present, feature(0x0010, 0, false, present, &random)),
        (
            0x001e,
            present && !v.dvd,
            feature(0x001e, 0, false, present && !v.dvd, &[0, 0, 0, 0]),
        ),
        (
            0x001f,
            present && v.dvd,
            feature(0x001f, 0, false, present && v.dvd, &[]),
        ),
        (0x0100, true, feature(0x0100, 0, true, true, &[])),
    ];
    let mut d = vec![0u8; 8];
    d[6..8].copy_from_slice(&current.to_be_bytes());
    for (code, is_current, desc) in all {
        let take = match rt {
            0 => code >= start,
            1 => code >= start && is_current,
            2 => code == start,
            _ => return Err(Sense::INVALID_FIELD),
        };
        if take {
            d.extend(desc);
        }
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(d)
}

/// GET EVENT STATUS NOTIFICATION (MMC-6 6.7), polled only: the media class (4) with `event`
/// and the media status, when the host asks for media events; otherwise no event available.
pub fn event_status(cdb: &[u8], v: &View<'_>, event: u8) -> Result<Vec<u8>, Sense> {
    if be(cdb, 1, 1) & 1 == 0 {
        // Asynchronous notification is not offered.
        return Err(Sense::INVALID_FIELD);
    }
    let classes = be(cdb, 4, 1) as u8;
    const MEDIA_CLASS: u8 = 1 << 4;
    if classes & MEDIA_CLASS == 0 {
        // NEA: no event of a requested class; supported classes: media.
        return Ok(vec![0, 2, 0x80, MEDIA_CLASS]);
    }
    let status = u8::from(v.blocks.is_some()) << 1 | u8::from(v.tray_open);
    Ok(vec![0, 6, 0x04, MEDIA_CLASS, event & 0x0f, status, 0, 0])
}

/// READ DISC INFORMATION (MMC-6 6.22), standard disc information: a finalized disc of one
/// complete session, first and last track 1, unrestricted use.
pub fn read_disc_information(cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    if be(cdb, 1, 1) & 0x07 != 0 {
        return Err(Sense::INVALID_FIELD);
    }
    let mut d = vec![0u8; 34];
    // Last session complete (3:2 = 11b), disc finalized (1:0 = 10b).
    d[2] = 0x0e;
    d[3] = 1;
    d[4] = 1;
    d[5] = 1;
    d[6] = 1;
    // URU: unrestricted use.
    d[7] = 0x20;
    // Disc type 00h: CD-DA or CD-ROM. Lead-in start and last possible lead-out: none.
    d[16..24].fill(0xff);
    Ok(with_len16(d))
}

/// READ TRACK INFORMATION (MMC-6 6.27) of track 1, addressed by an LBA in it (type 0), its
/// number (1) or its session's number (2).
pub fn read_track_information(cdb: &[u8], blocks: u64) -> Result<Vec<u8>, Sense> {
    let number = be(cdb, 2, 4);
    let ok = match be(cdb, 1, 1) & 0x03 {
        0 => number < blocks,
        1 | 2 => number == 1,
        _ => false,
    };
    if !ok {
        return Err(Sense::INVALID_FIELD);
    }
    let mut d = vec![0u8; 36];
    d[2] = 1;
    d[3] = 1;
    // Track mode 4 (data, uninterrupted); data mode 1.
    d[5] = 0x04;
    d[6] = 0x01;
    let size = blocks.min(u64::from(u32::MAX)) as u32;
    d[24..28].copy_from_slice(&size.to_be_bytes());
    d[28..32].copy_from_slice(&size.saturating_sub(1).to_be_bytes());
    Ok(with_len16(d))
}

/// MECHANISM STATUS (MMC-6 6.10): no changer, idle, the door (tray) state, no slot table.
pub fn mechanism_status(v: &View<'_>) -> Vec<u8> {
    vec![0, u8::from(v.tray_open) << 4, 0, 0, 0, 0, 0, 0]
}

/// GET PERFORMANCE (MMC-6 6.8), type 00h (performance): one nominal descriptor over the disc,
/// or none when `max` is 0 or there is no medium; type 03h (write speed): none.
pub fn get_performance(cdb: &[u8], v: &View<'_>) -> Result<Vec<u8>, Sense> {
    let max = be(cdb, 8, 2);
    let kind = be(cdb, 10, 1) as u8;
    let write = be(cdb, 1, 1) & 0x04 != 0;
    let mut d = vec![0u8; 8];
    d[4] = u8::from(write) << 1;
    match kind {
        0x00 => {
            if let (Some(blocks), false, true) = (v.blocks, write, max > 0) {
                let speed = u32::from(READ_SPEED_KBS).to_be_bytes();
                d.extend([0, 0, 0, 0]);
                d.extend(speed);
                d.extend((blocks.saturating_sub(1) as u32).to_be_bytes());
                d.extend(speed);
            }
        }
        0x03 => {}
        _ => return Err(Sense::INVALID_FIELD),
    }
    let len = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(blocks: Option<u64>, dvd: bool) -> View<'static> {
        View {
            blocks,
            dvd,
            tray_open: false,
            prevent: false,
            model: "m",
            serial: "s",
        }
    }

    #[test]
    fn msf_conversion() {
        assert_eq!(msf(0), [0, 2, 0]);
        assert_eq!(msf(75 * 60 - 150), [1, 0, 0]);
        assert_eq!(msf(16), [0, 2, 16]);
    }

    #[test]
    fn capacity() {
        assert_eq!(read_capacity(1000), vec![0, 0, 3, 0xe7, 0, 0, 8, 0]);
    }

    #[test]
    fn toc_formats() {
        let t = read_toc(&[0x43, 0, 0, 0, 0, 0, 0, 0, 0xff, 0], 1000).unwrap();
        assert_eq!(t.len(), 4 + 2 * 8);
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), 18);
        assert_eq!((t[2], t[3]), (1, 1));
        assert_eq!((t[5], t[6]), (0x14, 1));
        assert_eq!(&t[8..12], &[0, 0, 0, 0]);
        assert_eq!(t[14], 0xaa);
        assert_eq!(&t[16..20], &1000u32.to_be_bytes());
        let m = read_toc(&[0x43, 2, 0, 0, 0, 0, 0, 0, 0xff, 0], 1000).unwrap();
        assert_eq!(&m[8..12], &[0, 0, 2, 0], "track 1 at 00:02:00");
        let s = read_toc(&[0x43, 0, 1, 0, 0, 0, 0, 0, 0xff, 0], 1000).unwrap();
        assert_eq!(s.len(), 12);
        assert_eq!(s[6], 1);
        let full = read_toc(&[0x43, 2, 2, 0, 0, 0, 0, 0, 0xff, 0], 1000).unwrap();
        assert_eq!(full.len(), 4 + 4 * 11);
        assert_eq!(full[4 + 2 * 11 + 3], 0xa2);
        assert_eq!(&full[4 + 2 * 11 + 8..4 + 3 * 11], &msf(1000));
        // Old-style format in byte 9.
        let old = read_toc(&[0x43, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x40], 1000).unwrap();
        assert_eq!(old, s);
        assert!(read_toc(&[0x43, 0, 5, 0, 0, 0, 0, 0, 0xff, 0], 1000).is_err());
        assert!(read_toc(&[0x43, 0, 0, 0, 0, 0, 2, 0, 0xff, 0], 1000).is_err());
        let lead_out = read_toc(&[0x43, 0, 0, 0, 0, 0, 0xaa, 0, 0xff, 0], 1000).unwrap();
        assert_eq!(lead_out.len(), 12);
    }

    #[test]
    fn configuration_profiles() {
        let cdb = [0x46, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0];
        let d = get_configuration(&cdb, &view(Some(100), false)).unwrap();
        assert_eq!(
            u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize,
            d.len() - 4
        );
        assert_eq!(u16::from_be_bytes([d[6], d[7]]), profile::CD_ROM);
        // Profile list first: DVD-ROM (not current), CD-ROM (current).
        assert_eq!(&d[8..12], &[0, 0, 0x03, 8]);
        assert_eq!(&d[12..20], &[0, 0x10, 0, 0, 0, 0x08, 1, 0]);
        let dvd = get_configuration(&cdb, &view(Some(1 << 20), true)).unwrap();
        assert_eq!(u16::from_be_bytes([dvd[6], dvd[7]]), profile::DVD_ROM);
        let none = get_configuration(&cdb, &view(None, false)).unwrap();
        assert_eq!(u16::from_be_bytes([none[6], none[7]]), 0);
        // RT 2: one feature.
        let one = get_configuration(&[0x46, 2, 0, 3, 0, 0, 0, 0xff, 0xff, 0], &view(None, false))
            .unwrap();
        assert_eq!(one.len(), 8 + 8);
        assert_eq!(&one[8..10], &[0, 3]);
        // RT 1 without a medium: no Random Readable.
        let cur = get_configuration(
            &[0x46, 1, 0, 0x10, 0, 0, 0, 0xff, 0xff, 0],
            &view(None, false),
        )
        .unwrap();
        assert_eq!(&cur[8..10], &[0x01, 0x00]);
    }

    #[test]
    fn events() {
        let cdb = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
        let d = event_status(&cdb, &view(Some(1), false), media_event::NEW_MEDIA).unwrap();
        assert_eq!(d, vec![0, 6, 4, 0x10, 2, 2, 0, 0]);
        let none = event_status(&[0x4a, 1, 0, 0, 0x02, 0, 0, 0, 8, 0], &view(None, false), 0);
        assert_eq!(none.unwrap(), vec![0, 2, 0x80, 0x10]);
        assert!(
            event_status(&[0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0], &view(None, false), 0).is_err()
        );
    }

    #[test]
    fn disc_and_track() {
        let d = read_disc_information(&[0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0]).unwrap();
        assert_eq!((d[0], d[1], d[2]), (0, 32, 0x0e));
        let t = read_track_information(&[0x52, 1, 0, 0, 0, 1, 0, 0, 36, 0], 500).unwrap();
        assert_eq!(&t[24..28], &500u32.to_be_bytes());
        assert!(read_track_information(&[0x52, 0, 0, 0, 1, 0xf4, 0, 0, 36, 0], 500).is_err());
        assert!(read_track_information(&[0x52, 1, 0, 0, 0, 2, 0, 0, 36, 0], 500).is_err());
        let p = get_performance(
            &[0xac, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
            &view(Some(9), false),
        )
        .unwrap();
        assert_eq!(p.len(), 8 + 16);
        assert!(
            get_performance(&[0xac, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0], &view(None, false)).is_err()
        );
    }
}
