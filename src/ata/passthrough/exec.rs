//! Running one guest command's host commands and classifying what came back.
//!
//! Everything the host can answer ends in an [`Outcome`]: the drive's own registers (success or
//! a device error), or a host failure that has no drive registers, which the guest sees as an
//! ATA error chosen in [`HostFailure::error_bits`].

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cdb::PassThrough;
use super::sense::{key, AtaRegisters, Sense, ASC_INVALID_OPCODE};
use super::transfer::Plan;
use crate::ata::registers::error;
use crate::block::sg::{
    driver_status, host_status, scsi_status, DataDirection, SgRequest, SgTransport,
};

/// Why the host could not give us the drive's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFailure {
    /// The command timed out (the kernel's SG_IO timeout: DID_TIME_OUT, DRIVER_TIMEOUT, or
    /// ABORTED COMMAND after the whole timeout, as Linux's libata reports it).
    Timeout,
    /// The link or host adapter failed the transfer (DID_ERROR, DID_PARITY, DID_RESET...).
    Transport,
    /// The device is gone (ENODEV/ENXIO, DID_NO_CONNECT, DID_BAD_TARGET).
    Vanished,
    /// The host refused the command (ILLEGAL REQUEST without ATA registers, EPERM, EINVAL...).
    Refused,
    /// A MEDIUM ERROR without ATA registers.
    Medium,
}

impl HostFailure {
    /// The ATA Error register the guest gets.
    pub fn error_bits(self) -> u8 {
        match self {
            // libata reports link errors as ICRC|ABRT; the guest retries those.
            HostFailure::Transport => error::ICRC | error::ABRT,
            HostFailure::Medium => error::UNC,
            HostFailure::Timeout | HostFailure::Vanished | HostFailure::Refused => error::ABRT,
        }
    }
}

/// How a guest command ended on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every host command succeeded. `regs` are the last one's, if the SATL returned them
    /// (non-data commands, sent with CK_COND); `None` after GOOD status without sense.
    Success {
        regs: Option<AtaRegisters>,
        bytes: u64,
    },
    /// The drive failed a host command; `bytes_before` moved in the host commands before it.
    Device {
        regs: AtaRegisters,
        bytes_before: u64,
    },
    /// The host failed a host command.
    Host {
        failure: HostFailure,
        bytes_before: u64,
    },
    /// The guest aborted the command between two host commands.
    Aborted,
}

/// Counters behind [`super::PassthroughStats`].
#[derive(Debug, Default)]
pub struct Counters {
    pub commands_sent: AtomicU64,
    pub in_flight: AtomicU32,
    pub peak_in_flight: AtomicU32,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
}

/// Runs host commands on one transport.
pub struct Executor {
    pub transport: Arc<dyn SgTransport>,
    pub timeout: Duration,
    /// The host adapter rejected ATA PASS-THROUGH(16): send 28-bit commands as (12).
    pub prefer_cdb12: AtomicBool,
    /// The device vanished: fail everything without trying.
    pub vanished: AtomicBool,
    pub counters: Counters,
}

enum Step {
    Done(Result<Option<AtaRegisters>, Outcome>),
    /// Try once more; if that fails the same way, the failure is this.
    Retry(HostFailure),
    RetryAs12,
}

