//! ATA command opcodes and the protocol each one uses (ACS-3 section 7, SATA 3.x 13.6 for
//! first-party DMA queued commands).

/// Opcodes (ACS-3 annex B, table B.2).
pub mod opcode {
    pub const NOP: u8 = 0x00;
    pub const DATA_SET_MANAGEMENT: u8 = 0x06;
    pub const REQUEST_SENSE_DATA_EXT: u8 = 0x0b;
    pub const DEVICE_RESET: u8 = 0x08;
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const READ_DMA_EXT: u8 = 0x25;
    pub const READ_NATIVE_MAX_ADDRESS_EXT: u8 = 0x27;
    pub const READ_MULTIPLE_EXT: u8 = 0x29;
    pub const READ_LOG_EXT: u8 = 0x2f;
    pub const WRITE_SECTORS: u8 = 0x30;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    pub const WRITE_DMA_EXT: u8 = 0x35;
    pub const SET_MAX_ADDRESS_EXT: u8 = 0x37;
    pub const WRITE_MULTIPLE_EXT: u8 = 0x39;
    pub const WRITE_DMA_FUA_EXT: u8 = 0x3d;
    pub const READ_LOG_DMA_EXT: u8 = 0x47;
    pub const READ_VERIFY_SECTORS: u8 = 0x40;
    pub const READ_VERIFY_SECTORS_EXT: u8 = 0x42;
    pub const WRITE_LOG_EXT: u8 = 0x3f;
    pub const WRITE_LOG_DMA_EXT: u8 = 0x57;
    pub const READ_FPDMA_QUEUED: u8 = 0x60;
    pub const WRITE_FPDMA_QUEUED: u8 = 0x61;
    pub const NCQ_NON_DATA: u8 = 0x63;
    pub const SEND_FPDMA_QUEUED: u8 = 0x64;
    pub const RECEIVE_FPDMA_QUEUED: u8 = 0x65;
    pub const SEEK: u8 = 0x70;
    pub const EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
    pub const INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
    pub const DOWNLOAD_MICROCODE: u8 = 0x92;
    pub const DOWNLOAD_MICROCODE_DMA: u8 = 0x93;
    pub const PACKET: u8 = 0xa0;
    pub const IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
    pub const SMART: u8 = 0xb0;
    pub const DEVICE_CONFIGURATION_OVERLAY: u8 = 0xb1;
    pub const SANITIZE_DEVICE: u8 = 0xb4;
    pub const READ_MULTIPLE: u8 = 0xc4;
    pub const WRITE_MULTIPLE: u8 = 0xc5;
    pub const SET_MULTIPLE_MODE: u8 = 0xc6;
    pub const READ_DMA: u8 = 0xc8;
    pub const WRITE_DMA: u8 = 0xca;
    pub const WRITE_MULTIPLE_FUA_EXT: u8 = 0xce;
    pub const CHECK_POWER_MODE: u8 = 0xe5;
    pub const STANDBY_IMMEDIATE: u8 = 0xe0;
    pub const IDLE_IMMEDIATE: u8 = 0xe1;
    pub const STANDBY: u8 = 0xe2;
    pub const IDLE: u8 = 0xe3;
    pub const READ_BUFFER: u8 = 0xe4;
    pub const SLEEP: u8 = 0xe6;
    pub const FLUSH_CACHE: u8 = 0xe7;
    pub const WRITE_BUFFER: u8 = 0xe8;
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    pub const IDENTIFY_DEVICE: u8 = 0xec;
    pub const SET_FEATURES: u8 = 0xef;
    pub const SECURITY_SET_PASSWORD: u8 = 0xf1;
    pub const SECURITY_UNLOCK: u8 = 0xf2;
    pub const SECURITY_ERASE_PREPARE: u8 = 0xf3;
    pub const SECURITY_ERASE_UNIT: u8 = 0xf4;
    pub const SECURITY_FREEZE_LOCK: u8 = 0xf5;
    pub const SECURITY_DISABLE_PASSWORD: u8 = 0xf6;
    pub const READ_NATIVE_MAX_ADDRESS: u8 = 0xf8;
    pub const SET_MAX_ADDRESS: u8 = 0xf9;
    pub const TRUSTED_NON_DATA: u8 = 0x5b;
    pub const TRUSTED_RECEIVE: u8 = 0x5c;
    pub const TRUSTED_RECEIVE_DMA: u8 = 0x5d;
    pub const TRUSTED_SEND: u8 = 0x5e;
    pub const TRUSTED_SEND_DMA: u8 = 0x5f;
}

