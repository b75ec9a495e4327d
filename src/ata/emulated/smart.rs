//! The emulated drive's SMART state (ACS-3 7.48): counters the attributes and device
//! statistics report, the self-tests and their log, the host-specific logs.
//!
//! Self-tests (EXECUTE OFF-LINE IMMEDIATE 01h short, 02h extended, off-line mode) really read
//! the image: they are a chain of 1 MiB reads through the drive's I/O engine into a buffer of
//! the drive's own (never guest memory), one at a time, each started when the previous one
//! ends (on the event loop, in `poll_completions`): nothing waits, and the guest's commands
//! run beside them. The short test reads [`SHORT_TEST_STEPS`] steps spread over the medium
//! (its start, its end and evenly in between), the extended test all of it. A failed read ends
//! the test with status 7h and its LBA; subcommand 7Fh aborts it (1h), a reset (COMRESET,
//! SRST) interrupts it (2h); READ DATA byte 363 shows the progress. Captive mode (81h, 82h)
//! is not offered: it is aborted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ata::log::{LogPage, HOST_SPECIFIC_PAGES};
use crate::ata::smart::{status, Counters, SelfTestEntry, SelfTestStatus};
use crate::clock::{Clock, SystemClock};
use crate::mem::VecMemory;
use crate::sata::{DataPath, PrdEntry};

use super::media::{self, MediaOp, Report};

/// Sectors one self-test step reads (1 MiB).
pub const STEP_SECTORS: u32 = 2048;
/// Steps of a short self-test.
pub const SHORT_TEST_STEPS: u64 = 32;
/// The constant temperature the drive reports, degrees Celsius.
pub const TEMPERATURE_C: u8 = 35;
/// The command slot a self-test's engine requests carry (no port slot: nothing reports them).
pub const SELF_TEST_SLOT: u8 = 0xff;
/// Most entries kept in the self-test log.
const LOG_ENTRIES: usize = 21;
/// The rate an extended self-test's polling time is estimated at: 200 MiB/s.
const SELF_TEST_BYTES_PER_SEC: u64 = 200 << 20;

/// EXECUTE OFF-LINE IMMEDIATE subcommands (ACS-3 7.48.5, LBA 7:0).
pub mod subcommand {
    pub const OFFLINE_COLLECTION: u8 = 0x00;
    pub const SHORT: u8 = 0x01;
    pub const EXTENDED: u8 = 0x02;
    pub const ABORT: u8 = 0x7f;
}

/// A self-test in progress.
#[derive(Debug)]
struct Running {
    subcommand: u8,
    /// Steps (first LBA, sectors) still to read, in order; the first is the one in flight.
    steps: Vec<(u64, u32)>,
    total: usize,
    /// A step is in the engine.
    in_flight: bool,
}

/// SMART state of one drive.
pub struct SmartState {
    clock: Arc<dyn Clock>,
    power_on: Instant,
    pub enabled: bool,
    pub autosave: bool,
    pub sectors_read: u64,
    pub sectors_written: u64,
    pub read_commands: u64,
    pub write_commands: u64,
    /// COMRESETs since the phy event counters were reset.
    pub comresets: u32,
    offline_status: u8,
    /// Byte 363 of READ DATA.
    execution_status: u8,
    log: Vec<SelfTestEntry>,
    running: Option<Running>,
    /// The buffer self-test steps read into.
    scratch: Option<Arc<VecMemory>>,
    /// Host-specific logs 80h-9Fh, by (log, page); unwritten pages read as zeros.
    host_logs: HashMap<(u8, u8), LogPage>,
}

impl std::fmt::Debug for SmartState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartState")
            .field("enabled", &self.enabled)
            .field("running", &self.running)
            .field("log", &self.log.len())
            .finish_non_exhaustive()
    }
}

impl Default for SmartState {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

/// What to do next for a self-test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub lba: u64,
    pub sectors: u32,
}

