//! SCSI sense data returned for an ATA PASS-THROUGH command, and the ATA registers in it.
//!
//! The SATL puts the drive's result registers in the sense data when CK_COND is set (then it
//! answers CHECK CONDITION even on success) and when the command failed (SAT-3 12.2.2.6):
//! - descriptor format (response code 72h/73h, SPC-4 4.5.2): the ATA Status Return descriptor
//!   (type 09h, SAT-3 12.2.2.7) carries all of them, with EXTEND saying the "exp" bytes are valid;
//! - fixed format (70h/71h, SPC-4 4.5.3), SAT positions: INFORMATION (bytes 3-6) holds error,
//!   status, device and count 7:0; COMMAND-SPECIFIC INFORMATION (bytes 8-11) holds the EXTEND
//!   flag, "count upper nonzero", "LBA upper nonzero" and LBA 23:0. The upper bytes are lost;
//!   see [`AtaRegisters::lba_near`].
//! - fixed format, Linux libata before 6.11 (commit 38dab832c3f4, "ata: libata-scsi: Fix offsets
//!   for the fixed format sense data", July 2024, backported to stable kernels): the same fields
//!   eight bytes further on, as if the fixed sense were a descriptor list: error, status, device,
//!   count 7:0 in bytes 8-11, the flags byte in 16, LBA 7:0, 15:8, 23:16 in 17-19. The VALID bit
//!   (80h of byte 0) is clear. Worse, the additional sense length (byte 7) still says 0Ah, and
//!   the sg driver copies only `8 + byte 7` = 18 bytes to user space, so through /dev/sgN only
//!   LBA 7:0 arrives. libata writes fixed format whenever the device's D_SENSE bit is clear (the
//!   default) and the command failed; see [`Sense::parse`] for how the two layouts are told
//!   apart.
//!
//! A successful command with CK_COND gives RECOVERED ERROR with ASC/ASCQ 00h/1Dh ("ATA pass
//! through information available"); Linux before 6.11 always uses descriptor format for it.
//! Linux since 6.11 sets the VALID bit of byte 0 for fixed format, so the response code is read
//! from bits 6:0.

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
    /// Fixed format only: `Some(n)` when only LBA bits n-1:0 are known (24 when the SATL said
    /// "LBA upper nonzero", 8 for Linux's legacy layout cut short by the sg driver), `None` when
    /// `lba` is complete.
    pub lba_known_bits: Option<u8>,
}

impl AtaRegisters {
    /// The device reported an error (ERR or DF).
    pub fn failed(&self) -> bool {
        self.status & (status::ERR | status::DF) != 0
    }