/// SMART subcommands (Features register of opcode B0h).
pub mod smart {
    pub const READ_DATA: u8 = 0xd0;
    pub const READ_THRESHOLDS: u8 = 0xd1;
    pub const ENABLE_DISABLE_AUTOSAVE: u8 = 0xd2;
    /// SAVE ATTRIBUTE VALUES (obsolete since ATA/ATAPI-8, still sent by old tools).
    pub const SAVE_ATTRIBUTE_VALUES: u8 = 0xd3;
    pub const EXECUTE_OFFLINE_IMMEDIATE: u8 = 0xd4;
    pub const READ_LOG: u8 = 0xd5;
    pub const WRITE_LOG: u8 = 0xd6;
    pub const ENABLE_OPERATIONS: u8 = 0xd8;
    pub const DISABLE_OPERATIONS: u8 = 0xd9;
    pub const RETURN_STATUS: u8 = 0xda;
    /// ENABLE/DISABLE AUTOMATIC OFF-LINE (vendor specific in ACS-3, smartctl -o on/off).
    pub const ENABLE_DISABLE_AUTO_OFFLINE: u8 = 0xdb;
}

/// DEVICE CONFIGURATION OVERLAY subcommands (Features register of opcode B1h; ACS-2 7.9,
/// kept in ACS-3 as DCO).
pub mod dco {
    pub const RESTORE: u8 = 0xc0;
    pub const FREEZE_LOCK: u8 = 0xc1;
    pub const IDENTIFY: u8 = 0xc2;
    pub const SET: u8 = 0xc3;
}

/// Which way data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Device to host (a read).
    In,
    /// Host to device (a write).
    Out,
}

/// How a command moves its data and reports completion (ACS-3 clause 7 "protocol", SATA 3.x 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// No data; a Register D2H FIS ends it.
    NonData,
    /// PIO: a PIO Setup FIS per DRQ block, then the data.
    Pio(Direction),
    /// DMA: data FISes, then a Register D2H FIS.
    Dma(Direction),
    /// First-party DMA queued (NCQ): D2H to release the link, DMA Setup, data, Set Device Bits.
    /// `None` direction for NCQ NON-DATA.
    Fpdma(Option<Direction>),
    /// DEVICE RESET.
    DeviceReset,
    /// EXECUTE DEVICE DIAGNOSTIC.
    Diagnostic,
}

impl Protocol {
    /// True for NCQ commands.
    pub fn is_queued(self) -> bool {
        matches!(self, Protocol::Fpdma(_))
    }

    /// The direction data moves, if any.
    pub fn direction(self) -> Option<Direction> {
        match self {
            Protocol::Pio(d) | Protocol::Dma(d) => Some(d),
            Protocol::Fpdma(d) => d,
            _ => None,
        }
    }
}

/// The protocol of `command` with `features` (some opcodes, SMART above all, pick their
/// protocol by subcommand). `None` for opcodes this table does not know: the device aborts them.
pub fn protocol(command: u8, features: u16) -> Option<Protocol> {
    use opcode::*;
    use Direction::{In, Out};
    Some(match command {
        NOP
        | REQUEST_SENSE_DATA_EXT
        | SEEK
        | SET_FEATURES
        | SET_MULTIPLE_MODE
        | FLUSH_CACHE
        | FLUSH_CACHE_EXT
        | READ_NATIVE_MAX_ADDRESS
        | READ_NATIVE_MAX_ADDRESS_EXT
        | SET_MAX_ADDRESS
        | SET_MAX_ADDRESS_EXT
        | CHECK_POWER_MODE
        | STANDBY_IMMEDIATE
        | IDLE_IMMEDIATE
        | STANDBY
        | IDLE
        | SLEEP
        | READ_VERIFY_SECTORS
        | READ_VERIFY_SECTORS_EXT
        | INITIALIZE_DEVICE_PARAMETERS
        | SECURITY_ERASE_PREPARE
        | SECURITY_FREEZE_LOCK
        | TRUSTED_NON_DATA
        | SANITIZE_DEVICE => Protocol::NonData,
        READ_SECTORS
        | READ_SECTORS_EXT
        | READ_MULTIPLE
        | READ_MULTIPLE_EXT
        | READ_LOG_EXT
        | IDENTIFY_DEVICE
        | IDENTIFY_PACKET_DEVICE
        | READ_BUFFER
        | TRUSTED_RECEIVE => Protocol::Pio(In),
        WRITE_SECTORS
        | WRITE_SECTORS_EXT
        | WRITE_MULTIPLE
        | WRITE_MULTIPLE_EXT
        | WRITE_MULTIPLE_FUA_EXT
        | WRITE_LOG_EXT
        | WRITE_BUFFER
        | DOWNLOAD_MICROCODE
        | SECURITY_SET_PASSWORD
        | SECURITY_UNLOCK
        | SECURITY_ERASE_UNIT
        | SECURITY_DISABLE_PASSWORD
        | TRUSTED_SEND => Protocol::Pio(Out),
        READ_DMA | READ_DMA_EXT | READ_LOG_DMA_EXT | TRUSTED_RECEIVE_DMA => Protocol::Dma(In),
        WRITE_DMA
        | WRITE_DMA_EXT
        | WRITE_DMA_FUA_EXT
        | WRITE_LOG_DMA_EXT
        | DATA_SET_MANAGEMENT
        | DOWNLOAD_MICROCODE_DMA
        | TRUSTED_SEND_DMA => Protocol::Dma(Out),
        READ_FPDMA_QUEUED | RECEIVE_FPDMA_QUEUED => Protocol::Fpdma(Some(In)),
        WRITE_FPDMA_QUEUED | SEND_FPDMA_QUEUED => Protocol::Fpdma(Some(Out)),
        NCQ_NON_DATA => Protocol::Fpdma(None),
        DEVICE_RESET => Protocol::DeviceReset,
        EXECUTE_DEVICE_DIAGNOSTIC => Protocol::Diagnostic,
        SMART => match features as u8 {
            smart::READ_DATA | smart::READ_THRESHOLDS | smart::READ_LOG => Protocol::Pio(In),
            smart::WRITE_LOG => Protocol::Pio(Out),
            smart::ENABLE_DISABLE_AUTOSAVE
            | smart::EXECUTE_OFFLINE_IMMEDIATE
            | smart::ENABLE_OPERATIONS
            | smart::DISABLE_OPERATIONS
            | smart::RETURN_STATUS
            | smart::SAVE_ATTRIBUTE_VALUES
            | smart::ENABLE_DISABLE_AUTO_OFFLINE => Protocol::NonData,
            _ => return None,
        },
        DEVICE_CONFIGURATION_OVERLAY => match features as u8 {
            dco::IDENTIFY => Protocol::Pio(In),
            dco::SET => Protocol::Pio(Out),
            dco::RESTORE | dco::FREEZE_LOCK => Protocol::NonData,
            _ => return None,
        },
        _ => return None,
    })
}

