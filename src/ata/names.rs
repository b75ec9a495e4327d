//! Human names of ATA opcodes and protocols, as ACS-3 spells them (for traces and statistics).

use super::command::{opcode::*, Direction, Protocol};

/// The ACS-3 name of `op`, or "UNKNOWN" for an opcode this table does not know.
pub fn opcode_name(op: u8) -> &'static str {
    match op {
        NOP => "NOP",
        DATA_SET_MANAGEMENT => "DATA SET MANAGEMENT",
        DEVICE_RESET => "DEVICE RESET",
        READ_SECTORS => "READ SECTORS",
        READ_SECTORS_EXT => "READ SECTORS EXT",
        READ_DMA_EXT => "READ DMA EXT",
        READ_NATIVE_MAX_ADDRESS_EXT => "READ NATIVE MAX ADDRESS EXT",
        READ_MULTIPLE_EXT => "READ MULTIPLE EXT",
        READ_LOG_EXT => "READ LOG EXT",
        WRITE_SECTORS => "WRITE SECTORS",
        WRITE_SECTORS_EXT => "WRITE SECTORS EXT",
        WRITE_DMA_EXT => "WRITE DMA EXT",
        SET_MAX_ADDRESS_EXT => "SET MAX ADDRESS EXT",
        WRITE_MULTIPLE_EXT => "WRITE MULTIPLE EXT",
        WRITE_DMA_FUA_EXT => "WRITE DMA FUA EXT",
        READ_LOG_DMA_EXT => "READ LOG DMA EXT",
        READ_VERIFY_SECTORS => "READ VERIFY SECTORS",
        READ_VERIFY_SECTORS_EXT => "READ VERIFY SECTORS EXT",
        WRITE_LOG_EXT => "WRITE LOG EXT",
        WRITE_LOG_DMA_EXT => "WRITE LOG DMA EXT",
        READ_FPDMA_QUEUED => "READ FPDMA QUEUED",
        WRITE_FPDMA_QUEUED => "WRITE FPDMA QUEUED",
        NCQ_NON_DATA => "NCQ NON-DATA",
        SEND_FPDMA_QUEUED => "SEND FPDMA QUEUED",
        RECEIVE_FPDMA_QUEUED => "RECEIVE FPDMA QUEUED",
        SEEK => "SEEK",
        EXECUTE_DEVICE_DIAGNOSTIC => "EXECUTE DEVICE DIAGNOSTIC",
        INITIALIZE_DEVICE_PARAMETERS => "INITIALIZE DEVICE PARAMETERS",
        DOWNLOAD_MICROCODE => "DOWNLOAD MICROCODE",
        DOWNLOAD_MICROCODE_DMA => "DOWNLOAD MICROCODE DMA",
        PACKET => "PACKET",
        IDENTIFY_PACKET_DEVICE => "IDENTIFY PACKET DEVICE",
        SMART => "SMART",
        REQUEST_SENSE_DATA_EXT => "REQUEST SENSE DATA EXT",
        DEVICE_CONFIGURATION_OVERLAY => "DEVICE CONFIGURATION OVERLAY",
        SANITIZE_DEVICE => "SANITIZE DEVICE",
        READ_MULTIPLE => "READ MULTIPLE",
        WRITE_MULTIPLE => "WRITE MULTIPLE",
        SET_MULTIPLE_MODE => "SET MULTIPLE MODE",
        READ_DMA => "READ DMA",
        WRITE_DMA => "WRITE DMA",
        WRITE_MULTIPLE_FUA_EXT => "WRITE MULTIPLE FUA EXT",
        CHECK_POWER_MODE => "CHECK POWER MODE",
        STANDBY_IMMEDIATE => "STANDBY IMMEDIATE",
        IDLE_IMMEDIATE => "IDLE IMMEDIATE",
        STANDBY => "STANDBY",
        IDLE => "IDLE",
        READ_BUFFER => "READ BUFFER",
        SLEEP => "SLEEP",
        FLUSH_CACHE => "FLUSH CACHE",
        WRITE_BUFFER => "WRITE BUFFER",
        FLUSH_CACHE_EXT => "FLUSH CACHE EXT",
        IDENTIFY_DEVICE => "IDENTIFY DEVICE",
        SET_FEATURES => "SET FEATURES",
        SECURITY_SET_PASSWORD => "SECURITY SET PASSWORD",
        SECURITY_UNLOCK => "SECURITY UNLOCK",
        SECURITY_ERASE_PREPARE => "SECURITY ERASE PREPARE",
        SECURITY_ERASE_UNIT => "SECURITY ERASE UNIT",
        SECURITY_FREEZE_LOCK => "SECURITY FREEZE LOCK",
        SECURITY_DISABLE_PASSWORD => "SECURITY DISABLE PASSWORD",
        READ_NATIVE_MAX_ADDRESS => "READ NATIVE MAX ADDRESS",
        SET_MAX_ADDRESS => "SET MAX ADDRESS",
        TRUSTED_NON_DATA => "TRUSTED NON-DATA",
        TRUSTED_RECEIVE => "TRUSTED RECEIVE",
        TRUSTED_RECEIVE_DMA => "TRUSTED RECEIVE DMA",
        TRUSTED_SEND => "TRUSTED SEND",
        TRUSTED_SEND_DMA => "TRUSTED SEND DMA",
        _ => "UNKNOWN",
    }
}

/// A short protocol name: `non-data`, `pio-in`, `pio-out`, `dma-in`, `dma-out`, `fpdma-in`,
/// `fpdma-out`, `fpdma-non-data`, `device-reset`, `diagnostic`; `unknown` for None.
pub fn protocol_name(p: Option<Protocol>) -> &'static str {
    use Direction::{In, Out};
    match p {
        Some(Protocol::NonData) => "non-data",
        Some(Protocol::Pio(In)) => "pio-in",
        Some(Protocol::Pio(Out)) => "pio-out",
        Some(Protocol::Dma(In)) => "dma-in",
        Some(Protocol::Dma(Out)) => "dma-out",
        Some(Protocol::Fpdma(Some(In))) => "fpdma-in",
        Some(Protocol::Fpdma(Some(Out))) => "fpdma-out",
        Some(Protocol::Fpdma(None)) => "fpdma-non-data",
        Some(Protocol::DeviceReset) => "device-reset",
        Some(Protocol::Diagnostic) => "diagnostic",
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ata::command::protocol;

    #[test]
    fn names() {
        assert_eq!(opcode_name(0x60), "READ FPDMA QUEUED");
        assert_eq!(opcode_name(0xec), "IDENTIFY DEVICE");
        assert_eq!(opcode_name(0xff), "UNKNOWN");
        assert_eq!(protocol_name(protocol(0x61, 8)), "fpdma-out");
        assert_eq!(protocol_name(protocol(0x2f, 0)), "pio-in");
        assert_eq!(protocol_name(protocol(0xff, 0)), "unknown");
    }
}
