//! ATA PASS-THROUGH command descriptor blocks (SAT-3 section 12.2.2 for the 12-byte form,
//! 12.2.3 for the 16-byte form).
//!
//! A [`PassThrough`] is one ATA command as the host's SCSI/ATA translation layer (libata's
//! `ata_scsi_pass_thru` on Linux) should issue it: the taskfile registers plus the SAT fields
//! that say how to move the data and that the result registers must come back (CK_COND).

/// ATA PASS-THROUGH(16) operation code.
pub const ATA_16: u8 = 0x85;
/// ATA PASS-THROUGH(12) operation code.
pub const ATA_12: u8 = 0xa1;

/// Byte 2 of the CDB (SAT-3 table 163).
mod flags {
    /// CK_COND: return the ATA registers in the sense data even on success.
    pub const CK_COND: u8 = 0x20;
    /// T_DIR: data moves from the device (a read).
    pub const T_DIR_FROM_DEVICE: u8 = 0x08;
    /// BYT_BLOK: the transfer length counts blocks (of 512 bytes, as T_TYPE is 0), not bytes.
    pub const BYT_BLOK: u8 = 0x04;
}

/// The PROTOCOL field (SAT-3 table 162): which ATA protocol the SATL runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SatProtocol {
    /// 3: non-data.
    NonData = 3,
    /// 4: PIO data-in.
    PioIn = 4,
    /// 5: PIO data-out.
    PioOut = 5,
    /// 6: DMA.
    Dma = 6,
    /// 12: first-party DMA queued (NCQ); with T_LENGTH 0 it is NCQ non-data.
    Fpdma = 12,
}

/// The T_LENGTH field: where the SATL finds the transfer length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TLength {
    /// 0: no data.
    None = 0,
    /// 1: in the FEATURES field (READ/WRITE FPDMA QUEUED keep their count there).
    Features = 1,
    /// 2: in the COUNT field.
    Count = 2,
}

/// ATA taskfile registers sent to the host drive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostTaskfile {
    pub command: u8,
    pub features: u16,
    pub count: u16,
    /// LBA 47:0; for a 28-bit command only bits 23:0 are used (27:24 live in `device`).
    pub lba: u64,
    pub device: u8,
}

/// One ATA PASS-THROUGH command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassThrough {
    pub protocol: SatProtocol,
    /// EXTEND: a 48-bit command (the "exp"/HOB bytes are valid).
    pub extend: bool,
    pub t_length: TLength,
    /// T_DIR: data flows from the device.
    pub from_device: bool,
    /// MULTIPLE_COUNT (log2 of sectors per DRQ block) for READ/WRITE MULTIPLE; 0 otherwise.
    pub multiple_count_log2: u8,
    pub tf: HostTaskfile,
}

impl PassThrough {
    /// Whether CK_COND is set: for non-data commands only.
    ///
    /// A non-data command's result registers are its answer (READ NATIVE MAX ADDRESS, CHECK
    /// POWER MODE, SMART RETURN STATUS...), and libata reads them from the Register D2H FIS
    /// that ends the command. For data commands the registers are not worth their price, and
    /// are wrong on the host this is tested on: Linux up to 6.1 builds the CK_COND sense from
    /// its "result taskfile", which libahci takes for a successful PIO data-in command from
    /// the PIO Setup FIS area of the received-FIS buffer, and for an NCQ command from the D2H
    /// area (6.2 and later read the Set Device Bits area). QEMU's AHCI leaves an older
    /// command's status there (status 41h, error 04h after an earlier aborted command), so a
    /// good IDENTIFY DEVICE came back as ABORTED COMMAND. libata's own verdict (`err_mask`) is
    /// right: without CK_COND a successful command ends GOOD without sense (the caller
    /// synthesizes the final status, see [`super::fises`]) and a failed one CHECK CONDITION
    /// with the registers of the D2H FIS the device sent with the error.
    pub fn ck_cond(&self) -> bool {
        self.protocol == SatProtocol::NonData
    }

    fn byte1(&self) -> u8 {
        ((self.multiple_count_log2 & 0x7) << 5)
            | ((self.protocol as u8) << 1)
            | u8::from(self.extend)
    }