/// True for commands with 48-bit addressing (the "EXT" and FPDMA forms), whose LBA and count
/// use the full 48 and 16 bits.
pub fn is_lba48(command: u8) -> bool {
    use opcode::*;
    matches!(
        command,
        REQUEST_SENSE_DATA_EXT
            | READ_SECTORS_EXT
            | READ_DMA_EXT
            | READ_NATIVE_MAX_ADDRESS_EXT
            | READ_MULTIPLE_EXT
            | READ_LOG_EXT
            | WRITE_SECTORS_EXT
            | WRITE_DMA_EXT
            | SET_MAX_ADDRESS_EXT
            | WRITE_MULTIPLE_EXT
            | WRITE_DMA_FUA_EXT
            | READ_LOG_DMA_EXT
            | READ_VERIFY_SECTORS_EXT
            | WRITE_LOG_EXT
            | WRITE_LOG_DMA_EXT
            | READ_FPDMA_QUEUED
            | WRITE_FPDMA_QUEUED
            | NCQ_NON_DATA
            | SEND_FPDMA_QUEUED
            | RECEIVE_FPDMA_QUEUED
            | FLUSH_CACHE_EXT
            | WRITE_MULTIPLE_FUA_EXT
            | DATA_SET_MANAGEMENT
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_port_knows_the_queued_commands_the_device_does() {
        // The AHCI layer tells NCQ commands by opcode (sata::fis) without the ATA tables.
        for op in 0..=255u8 {
            for features in [0u16, 0xffff] {
                let queued = protocol(op, features).is_some_and(|p| p.is_queued());
                assert_eq!(crate::sata::fis::is_fpdma_queued(op), queued, "{op:#04x}");
            }
        }
    }

    use super::*;

    #[test]
    fn protocols_of_the_commands_libata_issues() {
        use opcode::*;
        assert_eq!(
            protocol(IDENTIFY_DEVICE, 0),
            Some(Protocol::Pio(Direction::In))
        );
        assert_eq!(
            protocol(READ_DMA_EXT, 0),
            Some(Protocol::Dma(Direction::In))
        );
        assert_eq!(
            protocol(WRITE_FPDMA_QUEUED, 8),
            Some(Protocol::Fpdma(Some(Direction::Out)))
        );
        assert!(protocol(READ_FPDMA_QUEUED, 8).is_some_and(Protocol::is_queued));
        assert_eq!(protocol(SMART, 0xda), Some(Protocol::NonData));
        assert_eq!(protocol(SMART, 0xd0), Some(Protocol::Pio(Direction::In)));
        assert_eq!(protocol(SMART, 0x42), None);
        assert_eq!(protocol(SMART, 0xdb), Some(Protocol::NonData));
        assert_eq!(
            protocol(DEVICE_CONFIGURATION_OVERLAY, 0xc2),
            Some(Protocol::Pio(Direction::In))
        );
        assert_eq!(
            protocol(DEVICE_CONFIGURATION_OVERLAY, 0xc3),
            Some(Protocol::Pio(Direction::Out))
        );
        assert_eq!(
            protocol(DEVICE_CONFIGURATION_OVERLAY, 0xc0),
            Some(Protocol::NonData)
        );
        assert_eq!(protocol(DEVICE_CONFIGURATION_OVERLAY, 0xc4), None);
        assert_eq!(protocol(0xff, 0), None);
        assert!(is_lba48(READ_LOG_EXT) && !is_lba48(READ_DMA));
    }
}
