//! SCSI sense data returned for an ATA PASS-THROUGH command, and the ATA registers in it.
//!
//! With CK_COND set the SATL always answers CHECK CONDITION and puts the drive's result
//! registers in the sense data (SAT-3 12.2.2.6):
//! - descriptor format (response code 72h/73h, SPC-4 4.5.2): the ATA Status Return descriptor
//!   (type 09h, SAT-3 12.2.2.7) carries all of them, with EXTEND saying the "exp" bytes are valid;
//! - fixed format (70h/71h, SPC-4 4.5.3): INFORMATION holds error, status, device and count
//!   7:0; COMMAND-SPECIFIC INFORMATION holds the EXTEND flag, "count upper nonzero", "LBA upper
//!   nonzero" and LBA 23:0. The upper bytes are lost; see [`AtaRegisters::lba_near`].
//!
//! A successful command gives RECOVERED ERROR with ASC/ASCQ 00h/1Dh ("ATA pass through
//! information available"). Linux since 2024 sets the VALID bit (80h) of byte 0, so the response
//! code is read from bits 6:0.

use crate::ata::registers::status;

/// Sense keys (SPC-4 table 48) this module names.
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const RECOVERED_ERROR: u8 = 0x1;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const ABORTED_COMMAND: u8 = 0xb;
}

/// ASC 20h: INVALID COMMAND OPERATION CODE (the SATL does not know ATA PASS-THROUGH(16)).
pub const ASC_INVALID_OPCODE: u8 = 0x20;

/// ATA Status Return descriptor code (SAT-3 12.2.2.7).
const ATA_STATUS_RETURN: u8 = 0x09;

/// The ATA registers of a finished command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtaRegisters {
    pub status: u8,
    pub error: u8,
    pub count: u16,
    pub lba: u64,
    pub device: u8,
    /// The "exp" (48-bit) bytes were returned.
    pub extend: bool,
    /// Fixed format only: count 15:8 was nonzero but is not in the sense data.
    pub count_upper_lost: bool,
    /// Fixed format only: LBA 47:24 was nonzero but is not in the sense data.
    pub lba_upper_lost: bool,
}

impl AtaRegisters {
    /// The device reported an error (ERR or DF).
    pub fn failed(&self) -> bool {
        self.status & (status::ERR | status::DF) != 0
    }

    /// The LBA, completing upper bits lost by fixed-format sense from the command's range
    /// `[start, start + blocks)`: the reported LBA is the one whose low 24 bits match and which
    /// lies inside that range (the drive reports the first failing sector of the command).
    pub fn lba_near(&self, start: u64, blocks: u64) -> u64 {
        if !self.lba_upper_lost {
            return self.lba;
        }
        let low = self.lba & 0xff_ffff;
        let end = start.saturating_add(blocks);
        let base = start & !0xff_ffff;
        [base, base.saturating_add(0x100_0000)]
            .into_iter()
            .map(|b| b | low)
            .find(|l| (start..end).contains(l))
            .unwrap_or(self.lba)
    }
}

/// What a sense buffer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// The ATA registers, when the sense data carries them.
    pub ata: Option<AtaRegisters>,
}

impl Sense {
    /// Parse `b` (the `sb_len_wr` bytes the kernel wrote). `None` if it is not sense data.
    pub fn parse(b: &[u8]) -> Option<Sense> {
        let code = b.first()? & 0x7f;
        match code {
            0x72 | 0x73 => Some(Self::parse_descriptor(b)),
            0x70 | 0x71 => Some(Self::parse_fixed(b)),
            _ => None,
        }
    }