    /// The LBA, completing the bits fixed-format sense lost from the range `[start, start +
    /// blocks)` of the host command that failed: the drive reports the first failing sector of
    /// the command, so it is the lowest LBA of the range whose known low bits match. That is
    /// never above the true one (the true one is a candidate), so a guest that trusts the
    /// sectors before it trusts only sectors that were read. With no candidate in the range,
    /// what was reported is kept (a guest then takes the whole command as failed).
    pub fn lba_near(&self, start: u64, blocks: u64) -> u64 {
        let Some(bits) = self.lba_known_bits else {
            return self.lba;
        };
        let span = 1u64 << bits.min(48);
        let low = self.lba & (span - 1);
        let end = start.saturating_add(blocks);
        let mut candidate = (start & !(span - 1)) | low;
        if candidate < start {
            candidate = candidate.saturating_add(span);
        }
        if candidate < end {
            candidate
        } else {
            self.lba
        }
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
    ///
    /// Fixed format: with the VALID bit set the registers are at the SAT positions (Linux 6.11
    /// and later, and SATLs that follow SAT). With it clear, byte 4 (status at the SAT
    /// position) tells: every status a drive returns has DRDY, ERR or DF set, so nonzero means
    /// a SATL that writes SAT positions without VALID; zero with a nonzero byte 9 means Linux's
    /// legacy layout (byte 4 is always zero there); zero in both means sense the SATL made up
    /// itself (UNIT ATTENTION, an invalid CDB field), without registers.
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
                    lba_known_bits: None,
                });
                break;
            }
            i += len;
        }
        sense
    }

    fn parse_fixed(b: &[u8]) -> Sense {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let valid = at(0) & 0x80 != 0;
        let ata = if b.len() >= 12 && (valid || at(4) != 0) {
            // SAT-3 12.2.2.6, table 153.
            Some(Self::fixed_registers(
                [at(3), at(4), at(5), at(6)],
                at(8),
                [at(9), at(10), at(11)],
            ))
        } else if b.len() >= 12 && at(9) != 0 {
            // Linux's legacy layout. LBA bytes the sg driver did not copy read as zero and are
            // marked unknown.
            let regs = Self::fixed_registers(
                [at(8), at(9), at(10), at(11)],
                at(16),
                [at(19), at(18), at(17)],
            );
            let lba_bytes = b.len().saturating_sub(17).min(3) as u8;
            Some(AtaRegisters {
                lba_known_bits: if lba_bytes < 3 {
                    Some(8 * lba_bytes)
                } else {
                    regs.lba_known_bits
                },
                ..regs
            })
        } else {
            None
        };
        Sense {
            key: at(2) & 0xf,
            asc: at(12),
            ascq: at(13),
            ata,
        }
    }

    /// The registers of fixed-format sense: `regs` is error, status, device, count 7:0;
    /// `flags` the byte with EXTEND (80h), "count upper nonzero" (40h) and "LBA upper nonzero"
    /// (20h); `lba` is LBA 23:16, 15:8, 7:0.
    fn fixed_registers(regs: [u8; 4], flags: u8, lba: [u8; 3]) -> AtaRegisters {
        let [error, status, device, count] = regs;
        AtaRegisters {
            status,
            error,
            device,
            count: u16::from(count),
            lba: u64::from(lba[2]) | u64::from(lba[1]) << 8 | u64::from(lba[0]) << 16,
            extend: flags & 0x80 != 0,
            count_upper_lost: flags & 0x40 != 0,
            lba_known_bits: (flags & 0x20 != 0).then_some(24),
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
            assert!(r.extend && r.lba_known_bits.is_none() && !r.count_upper_lost);
        }
    }

    #[test]
    fn fixed_format_error_and_lost_upper_lba() {
        let r = Sense::parse(&fixed(false, 0x51, 0x40, 0xa0))
            .unwrap()
            .ata
            .unwrap();
        assert!(r.failed() && r.lba_known_bits == Some(24));
        // The command covered LBA 0x1_00FF_FFF0 .. +0x130000: the failing sector is in the next
        // 16 Mi-sector window.
        assert_eq!(r.lba_near(0x1_00ff_fff0, 0x13_0000), 0x1_0112_3456);
        assert_eq!(r.lba_near(0x1_0110_0000, 0x3_0000), 0x1_0112_3456);
        // Outside the range: keep what we were told.
        assert_eq!(r.lba_near(0, 8), 0x12_3456);
    }

    /// Captured in the test rig (Linux 6.1 libata over QEMU's AHCI, `hdparm -I /dev/sg0`):
    /// IDENTIFY DEVICE with CK_COND, in the 18 bytes the sg driver copies. Legacy layout, VALID
    /// clear; the registers are QEMU's stale PIO Setup FIS (see `cdb::PassThrough::ck_cond`).
    const RIG_IDENTIFY_CK_COND: [u8; 18] = [
        0x70, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x04, 0x41, 0xe0, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x80, 0x00,
    ];

    #[test]
    fn linux_legacy_fixed_layout_from_the_rig() {
        let s = Sense::parse(&RIG_IDENTIFY_CK_COND).unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (key::ABORTED_COMMAND, 0, 0));
        let r = s.ata.unwrap();
        assert_eq!(
            (r.error, r.status, r.device, r.count, r.extend),
            (0x04, 0x41, 0xe0, 1, true)
        );
        assert!(r.failed());
        // Only LBA 7:0 made it through the sg driver.
        assert_eq!((r.lba, r.lba_known_bits), (0, Some(8)));
    }

    #[test]
    fn linux_legacy_fixed_layout_in_full() {
        // The same layout read through the block device (no truncation at 8 + byte 7): a
        // MEDIUM ERROR at LBA 40960 (A000h) as libata builds it from the result taskfile.
        let mut b = RIG_IDENTIFY_CK_COND.to_vec();
        b[2] = key::MEDIUM_ERROR;
        (b[12], b[13]) = (0x11, 0x04);
        b[8..12].copy_from_slice(&[0x40, 0x51, 0x40, 0x08]);
        b.extend_from_slice(&[0xa0, 0x00]);
        b.resize(32, 0);
        let s = Sense::parse(&b).unwrap();
        let r = s.ata.unwrap();
        assert_eq!((s.key, s.asc, s.ascq), (key::MEDIUM_ERROR, 0x11, 0x04));
        assert_eq!(
            (r.error, r.status, r.device, r.count),
            (0x40, 0x51, 0x40, 8)
        );
        assert_eq!((r.lba, r.lba_known_bits), (40960, None));
        // Cut to 18 bytes as /dev/sgN delivers it: LBA 15:8 is gone, the range restores it.
        let r = Sense::parse(&b[..18]).unwrap().ata.unwrap();
        assert_eq!((r.lba, r.lba_known_bits), (0, Some(8)));
        assert_eq!(r.lba_near(40960 - 68, 256), 40960);
        assert_eq!(r.lba_near(40960, 8), 40960);
        // Ambiguous over a range longer than 256 sectors: the lowest candidate, never above the
        // true LBA.
        assert_eq!(r.lba_near(40000, 2048), 40192);
        // With 19 bytes, LBA 15:8 is there.
        let r = Sense::parse(&b[..19]).unwrap().ata.unwrap();
        assert_eq!((r.lba, r.lba_known_bits), (40960, Some(16)));
    }

    #[test]
    fn linux_6_11_fixed_layout_has_valid_set_and_sat_positions() {
        // ata_gen_passthru_sense after commit 38dab832c3f4: the same MEDIUM ERROR.
        let b = [
            0xf0,
            0,
            key::MEDIUM_ERROR,
            0x40,
            0x51,
            0x40,
            0x08,
            0x0a,
            0x80,
            0x00,
            0xa0,
            0x00,
            0x11,
            0x04,
            0,
            0,
            0,
            0,
        ];
        let r = Sense::parse(&b).unwrap().ata.unwrap();
        assert_eq!(
            (r.error, r.status, r.device, r.count),
            (0x40, 0x51, 0x40, 8)
        );
        assert_eq!((r.lba, r.lba_known_bits, r.extend), (40960, None, true));
    }

    #[test]
    fn valid_bit_wins_even_when_status_reads_zero() {
        // VALID set: SAT positions, whatever byte 9 holds.
        let mut b = fixed(true, 0x00, 0x00, 0x00);
        b[9] = 0x51;
        let r = Sense::parse(&b).unwrap().ata.unwrap();
        assert_eq!((r.status, r.lba), (0x00, 0x51_3456));
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
