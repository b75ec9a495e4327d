//! Which guest commands reach the host drive.
//!
//! The guest owns the drive's data, not the drive: by default commands that change its firmware,
//! security state or capacity, or erase it wholesale, are refused with ABRT and never sent
//! ([`refused_by_default`]; `allow_all` lifts this). `read_only` also refuses every command that
//! writes or erases user data ([`refused_when_read_only`]). A few commands the host's libata will
//! not pass through at all are answered here ([`LocalAnswer`]). Opcodes
//! [`crate::ata::command::protocol`] does not know are always refused: without knowing the
//! protocol there is no way to move their data correctly.

use crate::ata::command::{dco, opcode, protocol, smart};
use crate::sata::RegisterH2d;

/// A command (or one subcommand of it) the policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedCommand {
    pub opcode: u8,
    /// For opcodes that pick a subcommand: the value it is picked by (see [`Selector`]).
    pub selector: Option<Selector>,
    pub name: &'static str,
    pub reason: &'static str,
}

/// How a refused subcommand is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// Features 7:0 (SMART, SET FEATURES, NCQ NON-DATA subcommand in features 3:0).
    Features(u8),
    /// NCQ NON-DATA: subcommand in features 3:0.
    NcqSubcommand(u8),
    /// SEND FPDMA QUEUED: subcommand in count 15:8 bits 4:0.
    SendFpdmaSubcommand(u8),
    /// A log address (LBA 7:0) of WRITE LOG (DMA) EXT / SMART WRITE LOG.
    LogAddress(u8),
}

impl Selector {
    fn matches(self, fis: &RegisterH2d) -> bool {
        match self {
            Selector::Features(f) => fis.features as u8 == f,
            Selector::NcqSubcommand(s) => fis.features as u8 & 0x0f == s,
            Selector::SendFpdmaSubcommand(s) => (fis.count >> 8) as u8 & 0x1f == s,
            Selector::LogAddress(a) => fis.lba as u8 == a,
        }
    }
}

const fn refuse(opcode: u8, name: &'static str, reason: &'static str) -> RefusedCommand {
    RefusedCommand {
        opcode,
        selector: None,
        name,
        reason,
    }
}

const fn refuse_sub(
    opcode: u8,
    selector: Selector,
    name: &'static str,
    reason: &'static str,
) -> RefusedCommand {
    RefusedCommand {
        opcode,
        selector: Some(selector),
        name,
        reason,
    }
}

const FIRMWARE: &str = "changes the drive's firmware";
const SECURITY: &str = "changes the drive's security (password) state";
const CAPACITY: &str = "changes the drive's reported capacity";
const ERASE: &str = "erases the drive";
const TRUSTED: &str = "trusted computing (TCG/OPAL) can lock or erase the drive";
const SCT: &str =
    "SCT commands can overwrite LBA ranges (SCT Write Same) and change drive settings";
const VENDOR: &str = "vendor-specific: its effect is unknown";
const SMART_SETTINGS: &str = "changes the drive's SMART settings or saved attributes";

