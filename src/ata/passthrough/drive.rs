//! [`PassthroughDrive`]: the ATA device state the guest sees (NCQ tags in flight, the NCQ
//! error state, the multiple count, SRST) on top of the host commands in flight
//! ([`super::host_io`], on the drive's block engine).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::exec::{Executor, HostFailure, Outcome};
use super::fises;
use super::host_io::HostIo;
use super::ncq::{self, NcqErrorRecord};
use super::policy::{self, Decision, LocalAnswer};
use super::sense::AtaRegisters;
use super::sysfs::QueueLimits;
use super::transfer::{self, PlanError};
use super::{PassthroughConfig, PassthroughStats};
use crate::ata::command::{self, opcode, Protocol};
use crate::ata::registers::{control, error, status, ATA_SIGNATURE_LBA, SECTOR_SIZE};
use crate::ata::taskfile::{d2h_abort, WRITE_PROTECTED_ERROR};
use crate::block::{Engine, EngineStats};
use crate::sata::{Completion, DataPath, Fis, RegisterD2h, RegisterH2d, SataDevice, Submission};

/// A command running on the host.
#[derive(Debug)]
struct InFlight {
    slot: u8,
    /// The guest's NCQ tag, for a queued command.
    tag: Option<u8>,
    fis: RegisterH2d,
    protocol: Protocol,
    data: DataPath,
    /// First LBA and blocks of a READ/WRITE.
    range: Option<(u64, u64)>,
}

/// A real SATA drive behind SG_IO, as a [`SataDevice`].
pub struct PassthroughDrive {
    path: PathBuf,
    io: HostIo,
    exec: Arc<Executor>,
    allow_all: bool,
    read_only: bool,
    max_blocks: u32,
    inflight: HashMap<u64, InFlight>,
    /// Guest NCQ tags outstanding (one bit per tag).
    active_tags: u32,
    /// Set after a queued command failed, until the guest reads log page 10h.
    ncq_error: Option<NcqErrorRecord>,
    /// Sectors per DRQ block of READ/WRITE MULTIPLE (SET MULTIPLE MODE).
    multiple: u16,
    srst: bool,
    vanished_reported: bool,
    /// The locks on the host's device nodes, released with the drive (see `open.rs`).
    pub(super) host_locks: super::HostLocks,
    /// The host link's negotiated SATA generation (sysfs `sata_spd`), if known.
    host_link_gen: Option<u8>,
}

impl std::fmt::Debug for PassthroughDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassthroughDrive")
            .field("path", &self.path)
            .field("max_blocks", &self.max_blocks)
            .field("inflight", &self.inflight.len())
            .field("ncq_error", &self.ncq_error)
            .finish()
    }
}

fn signature() -> RegisterD2h {
    RegisterD2h {
        status: fises::STATUS_OK,
        error: 0x01,
        count: 1,
        lba: ATA_SIGNATURE_LBA,
        device: 0,
        ..Default::default()
    }
}

/// The LBA a failed READ/WRITE reports: the registers' LBA, completed (when fixed-format sense
/// lost bits of it) from the range of the host command that failed, which starts
/// `bytes_before` into the guest command's `range`.
fn failing_lba(regs: &AtaRegisters, range: Option<(u64, u64)>, bytes_before: u64) -> u64 {
    match range {
        Some((start, blocks)) => {
            let done = (bytes_before / SECTOR_SIZE as u64).min(blocks);
            regs.lba_near(start + done, blocks - done)
        }
        None => regs.lba,
    }
}

fn complete(slot: u8, fises: Vec<Fis>) -> Submission {
    Submission::Complete(Completion {
        slot,
        fises,
        bytes_transferred: 0,
    })
}

fn read_stats(exec: &Executor) -> PassthroughStats {
    let c = &exec.counters;
    PassthroughStats {
        commands_sent: c.commands_sent.load(Ordering::Relaxed),
        peak_in_flight: c.peak_in_flight.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        timeouts: c.timeouts.load(Ordering::Relaxed),
        direct_io: c.direct_io.load(Ordering::Relaxed),
        indirect_io: c.indirect_io.load(Ordering::Relaxed),
    }
}

impl PassthroughDrive {
    /// A drive whose host commands run on `engine` (the sg engine, or a test engine over a
    /// fake SATL), with the host queue's `limits`. [`PassthroughDrive::open`] is the usual way
    /// in.
    pub fn with_engine(
        engine: Box<dyn Engine>,
        limits: QueueLimits,
        config: &PassthroughConfig,
    ) -> PassthroughDrive {
        let exec = Arc::new(Executor::new(config.timeout));
        PassthroughDrive {
            path: config.path.clone(),
            io: HostIo::new(engine, exec.clone()),
            exec,
            allow_all: config.allow_all,
            read_only: config.read_only,
            max_blocks: limits.max_transfer_sectors(),
            inflight: HashMap::new(),
            active_tags: 0,
            ncq_error: None,
            multiple: 1,
            srst: false,
            vanished_reported: false,
            host_locks: super::HostLocks::default(),
            host_link_gen: None,
        }
    }