    fn byte2(&self) -> u8 {
        let mut b = self.t_length as u8;
        if self.ck_cond() {
            b |= flags::CK_COND;
        }
        if self.t_length != TLength::None {
            b |= flags::BYT_BLOK;
            if self.from_device {
                b |= flags::T_DIR_FROM_DEVICE;
            }
        }
        b
    }

    /// The ATA PASS-THROUGH(16) CDB (SAT-3 table 168).
    pub fn cdb16(&self) -> [u8; 16] {
        let tf = &self.tf;
        let (lba, features, count) = (tf.lba, tf.features, tf.count);
        let mut c = [0u8; 16];
        c[0] = ATA_16;
        c[1] = self.byte1();
        c[2] = self.byte2();
        c[4] = features as u8;
        c[6] = count as u8;
        c[8] = lba as u8;
        c[10] = (lba >> 8) as u8;
        c[12] = (lba >> 16) as u8;
        if self.extend {
            c[3] = (features >> 8) as u8;
            c[5] = (count >> 8) as u8;
            c[7] = (lba >> 24) as u8;
            c[9] = (lba >> 32) as u8;
            c[11] = (lba >> 40) as u8;
        }
        c[13] = tf.device;
        c[14] = tf.command;
        c
    }

    /// The ATA PASS-THROUGH(12) CDB (SAT-3 table 166), or `None` for a 48-bit command, which
    /// the 12-byte form cannot carry.
    pub fn cdb12(&self) -> Option<[u8; 12]> {
        if self.extend {
            return None;
        }
        let tf = &self.tf;
        let mut c = [0u8; 12];
        c[0] = ATA_12;
        c[1] = self.byte1() & !1;
        c[2] = self.byte2();
        c[3] = tf.features as u8;
        c[4] = tf.count as u8;
        c[5] = tf.lba as u8;
        c[6] = (tf.lba >> 8) as u8;
        c[7] = (tf.lba >> 16) as u8;
        c[8] = tf.device;
        c[9] = tf.command;
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_device_matches_sg_sat_identify() {
        // sg3_utils `sg_sat_identify` sends 85 08 0e 00 00 00 01 00 00 00 00 00 00 00 ec 00
        // (PIO data-in, T_DIR, BYT_BLOK, T_LENGTH=count, count 1), without CK_COND.
        let pt = PassThrough {
            protocol: SatProtocol::PioIn,
            extend: false,
            t_length: TLength::Count,
            from_device: true,
            multiple_count_log2: 0,
            tf: HostTaskfile {
                command: 0xec,
                count: 1,
                ..Default::default()
            },
        };
        assert_eq!(
            pt.cdb16(),
            [0x85, 0x08, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xec, 0]
        );
        assert_eq!(
            pt.cdb12(),
            Some([0xa1, 0x08, 0x0e, 0, 1, 0, 0, 0, 0, 0xec, 0, 0])
        );
    }

    #[test]
    fn read_dma_ext_puts_exp_bytes_in_the_odd_positions() {
        // READ DMA EXT, 0x1234 sectors at LBA 0x0A0B_0C0D_0E0F.
        let pt = PassThrough {
            protocol: SatProtocol::Dma,
            extend: true,
            t_length: TLength::Count,
            from_device: true,
            multiple_count_log2: 0,
            tf: HostTaskfile {
                command: 0x25,
                features: 0,
                count: 0x1234,
                lba: 0x0a0b_0c0d_0e0f,
                device: 0x40,
            },
        };
        assert_eq!(
            pt.cdb16(),
            [
                0x85, 0x0d, 0x0e, 0x00, 0x00, 0x12, 0x34, 0x0c, 0x0f, 0x0b, 0x0e, 0x0a, 0x0d, 0x40,
                0x25, 0
            ]
        );
        assert_eq!(pt.cdb12(), None);
    }

    #[test]
    fn write_fpdma_queued_takes_its_length_from_features() {
        // WRITE FPDMA QUEUED, tag 7, 16 sectors at LBA 0x1000, FUA: protocol 12, T_LENGTH 1,
        // T_DIR 0 (to the device), BYT_BLOK, no CK_COND.
        let pt = PassThrough {
            protocol: SatProtocol::Fpdma,
            extend: true,
            t_length: TLength::Features,
            from_device: false,
            multiple_count_log2: 0,
            tf: HostTaskfile {
                command: 0x61,
                features: 16,
                count: 7 << 3,
                lba: 0x1000,
                device: 0xc0,
            },
        };
        assert_eq!(
            pt.cdb16(),
            [0x85, 0x19, 0x05, 0, 16, 0, 0x38, 0, 0x00, 0, 0x10, 0, 0, 0xc0, 0x61, 0]
        );
    }

    #[test]
    fn flush_cache_ext_is_non_data_with_ck_cond_only() {
        // hdparm -F / sg_sat_set_features style non-data: 85 07 20 ... ea.
        let pt = PassThrough {
            protocol: SatProtocol::NonData,
            extend: true,
            t_length: TLength::None,
            from_device: true, // ignored without data
            multiple_count_log2: 0,
            tf: HostTaskfile {
                command: 0xea,
                device: 0x40,
                ..Default::default()
            },
        };
        assert_eq!(
            pt.cdb16(),
            [0x85, 0x07, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0xea, 0]
        );
    }

    #[test]
    fn lba28_command_drops_the_exp_bytes() {
        // READ DMA (28-bit) at LBA 0x0123_4567: bits 27:24 travel in the device register.
        let pt = PassThrough {
            protocol: SatProtocol::Dma,
            extend: false,
            t_length: TLength::Count,
            from_device: true,
            multiple_count_log2: 0,
            tf: HostTaskfile {
                command: 0xc8,
                features: 0xff00,
                count: 0xff08,
                lba: 0xffff_ff23_4567,
                device: 0x41,
            },
        };
        let c = pt.cdb16();
        assert_eq!(c[1], 0x0c);
        assert_eq!([c[3], c[5], c[7], c[9], c[11]], [0; 5]);
        assert_eq!(
            [c[6], c[8], c[10], c[12], c[13]],
            [0x08, 0x67, 0x45, 0x23, 0x41]
        );
        assert_eq!(
            pt.cdb12(),
            Some([0xa1, 0x0c, 0x0e, 0x00, 0x08, 0x67, 0x45, 0x23, 0x41, 0xc8, 0, 0])
        );
    }

    #[test]
    fn read_multiple_carries_the_multiple_count() {
        let pt = PassThrough {
            protocol: SatProtocol::PioIn,
            extend: false,
            t_length: TLength::Count,
            from_device: true,
            multiple_count_log2: 4,
            tf: HostTaskfile {
                command: 0xc4,
                count: 32,
                ..Default::default()
            },
        };
        assert_eq!(pt.cdb16()[1], 0x88);
    }

    #[test]
    fn ck_cond_is_set_for_non_data_only() {
        // (protocol, t_length): one of each kind plan() builds.
        let cases = [
            (SatProtocol::NonData, TLength::None, true),
            (SatProtocol::PioIn, TLength::Count, false),
            (SatProtocol::PioOut, TLength::Count, false),
            (SatProtocol::Dma, TLength::Count, false),
            (SatProtocol::Fpdma, TLength::Features, false),
            // NCQ NON-DATA: its result comes from the D2H area on Linux 6.1, stale on QEMU.
            (SatProtocol::Fpdma, TLength::None, false),
        ];
        for (protocol, t_length, expect) in cases {
            let pt = PassThrough {
                protocol,
                extend: true,
                t_length,
                from_device: true,
                multiple_count_log2: 0,
                tf: HostTaskfile::default(),
            };
            assert_eq!(pt.ck_cond(), expect, "{protocol:?}");
            assert_eq!(pt.cdb16()[2] & 0x20 != 0, expect, "{protocol:?}");
            let mut p28 = pt;
            p28.extend = false;
            assert_eq!(p28.cdb12().unwrap()[2] & 0x20 != 0, expect, "{protocol:?}");
        }
    }
}
