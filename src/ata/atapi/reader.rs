//! READ(10)/READ(12) in flight: the blocks go from the image straight into the guest buffers
//! of the command's PRDT through the medium's block engine (no copy, no waiting on a vCPU),
//! in requests of at most [`crate::ata::emulated::media::MAX_REQUEST_BYTES`] submitted at once.
//! One command at a time (PACKET commands are not queued). An aborted read's requests become
//! orphans: dropped when they come back.

use super::mmc::BLOCK;
use super::packet::PacketCommand;
use super::sense::Sense;
use crate::ata::emulated::media::MAX_REQUEST_BYTES;
use crate::block::{Completed, Engine, Request};
use crate::mem::MAX_IOVECS;
use crate::sata::DataPath;

/// A read the engine is carrying out.
#[derive(Debug)]
struct Read {
    id: u64,
    slot: u8,
    packet: PacketCommand,
    bytes: u32,
    outstanding: usize,
    failed: bool,
}

/// How a read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadDone {
    pub slot: u8,
    pub packet: PacketCommand,
    pub bytes: u32,
    pub result: Result<(), Sense>,
}

/// The drive's read in flight, if any; see the module documentation.
#[derive(Debug, Default)]
pub struct Reads {
    current: Option<Read>,
    next_id: u64,
    reaped: Vec<Completed>,
}

impl Reads {
    /// A read is in flight.
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// Start reading `blocks` blocks at `lba` into `data`. `Err`: nothing was started (the
    /// PRDT cannot take the data, or the engine refused the request).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        engine: &mut dyn Engine,
        slot: u8,
        packet: PacketCommand,
        data: &DataPath,
        lba: u64,
        blocks: u64,
    ) -> Result<(), Sense> {
        let bytes = blocks * BLOCK;
        let Ok(bytes32) = u32::try_from(bytes) else {
            return Err(Sense::INVALID_FIELD);
        };
        let buf = data
            .guest_buf(0, bytes)
            .map_err(|_| Sense::DATA_PHASE_ERROR)?;
        let id = self.next_id;
        self.next_id += 1;
        let mut read = Read {
            id,
            slot,
            packet,
            bytes: bytes32,
            outstanding: 0,
            failed: false,
        };
        for (i, (at, piece)) in buf
            .chunks(MAX_REQUEST_BYTES, MAX_IOVECS / 2)
            .into_iter()
            .enumerate()
        {
            let tag = id << 32 | i as u64;
            let request = Request::Read {
                offset: lba * BLOCK + at,
                buf: piece,
            };
            match engine.submit(tag, request) {
                Ok(()) => read.outstanding += 1,
                Err(e) => {
                    log::error!("cdrom: {e}");
                    read.failed = true;
                    break;
                }
            }
        }
        if read.outstanding == 0 {
            return Err(Sense::UNRECOVERED_READ_ERROR);
        }
        self.current = Some(read);
        Ok(())
    }

    /// Collect what the engine finished; the read, once all of it is back.
    pub fn poll(&mut self, engine: &mut dyn Engine) -> Option<ReadDone> {
        engine.reap(&mut self.reaped);
        for c in self.reaped.drain(..) {
            let Some(r) = self.current.as_mut().filter(|r| r.id == c.tag >> 32) else {
                // An aborted read's request: dropped.
                continue;
            };
            r.outstanding = r.outstanding.saturating_sub(1);
            if let Err(e) = c.result {
                log::warn!("cdrom: read failed: {e}");
                r.failed = true;
            }
        }
        if self.current.as_ref().is_some_and(|r| r.outstanding == 0) {
            let r = self.current.take()?;
            return Some(ReadDone {
                slot: r.slot,
                packet: r.packet,
                bytes: r.bytes,
                result: if r.failed {
                    Err(Sense::UNRECOVERED_READ_ERROR)
                } else {
                    Ok(())
                },
            });
        }
        None
    }

    /// Forget the read in flight (its requests become orphans).
    pub fn abort(&mut self) {
        self.current = None;
    }
}