    fn parse_descriptor(b: &[u8]) -> Sense {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut sense = Sense {
            key: at(1) & 0xf,
            asc: at(2),
            ascq: at(3),
            ata: None,
        };
        // Descriptors start at byte 8; byte 7 says how many bytes follow it.
        let end = (8 + usize::from(at(7))).min(b.len());
        let mut i = 8;
        while i + 2 <= end {
            let len = usize::from(at(i + 1)) + 2;
            if at(i) == ATA_STATUS_RETURN && i + 14 <= end {
                let d = &b[i..i + 14];
                let extend = d[2] & 1 != 0;
                let pair = |hi: u8, lo: u8| -> u16 {
                    if extend {
                        u16::from_be_bytes([hi, lo])
                    } else {
                        u16::from(lo)
                    }
                };
                let lba_lo = pair(d[6], d[7]);
                let lba_mid = pair(d[8], d[9]);
                let lba_hi = pair(d[10], d[11]);
                // Each pair is (exp byte, byte): exp bytes hold LBA 31:24, 39:32, 47:40.
                let lba = u64::from(lba_lo & 0xff)
                    | u64::from(lba_mid & 0xff) << 8
                    | u64::from(lba_hi & 0xff) << 16
                    | u64::from(lba_lo >> 8) << 24
                    | u64::from(lba_mid >> 8) << 32
                    | u64::from(lba_hi >> 8) << 40;
                sense.ata = Some(AtaRegisters {
                    status: d[13],
                    error: d[3],
                    count: pair(d[4], d[5]),
                    lba,
                    device: d[12],
                    extend,
                    count_upper_lost: false,
                    lba_upper_lost: false,
                });
                break;
            }
            i += len;
        }
        sense
    }

