//! How the drive carries out an ATAPI command (a CDB): the unit attention and medium gates
//! (SPC-4 5.14, MMC-6 4.1.6), then the command itself; see [`super`].

use super::cdb::{self, op};
use super::mmc::{self, media_event};
use super::packet::PacketCommand;
use super::sense::Sense;
use super::{spc, AtapiDrive, Run};
use crate::sata::DataPath;

impl AtapiDrive {
    /// Copy an answer of `bytes` to the host: at most the allocation length and what the PRDT
    /// holds (a shorter transfer, not an overflow).
    fn respond(cdb: &[u8], data: &DataPath, bytes: &[u8]) -> Run {
        let alloc = cdb::allocation_length(cdb).map_or(usize::MAX, |n| n as usize);
        let n = bytes.len().min(alloc).min(data.len() as usize);
        match data.write_at(0, &bytes[..n]) {
            Ok(()) => Run::Done(n as u32),
            Err(_) => Run::Check(Sense::DATA_PHASE_ERROR),
        }
    }

    fn answer(cdb: &[u8], data: &DataPath, r: Result<Vec<u8>, Sense>) -> Run {
        match r {
            Ok(bytes) => Self::respond(cdb, data, &bytes),
            Err(s) => Run::Check(s),
        }
    }

    /// NOT READY with why: the tray is open, or it is closed and empty.
    fn not_ready(&self) -> Sense {
        if self.tray_open {
            Sense::NO_MEDIUM_TRAY_OPEN
        } else {
            Sense::NO_MEDIUM_TRAY_CLOSED
        }
    }

    /// The commands that a pending unit attention does not stop (SPC-4 5.14, MMC-6 4.1.6.1).
    fn passes_unit_attention(code: u8) -> bool {
        matches!(
            code,
            op::INQUIRY
                | op::REQUEST_SENSE
                | op::GET_CONFIGURATION
                | op::GET_EVENT_STATUS_NOTIFICATION
        )
    }

    /// Commands that need the disc.
    fn needs_medium(code: u8) -> bool {
        matches!(
            code,
            op::TEST_UNIT_READY
                | op::READ_CAPACITY
                | op::READ_10
                | op::READ_12
                | op::READ_TOC_PMA_ATIP
                | op::READ_DISC_INFORMATION
                | op::READ_TRACK_INFORMATION
        ) || cdb::writes_medium(code)
    }

    pub(super) fn execute(
        &mut self,
        slot: u8,
        packet: PacketCommand,
        cdb: &[u8],
        data: &DataPath,
    ) -> Run {
        let code = cdb[0];
        if code == op::REQUEST_SENSE {
            // SPC-4 6.29, 5.14: a pending unit attention (reported once, before anything
            // else), or the sense of the last CHECK CONDITION, or NO SENSE; a disc that is
            // not there is NOT READY.
            let s = if std::mem::take(&mut self.unit_attention) {
                self.sense = None;
                Sense::MEDIUM_MAY_HAVE_CHANGED
            } else {
                match self.sense.take() {
                    Some(s) => s,
                    None if self.ready_medium().is_none() => self.not_ready(),
                    None => Sense::NONE,
                }
            };
            return Self::respond(cdb, data, &s.fixed());
        }
        self.sense = None;
        if self.unit_attention && !Self::passes_unit_attention(code) {
            self.unit_attention = false;
            return Run::Check(Sense::MEDIUM_MAY_HAVE_CHANGED);
        }
        if Self::needs_medium(code) && self.ready_medium().is_none() {
            return Run::Check(self.not_ready());
        }
        let v = self.view();
        let blocks = v.blocks.unwrap_or(0);
        match code {
            op::TEST_UNIT_READY | op::SET_CD_SPEED | op::SYNCHRONIZE_CACHE => Run::Done(0),
            op::INQUIRY => Self::answer(cdb, data, spc::inquiry(cdb, &v)),
            op::MODE_SENSE_10 => Self::answer(cdb, data, spc::mode_sense_10(cdb, &v)),
            op::READ_CAPACITY => Self::respond(cdb, data, &mmc::read_capacity(blocks)),
            op::READ_TOC_PMA_ATIP => Self::answer(cdb, data, mmc::read_toc(cdb, blocks)),
            op::GET_CONFIGURATION => Self::answer(cdb, data, mmc::get_configuration(cdb, &v)),
            op::GET_EVENT_STATUS_NOTIFICATION => self.event_status(cdb, data),
            op::READ_DISC_INFORMATION => Self::answer(cdb, data, mmc::read_disc_information(cdb)),
            op::READ_TRACK_INFORMATION => {
                Self::answer(cdb, data, mmc::read_track_information(cdb, blocks))
            }
            op::MECHANISM_STATUS => Self::respond(cdb, data, &mmc::mechanism_status(&v)),
            op::GET_PERFORMANCE => Self::answer(cdb, data, mmc::get_performance(cdb, &v)),
            op::PREVENT_ALLOW_MEDIUM_REMOVAL => {
                // MMC-6 6.14: bit 0 prevent, bit 1 persistent prevent.
                self.prevent = cdb::be(cdb, 4, 1) & 0x03 != 0;
                self.shared().prevent = self.prevent;
                Run::Done(0)
            }
            op::START_STOP_UNIT => self.start_stop(cdb),
            op::READ_10 | op::READ_12 => self.read(slot, packet, cdb, data),
            c if cdb::writes_medium(c) => Run::Check(Sense::WRITE_PROTECTED),
            _ => Run::Check(Sense::INVALID_OPCODE),
        }
    }