    /// The speed of the host's own link to the drive (SATA generation, from sysfs), which the
    /// guest's link reports unless the guest limits it (PxSCTL.SPD).
    pub fn set_host_link_gen(&mut self, gen: Option<u8>) {
        self.host_link_gen = gen.filter(|g| (1..=3).contains(g));
    }

    /// The most 512-byte sectors one host command carries; longer guest transfers are split.
    pub fn max_transfer_sectors(&self) -> u32 {
        self.max_blocks
    }

    /// Host-side counters.
    pub fn stats(&self) -> PassthroughStats {
        read_stats(&self.exec)
    }

    /// The engine's name and counters.
    pub fn engine_stats(&self) -> (&'static str, EngineStats) {
        self.io.engine_stats()
    }

    /// A reader of the host-side counters that stays valid after the drive is handed to a port.
    pub fn stats_reader(&self) -> impl Fn() -> PassthroughStats + Send + Sync + 'static {
        let exec = self.exec.clone();
        move || read_stats(&exec)
    }

    fn report_vanished(&mut self) {
        if !self.vanished_reported {
            self.vanished_reported = true;
            log::error!(
                "{}: the drive is gone; every command now fails with ABRT",
                self.path.display()
            );
        }
    }

    /// Abort `fis` in `slot` without sending it.
    fn refuse(&self, slot: u8, fis: &RegisterH2d, why: &str) -> Submission {
        log::warn!(
            "{}: guest command {:#04x} (features {:#x}) refused, not sent to the drive: {why}",
            self.path.display(),
            fis.command,
            fis.features
        );
        // satavm's own refusal reads as the drive's would: DRDY|ERR (41h), ABRT, the
        // command's Device register left as it was.
        complete(slot, vec![Fis::RegisterD2h(d2h_abort(fis.device))])
    }

    /// A write refused by `readonly=on`: ABRT|IDNF, as the emulated drive answers (libata
    /// does not count it against the link). A queued one enters the NCQ error state naming
    /// its tag, so that libata's READ LOG EXT 10h finds it (answered here, not by the drive).
    fn refuse_write(&mut self, slot: u8, fis: &RegisterH2d, why: &str) -> Submission {
        log::debug!(
            "{}: guest command {:#04x} refused (read-only): {why}",
            self.path.display(),
            fis.command
        );
        let mut d2h = d2h_abort(fis.device);
        d2h.error = WRITE_PROTECTED_ERROR;
        let queued = command::protocol(fis.command, fis.features).is_some_and(|p| p.is_queued());
        if queued && self.ncq_error.is_none() {
            self.abort_queued();
            let mut regs = fises::synthetic_error(WRITE_PROTECTED_ERROR);
            regs.status = d2h.status;
            regs.lba = fis.lba;
            regs.count = fis.count;
            regs.device = fis.device;
            let tag = ((fis.count >> 3) & 0x1f) as u8;
            self.ncq_error = Some(NcqErrorRecord { tag, regs });
        }
        complete(slot, vec![Fis::RegisterD2h(d2h)])
    }

    fn answer(&self, slot: u8, a: LocalAnswer) -> Submission {
        let d2h = match a {
            LocalAnswer::Success => RegisterD2h {
                interrupt: true,
                status: fises::STATUS_OK,
                ..Default::default()
            },
            LocalAnswer::DiagnosticPassed => RegisterD2h {
                interrupt: true,
                ..signature()
            },
        };
        complete(slot, vec![Fis::RegisterD2h(d2h)])
    }

    /// Registers for a failure the host reported without the drive's registers.
    fn host_failure_regs(&mut self, failure: HostFailure, inf: &InFlight) -> AtaRegisters {
        match failure {
            HostFailure::Vanished => self.report_vanished(),
            HostFailure::Timeout => log::warn!(
                "{}: command {:#04x}{} timed out on the host after {:?}; the guest gets ABRT",
                self.path.display(),
                inf.fis.command,
                inf.range
                    .map(|(lba, _)| format!(" at LBA {lba}"))
                    .unwrap_or_default(),
                self.exec.timeout
            ),
            _ => {}
        }
        let mut r = fises::synthetic_error(failure.error_bits());
        if let Some((lba, _)) = inf.range {
            r.lba = lba;
        }
        r
    }

    fn finish(&mut self, inf: InFlight, outcome: Outcome) -> Option<Completion> {
        match inf.tag {
            Some(tag) => self.finish_queued(inf, tag, outcome),
            None => self.finish_plain(inf, outcome),
        }
    }

    fn finish_queued(&mut self, inf: InFlight, tag: u8, outcome: Outcome) -> Option<Completion> {
        if self.ncq_error.is_some() {
            // Aborted by the error (see `abort_queued`); kept only as a guard.
            return None;
        }
        let regs = match outcome {
            Outcome::Success { bytes, .. } => {
                self.active_tags &= !(1 << tag);
                return Some(Completion {
                    slot: inf.slot,
                    fises: fises::ncq_success(tag, inf.protocol.direction(), bytes),
                    bytes_transferred: u32::try_from(bytes).unwrap_or(u32::MAX),
                });
            }
            Outcome::Device {
                mut regs,
                bytes_before,
            } => {
                regs.lba = failing_lba(&regs, inf.range, bytes_before);
                regs
            }
            Outcome::Host { failure, .. } => self.host_failure_regs(failure, &inf),
            Outcome::Aborted => return None,
        };
        log::warn!(
            "{}: queued command {:#04x} tag {tag} failed: status {:#04x} error {:#04x}; NCQ error state until log page 10h is read",
            self.path.display(),
            inf.fis.command,
            regs.status,
            regs.error
        );
        self.abort_queued();
        self.ncq_error = Some(NcqErrorRecord { tag, regs });
        Some(Completion {
            slot: inf.slot,
            fises: fises::ncq_failure(&regs),
            bytes_transferred: 0,
        })
    }

    fn finish_plain(&mut self, inf: InFlight, outcome: Outcome) -> Option<Completion> {
        let page10h = ncq::is_ncq_error_log_read(&inf.fis) && self.ncq_error.is_some();
        let drq = transfer::drq_block_sectors(inf.fis.command, self.multiple);
        let (fises, bytes) = match outcome {
            Outcome::Success { regs, bytes } => {
                if page10h && !self.patch_page10h(&inf.data, true) {
                    (fises::failure(&fises::synthetic_error(error::ABRT)), 0)
                } else {
                    if inf.fis.command == opcode::SET_MULTIPLE_MODE {
                        self.multiple = (inf.fis.count & 0xff).max(1);
                    }
                    (fises::success(inf.protocol, regs, bytes, drq), bytes)
                }
            }
            // The drive would not give its log (or the host failed): the guest still needs the
            // NCQ error record, and we have it.
            Outcome::Device { .. } | Outcome::Host { .. } if page10h => {
                if self.patch_page10h(&inf.data, false) {
                    let bytes = SECTOR_SIZE as u64;
                    (fises::success(inf.protocol, None, bytes, drq), bytes)
                } else {
                    (fises::failure(&fises::synthetic_error(error::ABRT)), 0)
                }
            }
            Outcome::Device {
                mut regs,
                bytes_before,
            } => {
                regs.lba = failing_lba(&regs, inf.range, bytes_before);
                // What the host commands before the failing one moved is good data.
                (fises::failure(&regs), bytes_before)
            }
            Outcome::Host { failure, .. } => {
                let regs = self.host_failure_regs(failure, &inf);
                (fises::failure(&regs), 0)
            }
            Outcome::Aborted => return None,
        };
        if page10h {
            // The guest has the record: the device leaves the NCQ error state.
            self.ncq_error = None;
        }
        Some(Completion {
            slot: inf.slot,
            fises,
            bytes_transferred: u32::try_from(bytes).unwrap_or(u32::MAX),
        })
    }

    /// Put the guest's NCQ error record in the first 512 bytes of the command's data in guest
    /// memory (where the drive's own page, if it answered, has just landed). False if the
    /// PRDT cannot take it.
    fn patch_page10h(&self, data: &DataPath, drive_answered: bool) -> bool {
        let Some(rec) = self.ncq_error else {
            return true;
        };
        let mut drive_page = [0u8; SECTOR_SIZE];
        let drive =
            (drive_answered && data.read_at(0, &mut drive_page).is_ok()).then_some(&drive_page[..]);
        let page = ncq::answer_page(drive, &rec);
        match data.write_at(0, &page) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("{}: NCQ error log not delivered: {e}", self.path.display());
                false
            }
        }
    }

    /// A queued command failed: the device aborts every other outstanding queued command
    /// (SATA 3.x 13.6.5). They are never reported; their PxSACT bits stay set until the guest
    /// stops the port. Their host commands cannot be recalled: they drain in the background
    /// ([`HostIo::abort`]), and what the guest issues next waits for them.
    fn abort_queued(&mut self) {
        let queued: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, i)| i.tag.is_some())
            .map(|(id, _)| *id)
            .collect();
        self.io.abort(&queued);
        for id in queued {
            self.inflight.remove(&id);
        }
        self.active_tags = 0;
    }

    fn reset_device_state(&mut self) {
        self.abort_all();
        self.ncq_error = None;
    }
}