    fn parse_fixed(b: &[u8]) -> Sense {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let status = at(4);
        // A sense the SATL made up itself (UNIT ATTENTION, an invalid field) has no ATA status;
        // every status a drive returns has DRDY, ERR or DF set.
        let ata = (b.len() >= 12 && status != 0).then(|| AtaRegisters {
            status,
            error: at(3),
            device: at(5),
            count: u16::from(at(6)),
            lba: u64::from(at(11)) | u64::from(at(10)) << 8 | u64::from(at(9)) << 16,
            extend: at(8) & 0x80 != 0,
            count_upper_lost: at(8) & 0x40 != 0,
            lba_upper_lost: at(8) & 0x20 != 0,
        });
        Sense {
            key: at(2) & 0xf,
            asc: at(12),
            ascq: at(13),
            ata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Descriptor sense as libata builds it for a successful READ NATIVE MAX ADDRESS EXT with
    /// CK_COND: RECOVERED ERROR, 00/1D, ATA Status Return with EXTEND.
    fn descriptor(valid_bit: bool, extend: u8, status: u8, error: u8) -> Vec<u8> {
        let mut s = vec![
            0x72 | if valid_bit { 0x80 } else { 0 },
            0x01,
            0x00,
            0x1d,
            0,
            0,
            0,
            14,
        ];
        s.extend_from_slice(&[
            0x09, 0x0c, extend, error, 0x00, 0x01, // count 15:8, 7:0
            0x3a, 0x2f, // LBA 31:24, 7:0
            0x00, 0xff, // LBA 39:32, 15:8
            0x00, 0x10, // LBA 47:40, 23:16
            0x40, status,
        ]);
        s
    }

    #[test]
    fn descriptor_format_success_with_extend() {
        let s = Sense::parse(&descriptor(false, 1, 0x50, 0)).unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (key::RECOVERED_ERROR, 0x00, 0x1d));
        let r = s.ata.unwrap();
        assert_eq!(r.lba, 0x3a10_ff2f);
        assert_eq!((r.status, r.error, r.count, r.device), (0x50, 0, 1, 0x40));
        assert!(r.extend && !r.failed());
    }

    #[test]
    fn descriptor_format_without_extend_ignores_exp_bytes() {
        let r = Sense::parse(&descriptor(false, 0, 0x50, 0))
            .unwrap()
            .ata
            .unwrap();
        assert_eq!(r.lba, 0x10_ff2f);
        assert!(!r.extend);
    }

    #[test]
    fn valid_bit_is_masked() {
        let a = Sense::parse(&descriptor(true, 1, 0x50, 0)).unwrap();
        let b = Sense::parse(&descriptor(false, 1, 0x50, 0)).unwrap();
        assert_eq!(a, b);
        assert!(a.ata.is_some());
    }

    #[test]
    fn descriptor_error_status() {
        // UNC at a sector: MEDIUM ERROR, status 51h, error 40h.
        let mut s = descriptor(false, 1, 0x51, 0x40);
        s[1] = key::MEDIUM_ERROR;
        s[2] = 0x11;
        s[3] = 0x04;
        let s = Sense::parse(&s).unwrap();
        let r = s.ata.unwrap();
        assert!(r.failed());
        assert_eq!((s.key, r.error), (key::MEDIUM_ERROR, 0x40));
    }

    #[test]
    fn descriptor_after_another_descriptor_is_found() {
        let mut s = vec![0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 0];
        // An INFORMATION descriptor (type 0, 12 bytes) first.
        s.extend_from_slice(&[0x00, 0x0a, 0x80, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        s.extend_from_slice(&descriptor(false, 1, 0x50, 0)[8..]);
        s[7] = (s.len() - 8) as u8;
        assert_eq!(Sense::parse(&s).unwrap().ata.unwrap().status, 0x50);
    }

    #[test]
    fn truncated_descriptor_has_no_registers() {
        let mut s = descriptor(false, 1, 0x50, 0);
        s.truncate(16);
        let parsed = Sense::parse(&s).unwrap();
        assert_eq!(parsed.ata, None);
        assert_eq!(parsed.key, key::RECOVERED_ERROR);
    }

    fn fixed(valid_bit: bool, status: u8, error: u8, byte8: u8) -> Vec<u8> {
        vec![
            0x70 | if valid_bit { 0x80 } else { 0 },
            0,
            key::RECOVERED_ERROR,
            error,
            status,
            0x40, // device
            0x08, // count 7:0
            0x0a,
            byte8,
            0x12, // LBA 23:16
            0x34, // LBA 15:8
            0x56, // LBA 7:0
            0x00,
            0x1d,
            0,
            0,
            0,
            0,
        ]
    }

    #[test]
    fn fixed_format_with_and_without_valid_bit() {
        for valid in [false, true] {
            let s = Sense::parse(&fixed(valid, 0x50, 0, 0x80)).unwrap();
            assert_eq!((s.key, s.asc, s.ascq), (key::RECOVERED_ERROR, 0, 0x1d));
            let r = s.ata.unwrap();
            assert_eq!((r.status, r.error, r.device, r.count), (0x50, 0, 0x40, 8));
            assert_eq!(r.lba, 0x12_3456);
            assert!(r.extend && !r.lba_upper_lost && !r.count_upper_lost);
        }
    }

    #[test]
    fn fixed_format_error_and_lost_upper_lba() {
        let r = Sense::parse(&fixed(false, 0x51, 0x40, 0xa0))
            .unwrap()
            .ata
            .unwrap();
        assert!(r.failed() && r.lba_upper_lost);
        // The command covered LBA 0x1_00FF_FFF0 .. +0x130000: the failing sector is in the next
        // 16 Mi-sector window.
        assert_eq!(r.lba_near(0x1_00ff_fff0, 0x13_0000), 0x1_0112_3456);
        assert_eq!(r.lba_near(0x1_0110_0000, 0x3_0000), 0x1_0112_3456);
        // Outside the range: keep what we were told.
        assert_eq!(r.lba_near(0, 8), 0x12_3456);
    }

    #[test]
    fn fixed_sense_without_ata_status_has_no_registers() {
        // UNIT ATTENTION made up by the SCSI midlayer.
        let mut s = vec![
            0x70,
            0,
            key::UNIT_ATTENTION,
            0,
            0,
            0,
            0,
            10,
            0,
            0,
            0,
            0,
            0x29,
            0,
            0,
            0,
            0,
            0,
        ];
        let p = Sense::parse(&s).unwrap();
        assert_eq!((p.key, p.asc, p.ata), (key::UNIT_ATTENTION, 0x29, None));
        s[0] = 0x71;
        assert!(Sense::parse(&s).is_some());
    }

    #[test]
    fn no_sense_is_not_sense_data() {
        assert_eq!(Sense::parse(&[]), None);
        assert_eq!(Sense::parse(&[0x00; 18]), None);
        assert_eq!(Sense::parse(&[0x7f, 0, 0]), None);
    }
}