    fn event_status(&mut self, cdb: &[u8], data: &DataPath) -> Run {
        let wants_media = cdb::be(cdb, 4, 1) & 0x10 != 0;
        let eject_request = std::mem::take(&mut self.shared().eject_request);
        let event = if eject_request {
            media_event::EJECT_REQUEST
        } else {
            self.media_event
        };
        let r = mmc::event_status(cdb, &self.view(), event);
        if r.is_ok() && wants_media {
            // Reported: the event is consumed (an eject request reported before a pending
            // media event leaves that one for the next poll).
            if !eject_request {
                self.media_event = media_event::NO_CHANGE;
            }
        } else if eject_request {
            self.shared().eject_request = true;
        }
        Self::answer(cdb, data, r)
    }

    /// START STOP UNIT (MMC-6 6.39): LoEj with Start 0 opens the tray (unless the guest
    /// prevents removal), with Start 1 closes it; a power condition or spin up/down is
    /// accepted and does nothing.
    fn start_stop(&mut self, cdb: &[u8]) -> Run {
        let b4 = cdb::be(cdb, 4, 1) as u8;
        let (power, loej, start) = (b4 >> 4, b4 & 0x02 != 0, b4 & 0x01 != 0);
        if power != 0 || !loej {
            return Run::Done(0);
        }
        if !start {
            if self.prevent {
                return Run::Check(Sense::REMOVAL_PREVENTED);
            }
            if !self.tray_open && self.medium.is_some() {
                self.media_event = media_event::MEDIA_REMOVAL;
            }
            self.tray_open = true;
        } else if self.tray_open {
            self.tray_open = false;
            if self.medium.is_some() {
                self.unit_attention = true;
                self.media_event = media_event::NEW_MEDIA;
            }
        }
        Run::Done(0)
    }

    fn read(&mut self, slot: u8, packet: PacketCommand, cdb: &[u8], data: &DataPath) -> Run {
        let Some((lba, blocks)) = cdb::read_range(cdb) else {
            return Run::Check(Sense::INVALID_OPCODE);
        };
        let Some(medium) = self.medium.as_mut().filter(|_| !self.tray_open) else {
            return Run::Check(Sense::NO_MEDIUM_TRAY_OPEN);
        };
        if lba
            .checked_add(blocks)
            .is_none_or(|end| end > medium.blocks)
        {
            return Run::Check(Sense::LBA_OUT_OF_RANGE);
        }
        if blocks == 0 {
            return Run::Done(0);
        }
        match self
            .reads
            .start(medium.engine.as_mut(), slot, packet, data, lba, blocks)
        {
            Ok(()) => Run::Pending,
            Err(s) => Run::Check(s),
        }
    }
}
