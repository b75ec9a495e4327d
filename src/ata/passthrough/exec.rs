//! What one host command's answer means: the drive's registers, a device error, or a host
//! failure, and whether to retry (once as ATA PASS-THROUGH(12), once after a transient
//! error). The commands themselves run on the drive's engine ([`super::host_io`]).
//!
//! Everything the host can answer ends in an [`Outcome`]: the drive's own registers (success or
//! a device error), or a host failure that has no drive registers, which the guest sees as an
//! ATA error chosen in [`HostFailure::error_bits`].

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::cdb::PassThrough;
use super::sense::{key, AtaRegisters, Sense, ASC_INVALID_OPCODE};
use crate::ata::registers::error;
use crate::block::sg::{driver_status, host_status, scsi_status, DataDirection, SgResult};

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
    /// Host commands whose data the kernel moved between the drive and guest pages directly,
    /// and through its own pages (one kernel copy to or from guest RAM).
    pub direct_io: AtomicU64,
    pub indirect_io: AtomicU64,
}

/// What the host's answer to one host command means, and the retry policy; shared by the
/// drive and the readers of its counters.
#[derive(Debug)]
pub struct Executor {
    pub timeout: Duration,
    /// The host adapter rejected ATA PASS-THROUGH(16): send 28-bit commands as (12).
    pub prefer_cdb12: AtomicBool,
    /// The device vanished: fail everything without trying.
    pub vanished: AtomicBool,
    pub counters: Counters,
}

/// What to do after one host command came back.
#[derive(Debug)]
pub enum Step {
    /// The host command is done: the drive's registers (if any), or how it failed.
    Done(Result<Option<AtaRegisters>, Outcome>),
    /// Try once more; if that fails the same way, the failure is this.
    Retry(HostFailure),
    /// Send it again as ATA PASS-THROUGH(12).
    RetryAs12,
}

impl Executor {
    /// A new executor; every host command gets `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Executor {
            timeout,
            prefer_cdb12: AtomicBool::new(false),
            vanished: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// The CDB to send for `pt`: (12) when asked and possible, else (16).
    pub fn cdb(&self, pt: &PassThrough, use12: bool) -> Vec<u8> {
        match pt.cdb12() {
            Some(c) if use12 => c.to_vec(),
            _ => pt.cdb16().to_vec(),
        }
    }

    /// Whether a first attempt of `pt` goes as (12).
    pub fn first_use12(&self, pt: &PassThrough) -> bool {
        self.prefer_cdb12.load(Ordering::Relaxed) && pt.cdb12().is_some()
    }

    /// The data direction of `pt`.
    pub fn direction(pt: &PassThrough) -> DataDirection {
        match (pt.t_length, pt.from_device) {
            (super::cdb::TLength::None, _) => DataDirection::None,
            (_, true) => DataDirection::FromDevice,
            (_, false) => DataDirection::ToDevice,
        }
    }

    /// A host command goes out.
    pub fn sent(&self) {
        let c = &self.counters;
        c.commands_sent.fetch_add(1, Ordering::Relaxed);
        let now = c.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        c.peak_in_flight.fetch_max(now, Ordering::Relaxed);
    }

