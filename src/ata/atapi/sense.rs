//! Sense data (SPC-4 4.5): what a CHECK CONDITION means, kept for REQUEST SENSE, and its
//! place in the ATAPI registers (the sense key in the Error register's bits 7:4, ACS-3 / the
//! ATAPI PACKET protocol: MMC-6 annex, SATA ATAPI).

/// Sense keys (SPC-4 table 45).
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const DATA_PROTECT: u8 = 0x7;
    pub const ABORTED_COMMAND: u8 = 0xb;
}

/// A sense key with its additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Sense { key, asc, ascq }
    }

    /// NO SENSE: nothing to report.
    pub const NONE: Sense = Sense::new(key::NO_SENSE, 0, 0);
    /// 3Ah/01h MEDIUM NOT PRESENT - TRAY CLOSED.
    pub const NO_MEDIUM_TRAY_CLOSED: Sense = Sense::new(key::NOT_READY, 0x3a, 0x01);
    /// 3Ah/02h MEDIUM NOT PRESENT - TRAY OPEN.
    pub const NO_MEDIUM_TRAY_OPEN: Sense = Sense::new(key::NOT_READY, 0x3a, 0x02);
    /// 11h/00h UNRECOVERED READ ERROR (the host could not read the image).
    pub const UNRECOVERED_READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
    /// 20h/00h INVALID COMMAND OPERATION CODE.
    pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
    /// 21h/00h LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
    /// 24h/00h INVALID FIELD IN CDB.
    pub const INVALID_FIELD: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
    /// 39h/00h SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
    /// 53h/02h MEDIUM REMOVAL PREVENTED.
    pub const REMOVAL_PREVENTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x53, 0x02);
    /// 28h/00h NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
    pub const MEDIUM_MAY_HAVE_CHANGED: Sense = Sense::new(key::UNIT_ATTENTION, 0x28, 0x00);
    /// 27h/00h WRITE PROTECTED.
    pub const WRITE_PROTECTED: Sense = Sense::new(key::DATA_PROTECT, 0x27, 0x00);
    /// 4Bh/00h DATA PHASE ERROR (the PRDT could not take the data).
    pub const DATA_PHASE_ERROR: Sense = Sense::new(key::ABORTED_COMMAND, 0x4b, 0x00);

    /// Fixed-format sense data (SPC-4 4.5.3): response code 70h (current error), the key in
    /// byte 2, additional length 10, ASC and ASCQ in bytes 12 and 13.
    pub fn fixed(self) -> [u8; 18] {
        let mut b = [0u8; 18];
        b[0] = 0x70;
        b[2] = self.key & 0x0f;
        b[7] = 10;
        b[12] = self.asc;
        b[13] = self.ascq;
        b
    }

    /// The Error register of the CHECK CONDITION that reports this sense: the sense key in
    /// bits 7:4, ABRT (bit 2) for an ILLEGAL REQUEST the device refused.
    pub fn error_register(self) -> u8 {
        let abrt = if self.key == key::ILLEGAL_REQUEST {
            crate::ata::registers::error::ABRT
        } else {
            0
        };
        (self.key & 0x0f) << 4 | abrt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_and_error_register() {
        let s = Sense::MEDIUM_MAY_HAVE_CHANGED.fixed();
        assert_eq!((s[0], s[2], s[7], s[12], s[13]), (0x70, 6, 10, 0x28, 0));
        assert_eq!(Sense::MEDIUM_MAY_HAVE_CHANGED.error_register(), 0x60);
        assert_eq!(Sense::INVALID_OPCODE.error_register(), 0x54);
        assert_eq!(
            Sense::NO_MEDIUM_TRAY_OPEN.error_register() >> 4,
            key::NOT_READY
        );
    }
}
