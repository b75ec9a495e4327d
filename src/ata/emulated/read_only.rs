//! What a read-only drive answers to a write or TRIM (`readonly=on`): ABRT|IDNF, with sense
//! data DATA PROTECT / WRITE PROTECTED. See [`EmulatedDrive::refuse_write`] for why.

use super::{EmulatedDrive, Fis, Submission};
use crate::ata::registers::status;
use crate::ata::taskfile::d2h_abort;

/// The sense data of a write refused by a read-only drive: DATA PROTECT, WRITE PROTECTED
/// (SPC-4 sense key 7h, ASC/ASCQ 27h/00h).
pub const WRITE_PROTECTED: (u8, u8, u8) = (0x07, 0x27, 0x00);

pub use crate::ata::taskfile::WRITE_PROTECTED_ERROR;

/// Why a media command is refused before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A write or TRIM on a read-only drive.
    WriteProtected,
    /// Malformed (ABRT).
    Invalid,
}

impl EmulatedDrive {
    /// A write (or TRIM) refused because the drive is read-only: Error ABRT|IDNF
    /// ([`WRITE_PROTECTED_ERROR`]), with sense data DATA PROTECT / WRITE PROTECTED for
    /// REQUEST SENSE DATA EXT (status bit SENSE when the host enabled sense data reporting);
    /// queued writes carry the same sense in the NCQ Command Error log (NCQ autosense, see
    /// `poll_completions`).
    ///
    /// Why this answer. ATA has no "write protected" error for a fixed disk, and QEMU's
    /// ide-hd avoids the question (hw/ide/core.c `ide_init_drive` refuses a read-only
    /// backend: "Can't use a read-only drive"; its scsi-hd answers DATA PROTECT). What
    /// matters is what Linux's libata counts against the link (libata-eh.c):
    /// `ata_eh_categorize_error` files an I/O command whose error mask is AC_ERR_DEV alone —
    /// plain ABRT — as ATA_ECAT_UNK_DEV, and `ata_eh_speed_down_verdict` turns NCQ off after
    /// more than 3 of them in 10 minutes and steps the link speed and the transfer mode down
    /// after more than 6: what one mkfs on a read-only drive did, in the rig too (NCQ off,
    /// UDMA/100, 1.5 Gbps). A second error bit makes the error category 0, never recorded:
    /// IDNF adds AC_ERR_INVALID (UNC would add AC_ERR_MEDIA, a false claim of a failing
    /// medium that RAID and monitoring act on). libata's SCSI translation reports IDNF as
    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE, which fails the write at once.
    /// Sense data is the honest channel, but Linux 6.1 only reads it for zoned (ZAC) devices
    /// (`ata_eh_read_log_10h`, `ata_eh_analyze_tf`); newer kernels read it for every ATA
    /// device, and then report DATA PROTECT / WRITE PROTECTED (`ata_eh_link_autopsy`: "SENSE_VALID
    /// trumps dev/unknown error"; scsi_lib.c `scsi_io_completion_action` fails DATA PROTECT
    /// without a retry).
    pub(super) fn refuse_write(&mut self, slot: u8, device: u8) -> Submission {
        self.sense = Some(WRITE_PROTECTED);
        let mut d2h = d2h_abort(device);
        d2h.error = WRITE_PROTECTED_ERROR;
        if self.sense_reporting {
            d2h.status |= status::SENSE;
        }
        Self::complete(slot, vec![Fis::RegisterD2h(d2h)], 0)
    }
}