impl Executor {
    /// A new executor.
    pub fn new(transport: Arc<dyn SgTransport>, timeout: Duration) -> Self {
        Executor {
            transport,
            timeout,
            prefer_cdb12: AtomicBool::new(false),
            vanished: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// Run `plan` with its data in `buf` (`plan.total_bytes` long). `current()` is asked
    /// before each host command; once it says false the rest is not sent.
    pub fn run(&self, plan: &Plan, buf: &mut [u8], current: &dyn Fn() -> bool) -> Outcome {
        let mut regs = None;
        let mut bytes = 0u64;
        for seg in &plan.segments {
            if !current() {
                return Outcome::Aborted;
            }
            let start = usize::try_from(seg.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(seg.len as usize);
            let Some(data) = buf.get_mut(start..end) else {
                return Outcome::Host {
                    failure: HostFailure::Refused,
                    bytes_before: bytes,
                };
            };
            match self.run_one(&seg.pt, data) {
                Ok(r) => {
                    regs = r;
                    bytes += u64::from(seg.len);
                }
                Err(Outcome::Device { regs, .. }) => {
                    return Outcome::Device {
                        regs,
                        bytes_before: bytes,
                    }
                }
                Err(Outcome::Host { failure, .. }) => {
                    return Outcome::Host {
                        failure,
                        bytes_before: bytes,
                    }
                }
                Err(other) => return other,
            }
        }
        Outcome::Success { regs, bytes }
    }

    /// One host command, with the retries that are always safe: once as ATA PASS-THROUGH(12)
    /// when the adapter rejects the 16-byte CDB, once after a UNIT ATTENTION or a transient
    /// transport error.
    fn run_one(&self, pt: &PassThrough, data: &mut [u8]) -> Result<Option<AtaRegisters>, Outcome> {
        let mut use12 = self.prefer_cdb12.load(Ordering::Relaxed) && pt.cdb12().is_some();
        let mut retried = false;
        loop {
            if self.vanished.load(Ordering::Relaxed) {
                return Err(host(HostFailure::Vanished));
            }
            let step = self.attempt(pt, data, use12);
            match step {
                Step::Done(r) => {
                    if r.is_err() {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    return r;
                }
                Step::RetryAs12 if !use12 && pt.cdb12().is_some() => {
                    log::warn!(
                        "host adapter rejects ATA PASS-THROUGH(16): using (12) for 28-bit commands"
                    );
                    self.prefer_cdb12.store(true, Ordering::Relaxed);
                    use12 = true;
                }
                Step::Retry(_) if !retried => retried = true,
                Step::RetryAs12 | Step::Retry(_) => {
                    let failure = match step {
                        Step::Retry(f) => f,
                        _ => HostFailure::Refused,
                    };
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(host(failure));
                }
            }
        }
    }

    fn attempt(&self, pt: &PassThrough, data: &mut [u8], use12: bool) -> Step {
        let cdb12;
        let cdb16;
        let cdb: &[u8] = match pt.cdb12() {
            Some(c) if use12 => {
                cdb12 = c;
                &cdb12
            }
            _ => {
                cdb16 = pt.cdb16();
                &cdb16
            }
        };
        let direction = match (pt.t_length, pt.from_device) {
            (super::cdb::TLength::None, _) => DataDirection::None,
            (_, true) => DataDirection::FromDevice,
            (_, false) => DataDirection::ToDevice,
        };
        let c = &self.counters;
        c.commands_sent.fetch_add(1, Ordering::Relaxed);
        let now = c.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        c.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.transport.execute(SgRequest {
            cdb,
            direction,
            data,
            timeout: self.timeout,
        });
        let took_the_timeout = started.elapsed() >= self.timeout;
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        let r = match result {
            Ok(r) => r,
            Err(e) => return self.errno(&e),
        };
        let host_st = r.host_status;
        if host_st == host_status::DID_TIME_OUT
            || r.driver_status & 0x0f == driver_status::DRIVER_TIMEOUT
        {
            c.timeouts.fetch_add(1, Ordering::Relaxed);
            return Step::Done(Err(host(HostFailure::Timeout)));
        }
        match host_st {
            host_status::DID_OK => {}
            host_status::DID_NO_CONNECT | host_status::DID_BAD_TARGET => {
                self.vanished.store(true, Ordering::Relaxed);
                return Step::Done(Err(host(HostFailure::Vanished)));
            }
            // Some adapters reject 16-byte CDBs by aborting them.
            host_status::DID_ABORT if !use12 && pt.cdb12().is_some() => return Step::RetryAs12,
            host_status::DID_ABORT => return Step::Done(Err(host(HostFailure::Refused))),
            host_status::DID_BUS_BUSY
            | host_status::DID_RESET
            | host_status::DID_SOFT_ERROR
            | host_status::DID_TRANSPORT_DISRUPTED => return Step::Retry(HostFailure::Transport),
            _ => return Step::Done(Err(host(HostFailure::Transport))),
        }
        match Sense::parse(&r.sense) {
            // The drive's own error (from the D2H FIS it sent with ERR, see `PassThrough::ck_cond`).
            Some(Sense {
                ata: Some(regs), ..
            }) if regs.failed() => Step::Done(Err(Outcome::Device {
                regs,
                bytes_before: 0,
            })),
            // CK_COND's "ATA PASS-THROUGH INFORMATION AVAILABLE".
            Some(Sense {
                key: key::NO_SENSE | key::RECOVERED_ERROR,
                ata: Some(regs),
                ..
            }) => Step::Done(Ok(Some(regs))),
            // Any other sense, even with registers that show no error (the SATL failed the
            // command for a reason of its own, e.g. a link error): its key decides.
            Some(s) => match s.key {
                key::NO_SENSE | key::RECOVERED_ERROR => Step::Done(Ok(None)),
                key::ILLEGAL_REQUEST if s.asc == ASC_INVALID_OPCODE && !use12 => Step::RetryAs12,
                key::UNIT_ATTENTION => Step::Retry(HostFailure::Refused),
                key::MEDIUM_ERROR => Step::Done(Err(host(HostFailure::Medium))),
                // How Linux's libata answers a pass-through command that timed out: its error
                // handler aborts the command (resetting the link), and the SATL reports ABORTED
                // COMMAND with the clean registers it read afterwards, seldom DID_TIME_OUT.
                // What tells it apart from a link error is that it took the whole timeout.
                // Not retried: the guest's own error handling decides.
                key::ABORTED_COMMAND if took_the_timeout => {
                    c.timeouts.fetch_add(1, Ordering::Relaxed);
                    Step::Done(Err(host(HostFailure::Timeout)))
                }
                key::ABORTED_COMMAND => Step::Retry(HostFailure::Transport),
                _ => Step::Done(Err(host(HostFailure::Refused))),
            },
            None if r.status == scsi_status::GOOD => Step::Done(Ok(None)),
            None if r.status == scsi_status::CHECK_CONDITION => {
                Step::Done(Err(host(HostFailure::Refused)))
            }
            // BUSY, TASK SET FULL, RESERVATION CONFLICT...
            None => Step::Retry(HostFailure::Refused),
        }
    }

    fn errno(&self, e: &io::Error) -> Step {
        match e.raw_os_error() {
            Some(libc::ENODEV | libc::ENXIO) => {
                self.vanished.store(true, Ordering::Relaxed);
                Step::Done(Err(host(HostFailure::Vanished)))
            }
            // EDOM: the sg driver's per-descriptor queue (16) is full; try again.
            Some(libc::EINTR | libc::EAGAIN | libc::EDOM) => Step::Retry(HostFailure::Refused),
            Some(libc::ETIMEDOUT) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Step::Done(Err(host(HostFailure::Timeout)))
            }
            Some(libc::EIO) => Step::Done(Err(host(HostFailure::Transport))),
            _ => Step::Done(Err(host(HostFailure::Refused))),
        }
    }
}

fn host(failure: HostFailure) -> Outcome {
    Outcome::Host {
        failure,
        bytes_before: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ata::command::protocol;
    use crate::ata::passthrough::transfer;
    use crate::block::sg::SgResult;
    use crate::sata::RegisterH2d;

    struct Fixed(SgResult);

    impl SgTransport for Fixed {
        fn execute(&self, _req: SgRequest<'_>) -> io::Result<SgResult> {
            Ok(self.0.clone())
        }
    }

    fn run(answer: SgResult, command: u8) -> Outcome {
        let fis = RegisterH2d {
            c: true,
            command,
            count: 1,
            device: 0x40,
            ..Default::default()
        };
        let plan = transfer::plan(&fis, protocol(command, 0).unwrap(), 256).unwrap();
        let exec = Executor::new(Arc::new(Fixed(answer)), Duration::from_secs(1));
        let mut buf = vec![0u8; plan.total_bytes as usize];
        exec.run(&plan, &mut buf, &|| true)
    }

    fn fixed_legacy(key: u8, status: u8, error: u8) -> SgResult {
        SgResult {
            status: scsi_status::CHECK_CONDITION,
            sense: vec![
                0x70, 0, key, 0, 0, 0, 0, 0x0a, error, status, 0x40, 0, 0, 0, 0, 0, 0x80, 0,
            ],
            ..Default::default()
        }
    }

    #[test]
    fn good_without_sense_is_success_without_registers() {
        let o = run(SgResult::default(), 0x25);
        assert_eq!(
            o,
            Outcome::Success {
                regs: None,
                bytes: 512
            }
        );
    }

    #[test]
    fn an_error_key_with_registers_that_show_no_error_is_not_success() {
        // A SATL failing the command for a reason of its own (ABORTED COMMAND, status 50h):
        // retried once, then a transport failure.
        let o = run(fixed_legacy(key::ABORTED_COMMAND, 0x50, 0), 0x25);
        assert_eq!(
            o,
            Outcome::Host {
                failure: HostFailure::Transport,
                bytes_before: 0
            }
        );
        // The same registers under RECOVERED ERROR are CK_COND's success.
        let o = run(fixed_legacy(key::RECOVERED_ERROR, 0x50, 0), 0xea);
        assert!(matches!(o, Outcome::Success { regs: Some(r), .. } if r.status == 0x50));
    }

    /// Answers every command with `answer` after `delay`.
    struct Slow {
        answer: SgResult,
        delay: Duration,
    }

    impl SgTransport for Slow {
        fn execute(&self, _req: SgRequest<'_>) -> io::Result<SgResult> {
            std::thread::sleep(self.delay);
            Ok(self.answer.clone())
        }
    }

    #[test]
    fn aborted_after_the_whole_timeout_is_a_timeout_sent_once() {
        // Linux libata's answer to a pass-through command that timed out (the rig's host):
        // ABORTED COMMAND with clean registers, once the timeout (20 ms here) has passed.
        let aborted = fixed_legacy(key::ABORTED_COMMAND, 0x40, 0);
        let fis = RegisterH2d {
            c: true,
            command: 0x25,
            count: 1,
            device: 0x40,
            ..Default::default()
        };
        let plan = transfer::plan(&fis, protocol(0x25, 0).unwrap(), 256).unwrap();
        let mut buf = vec![0u8; 512];
        let timeout = Duration::from_millis(20);
        let slow = Slow {
            answer: aborted.clone(),
            delay: timeout,
        };
        let exec = Executor::new(Arc::new(slow), timeout);
        assert_eq!(
            exec.run(&plan, &mut buf, &|| true),
            Outcome::Host {
                failure: HostFailure::Timeout,
                bytes_before: 0
            }
        );
        assert_eq!(exec.counters.timeouts.load(Ordering::Relaxed), 1);
        assert_eq!(exec.counters.commands_sent.load(Ordering::Relaxed), 1);
        // The same answer at once is a link error, retried once.
        let exec = Executor::new(Arc::new(Fixed(aborted)), Duration::from_secs(10));
        assert!(matches!(
            exec.run(&plan, &mut buf, &|| true),
            Outcome::Host {
                failure: HostFailure::Transport,
                ..
            }
        ));
        assert_eq!(exec.counters.timeouts.load(Ordering::Relaxed), 0);
        assert_eq!(exec.counters.commands_sent.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn registers_with_err_are_a_device_error() {
        let o = run(fixed_legacy(key::MEDIUM_ERROR, 0x51, 0x40), 0x25);
        assert!(matches!(o, Outcome::Device { regs, .. } if regs.error == 0x40));
    }
}