static REFUSED_BY_DEFAULT: &[RefusedCommand] = &[
    refuse(opcode::DOWNLOAD_MICROCODE, "DOWNLOAD MICROCODE", FIRMWARE),
    refuse(
        opcode::DOWNLOAD_MICROCODE_DMA,
        "DOWNLOAD MICROCODE DMA",
        FIRMWARE,
    ),
    refuse(
        opcode::WRITE_BUFFER,
        "WRITE BUFFER",
        "writes the drive's buffer, which vendor tools use for firmware",
    ),
    refuse(
        opcode::SECURITY_SET_PASSWORD,
        "SECURITY SET PASSWORD",
        SECURITY,
    ),
    refuse(opcode::SECURITY_UNLOCK, "SECURITY UNLOCK", SECURITY),
    refuse(
        opcode::SECURITY_ERASE_PREPARE,
        "SECURITY ERASE PREPARE",
        ERASE,
    ),
    refuse(opcode::SECURITY_ERASE_UNIT, "SECURITY ERASE UNIT", ERASE),
    refuse(
        opcode::SECURITY_FREEZE_LOCK,
        "SECURITY FREEZE LOCK",
        SECURITY,
    ),
    refuse(
        opcode::SECURITY_DISABLE_PASSWORD,
        "SECURITY DISABLE PASSWORD",
        SECURITY,
    ),
    refuse(opcode::SANITIZE_DEVICE, "SANITIZE DEVICE", ERASE),
    refuse(opcode::SET_MAX_ADDRESS, "SET MAX ADDRESS", CAPACITY),
    refuse(opcode::SET_MAX_ADDRESS_EXT, "SET MAX ADDRESS EXT", CAPACITY),
    refuse(opcode::TRUSTED_NON_DATA, "TRUSTED NON-DATA", TRUSTED),
    refuse(opcode::TRUSTED_RECEIVE, "TRUSTED RECEIVE", TRUSTED),
    refuse(opcode::TRUSTED_RECEIVE_DMA, "TRUSTED RECEIVE DMA", TRUSTED),
    refuse(opcode::TRUSTED_SEND, "TRUSTED SEND", TRUSTED),
    refuse(opcode::TRUSTED_SEND_DMA, "TRUSTED SEND DMA", TRUSTED),
    refuse_sub(
        opcode::WRITE_LOG_EXT,
        Selector::LogAddress(0xe0),
        "WRITE LOG EXT to the SCT Command/Status log",
        SCT,
    ),
    refuse_sub(
        opcode::WRITE_LOG_DMA_EXT,
        Selector::LogAddress(0xe0),
        "WRITE LOG DMA EXT to the SCT Command/Status log",
        SCT,
    ),
    refuse_sub(
        opcode::SMART,
        Selector::LogAddress(0xe0),
        "SMART WRITE LOG to the SCT Command/Status log",
        SCT,
    ),
    // DEVICE CONFIGURATION OVERLAY: SET, RESTORE and FREEZE LOCK change (or fix until the next
    // power cycle) the capacity and the features the drive reports; DCO IDENTIFY only reads
    // the overlay and is forwarded.
    refuse_sub(
        opcode::DEVICE_CONFIGURATION_OVERLAY,
        Selector::Features(dco::SET),
        "DEVICE CONFIGURATION SET",
        CAPACITY,
    ),
    refuse_sub(
        opcode::DEVICE_CONFIGURATION_OVERLAY,
        Selector::Features(dco::RESTORE),
        "DEVICE CONFIGURATION RESTORE",
        CAPACITY,
    ),
    refuse_sub(
        opcode::DEVICE_CONFIGURATION_OVERLAY,
        Selector::Features(dco::FREEZE_LOCK),
        "DEVICE CONFIGURATION FREEZE LOCK",
        CAPACITY,
    ),
    // SMART subcommands that write the drive's SMART state (SMART WRITE LOG to the SCT log is
    // above; host-specific logs stay writable).
    refuse_sub(
        opcode::SMART,
        Selector::Features(smart::SAVE_ATTRIBUTE_VALUES),
        "SMART SAVE ATTRIBUTE VALUES",
        SMART_SETTINGS,
    ),
    refuse_sub(
        opcode::SMART,
        Selector::Features(smart::ENABLE_DISABLE_AUTO_OFFLINE),
        "SMART ENABLE/DISABLE AUTOMATIC OFF-LINE",
        SMART_SETTINGS,
    ),
    refuse(
        opcode::SLEEP,
        "SLEEP",
        "only a reset wakes the drive, which the host does after a command timed out",
    ),
    // Listed for the documentation: `protocol()` does not know them, so they are refused even
    // with `allow_all`.
    refuse(
        0x45,
        "WRITE UNCORRECTABLE EXT",
        "marks sectors as unreadable",
    ),
    refuse(0xc0, "CFA ERASE SECTORS", ERASE),
    refuse(0x9a, "vendor specific (9Ah)", VENDOR),
    refuse(0xf0, "vendor specific (F0h)", VENDOR),
    refuse(0xf7, "vendor specific (F7h)", VENDOR),
];

