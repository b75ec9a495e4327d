//! Taskfile register bits (ACS-3 section 6; ATA8-AAM for Device Control).

/// Status register bits (ACS-3 6.2).
pub mod status {
    /// BSY: the device is busy.
    pub const BSY: u8 = 0x80;
    /// DRDY: device ready.
    pub const DRDY: u8 = 0x40;
    /// DF: device fault.
    pub const DF: u8 = 0x20;
    /// DSC / SERV: seek complete (legacy), service.
    pub const DSC: u8 = 0x10;
    /// DRQ: data request.
    pub const DRQ: u8 = 0x08;
    /// SENSE DATA AVAILABLE (ACS-3 6.2.10, with sense data reporting enabled): REQUEST SENSE
    /// DATA EXT has sense data for the command that just ended.
    pub const SENSE: u8 = 0x02;
    /// ERR: an error occurred (see the Error register).
    pub const ERR: u8 = 0x01;
}

/// Error register bits (ACS-3 6.3).
pub mod error {
    /// ICRC: interface CRC error.
    pub const ICRC: u8 = 0x80;
    /// UNC: uncorrectable data error.
    pub const UNC: u8 = 0x40;
    /// IDNF: ID not found (address out of range).
    pub const IDNF: u8 = 0x10;
    /// ABRT: command aborted.
    pub const ABRT: u8 = 0x04;
}

/// Device Control register bits.
pub mod control {
    /// HOB: high order byte.
    pub const HOB: u8 = 0x80;
    /// SRST: software reset.
    pub const SRST: u8 = 0x04;
    /// nIEN: interrupts disabled.
    pub const NIEN: u8 = 0x02;
}

/// Device register bits.
pub mod device {
    /// LBA addressing mode.
    pub const LBA: u8 = 0x40;
    /// FUA in the Device field of READ/WRITE FPDMA QUEUED.
    pub const FPDMA_FUA: u8 = 0x80;
}

/// The signature a SATA ATA device reports after reset (SATA 3.x 11.4): count 1, LBA 1.
pub const ATA_SIGNATURE_LBA: u64 = 0x0000_0001;

/// Sector size of the emulated drive and of LBA arithmetic in the protocols.
pub const SECTOR_SIZE: usize = 512;
