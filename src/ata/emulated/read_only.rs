//! What a read-only drive answers to a write or TRIM (`readonly=on`): ABRT, with sense data
//! DATA PROTECT / WRITE PROTECTED. See [`EmulatedDrive::refuse_write`] for why.

use super::{EmulatedDrive, Fis, Submission};
use crate::ata::registers::status;
use crate::ata::taskfile::d2h_abort;

/// The sense data of a write refused by a read-only drive: DATA PROTECT, WRITE PROTECTED
/// (SPC-4 sense key 7h, ASC/ASCQ 27h/00h).
pub const WRITE_PROTECTED: (u8, u8, u8) = (0x07, 0x27, 0x00);

/// Why a media command is refused before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A write or TRIM on a read-only drive.
    WriteProtected,
    /// Malformed (ABRT).
    Invalid,
}

impl EmulatedDrive {
    /// A write (or TRIM) refused because the drive is read-only: ABRT, with sense data DATA
    /// PROTECT / WRITE PROTECTED for REQUEST SENSE DATA EXT (status bit SENSE when the host
    /// enabled sense data reporting); queued writes carry the same sense in the NCQ Command
    /// Error log (NCQ autosense, see `poll_completions`).
    ///
    /// Why this answer: ATA has no "write protected" error bit for a fixed disk (QEMU's
    /// ide-hd avoids the question: hw/ide/core.c refuses a read-only drive with "Can't use a
    /// read-only drive"; its scsi-hd answers DATA PROTECT). Plain ABRT on a read or write is
    /// what libata counts against the link: `ata_eh_categorize_error` (libata-eh.c) files an
    /// I/O command whose only error is AC_ERR_DEV as ATA_ECAT_UNK_DEV, and
    /// `ata_eh_speed_down_verdict` turns NCQ off after more than 3 of them in 10 minutes and
    /// steps the link speed and transfer mode down after more than 6 — what one mkfs on a
    /// read-only drive did. With valid sense data, `ata_eh_link_autopsy` clears AC_ERR_DEV
    /// ("SENSE_VALID trumps dev/unknown error"), the error is category 0 (never recorded,
    /// no speed-down, no revalidation), and the SCSI layer fails the write at once on DATA
    /// PROTECT (scsi_lib.c `scsi_io_completion_action`: ACTION_FAIL, no retry). Linux 6.1
    /// takes the sense of a queued command from the NCQ error log (`ata_eh_analyze_ncq_error`,
    /// IDENTIFY word 78 bit 7), and fetches it for other commands only on newer kernels; an
    /// IDNF or UNC error bit would also avoid the count, but would tell the guest something
    /// false (a bad address, a bad medium), so a non-queued refusal stays ABRT.
    pub(super) fn refuse_write(&mut self, slot: u8, device: u8) -> Submission {
        self.sense = Some(WRITE_PROTECTED);
        let mut d2h = d2h_abort(device);
        if self.sense_reporting {
            d2h.status |= status::SENSE;
        }
        Self::complete(slot, vec![Fis::RegisterD2h(d2h)], 0)
    }
}
