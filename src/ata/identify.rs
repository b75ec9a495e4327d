//! IDENTIFY DEVICE data (ACS-3 7.12.7, table 45): the 256 words a drive returns to describe
//! itself. Only the words an ATA host (Linux libata above all) reads are filled in; the rest
//! are zero, which ACS-3 defines as "not supported / not reported".

use super::registers::SECTOR_SIZE;
use super::taskfile::LBA28_MAX;

/// Most sectors words 100-103 can report: 48-bit commands address LBAs below 2^48, and ACS-3
/// 7.12.7.53 caps the count at 0000_FFFF_FFFF_FFFFh. A larger medium is clamped to this.
pub const LBA48_MAX_SECTORS: u64 = (1 << 48) - 1;

/// Largest DRQ data block of READ/WRITE MULTIPLE, in sectors (word 47 bits 7:0).
pub const MAX_MULTIPLE_SECTORS: u8 = 16;
/// NCQ queue depth (word 75 holds depth - 1).
pub const NCQ_QUEUE_DEPTH: u8 = 32;
/// 512-byte blocks of LBA range entries one DATA SET MANAGEMENT command may carry (word 105).
pub const DSM_MAX_BLOCKS: u16 = 8;

/// A transfer mode as selected with SET FEATURES 03h (ACS-3 table 116).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// PIO default or flow-control mode n.
    Pio(u8),
    /// Multiword DMA mode n (0..=2).
    MultiwordDma(u8),
    /// Ultra DMA mode n (0..=6).
    UltraDma(u8),
}

impl TransferMode {
    /// Decode the Count value of SET FEATURES - set transfer mode; None if not supported.
    pub fn from_count(count: u8) -> Option<Self> {
        match count {
            0x00 | 0x01 => Some(TransferMode::Pio(0)),
            0x08..=0x0c => Some(TransferMode::Pio(count & 7)),
            0x20..=0x22 => Some(TransferMode::MultiwordDma(count & 7)),
            0x40..=0x46 => Some(TransferMode::UltraDma(count & 7)),
            _ => None,
        }
    }
}

/// The variable facts IDENTIFY DEVICE reports.
#[derive(Debug, Clone)]
pub struct IdentifyParams<'a> {
    /// User-addressable sectors.
    pub capacity: u64,
    /// Up to 20 ASCII characters.
    pub serial: &'a str,
    /// Up to 8 ASCII characters.
    pub firmware: &'a str,
    /// Up to 40 ASCII characters.
    pub model: &'a str,
    /// Current SET MULTIPLE MODE setting (0: not set).
    pub multiple_sectors: u8,
    /// Volatile write cache enabled (SET FEATURES 02h/82h).
    pub write_cache: bool,
    /// Read look-ahead enabled (SET FEATURES AAh/55h).
    pub look_ahead: bool,
    /// The selected DMA mode.
    pub transfer_mode: TransferMode,
    /// DATA SET MANAGEMENT TRIM is offered (not on a read-only drive).
    pub trim: bool,
    /// World wide name (words 108-111), NAA 5 in bits 63:60 ([`wwn_from_serial`]).
    pub wwn: u64,
    /// Highest SATA generation the device supports (word 76 bits 3:1): 1, 2 or 3.
    pub max_gen: u8,
    /// The generation the link negotiated (word 77 bits 3:1), 0 if not known.
    pub current_gen: u8,
    /// SMART enabled (word 85 bit 0).
    pub smart_enabled: bool,
    /// Sense data reporting enabled (word 120 bit 6; SET FEATURES C3h).
    pub sense_reporting: bool,
}

/// The IEEE OUI in satavm's derived world wide names: 564D53h ("VMS"). Its first octet has the
/// U/L bit (02h) set and is no CID (those have the nibble Ah): locally administered, so it
/// cannot be any company's assigned OUI.
pub const WWN_OUI: u64 = 0x56_4d53;

/// A stable NAA 5 world wide name for `serial` (ACS-3 7.12.7.60, words 108-111: bits 63:60 NAA
/// 5h, 59:36 the IEEE OUI, 35:0 a unique id): [`WWN_OUI`] and 36 bits of an FNV-1a hash of the
/// serial number.
pub fn wwn_from_serial(serial: &str) -> u64 {
    let hash = serial.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    5 << 60 | WWN_OUI << 36 | (hash & 0xf_ffff_ffff)
}

