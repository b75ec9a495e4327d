//! IDENTIFY PACKET DEVICE data (ACS-3 7.13, table 46): a removable CD/DVD device of the
//! PACKET feature set with 12-byte commands, PIO and Ultra DMA.

use crate::ata::identify::{put_string, seal, TransferMode};

/// The facts IDENTIFY PACKET DEVICE reports.
#[derive(Debug, Clone)]
pub struct PacketIdentity<'a> {
    /// Up to 20 ASCII characters.
    pub serial: &'a str,
    /// Up to 8 ASCII characters.
    pub firmware: &'a str,
    /// Up to 40 ASCII characters.
    pub model: &'a str,
    /// The DMA mode SET FEATURES selected.
    pub transfer_mode: TransferMode,
}

/// The 256 words, with the integrity word (255) filled in.
pub fn identify_packet_device(p: &PacketIdentity<'_>) -> [u16; 256] {
    let mut w = [0u16; 256];
    // Word 0: 10b ATAPI device (15:14), command packet set 05h CD/DVD (12:8), removable (7),
    // DRQ within 50 us of PACKET (6:5 = 10b), 12-byte command packets (1:0 = 00b).
    w[0] = 0x8000 | 0x05 << 8 | 1 << 7 | 0b10 << 5;
    put_string(&mut w[10..20], p.serial);
    put_string(&mut w[23..27], p.firmware);
    put_string(&mut w[27..47], p.model);
    // Word 49: IORDY supported (11), LBA (9, shall be one), DMA supported (8).
    w[49] = 1 << 11 | 1 << 9 | 1 << 8;
    // Word 53: words 64-70 and word 88 are valid.
    w[53] = 0x0006;
    // Word 62 (ACS-3 7.13.6.19): bit 15 (DMADIR required) clear: DMA data transfers on this
    // SATA device need no DMADIR (it is for bridges to parallel ATAPI devices).
    w[62] = 0;
    let (mw_sel, udma_sel) = match p.transfer_mode {
        TransferMode::MultiwordDma(n) => (1u16 << (8 + n.min(2)), 0),
        TransferMode::UltraDma(n) => (0, 1u16 << (8 + n.min(6))),
        TransferMode::Pio(_) => (0, 0),
    };
    w[63] = 0x0007 | mw_sel;
    // Word 64: PIO modes 3 and 4; words 65-68: minimum cycle times (ns).
    w[64] = 0x0003;
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    // Word 76: SATA capabilities: Gen1, Gen2, Gen3 signalling speeds; no NCQ.
    w[76] = 0x000e;
    // Word 78: SATA features supported: none (no asynchronous notification; the host polls
    // GET EVENT STATUS NOTIFICATION).
    w[78] = 0;
    // Word 80: major versions ATA/ATAPI-4 .. ACS-3.
    w[80] = 0x07f0;
    // Words 82/85: PACKET feature set (4) and DEVICE RESET (9) supported/enabled; 83/84/87:
    // bit 14 shall be one.
    w[82] = 1 << 9 | 1 << 4;
    w[83] = 0x4000;
    w[84] = 0x4000;
    w[85] = 1 << 9 | 1 << 4;
    w[87] = 0x4000;
    // Word 88: Ultra DMA modes 0-6 supported, the selected one in 14:8.
    w[88] = 0x007f | udma_sel;
    // Word 222: transport major version: serial, SATA 1.0a..3.0.
    w[222] = 0x107f;
    // Word 255: the integrity word (ACS-3 7.12.7.91).
    seal(&mut w);
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ata::identify::{get_string, to_bytes};

    #[test]
    fn packet_device_words() {
        let w = identify_packet_device(&PacketIdentity {
            serial: "SN1",
            firmware: "0.1.0",
            model: "SATAVM DVD-ROM",
            transfer_mode: TransferMode::UltraDma(5),
        });
        assert_eq!(w[0] >> 14, 0b10, "ATAPI");
        assert_eq!((w[0] >> 8) & 0x1f, 5, "CD/DVD");
        assert_eq!(w[0] & 3, 0, "12-byte CDBs");
        assert_ne!(w[0] & 0x80, 0, "removable");
        assert_eq!(get_string(&w[27..47]), "SATAVM DVD-ROM");
        assert_eq!(get_string(&w[10..20]), "SN1");
        assert_ne!(w[49] & (1 << 8), 0, "DMA");
        assert_eq!(w[88], 0x007f | 1 << 13);
        assert_ne!(w[82] & (1 << 4), 0, "PACKET feature set");
        let sum = to_bytes(&w).iter().fold(0u8, |s, b| s.wrapping_add(*b));
        assert_eq!(sum, 0);
    }
}