impl SataDevice for PassthroughDrive {
    fn comreset(&mut self) -> RegisterD2h {
        self.reset_device_state();
        self.srst = false;
        signature()
    }

    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        if fis.control & control::SRST != 0 {
            self.reset_device_state();
            self.srst = true;
            None
        } else if std::mem::take(&mut self.srst) {
            Some(signature())
        } else {
            None
        }
    }

    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        match policy::decide(fis, self.allow_all, self.read_only) {
            Decision::Forward => {}
            Decision::Refuse { reason } => return self.refuse(slot, fis, reason),
            Decision::WriteProtected { reason } => return self.refuse_write(slot, fis, reason),
            Decision::Answer(a) => return self.answer(slot, a),
        }
        let Some(protocol) = command::protocol(fis.command, fis.features) else {
            return self.refuse(slot, fis, "unknown protocol");
        };
        if self.exec.vanished.load(Ordering::Relaxed) {
            self.report_vanished();
            return complete(slot, vec![Fis::RegisterD2h(d2h_abort(fis.device))]);
        }
        let tag = protocol
            .is_queued()
            .then_some(((fis.count >> 3) & 0x1f) as u8);
        match tag {
            Some(_) if self.ncq_error.is_some() => {
                return self.refuse(slot, fis, "NCQ error state: log page 10h not read yet")
            }
            Some(t) if self.active_tags & (1 << t) != 0 => {
                // A tag already in use is a malformed queued command (SATA 2.6 13.5.2,
                // SATA-IO NCQ-04): ERR/ABRT, and the NCQ error state naming the tag, which
                // aborts the outstanding queued commands — as the emulated drive answers.
                log::warn!(
                    "{}: guest reused NCQ tag {t} while it was in flight; NCQ error state",
                    self.path.display()
                );
                self.abort_queued();
                let mut regs = fises::synthetic_error(error::ABRT);
                regs.lba = fis.lba;
                regs.count = fis.count;
                regs.device = fis.device;
                self.ncq_error = Some(NcqErrorRecord { tag: t, regs });
                return complete(slot, vec![Fis::RegisterD2h(d2h_abort(fis.device))]);
            }
            // (In the NCQ error state the guest must be able to read log page 10h.)
            None if self.active_tags != 0 && self.ncq_error.is_none() => {
                return self.refuse(
                    slot,
                    fis,
                    "non-queued command while queued commands are outstanding",
                )
            }
            _ => {}
        }
        let plan = match transfer::plan(fis, protocol, self.max_blocks) {
            Ok(p) => p,
            Err(PlanError::OutOfRange { .. }) => {
                return complete(
                    slot,
                    vec![Fis::RegisterD2h(fises::error_d2h(
                        error::IDNF | error::ABRT,
                    ))],
                )
            }
            Err(e) => return self.refuse(slot, fis, &e.to_string()),
        };
        let Ok(total) = usize::try_from(plan.total_bytes) else {
            return self.refuse(slot, fis, "transfer too large");
        };
        if data.len() < plan.total_bytes {
            return self.refuse(slot, fis, "the PRDT is shorter than the transfer");
        }
        // The data moves between the drive and the guest's PRDT buffers directly.
        let buf = if total == 0 {
            None
        } else {
            match data.guest_buf(0, plan.total_bytes) {
                Ok(b) => Some(b),
                Err(e) => return self.refuse(slot, fis, &format!("data path: {e}")),
            }
        };
        let range = plan.range;
        let id = self.io.start(plan, buf);
        self.inflight.insert(
            id,
            InFlight {
                slot,
                tag,
                fis: *fis,
                protocol,
                data,
                range,
            },
        );
        match tag {
            Some(t) => {
                self.active_tags |= 1 << t;
                // Release the link at once (SATA 3.x 13.6.4.2): BSY clear, DRDY set.
                Submission::Pending {
                    accepted: Some(RegisterD2h {
                        status: status::DRDY,
                        ..Default::default()
                    }),
                }
            }
            None => Submission::Pending { accepted: None },
        }
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        let mut out = Vec::new();
        for (id, outcome) in self.io.poll() {
            // Unknown ids belong to commands aborted since (a late result is dropped here).
            if let Some(inf) = self.inflight.remove(&id) {
                out.extend(self.finish(inf, outcome));
            }
        }
        out
    }

    fn max_link_gen(&self) -> u8 {
        self.host_link_gen.unwrap_or(3)
    }

    fn abort_all(&mut self) {
        self.io.abort_all();
        self.inflight.clear();
        self.active_tags = 0;
    }

    fn draining(&self) -> bool {
        self.io.draining()
    }

    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        self.io.ready_fd()
    }

    fn engine_stats(&self) -> Option<(&'static str, EngineStats)> {
        Some(self.io.engine_stats())
    }
}