/// Store `s` as an ATA string in `words`: two characters per word, the first in the high byte
/// (ACS-3 3.4.9), padded with spaces; characters outside printable ASCII become '?'.
pub(crate) fn put_string(words: &mut [u16], s: &str) {
    let mut bytes = s
        .bytes()
        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b'?' })
        .chain(std::iter::repeat(b' '));
    for w in words.iter_mut() {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *w = u16::from(hi) << 8 | u16::from(lo);
    }
}

/// Read an ATA string back (for tests and traces), trailing spaces removed.
pub fn get_string(words: &[u16]) -> String {
    let mut s: String = words
        .iter()
        .flat_map(|w| [(w >> 8) as u8 as char, *w as u8 as char])
        .collect();
    s.truncate(s.trim_end().len());
    s
}

/// The 256 IDENTIFY DEVICE words, with the integrity word (255) filled in.
pub fn identify_device(p: &IdentifyParams<'_>) -> [u16; 256] {
    let mut w = [0u16; 256];
    // Legacy CHS geometry (obsolete but still read by old code): 16 heads, 63 sectors/track.
    let cylinders = (p.capacity / (16 * 63)).clamp(1, 16383) as u16;
    // Word 0: general configuration; bit 15 clear = ATA device, bit 6 = fixed (obsolete).
    w[0] = 0x0040;
    w[1] = cylinders;
    // Word 2: specific configuration C837h: no SET FEATURES needed to spin up, IDENTIFY
    // DEVICE response complete (ACS-3 7.12.7.4).
    w[2] = 0xc837;
    w[3] = 16;
    w[6] = 63;
    put_string(&mut w[10..20], p.serial);
    put_string(&mut w[23..27], p.firmware);
    put_string(&mut w[27..47], p.model);
    // Word 47: 8000h | max sectors per DRQ block of READ/WRITE MULTIPLE.
    w[47] = 0x8000 | u16::from(MAX_MULTIPLE_SECTORS);
    // Word 48: trusted computing feature set options: bit 14 shall be one, bit 0 clear (not
    // supported).
    w[48] = 0x4000;
    // Word 49: bit 11 IORDY supported, bit 10 IORDY may be disabled, bit 9 LBA, bit 8 DMA.
    w[49] = 0x0f00;
    // Word 50: bit 14 shall be one.
    w[50] = 0x4000;
    // Word 53: bit 2 word 88 valid, bit 1 words 64-70 valid, bit 0 (obsolete, still read by
    // hdparm) words 54-58 valid.
    w[53] = 0x0007;
    // Words 54-58: current CHS translation.
    w[54] = cylinders;
    w[55] = 16;
    w[56] = 63;
    let chs_sectors = u32::from(cylinders) * 16 * 63;
    w[57] = chs_sectors as u16;
    w[58] = (chs_sectors >> 16) as u16;
    // Word 59: bit 8 = bits 7:0 hold a valid multiple setting.
    if p.multiple_sectors != 0 {
        w[59] = 0x0100 | u16::from(p.multiple_sectors);
    }
    // Words 60-61: sectors addressable by 28-bit commands.
    let lba28 = p.capacity.min(LBA28_MAX) as u32;
    w[60] = lba28 as u16;
    w[61] = (lba28 >> 16) as u16;
    // Words 63 and 88: DMA modes supported (bits 7:0) and selected (bits 15:8).
    w[63] = 0x0007;
    w[88] = 0x007f;
    match p.transfer_mode {
        TransferMode::MultiwordDma(n) => w[63] |= 0x0100 << n.min(2),
        TransferMode::UltraDma(n) => w[88] |= 0x0100 << n.min(6),
        TransferMode::Pio(_) => {}
    }
    // Word 64: PIO modes 3 and 4; words 65-68: minimum cycle times in ns.
    w[64] = 0x0003;
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    // Word 69: bit 14 deterministic data after TRIM, bit 5 trimmed ranges read as zeros.
    if p.trim {
        w[69] = 0x4020;
    }
    // Word 75: NCQ queue depth - 1.
    w[75] = u16::from(NCQ_QUEUE_DEPTH - 1);
    // Word 76: SATA capabilities: bit 8 NCQ, bits 3:1 Gen3/Gen2/Gen1 signalling speeds
    // (every generation up to the device's highest).
    let max_gen = p.max_gen.clamp(1, 3);
    w[76] = 0x0100 | ((1u16 << max_gen) - 1) << 1;
    // Word 77: bits 3:1 the current negotiated speed (ACS-3 7.12.7.35: 1 Gen1 .. 3 Gen3).
    w[77] = u16::from(p.current_gen.min(max_gen)) << 1;
    // Words 78/79: optional SATA features supported/enabled: bit 7 NCQ autosense (sense data
    // in the NCQ Command Error log; no enable bit). Nothing else: no software settings
    // preservation, so every reset restores the power-on settings; no DIPM, no auto-activate.
    w[78] = 0x0080;
    w[79] = 0;
    // Word 80: major versions ATA/ATAPI-4 .. ACS-3 (bits 4..=10).
    w[80] = 0x07f0;
    // Word 81: minor version 010Ah = ACS-3 published, ANSI INCITS 522-2014.
    w[81] = 0x010a;
    // Word 82: bit 6 look-ahead, bit 5 volatile write cache, bit 3 power management
    // (mandatory: IDLE, STANDBY, SLEEP, CHECK POWER MODE; [`crate::ata::emulated`]), bit 0
    // SMART.
    w[82] = 0x0069;
    // Word 83: bit 14 shall be one, 13 FLUSH CACHE EXT, 12 FLUSH CACHE, 10 48-bit address.
    w[83] = 0x7400;
    // Word 84: bit 14 shall be one, 8 world wide name, 6 WRITE DMA FUA EXT, 5 general
    // purpose logging, 1 SMART self-test, 0 SMART error logging.
    w[84] = 0x4163;
    // Words 85-87: the same features, "enabled" copies; 86 bit 15 = words 119-120 valid.
    w[85] = 0x0008
        | u16::from(p.smart_enabled)
        | (u16::from(p.write_cache) << 5)
        | (u16::from(p.look_ahead) << 6);
    w[86] = 0xb400;
    w[87] = 0x4163;
    // Word 93: SATA devices report 0 (no PATA hardware reset result).
    w[93] = 0;
    // Words 100-103: sectors addressable by 48-bit commands.
    let lba48 = p.capacity.min(LBA48_MAX_SECTORS);
    for (i, word) in w[100..104].iter_mut().enumerate() {
        *word = (lba48 >> (16 * i)) as u16;
    }
    // Words 108-111: world wide name, most significant word first (NAA in word 108 15:12).
    for (i, word) in w[108..112].iter_mut().enumerate() {
        *word = (p.wwn >> (48 - 16 * i)) as u16;
    }
    // Word 105: max 512-byte blocks of DSM LBA range entries.
    w[105] = DSM_MAX_BLOCKS;
    // Word 106: bit 14 shall be one; bits 13/12 clear: one 512-byte logical sector per
    // 512-byte physical sector.
    const _: () = assert!(SECTOR_SIZE == 512);
    w[106] = 0x4000;
    // Words 119/120: bit 14 shall be one; bit 6 sense data reporting, bit 3 READ/WRITE LOG
    // DMA EXT supported/enabled.
    w[119] = 0x4048;
    w[120] = 0x4008 | u16::from(p.sense_reporting) << 6;
    // Word 169: bit 0 DATA SET MANAGEMENT TRIM supported.
    w[169] = u16::from(p.trim);
    // Word 217: nominal media rotation rate: 1 = non-rotating (solid state).
    w[217] = 1;
    // Word 222: transport major version: bits 15:12 = 1 serial; bits 6:0 SATA 1.0a..3.0.
    w[222] = 0x107f;
    seal(&mut w);
    w
}

