//! ATAPI commands (SCSI CDBs, 12 bytes on an ATAPI device; the ACMD area holds 16): the
//! operation codes of SPC-4 and MMC-6 this drive knows, their names for traces, and the
//! fields of a CDB.

/// Operation codes (SPC-4 table 61, MMC-6 table 17).
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const FORMAT_UNIT: u8 = 0x04;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    pub const READ_FORMAT_CAPACITIES: u8 = 0x23;
    pub const READ_CAPACITY: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const SEEK_10: u8 = 0x2b;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2e;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE: u8 = 0x35;
    pub const WRITE_BUFFER: u8 = 0x3b;
    pub const READ_BUFFER: u8 = 0x3c;
    pub const READ_SUBCHANNEL: u8 = 0x42;
    pub const READ_TOC_PMA_ATIP: u8 = 0x43;
    pub const PLAY_AUDIO_10: u8 = 0x45;
    pub const GET_CONFIGURATION: u8 = 0x46;
    pub const PLAY_AUDIO_MSF: u8 = 0x47;
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4a;
    pub const PAUSE_RESUME: u8 = 0x4b;
    pub const STOP_PLAY_SCAN: u8 = 0x4e;
    pub const READ_DISC_INFORMATION: u8 = 0x51;
    pub const READ_TRACK_INFORMATION: u8 = 0x52;
    pub const RESERVE_TRACK: u8 = 0x53;
    pub const SEND_OPC_INFORMATION: u8 = 0x54;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const REPAIR_TRACK: u8 = 0x58;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const CLOSE_TRACK_SESSION: u8 = 0x5b;
    pub const READ_BUFFER_CAPACITY: u8 = 0x5c;
    pub const SEND_CUE_SHEET: u8 = 0x5d;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const BLANK: u8 = 0xa1;
    pub const SECURITY_PROTOCOL_IN: u8 = 0xa2;
    pub const SEND_KEY: u8 = 0xa3;
    pub const REPORT_KEY: u8 = 0xa4;
    pub const PLAY_AUDIO_12: u8 = 0xa5;
    pub const LOAD_UNLOAD_MEDIUM: u8 = 0xa6;
    pub const SET_READ_AHEAD: u8 = 0xa7;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    pub const READ_MEDIA_SERIAL_NUMBER: u8 = 0xab;
    pub const GET_PERFORMANCE: u8 = 0xac;
    pub const READ_DVD_STRUCTURE: u8 = 0xad;
    pub const SECURITY_PROTOCOL_OUT: u8 = 0xb5;
    pub const SET_STREAMING: u8 = 0xb6;
    pub const READ_CD_MSF: u8 = 0xb9;
    pub const SCAN: u8 = 0xba;
    pub const SET_CD_SPEED: u8 = 0xbb;
    pub const MECHANISM_STATUS: u8 = 0xbd;
    pub const READ_CD: u8 = 0xbe;
    pub const SEND_DVD_STRUCTURE: u8 = 0xbf;
}

/// The name of operation code `code`, as SPC/MMC write it.
pub fn name(code: u8) -> &'static str {
    use op::*;
    match code {
        TEST_UNIT_READY => "TEST UNIT READY",
        REQUEST_SENSE => "REQUEST SENSE",
        FORMAT_UNIT => "FORMAT UNIT",
        INQUIRY => "INQUIRY",
        MODE_SELECT_6 => "MODE SELECT(6)",
        MODE_SENSE_6 => "MODE SENSE(6)",
        START_STOP_UNIT => "START STOP UNIT",
        PREVENT_ALLOW_MEDIUM_REMOVAL => "PREVENT ALLOW MEDIUM REMOVAL",
        READ_FORMAT_CAPACITIES => "READ FORMAT CAPACITIES",
        READ_CAPACITY => "READ CAPACITY",
        READ_10 => "READ(10)",
        WRITE_10 => "WRITE(10)",
        SEEK_10 => "SEEK(10)",
        WRITE_AND_VERIFY_10 => "WRITE AND VERIFY(10)",
        VERIFY_10 => "VERIFY(10)",
        SYNCHRONIZE_CACHE => "SYNCHRONIZE CACHE",
        WRITE_BUFFER => "WRITE BUFFER",
        READ_BUFFER => "READ BUFFER",
        READ_SUBCHANNEL => "READ SUB-CHANNEL",
        READ_TOC_PMA_ATIP => "READ TOC/PMA/ATIP",
        PLAY_AUDIO_10 => "PLAY AUDIO(10)",
        GET_CONFIGURATION => "GET CONFIGURATION",
        PLAY_AUDIO_MSF => "PLAY AUDIO MSF",
        GET_EVENT_STATUS_NOTIFICATION => "GET EVENT STATUS NOTIFICATION",
        PAUSE_RESUME => "PAUSE/RESUME",
        STOP_PLAY_SCAN => "STOP PLAY/SCAN",
        READ_DISC_INFORMATION => "READ DISC INFORMATION",
        READ_TRACK_INFORMATION => "READ TRACK INFORMATION",
        RESERVE_TRACK => "RESERVE TRACK",
        SEND_OPC_INFORMATION => "SEND OPC INFORMATION",
        MODE_SELECT_10 => "MODE SELECT(10)",
        REPAIR_TRACK => "REPAIR TRACK",
        MODE_SENSE_10 => "MODE SENSE(10)",
        CLOSE_TRACK_SESSION => "CLOSE TRACK/SESSION",
        READ_BUFFER_CAPACITY => "READ BUFFER CAPACITY",
        SEND_CUE_SHEET => "SEND CUE SHEET",
        REPORT_LUNS => "REPORT LUNS",
        BLANK => "BLANK",
        SECURITY_PROTOCOL_IN => "SECURITY PROTOCOL IN",
        SEND_KEY => "SEND KEY",
        REPORT_KEY => "REPORT KEY",
        PLAY_AUDIO_12 => "PLAY AUDIO(12)",
        LOAD_UNLOAD_MEDIUM => "LOAD/UNLOAD MEDIUM",
        SET_READ_AHEAD => "SET READ AHEAD",
        READ_12 => "READ(12)",
        WRITE_12 => "WRITE(12)",
        READ_MEDIA_SERIAL_NUMBER => "READ MEDIA SERIAL NUMBER",
        GET_PERFORMANCE => "GET PERFORMANCE",
        READ_DVD_STRUCTURE => "READ DISC STRUCTURE",
        SECURITY_PROTOCOL_OUT => "SECURITY PROTOCOL OUT",
        SET_STREAMING => "SET STREAMING",
        READ_CD_MSF => "READ CD MSF",
        SCAN => "SCAN",
        SET_CD_SPEED => "SET CD SPEED",
        MECHANISM_STATUS => "MECHANISM STATUS",
        READ_CD => "READ CD",
        SEND_DVD_STRUCTURE => "SEND DISC STRUCTURE",
        _ => "unknown",
    }
}