impl SmartState {
    /// State at power-on, time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let power_on = clock.now();
        SmartState {
            clock,
            power_on,
            enabled: true,
            autosave: true,
            sectors_read: 0,
            sectors_written: 0,
            read_commands: 0,
            write_commands: 0,
            comresets: 0,
            offline_status: 0,
            execution_status: 0,
            log: Vec::new(),
            running: None,
            scratch: None,
            host_logs: HashMap::new(),
        }
    }

    /// Time since power-on (the drive's power-on is satavm's start).
    pub fn uptime(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.power_on)
    }

    pub fn power_on_hours(&self) -> u64 {
        self.uptime().as_secs() / 3600
    }

    /// The attribute values.
    pub fn counters(&self) -> Counters {
        Counters {
            power_on_hours: self.power_on_hours(),
            // One power-on: this run of satavm.
            power_cycles: 1,
            sectors_read: self.sectors_read,
            sectors_written: self.sectors_written,
            temperature: TEMPERATURE_C,
        }
    }

    /// The off-line/self-test fields of READ DATA for a medium of `capacity` sectors.
    pub fn status(&self, capacity: u64) -> SelfTestStatus {
        let secs = capacity.saturating_mul(512) / SELF_TEST_BYTES_PER_SEC;
        SelfTestStatus {
            offline_status: self.offline_status,
            execution_status: self.execution_status,
            extended_minutes: u16::try_from(secs / 60 + 1).unwrap_or(u16::MAX),
        }
    }

    /// The self-test log, oldest first.
    pub fn log(&self) -> &[SelfTestEntry] {
        &self.log
    }

    /// True while a self-test runs.
    pub fn testing(&self) -> bool {
        self.running.is_some()
    }

    /// EXECUTE OFF-LINE IMMEDIATE in off-line mode: false if `sub` is not offered (the
    /// command aborts). A started test's first step is [`SmartState::next_step`].
    pub fn execute_offline(&mut self, sub: u8, capacity: u64) -> bool {
        match sub {
            subcommand::OFFLINE_COLLECTION => {
                // Nothing to collect: completed at once without error.
                self.offline_status = 0x02;
                true
            }
            subcommand::SHORT | subcommand::EXTENDED => {
                if self.running.is_some() {
                    // A new self-test while one runs: the old one is aborted by the host.
                    self.finish(status::ABORTED_BY_HOST, None);
                }
                let steps = plan(sub, capacity);
                self.running = Some(Running {
                    subcommand: sub,
                    total: steps.len().max(1),
                    steps,
                    in_flight: false,
                });
                self.update_progress();
                true
            }
            subcommand::ABORT => {
                if self.running.is_some() {
                    self.finish(status::ABORTED_BY_HOST, None);
                }
                true
            }
            _ => false,
        }
    }

    /// The step to hand to the engine now, if the test has one that is not in flight yet.
    /// A test with no step left is logged as completed.
    pub fn next_step(&mut self) -> Option<Step> {
        let r = self.running.as_mut()?;
        if r.in_flight {
            return None;
        }
        match r.steps.first() {
            Some(&(lba, sectors)) => {
                r.in_flight = true;
                Some(Step { lba, sectors })
            }
            None => {
                self.finish(status::COMPLETED, None);
                None
            }
        }
    }

    /// The step in flight ended; `failed_lba` is the first LBA it could not read.
    pub fn step_done(&mut self, failed: Option<u64>) {
        let Some(r) = self.running.as_mut() else {
            return;
        };
        if !r.in_flight {
            return;
        }
        r.in_flight = false;
        if let Some(lba) = failed {
            self.finish(status::READ_FAILURE, Some(lba));
            return;
        }
        r.steps.remove(0);
        self.update_progress();
    }

    /// The engine forgot the step in flight (the port stopped its engine): read it again.
    pub fn step_lost(&mut self) {
        if let Some(r) = self.running.as_mut() {
            r.in_flight = false;
        }
    }

    /// COMRESET or software reset: a running self-test is interrupted (status 2h).
    pub fn reset(&mut self) {
        if self.running.is_some() {
            self.finish(status::INTERRUPTED_BY_RESET, None);
        }
        self.comresets = self.comresets.saturating_add(1);
    }

    /// The data path a step reads into: the drive's own buffer.
    pub fn scratch_path(&mut self, sectors: u32) -> DataPath {
        let len = sectors.min(STEP_SECTORS) * 512;
        let mem = self
            .scratch
            .get_or_insert_with(|| Arc::new(VecMemory::new(STEP_SECTORS as usize * 512)))
            .clone();
        DataPath::new(mem, vec![PrdEntry { addr: 0, len }])
    }

    fn update_progress(&mut self) {
        if let Some(r) = &self.running {
            let left = (r.steps.len() * 10).div_ceil(r.total).min(9) as u8;
            self.execution_status = status::IN_PROGRESS << 4 | left;
        }
    }

    fn finish(&mut self, st: u8, failing_lba: Option<u64>) {
        let Some(r) = self.running.take() else {
            return;
        };
        let left = if st == status::COMPLETED {
            0
        } else {
            (r.steps.len() * 10).div_ceil(r.total).min(9) as u8
        };
        self.execution_status = st << 4 | left;
        self.log.push(SelfTestEntry {
            subcommand: r.subcommand,
            status: st << 4 | left,
            hours: u16::try_from(self.power_on_hours()).unwrap_or(u16::MAX),
            failing_lba,
        });
        if self.log.len() > LOG_ENTRIES {
            self.log.remove(0);
        }
    }

    /// Page `page` of host-specific log `log` (80h-9Fh); None past the log's 16 pages.
    pub fn host_log(&self, log: u8, page: u16) -> Option<LogPage> {
        let page = u8::try_from(page)
            .ok()
            .filter(|&p| u16::from(p) < HOST_SPECIFIC_PAGES)?;
        Some(
            self.host_logs
                .get(&(log, page))
                .copied()
                .unwrap_or([0; 512]),
        )
    }

    /// Store page `page` of host-specific log `log`; false past the log's end.
    pub fn write_host_log(&mut self, log: u8, page: u16, data: &LogPage) -> bool {
        match u8::try_from(page) {
            Ok(p) if u16::from(p) < HOST_SPECIFIC_PAGES => {
                self.host_logs.insert((log, p), *data);
                true
            }
            _ => false,
        }
    }
}