/// Word 255, the integrity word of IDENTIFY (PACKET) DEVICE data: A5h signature in bits 7:0,
/// checksum in 15:8 so that the 512 bytes sum to 0 modulo 256 (ACS-3 7.12.7.91).
pub(crate) fn seal(w: &mut [u16; 256]) {
    w[255] = 0x00a5;
    let sum = w[..255]
        .iter()
        .fold(0u8, |s, x| {
            s.wrapping_add(*x as u8).wrapping_add((x >> 8) as u8)
        })
        .wrapping_add(0xa5);
    w[255] |= u16::from(sum.wrapping_neg()) << 8;
}

/// The words as the 512 little-endian bytes of the data block.
pub fn to_bytes(words: &[u16; 256]) -> [u8; 512] {
    let mut b = [0u8; 512];
    for (chunk, w) in b.chunks_exact_mut(2).zip(words.iter()) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(capacity: u64) -> IdentifyParams<'static> {
        IdentifyParams {
            capacity,
            serial: "SER123",
            firmware: "1.0",
            model: "Model X",
            multiple_sectors: 8,
            write_cache: true,
            look_ahead: true,
            transfer_mode: TransferMode::UltraDma(6),
            trim: true,
            wwn: wwn_from_serial("SER123"),
            max_gen: 3,
            current_gen: 2,
            smart_enabled: true,
            sense_reporting: false,
        }
    }

    #[test]
    fn wwn_is_naa5_stable_and_in_words_108_to_111() {
        let a = wwn_from_serial("SER123");
        assert_eq!(a >> 60, 5);
        assert_eq!((a >> 36) & 0xff_ffff, WWN_OUI);
        assert_eq!(a, wwn_from_serial("SER123"));
        assert_ne!(a, wwn_from_serial("SER124"));
        let w = identify_device(&IdentifyParams {
            wwn: 0x5001_2345_6789_abcd,
            ..params(1000)
        });
        assert_eq!(&w[108..112], &[0x5001, 0x2345, 0x6789, 0xabcd]);
        assert_eq!((w[84] & 0x0100, w[87] & 0x0100), (0x0100, 0x0100));
    }

    #[test]
    fn speeds_and_chs_words() {
        let w = identify_device(&params(1_000_000));
        assert_eq!(w[76] & 0x000e, 0x000e, "Gen1-3 supported");
        assert_eq!((w[77] >> 1) & 7, 2, "Gen2 negotiated");
        let w = identify_device(&IdentifyParams {
            max_gen: 1,
            current_gen: 3,
            ..params(1_000_000)
        });
        assert_eq!((w[76] & 0x000e, (w[77] >> 1) & 7), (0x0002, 1));
        // Current CHS: valid (word 53 bit 0), and words 57-58 = C * H * S.
        assert_eq!(w[53] & 1, 1);
        assert_eq!((w[54], w[55], w[56]), (w[1], 16, 63));
        let chs = u32::from(w[57]) | u32::from(w[58]) << 16;
        assert_eq!(chs, u32::from(w[54]) * 16 * 63);
        assert!(u64::from(chs) <= 1_000_000);
        assert_eq!(w[2], 0xc837);
        assert_eq!(w[48], 0x4000);
    }

    #[test]
    fn strings_are_byte_swapped_and_space_padded() {
        let w = identify_device(&params(1000));
        let b = to_bytes(&w);
        // "Model X" -> bytes "oMed lX" ... (pairs swapped in memory).
        assert_eq!(&b[54..62], b"oMed l X");
        assert_eq!(get_string(&w[27..47]), "Model X");
        assert_eq!(get_string(&w[10..20]), "SER123");
        assert_eq!(get_string(&w[23..27]), "1.0");
    }

    #[test]
    fn capacity_words_and_checksum() {
        let cap = 0x1_2345_6789u64;
        let w = identify_device(&params(cap));
        assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0fff_ffff);
        let c48 = (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i));
        assert_eq!(c48, cap);
        assert_eq!(w[255] & 0xff, 0xa5);
        let sum = to_bytes(&w).iter().fold(0u8, |s, b| s.wrapping_add(*b));
        assert_eq!(sum, 0);
        let small = identify_device(&params(2048));
        assert_eq!(small[60], 2048);
        assert_eq!(small[1], 2, "2048 / (16*63) rounds down to 2 cylinders");
    }

    #[test]
    fn capacities_beyond_48_bits_are_clamped() {
        // What a directory opened as an image used to report: 2^63-1 bytes.
        for cap in [i64::MAX as u64 / 512, 1 << 48, u64::MAX] {
            let w = identify_device(&params(cap));
            assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0fff_ffff);
            let c48 = (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i));
            assert_eq!(c48, LBA48_MAX_SECTORS, "capacity {cap:#x}");
            assert_eq!(w[103], 0);
            assert_eq!(w[1], 16383, "CHS cylinders capped");
        }
    }

    #[test]
    fn settings_are_reflected() {
        let w = identify_device(&params(1000));
        assert_eq!(w[59], 0x0108);
        assert_eq!(w[88], 0x407f);
        assert_eq!(w[85] & 0x20, 0x20);
        let w = identify_device(&IdentifyParams {
            write_cache: false,
            multiple_sectors: 0,
            transfer_mode: TransferMode::MultiwordDma(2),
            trim: false,
            ..params(1000)
        });
        assert_eq!(w[59], 0);
        assert_eq!(w[88], 0x007f);
        assert_eq!(w[63], 0x0407);
        assert_eq!(w[85] & 0x20, 0);
        assert_eq!(w[169], 0);
    }
}