/// Commands that write or change the medium (MMC-6 section 6): a read-only disc refuses them.
pub fn writes_medium(code: u8) -> bool {
    use op::*;
    matches!(
        code,
        FORMAT_UNIT
            | WRITE_10
            | WRITE_12
            | WRITE_AND_VERIFY_10
            | WRITE_BUFFER
            | RESERVE_TRACK
            | SEND_OPC_INFORMATION
            | REPAIR_TRACK
            | CLOSE_TRACK_SESSION
            | SEND_CUE_SHEET
            | BLANK
            | SEND_DVD_STRUCTURE
            | SET_STREAMING
    )
}

/// A big-endian field of `len` bytes at `at` of `cdb` (0 past the end).
pub fn be(cdb: &[u8], at: usize, len: usize) -> u64 {
    (at..at + len).fold(0u64, |v, i| {
        v << 8 | u64::from(cdb.get(i).copied().unwrap_or(0))
    })
}

/// The allocation length of a data-in command (the most bytes the host takes), if it has one.
pub fn allocation_length(cdb: &[u8]) -> Option<u32> {
    use op::*;
    Some(match cdb.first().copied()? {
        REQUEST_SENSE | MODE_SENSE_6 => be(cdb, 4, 1) as u32,
        // SPC-4 6.6.1: two bytes since SPC-3 (byte 3 was reserved, 0, before).
        INQUIRY => be(cdb, 3, 2) as u32,
        READ_TOC_PMA_ATIP
        | GET_CONFIGURATION
        | GET_EVENT_STATUS_NOTIFICATION
        | READ_DISC_INFORMATION
        | READ_TRACK_INFORMATION
        | MODE_SENSE_10
        | READ_FORMAT_CAPACITIES => be(cdb, 7, 2) as u32,
        MECHANISM_STATUS | READ_DVD_STRUCTURE => be(cdb, 8, 2) as u32,
        _ => return None,
    })
}

/// The LBA and block count of READ(10)/READ(12) (SBC-3 5.11, 5.13).
pub fn read_range(cdb: &[u8]) -> Option<(u64, u64)> {
    match cdb.first().copied()? {
        op::READ_10 => Some((be(cdb, 2, 4), be(cdb, 7, 2))),
        op::READ_12 => Some((be(cdb, 2, 4), be(cdb, 6, 4))),
        _ => None,
    }
}

/// The fields a trace shows for `cdb`: LBA and blocks of a read, the allocation length.
pub fn fields(cdb: &[u8]) -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    if let Some((lba, blocks)) = read_range(cdb) {
        out.push(("cdb_lba", lba));
        out.push(("cdb_blocks", blocks));
    }
    if let Some(n) = allocation_length(cdb) {
        out.push(("cdb_alloc", u64::from(n)));
    }
    out
}

/// The first 12 bytes of `cdb` in hex, as `28 00 00 00 00 10 00 00 01 00 00 00`.
pub fn hex(cdb: &[u8]) -> String {
    cdb.iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fields() {
        assert_eq!(name(0x28), "READ(10)");
        assert_eq!(name(0x4a), "GET EVENT STATUS NOTIFICATION");
        assert_eq!(name(0xff), "unknown");
        let cdb = [0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 4, 0, 0, 0];
        assert_eq!(read_range(&cdb), Some((0x1234, 4)));
        let cdb12 = [0xa8, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(read_range(&cdb12), Some((0x0100_0000, 0x1_0000)));
        assert_eq!(allocation_length(&[0x12, 0, 0, 0, 96]), Some(96));
        assert_eq!(
            allocation_length(&[0x46, 0, 0, 0, 0, 0, 0, 0x10, 0]),
            Some(0x1000)
        );
        assert_eq!(allocation_length(&[0x00]), None);
        assert_eq!(allocation_length(&[]), None);
        assert_eq!(be(&[1, 2], 1, 4), 0x0200_0000, "past the end reads 0");
        assert!(writes_medium(op::BLANK) && !writes_medium(op::READ_10));
        assert_eq!(hex(&[0u8; 16]).len(), 12 * 3 - 1);
    }
}
