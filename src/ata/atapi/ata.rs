//! The ATA commands of a PACKET device (ACS-3 7.1, the PACKET feature set), shared by the
//! emulated drive and host pass-through: IDENTIFY PACKET DEVICE; IDENTIFY DEVICE aborted
//! with the PACKET signature in the registers (ACS-3 7.12.4); DEVICE RESET and EXECUTE
//! DEVICE DIAGNOSTIC answered with the signature; SET FEATURES (the transfer mode is
//! checked), CHECK POWER MODE and the power commands succeed; anything else is aborted,
//! PACKET without the command header's A bit too (the HBA has no command packet to send).

use super::identify::{identify_packet_device, PacketIdentity};
use super::ATAPI_SIGNATURE_LBA;
use crate::ata::command::opcode;
use crate::ata::identify::TransferMode;
use crate::ata::registers::{control, error as ata_error, status};
use crate::ata::taskfile::{d2h_abort, d2h_good, STATUS_GOOD};
use crate::sata::{Completion, DataPath, Fis, PioSetup, RegisterD2h, RegisterH2d, Submission};

/// What a command changed in the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// DEVICE RESET: forget commands, settings to their defaults.
    Reset,
    /// SET FEATURES 03h selected this transfer mode.
    TransferMode(TransferMode),
}

/// The signature Register D2H FIS of a PACKET device (ACS-3 table 206): status 00h, error 01h,
/// count 1, LBA EB1401h.
pub fn signature(interrupt: bool) -> RegisterD2h {
    RegisterD2h {
        interrupt,
        status: 0,
        error: 0x01,
        lba: ATAPI_SIGNATURE_LBA,
        count: 1,
        ..Default::default()
    }
}

/// What a Device Control FIS did to SRST (the software reset, SATA 3.x 11.4.4): setting it
/// resets the device; clearing it makes the device send its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftReset {
    Asserted,
    Released,
    Unchanged,
}

/// Follows SRST across Device Control FISes; `asserted` is the device's memory of it.
pub fn soft_reset(asserted: &mut bool, fis: &RegisterH2d) -> SoftReset {
    let srst = fis.control & control::SRST != 0;
    let edge = match (*asserted, srst) {
        (false, true) => SoftReset::Asserted,
        (true, false) => SoftReset::Released,
        _ => SoftReset::Unchanged,
    };
    *asserted = srst;
    edge
}

/// A command that ends at once with `d2h`.
pub fn done(slot: u8, d2h: RegisterD2h) -> Submission {
    Submission::Complete(Completion {
        slot,
        fises: vec![Fis::RegisterD2h(d2h)],
        bytes_transferred: 0,
    })
}

/// IDENTIFY PACKET DEVICE: one PIO data-in block.
fn identify_packet(slot: u8, data: &DataPath, id: &PacketIdentity<'_>) -> Submission {
    let bytes = crate::ata::identify::to_bytes(&identify_packet_device(id));
    if data.write_at(0, &bytes).is_err() {
        // (A PACKET device's Device register carries no address: 0.)
        return done(slot, d2h_abort(0));
    }
    Submission::Complete(Completion {
        slot,
        fises: vec![Fis::PioSetup(PioSetup {
            interrupt: true,
            device_to_host: true,
            status: status::DRDY | status::DRQ,
            e_status: STATUS_GOOD,
            transfer_count: bytes.len() as u16,
            ..Default::default()
        })],
        bytes_transferred: bytes.len() as u32,
    })
}

/// Carry out ATA command `fis` (not a PACKET command with its command packet).
pub fn command(
    slot: u8,
    fis: &RegisterH2d,
    data: &DataPath,
    id: &PacketIdentity<'_>,
) -> (Submission, Effect) {
    let s = match fis.command {
        opcode::IDENTIFY_PACKET_DEVICE => identify_packet(slot, data, id),
        opcode::IDENTIFY_DEVICE => done(
            slot,
            RegisterD2h {
                status: STATUS_GOOD | status::ERR,
                error: ata_error::ABRT,
                ..signature(true)
            },
        ),
        opcode::DEVICE_RESET => return (done(slot, signature(true)), Effect::Reset),
        opcode::EXECUTE_DEVICE_DIAGNOSTIC => done(slot, signature(true)),
        opcode::SET_FEATURES if fis.features as u8 == 0x03 => {
            return match TransferMode::from_count(fis.count as u8) {
                Some(m) => (done(slot, d2h_good()), Effect::TransferMode(m)),
                None => (done(slot, d2h_abort(fis.device)), Effect::None),
            };
        }
        opcode::SET_FEATURES => done(slot, d2h_good()),
        opcode::CHECK_POWER_MODE => done(
            slot,
            RegisterD2h {
                count: 0xff,
                ..d2h_good()
            },
        ),
        opcode::IDLE_IMMEDIATE
        | opcode::STANDBY_IMMEDIATE
        | opcode::IDLE
        | opcode::STANDBY
        | opcode::SLEEP => done(slot, d2h_good()),
        _ => done(slot, d2h_abort(fis.device)),
    };
    (s, Effect::None)
}
