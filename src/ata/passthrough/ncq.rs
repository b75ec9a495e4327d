//! The NCQ error state and the NCQ Command Error log (log address 10h, ACS-3 9.13).
//!
//! When a queued command fails, the device answers with a Set Device Bits FIS with ERR and
//! stops taking queued commands until the host reads log page 10h (SATA 3.x 13.6.3.3). The real
//! drive's copy of that page is of little use to the guest: the host kernel's libata error
//! handler has usually read it already (which clears it), and its TAG is the host's tag, not
//! the guest's. So the READ LOG EXT is forwarded (it reads nothing destructive), and then:
//! - if the drive's page still reports an error, its registers are kept and its tag is replaced
//!   with the guest's;
//! - otherwise (the usual case) the page is built here from the registers the failed command
//!   returned, which libata itself took from the drive's page.

use super::sense::AtaRegisters;
use crate::ata::command::opcode;
use crate::ata::log;
use crate::ata::registers::status;
use crate::sata::RegisterH2d;

/// NCQ Command Error log address.
pub const NCQ_ERROR_LOG: u8 = 0x10;

/// The failed queued command, as the guest must read it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NcqErrorRecord {
    /// The guest's tag.
    pub tag: u8,
    pub regs: AtaRegisters,
}

/// True for READ LOG (DMA) EXT of page 0 of the NCQ Command Error log.
pub fn is_ncq_error_log_read(fis: &RegisterH2d) -> bool {
    let page = (fis.lba >> 8) & 0xff | ((fis.lba >> 32) & 0xffff) << 8;
    matches!(fis.command, opcode::READ_LOG_EXT | opcode::READ_LOG_DMA_EXT)
        && fis.lba as u8 == NCQ_ERROR_LOG
        && page == 0
}

/// The drive's page reports an NCQ error (NQ clear and ERR set in its status).
pub fn page_reports_error(page: &[u8]) -> bool {
    matches!(page, [b0, _, st, ..] if b0 & 0x80 == 0 && st & status::ERR != 0)
}

/// The 512-byte page for `rec` (SATA 3.x 13.7.4), built like the emulated drive's.
pub fn build_page(rec: &NcqErrorRecord) -> [u8; 512] {
    let r = &rec.regs;
    log::ncq_command_error(Some(&log::NcqError {
        tag: rec.tag,
        status: r.status,
        error: r.error,
        lba: r.lba,
        device: r.device,
        count: r.count,
        sense: None,
    }))
}

/// The answer to the guest's read of page 10h, given the drive's own answer (if it gave one).
pub fn answer_page(drive_page: Option<&[u8]>, rec: &NcqErrorRecord) -> [u8; 512] {
    match drive_page.and_then(|p| <[u8; 512]>::try_from(p.get(..512)?).ok()) {
        Some(mut p) if page_reports_error(&p) => {
            p[0] = (p[0] & 0x40) | (rec.tag & 0x1f);
            log::seal_checksum(&mut p);
            p
        }
        _ => build_page(rec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> NcqErrorRecord {
        NcqErrorRecord {
            tag: 13,
            regs: AtaRegisters {
                status: 0x41,
                error: 0x40,
                lba: 0x0102_0304_0506,
                count: 0x0008,
                device: 0x40,
                ..Default::default()
            },
        }
    }

    fn checksum_ok(p: &[u8; 512]) -> bool {
        p.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
    }

    #[test]
    fn built_page_follows_acs3_layout() {
        let p = build_page(&rec());
        assert_eq!(p[0], 13);
        assert_eq!(
            &p[2..14],
            &[0x41, 0x40, 0x06, 0x05, 0x04, 0x40, 0x03, 0x02, 0x01, 0, 8, 0]
        );
        assert!(checksum_ok(&p));
        assert!(page_reports_error(&p));
    }

    #[test]
    fn drive_page_without_error_is_replaced() {
        let mut drive = [0u8; 512];
        drive[0] = 0x80; // NQ
        let p = answer_page(Some(&drive), &rec());
        assert_eq!(p, build_page(&rec()));
        assert_eq!(answer_page(None, &rec()), build_page(&rec()));
    }

    #[test]
    fn drive_page_with_error_keeps_registers_and_takes_the_guest_tag() {
        let mut drive = [0u8; 512];
        drive[0] = 0x05; // host tag 5
        drive[2] = 0x51;
        drive[3] = 0x10; // IDNF
        drive[4] = 0x99;
        let p = answer_page(Some(&drive), &rec());
        assert_eq!(p[0], 13);
        assert_eq!((p[2], p[3], p[4]), (0x51, 0x10, 0x99));
        assert!(checksum_ok(&p));
    }

    #[test]
    fn recognises_page_10h_reads_only() {
        let mut f = RegisterH2d {
            c: true,
            command: 0x2f,
            lba: 0x10,
            count: 1,
            ..Default::default()
        };
        assert!(is_ncq_error_log_read(&f));
        f.command = 0x47;
        assert!(is_ncq_error_log_read(&f));
        f.lba = 0x0110; // page 1
        assert!(!is_ncq_error_log_read(&f));
        f.lba = 0x11;
        assert!(!is_ncq_error_log_read(&f));
        f.lba = 0x10;
        f.command = 0x25;
        assert!(!is_ncq_error_log_read(&f));
    }
}