    /// The next step after host command `pt` (sent as (12) if `use12`, already retried once
    /// if `retried`) came back with `result`; counts errors and timeouts.
    pub fn after(
        &self,
        pt: &PassThrough,
        use12: bool,
        retried: bool,
        result: &io::Result<SgResult>,
    ) -> Step {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Ok(r) = result {
            if r.direct_io {
                self.counters.direct_io.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.indirect_io.fetch_add(1, Ordering::Relaxed);
            }
        }
        let step = match result {
            Ok(r) => self.classify(r, use12 || pt.cdb12().is_none()),
            Err(e) => self.errno(e),
        };
        let failed = |f| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            Step::Done(Err(host(f)))
        };
        match step {
            Step::Done(r) => {
                if r.is_err() {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
                Step::Done(r)
            }
            Step::RetryAs12 if !use12 && pt.cdb12().is_some() => {
                if !self.prefer_cdb12.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "host adapter rejects ATA PASS-THROUGH(16): using (12) for 28-bit commands"
                    );
                }
                Step::RetryAs12
            }
            Step::RetryAs12 => failed(HostFailure::Refused),
            Step::Retry(f) if retried => failed(f),
            Step::Retry(f) => Step::Retry(f),
        }
    }

    /// Classify an answer; `no12` when a retry as (12) is not possible.
    fn classify(&self, r: &SgResult, no12: bool) -> Step {
        let host_st = r.host_status;
        if host_st == host_status::DID_TIME_OUT
            || r.driver_status & 0x0f == driver_status::DRIVER_TIMEOUT
        {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            return Step::Done(Err(host(HostFailure::Timeout)));
        }
        match host_st {
            host_status::DID_OK => {}
            host_status::DID_NO_CONNECT | host_status::DID_BAD_TARGET => {
                self.vanished.store(true, Ordering::Relaxed);
                return Step::Done(Err(host(HostFailure::Vanished)));
            }
            // Some adapters reject 16-byte CDBs by aborting them.
            host_status::DID_ABORT if !no12 => return Step::RetryAs12,
            host_status::DID_ABORT => return Step::Done(Err(host(HostFailure::Refused))),
            host_status::DID_BUS_BUSY
            | host_status::DID_RESET
            | host_status::DID_SOFT_ERROR
            | host_status::DID_TRANSPORT_DISRUPTED => return Step::Retry(HostFailure::Transport),
            _ => return Step::Done(Err(host(HostFailure::Transport))),
        }
        // The kernel says how long the command took: all of the timeout means it timed out.
        let took_the_timeout = r.duration >= self.timeout;
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
                key::ILLEGAL_REQUEST if s.asc == ASC_INVALID_OPCODE && !no12 => Step::RetryAs12,
                key::UNIT_ATTENTION => Step::Retry(HostFailure::Refused),
                key::MEDIUM_ERROR => Step::Done(Err(host(HostFailure::Medium))),
                // How Linux's libata answers a pass-through command that timed out: its error
                // handler aborts the command (resetting the link), and the SATL reports ABORTED
                // COMMAND with the clean registers it read afterwards, seldom DID_TIME_OUT.
                // What tells it apart from a link error is that it took the whole timeout.
                // Not retried: the guest's own error handling decides.
                key::ABORTED_COMMAND if took_the_timeout => {
                    self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
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
            // EDOM: the sg driver's per-descriptor queue is full; try again.
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

/// A host failure before any data moved.
pub fn host(failure: HostFailure) -> Outcome {
    Outcome::Host {
        failure,
        bytes_before: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use super::*;
    use crate::ata::command::protocol;
    use crate::ata::passthrough::host_io::HostIo;
    use crate::ata::passthrough::transfer;
    use crate::block::sg::{SgRequest, SgTransport};
    use crate::block::testing::MemEngine;
    use crate::block::GuestBuf;
    use crate::mem::VecMemory;
    use crate::sata::RegisterH2d;

    struct Fixed(SgResult);

    impl SgTransport for Fixed {
        fn execute(&self, _req: SgRequest<'_>) -> io::Result<SgResult> {
            Ok(self.0.clone())
        }
    }

    /// Run a one-sector command of `command` against `target` until it ends; the executor
    /// with its counters too.
    fn run_on(
        target: impl SgTransport + 'static,
        command: u8,
        timeout: Duration,
    ) -> (Outcome, Arc<Executor>) {
        let fis = RegisterH2d {
            c: true,
            command,
            count: 1,
            device: 0x40,
            ..Default::default()
        };
        let plan = transfer::plan(&fis, protocol(command, 0).unwrap(), 256).unwrap();
        let exec = Arc::new(Executor::new(timeout));
        let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let (engine, _) = MemEngine::scsi(Arc::new(target), n);
        let mut io = HostIo::new(Box::new(engine), exec.clone());
        let mem = Arc::new(VecMemory::new(1 << 16));
        let buf = (plan.total_bytes > 0).then(|| GuestBuf::new(mem, [(0x1000, plan.total_bytes)]));
        io.start(plan, buf);
        for _ in 0..10 {
            if let Some((_, o)) = io.poll().pop() {
                assert!(!io.draining() && io.is_empty());
                return (o, exec);
            }
        }
        panic!("the command never ended");
    }

    fn run(answer: SgResult, command: u8) -> Outcome {
        run_on(Fixed(answer), command, Duration::from_secs(1)).0
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

    #[test]
    fn aborted_after_the_whole_timeout_is_a_timeout_sent_once() {
        // Linux libata's answer to a pass-through command that timed out (the rig's host):
        // ABORTED COMMAND with clean registers, once the timeout (20 ms here) has passed —
        // the kernel says how long the command took.
        let timeout = Duration::from_millis(20);
        let aborted = fixed_legacy(key::ABORTED_COMMAND, 0x40, 0);
        let slow = SgResult {
            duration: timeout,
            ..aborted.clone()
        };
        let (o, exec) = run_on(Fixed(slow), 0x25, timeout);
        assert_eq!(
            o,
            Outcome::Host {
                failure: HostFailure::Timeout,
                bytes_before: 0
            }
        );
        assert_eq!(exec.counters.timeouts.load(Ordering::Relaxed), 1);
        assert_eq!(exec.counters.commands_sent.load(Ordering::Relaxed), 1);
        assert_eq!(exec.counters.in_flight.load(Ordering::Relaxed), 0);
        // The same answer at once is a link error, retried once.
        let (o, exec) = run_on(Fixed(aborted), 0x25, Duration::from_secs(10));
        assert!(matches!(
            o,
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