/// The commands refused unless `allow_all` is set (opcodes 80h-8Fh and FAh-FFh, vendor
/// specific in ACS-3 table B.2, and every other opcode `protocol()` does not know are refused
/// in any case).
pub fn refused_by_default() -> &'static [RefusedCommand] {
    REFUSED_BY_DEFAULT
}

static REFUSED_WHEN_READ_ONLY: &[RefusedCommand] = &[
    refuse(opcode::WRITE_SECTORS, "WRITE SECTORS", "writes data"),
    refuse(
        opcode::WRITE_SECTORS_EXT,
        "WRITE SECTORS EXT",
        "writes data",
    ),
    refuse(opcode::WRITE_MULTIPLE, "WRITE MULTIPLE", "writes data"),
    refuse(
        opcode::WRITE_MULTIPLE_EXT,
        "WRITE MULTIPLE EXT",
        "writes data",
    ),
    refuse(
        opcode::WRITE_MULTIPLE_FUA_EXT,
        "WRITE MULTIPLE FUA EXT",
        "writes data",
    ),
    refuse(opcode::WRITE_DMA, "WRITE DMA", "writes data"),
    refuse(opcode::WRITE_DMA_EXT, "WRITE DMA EXT", "writes data"),
    refuse(
        opcode::WRITE_DMA_FUA_EXT,
        "WRITE DMA FUA EXT",
        "writes data",
    ),
    refuse(
        opcode::WRITE_FPDMA_QUEUED,
        "WRITE FPDMA QUEUED",
        "writes data",
    ),
    refuse(
        opcode::DATA_SET_MANAGEMENT,
        "DATA SET MANAGEMENT",
        "TRIM discards data",
    ),
    refuse(
        opcode::SEND_FPDMA_QUEUED,
        "SEND FPDMA QUEUED",
        "its subcommands (DSM TRIM) discard data",
    ),
    refuse_sub(
        opcode::NCQ_NON_DATA,
        Selector::NcqSubcommand(6),
        "NCQ NON-DATA ZERO EXT",
        "writes zeros",
    ),
    refuse(opcode::WRITE_LOG_EXT, "WRITE LOG EXT", "writes a log"),
    refuse(
        opcode::WRITE_LOG_DMA_EXT,
        "WRITE LOG DMA EXT",
        "writes a log",
    ),
    refuse_sub(
        opcode::SMART,
        Selector::Features(smart::WRITE_LOG),
        "SMART WRITE LOG",
        "writes a log",
    ),
];

/// The commands `read_only` refuses on top of [`refused_by_default`] (FLUSH CACHE stays: it
/// writes nothing the guest sent).
pub fn refused_when_read_only() -> &'static [RefusedCommand] {
    REFUSED_WHEN_READ_ONLY
}

/// A command answered without the drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalAnswer {
    /// Success with status DRDY. SET FEATURES - set transfer mode (03h): libata refuses it
    /// (the host owns the link's transfer mode), and the guest's choice does not matter on a
    /// SATA link.
    Success,
    /// EXECUTE DEVICE DIAGNOSTIC (libata refuses its protocol): "device 0 passed" (error 01h)
    /// and the ATA signature (ACS-3 7.9).
    DiagnosticPassed,
}

/// What to do with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Forward,
    /// Abort it (ABRT) without sending it; `reason` is for the log.
    Refuse {
        reason: &'static str,
    },
    /// A write refused by `read_only`: abort it without sending it, with the error a
    /// read-only drive answers ([`crate::ata::taskfile::WRITE_PROTECTED_ERROR`]).
    WriteProtected {
        reason: &'static str,
    },
    Answer(LocalAnswer),
}

/// SET FEATURES subcommand "set transfer mode".
const SETFEATURES_XFER: u8 = 0x03;