impl super::EmulatedDrive {
    /// Hand the running self-test's next step to the engine, if it has one to start.
    pub(super) fn advance_self_test(&mut self) {
        while let Some(step) = self.smart.next_step() {
            let data = self.smart.scratch_path(step.sectors);
            let op = MediaOp::Read {
                lba: step.lba,
                sectors: step.sectors,
            };
            match self
                .io
                .start(SELF_TEST_SLOT, op, Report::SelfTest, data, self.capacity)
            {
                Ok(()) => return,
                // Cannot happen for steps inside the medium; end the test as failed there.
                Err(_) => self.smart.step_done(Some(step.lba)),
            }
        }
    }

    /// Count a media command that ended well (SMART attributes, device statistics).
    pub(super) fn count_media(&mut self, done: &media::Done) {
        let sectors = u64::from(done.completion.bytes_transferred) / 512;
        match done.op {
            MediaOp::Read { .. } => {
                self.smart.sectors_read += sectors;
                self.smart.read_commands += 1;
            }
            MediaOp::Write { .. } => {
                self.smart.sectors_written += sectors;
                self.smart.write_commands += 1;
            }
            MediaOp::Flush | MediaOp::Trim { .. } => {}
        }
    }
}

/// The steps of a self-test over `capacity` sectors.
fn plan(sub: u8, capacity: u64) -> Vec<(u64, u32)> {
    let step = u64::from(STEP_SECTORS);
    let whole = capacity.div_ceil(step);
    let starts: Vec<u64> = if sub == subcommand::EXTENDED || whole <= SHORT_TEST_STEPS {
        (0..whole).map(|i| i * step).collect()
    } else {
        // Spread: step i starts at i/(n-1) of the way to the last step's start.
        let last = capacity.saturating_sub(step);
        (0..SHORT_TEST_STEPS)
            .map(|i| (u128::from(last) * u128::from(i) / u128::from(SHORT_TEST_STEPS - 1)) as u64)
            .collect()
    };
    starts
        .into_iter()
        .map(|lba| (lba, (capacity - lba).min(step) as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn plans_cover_the_medium() {
        let ext = plan(subcommand::EXTENDED, 5000);
        assert_eq!(ext, vec![(0, 2048), (2048, 2048), (4096, 904)]);
        let short = plan(subcommand::SHORT, 1 << 30);
        assert_eq!(short.len(), SHORT_TEST_STEPS as usize);
        assert_eq!(short[0], (0, 2048));
        assert_eq!(*short.last().unwrap(), ((1 << 30) - 2048, 2048));
        assert_eq!(plan(subcommand::SHORT, 100), vec![(0, 100)]);
    }

    #[test]
    fn a_test_runs_step_by_step_and_is_logged() {
        let clock = Arc::new(ManualClock::default());
        let mut s = SmartState::with_clock(clock.clone());
        clock.advance(Duration::from_secs(7300));
        assert_eq!(s.power_on_hours(), 2);
        assert!(s.execute_offline(subcommand::EXTENDED, 5000));
        assert_eq!(s.status(5000).execution_status, 0xf9);
        let a = s.next_step().unwrap();
        assert_eq!(s.next_step(), None, "one step at a time");
        assert_eq!((a.lba, a.sectors), (0, 2048));
        s.step_done(None);
        assert_eq!(s.status(5000).execution_status, 0xf7);
        s.next_step().unwrap();
        s.step_lost();
        assert_eq!(
            s.next_step().unwrap().lba,
            2048,
            "a lost step is read again"
        );
        s.step_done(None);
        s.next_step().unwrap();
        s.step_done(None);
        assert_eq!(s.next_step(), None);
        assert!(!s.testing());
        assert_eq!(
            s.log(),
            &[SelfTestEntry {
                subcommand: 2,
                status: 0x00,
                hours: 2,
                failing_lba: None
            }]
        );
        // A failing read, an abort, a reset.
        s.execute_offline(subcommand::SHORT, 5000);
        s.next_step().unwrap();
        s.step_done(Some(77));
        assert_eq!(s.log()[1].status >> 4, status::READ_FAILURE);
        assert_eq!(s.log()[1].failing_lba, Some(77));
        s.execute_offline(subcommand::SHORT, 5000);
        s.execute_offline(subcommand::ABORT, 5000);
        assert_eq!(s.log()[2].status >> 4, status::ABORTED_BY_HOST);
        s.execute_offline(subcommand::SHORT, 5000);
        s.reset();
        assert_eq!(s.log()[3].status >> 4, status::INTERRUPTED_BY_RESET);
        assert!(
            !s.execute_offline(0x81, 5000),
            "captive mode is not offered"
        );
    }

    #[test]
    fn host_logs_store_sixteen_pages() {
        let mut s = SmartState::default();
        assert_eq!(s.host_log(0x80, 3), Some([0; 512]));
        assert!(s.write_host_log(0x80, 3, &[7; 512]));
        assert_eq!(s.host_log(0x80, 3), Some([7; 512]));
        assert!(!s.write_host_log(0x80, 16, &[7; 512]));
        assert_eq!(s.host_log(0x80, 16), None);
    }
}