fn find(table: &'static [RefusedCommand], fis: &RegisterH2d) -> Option<&'static RefusedCommand> {
    table.iter().filter(|r| r.opcode == fis.command).find(|r| {
        r.selector.is_none_or(|s| {
            // SMART's log address only matters for SMART WRITE LOG.
            if fis.command == opcode::SMART && matches!(s, Selector::LogAddress(_)) {
                fis.features as u8 == smart::WRITE_LOG && s.matches(fis)
            } else {
                s.matches(fis)
            }
        })
    })
}

/// Decide about `fis` (a command FIS).
pub fn decide(fis: &RegisterH2d, allow_all: bool, read_only: bool) -> Decision {
    if fis.command == opcode::SET_FEATURES && fis.features as u8 == SETFEATURES_XFER {
        return Decision::Answer(LocalAnswer::Success);
    }
    if fis.command == opcode::EXECUTE_DEVICE_DIAGNOSTIC {
        return Decision::Answer(LocalAnswer::DiagnosticPassed);
    }
    if fis.command == opcode::DEVICE_RESET {
        return Decision::Refuse {
            reason: "DEVICE RESET is for PACKET devices only",
        };
    }
    if protocol(fis.command, fis.features).is_none() {
        return Decision::Refuse {
            reason: "unknown opcode or subcommand: its protocol is unknown",
        };
    }
    if read_only {
        if let Some(r) = find(REFUSED_WHEN_READ_ONLY, fis) {
            return Decision::WriteProtected { reason: r.reason };
        }
    }
    if !allow_all {
        if let Some(r) = find(REFUSED_BY_DEFAULT, fis) {
            return Decision::Refuse { reason: r.reason };
        }
    }
    Decision::Forward
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(command: u8, features: u16) -> RegisterH2d {
        RegisterH2d {
            c: true,
            command,
            features,
            ..Default::default()
        }
    }

    #[test]
    fn firmware_security_capacity_and_erase_are_refused_by_default() {
        for op in [
            0x92, 0x93, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xb4, 0xf9, 0x37, 0x5b, 0x5c, 0x5d,
            0x5e, 0x5f, 0xe8,
        ] {
            assert!(
                matches!(decide(&cmd(op, 0), false, false), Decision::Refuse { .. }),
                "{op:#x}"
            );
            // Listed in the table, and lifted by allow_all.
            assert!(
                refused_by_default().iter().any(|r| r.opcode == op),
                "{op:#x}"
            );
            assert_eq!(
                decide(&cmd(op, 0), true, false),
                Decision::Forward,
                "{op:#x}"
            );
        }
    }

    #[test]
    fn unknown_and_vendor_opcodes_are_refused_even_with_allow_all() {
        for op in [0x80, 0x8f, 0x45, 0x9a, 0xc0, 0xf0, 0xfa, 0xff] {
            assert!(
                matches!(decide(&cmd(op, 0), true, false), Decision::Refuse { .. }),
                "{op:#x}"
            );
        }
        // Unknown SMART subcommand.
        assert!(matches!(
            decide(&cmd(0xb0, 0x42), true, false),
            Decision::Refuse { .. }
        ));
    }

    #[test]
    fn ordinary_io_is_forwarded() {
        for (op, f) in [
            (0x25, 0),
            (0x35, 0),
            (0x60, 8),
            (0x61, 8),
            (0xea, 0),
            (0xec, 0),
            (0x2f, 0),
            (0x06, 1),
            (0xb0, 0xd0),
            (0xef, 0x02),
            (0xf8, 0),
        ] {
            assert_eq!(
                decide(&cmd(op, f), false, false),
                Decision::Forward,
                "{op:#x}"
            );
        }
    }

    #[test]
    fn read_only_refuses_writes_trim_and_log_writes_but_not_flush() {
        for (op, f) in [
            (0x35, 0),
            (0x61, 8),
            (0xca, 0),
            (0x30, 0),
            (0x06, 1),
            (0x64, 0),
            (0x3f, 0),
            (0xb0, 0xd6),
            (0x63, 6),
        ] {
            assert!(
                matches!(
                    decide(&cmd(op, f), true, true),
                    Decision::WriteProtected { .. }
                ),
                "{op:#x}/{f:#x}"
            );
            assert_eq!(
                decide(&cmd(op, f), true, false),
                Decision::Forward,
                "{op:#x}"
            );
        }
        for (op, f) in [
            (0xea, 0),
            (0xe7, 0),
            (0x25, 0),
            (0x60, 8),
            (0x63, 0),
            (0xb0, 0xd5),
        ] {
            assert_eq!(
                decide(&cmd(op, f), false, true),
                Decision::Forward,
                "{op:#x}"
            );
        }
    }

    #[test]
    fn sct_log_writes_are_refused_by_default() {
        let mut f = cmd(0x3f, 0);
        f.lba = 0xe0;
        assert!(matches!(decide(&f, false, false), Decision::Refuse { .. }));
        f.lba = 0x80; // a host-specific log
        assert_eq!(decide(&f, false, false), Decision::Forward);
        let mut s = cmd(0xb0, 0xd6);
        s.lba = 0x00c2_4fe0;
        assert!(matches!(decide(&s, false, false), Decision::Refuse { .. }));
        s.features = 0xd5; // SMART READ LOG of the same address is fine
        assert_eq!(decide(&s, false, false), Decision::Forward);
    }

    #[test]
    fn what_libata_refuses_is_answered_here() {
        assert_eq!(
            decide(&cmd(0xef, 0x03), false, false),
            Decision::Answer(LocalAnswer::Success)
        );
        assert_eq!(
            decide(&cmd(0x90, 0), false, false),
            Decision::Answer(LocalAnswer::DiagnosticPassed)
        );
        assert!(matches!(
            decide(&cmd(0x08, 0), true, false),
            Decision::Refuse { .. }
        ));
    }

    #[test]
    fn dco_identify_is_forwarded_and_dco_changes_are_refused_unless_allow_all() {
        assert_eq!(decide(&cmd(0xb1, 0xc2), false, false), Decision::Forward);
        assert_eq!(decide(&cmd(0xb1, 0xc2), false, true), Decision::Forward);
        for sub in [0xc0u16, 0xc1, 0xc3] {
            assert_eq!(
                decide(&cmd(0xb1, sub), false, false),
                Decision::Refuse { reason: CAPACITY },
                "{sub:#x}"
            );
            assert!(refused_by_default()
                .iter()
                .any(|r| r.opcode == 0xb1 && r.selector == Some(Selector::Features(sub as u8))));
            assert_eq!(decide(&cmd(0xb1, sub), true, false), Decision::Forward);
        }
        // An unknown DCO subcommand has no protocol: refused even with allow_all.
        assert!(matches!(
            decide(&cmd(0xb1, 0xc4), true, false),
            Decision::Refuse { .. }
        ));
    }

    #[test]
    fn smart_subcommands_that_write_are_refused_unless_allow_all() {
        for sub in [0xd3u16, 0xdb] {
            assert_eq!(
                decide(&cmd(0xb0, sub), false, false),
                Decision::Refuse {
                    reason: SMART_SETTINGS
                },
                "{sub:#x}"
            );
            assert_eq!(decide(&cmd(0xb0, sub), true, false), Decision::Forward);
        }
        // Reading SMART and running a self-test (it only reads the medium) are forwarded.
        for sub in [0xd0u16, 0xd1, 0xd4, 0xd5, 0xda, 0xd8] {
            assert_eq!(decide(&cmd(0xb0, sub), false, false), Decision::Forward);
        }
    }

    #[test]
    fn table_entries_have_reasons() {
        for r in refused_by_default().iter().chain(refused_when_read_only()) {
            assert!(!r.reason.is_empty() && !r.name.is_empty());
        }
    }
}
