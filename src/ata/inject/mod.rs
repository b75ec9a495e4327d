//! Fault injection: a [`SataDevice`] wrapper that makes any drive (emulated or pass-through)
//! misbehave on purpose, by the [`Rule`]s of `--inject` / `--inject-file`
//! (syntax in [`rule`]).
//!
//! It sits in the ATA layer, between the port and the real device, and acts the way a drive
//! would:
//! - an injected error fails the command in the wrapper, without sending it on: a non-queued
//!   command ends with a Register D2H FIS (status 51h, the error bits, for UNC/IDNF the LBA);
//!   a queued (NCQ) command is accepted, then ends with a Set Device Bits FIS with ERR and
//!   SActive clear for it; like a drive (SATA 3.x 13.6.5) the wrapper then aborts the other
//!   outstanding queued commands, aborts new queued ones, and answers READ LOG (DMA) EXT of
//!   the NCQ Command Error log (10h) with the failed tag, status, error and LBA; reading it
//!   leaves that state;
//! - `delay` holds the real device's completion back; `drop` throws it away;
//! - `link-down` aborts everything the device holds and reports [`LinkEvent::Lost`]; after
//!   the outage it reports [`LinkEvent::Restored`]. The port turns those into PxSSTS,
//!   PxSERR and PxIS changes (see `crate::ahci` `link`): the link is a port matter, the
//!   wrapper only says when the device is gone, through [`SataDevice::poll_link`].
//!
//! Nothing here sleeps or starts a thread: what is due later (a delayed completion, the end of
//! an outage, a time-triggered link drop) is a deadline the wrapper reports through
//! [`SataDevice::next_deadline`]; the VMM's event loop arms its timer for it and the port
//! collects what is due when it fires. Time comes from a [`Clock`] (tests move their own).

pub mod control;
pub mod rule;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ata::command::{opcode, protocol, Protocol};
use crate::ata::log::{self, NcqError};
use crate::ata::registers::{status, SECTOR_SIZE};
use crate::ata::taskfile::{
    d2h_abort, d2h_error, d2h_good, with_lba, FpdmaCommand, Taskfile, STATUS_ERROR,
};
use crate::clock::{Clock, SystemClock};
use crate::sata::{
    Completion, CompletionNotifier, DataPath, Fis, LinkEvent, PioSetup, RegisterD2h, RegisterH2d,
    SataDevice, SetDeviceBits, Submission,
};
use crate::trace::{Event, Layer, Tracer};

pub use control::{InjectControl, LinkRequest};
pub use rule::{parse_file, Action, InjectedError, OpFilter, Rule, RuleError};

/// What happens to a command's completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Normal,
    Delay(Duration),
    Drop,
}

struct RuleState {
    /// Its id in the [`InjectControl`] (0 without one).
    id: u32,
    rule: Rule,
    /// Commands that matched the filters so far (for `nth`).
    seen: u64,
    /// A time-triggered link-down already fired.
    fired: bool,
}

/// A drive with faults injected; see the module documentation.
pub struct InjectingDevice {
    inner: Box<dyn SataDevice>,
    port: u8,
    rules: Vec<RuleState>,
    notifier: CompletionNotifier,
    tracer: Tracer,
    fate: [Fate; 32],
    /// Completions to hand out at (or after) their time: delayed ones and injected failures.
    held: Vec<(Instant, Completion)>,
    /// An injected NCQ failure the NCQ Command Error log reports until it is read.
    ncq_error: Option<NcqError>,
    /// When the drive saw its first command (the clock of `link-down=after:`).
    started: Option<Instant>,
    /// The link is down until then.
    down_until: Option<Instant>,
    /// The link is down until a [`LinkRequest::Up`].
    down_indefinitely: bool,
    /// Rules and link requests changed at run time, and the rules' generation last copied.
    control: Option<(InjectControl, u64)>,
    /// The control's change count when this device last looked.
    control_seen: u64,
    link_events: VecDeque<LinkEvent>,
    clock: Arc<dyn Clock>,
}

/// The LBA range a read/write command covers, if it is one.
fn lba_range(tf: &Taskfile, proto: Option<Protocol>) -> Option<(u64, u64)> {
    use opcode::*;
    let (lba, n) = match (tf.command, proto) {
        (_, Some(Protocol::Fpdma(_))) => {
            let f = FpdmaCommand::decode(tf);
            (f.lba, u64::from(f.sectors))
        }
        (
            READ_SECTORS
            | READ_SECTORS_EXT
            | READ_DMA
            | READ_DMA_EXT
            | READ_MULTIPLE
            | READ_MULTIPLE_EXT
            | WRITE_SECTORS
            | WRITE_SECTORS_EXT
            | WRITE_DMA
            | WRITE_DMA_EXT
            | WRITE_DMA_FUA_EXT
            | WRITE_MULTIPLE
            | WRITE_MULTIPLE_EXT
            | WRITE_MULTIPLE_FUA_EXT
            | READ_VERIFY_SECTORS
            | READ_VERIFY_SECTORS_EXT,
            _,
        ) => (tf.lba, u64::from(tf.sector_count())),
        _ => return None,
    };
    Some((lba, lba.saturating_add(n.max(1)) - 1))
}

impl InjectingDevice {
    /// Wrap `inner`, the drive on `port`, with the rules that apply to that port.
    pub fn new(
        inner: Box<dyn SataDevice>,
        port: u8,
        rules: &[Rule],
        notifier: CompletionNotifier,
        tracer: Tracer,
    ) -> Self {
        Self::with_clock(inner, port, rules, notifier, tracer, Arc::new(SystemClock))
    }

    /// As [`InjectingDevice::new`], with time from `clock`.
    pub fn with_clock(
        inner: Box<dyn SataDevice>,
        port: u8,
        rules: &[Rule],
        notifier: CompletionNotifier,
        tracer: Tracer,
        clock: Arc<dyn Clock>,
    ) -> Self {
        InjectingDevice {
            inner,
            port,
            rules: rules
                .iter()
                .filter(|r| r.port.is_none_or(|p| p == port))
                .map(|r| RuleState {
                    id: 0,
                    rule: r.clone(),
                    seen: 0,
                    fired: false,
                })
                .collect(),
            notifier,
            tracer,
            fate: [Fate::Normal; 32],
            held: Vec::new(),
            ncq_error: None,
            started: None,
            down_until: None,
            down_indefinitely: false,
            control: None,
            control_seen: u64::MAX,
            link_events: VecDeque::new(),
            clock,
        }
    }

    /// Take rules and link requests from `control` from now on (instead of the rules given
    /// to [`InjectingDevice::new`]).
    pub fn with_control(mut self, control: InjectControl) -> Self {
        self.rules.clear();
        self.control = Some((control, u64::MAX));
        self.sync_control();
        self
    }

    /// Copy the control's rules if they changed (keeping the counts of rules that stay), and
    /// act on a link request.
    fn sync_control(&mut self) {
        let Some((control, generation)) = &self.control else {
            return;
        };
        // Read before looking: a change made meanwhile is seen next time.
        let changes = control.changes();
        if changes == self.control_seen {
            return;
        }
        self.control_seen = changes;
        let request = control.take_link(self.port);
        if let Some((g, rules)) = control.rules_since(*generation, self.port) {
            let mut old = std::mem::take(&mut self.rules);
            self.rules = rules
                .into_iter()
                .map(|(id, rule)| match old.iter().position(|st| st.id == id) {
                    Some(at) => old.swap_remove(at),
                    None => RuleState {
                        id,
                        rule,
                        seen: 0,
                        fired: false,
                    },
                })
                .collect();
            if let Some((_, generation)) = &mut self.control {
                *generation = g;
            }
        }
        match request {
            Some(LinkRequest::Down(duration)) => {
                self.go_down(
                    duration.unwrap_or(Duration::ZERO),
                    "link down (control socket)",
                );
                self.down_indefinitely = duration.is_none();
                if self.down_indefinitely {
                    self.down_until = None;
                }
            }
            Some(LinkRequest::Up) if self.is_down() => {
                self.down_until = None;
                self.down_indefinitely = false;
                self.trace(None, "link_up", "");
                self.link_events.push_back(LinkEvent::Restored);
            }
            _ => {}
        }
    }

    fn is_down(&self) -> bool {
        self.down_until.is_some() || self.down_indefinitely
    }

    /// True if some rule applies to this drive.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The wrapped drive (to use it bare when no rule applies).
    pub fn into_inner(self) -> Box<dyn SataDevice> {
        self.inner
    }

    fn trace(&self, slot: Option<u8>, what: &'static str, rule: &str) {
        self.tracer.emit(|| {
            let e = Event::new(Layer::Inject, what).port(self.port);
            // Only events caused by a rule name one.
            let e = if rule.is_empty() {
                e
            } else {
                e.str("rule", rule.to_string())
            };
            match slot {
                Some(s) => e.slot(s),
                None => e,
            }
        });
    }

    /// The first rule whose filters match, counting matches for `nth`.
    fn matching(&mut self, tf: &Taskfile, range: Option<(u64, u64)>) -> Option<(Rule, u64)> {
        let mut found = None;
        for st in &mut self.rules {
            let r = &st.rule;
            if matches!(r.action, Action::LinkDown { after: Some(_), .. }) {
                continue;
            }
            if r.op.is_some_and(|op| !op.matches(tf.command)) {
                continue;
            }
            let mut first_lba = range.map_or(tf.lba, |(lo, _)| lo);
            if let Some((a, b)) = r.lba {
                match range {
                    Some((lo, hi)) if lo <= b && a <= hi => first_lba = lo.max(a),
                    _ => continue,
                }
            }
            st.seen += 1;
            if r.nth.is_some_and(|n| n != st.seen) {
                continue;
            }
            if found.is_none() {
                found = Some((r.clone(), first_lba));
            }
        }
        found
    }

    fn go_down(&mut self, duration: Duration, rule: &str) {
        self.trace(None, "link_down", rule);
        ::log::info!(
            "fault injection: port {} link down for {} ms ({rule})",
            self.port,
            duration.as_millis()
        );
        self.inner.abort_all();
        self.held.clear();
        self.fate = [Fate::Normal; 32];
        self.down_until = Some(self.clock.now() + duration);
        self.link_events.push_back(LinkEvent::Lost);
        let _ = self.notifier.write(1);
    }

    /// Time-triggered link drops whose time has come, and the end of an outage.
    fn check_timers(&mut self) {
        self.sync_control();
        if self.down_indefinitely {
            return;
        }
        let now = self.clock.now();
        if let Some(until) = self.down_until {
            if now >= until {
                self.down_until = None;
                self.trace(None, "link_up", "");
                self.link_events.push_back(LinkEvent::Restored);
            }
            return;
        }
        let Some(started) = self.started else {
            return;
        };
        let due = self.rules.iter_mut().find_map(|st| match st.rule.action {
            Action::LinkDown {
                after: Some(after),
                duration,
            } if !st.fired && now >= started + after => {
                st.fired = true;
                Some((duration, st.rule.text.clone()))
            }
            _ => None,
        });
        if let Some((duration, text)) = due {
            self.go_down(duration, &text);
        }
    }

    /// Fail a command as the drive would; see the module documentation.
    fn fail(
        &mut self,
        slot: u8,
        tf: &Taskfile,
        proto: Option<Protocol>,
        err: InjectedError,
        lba: u64,
    ) -> Submission {
        let bits = err.bits();
        if let Some(Protocol::Fpdma(_)) = proto {
            let f = FpdmaCommand::decode(tf);
            // The other queued commands are aborted; queued commands are refused until the
            // host reads log page 10h.
            self.inner.abort_all();
            self.ncq_error = Some(NcqError {
                tag: f.tag,
                status: STATUS_ERROR,
                error: bits,
                lba,
                device: tf.device,
                count: tf.count,
                sense: None,
            });
            self.held.push((
                self.clock.now(),
                Completion {
                    slot,
                    fises: vec![Fis::SetDeviceBits(SetDeviceBits {
                        interrupt: true,
                        status: status::DRDY | status::DSC | status::ERR,
                        error: bits,
                        sactive: 0,
                        ..Default::default()
                    })],
                    bytes_transferred: 0,
                },
            ));
            let _ = self.notifier.write(1);
            return Submission::Pending {
                accepted: Some(RegisterD2h {
                    status: status::DRDY,
                    ..Default::default()
                }),
            };
        }
        let d2h = if err.reports_lba() {
            with_lba(d2h_error(bits), lba, tf.lba48)
        } else {
            d2h_error(bits)
        };
        Submission::Complete(Completion {
            slot,
            fises: vec![Fis::RegisterD2h(d2h)],
            bytes_transferred: 0,
        })
    }

    /// READ LOG (DMA) EXT of page 0 of log 10h while an injected NCQ error is pending.
    fn read_ncq_log(&mut self, slot: u8, tf: &Taskfile, data: &DataPath) -> Option<Submission> {
        let is_log_read = matches!(tf.command, opcode::READ_LOG_EXT | opcode::READ_LOG_DMA_EXT);
        let first_page = ((tf.lba >> 8) & 0xff) | ((tf.lba >> 32) & 0xff00);
        if !is_log_read || tf.lba as u8 != log::address::NCQ_COMMAND_ERROR || first_page != 0 {
            return None;
        }
        let err = self.ncq_error.take();
        self.trace(Some(slot), "ncq_log_read", "");
        let page = log::ncq_command_error(err.as_ref());
        let end = |fises| {
            Some(Submission::Complete(Completion {
                slot,
                fises,
                bytes_transferred: SECTOR_SIZE as u32,
            }))
        };
        if tf.count != 1 || data.write_at(0, &page).is_err() {
            return Some(Submission::Complete(Completion {
                slot,
                fises: vec![Fis::RegisterD2h(d2h_abort(tf.device))],
                bytes_transferred: 0,
            }));
        }
        if tf.command == opcode::READ_LOG_DMA_EXT {
            return end(vec![Fis::RegisterD2h(d2h_good())]);
        }
        end(vec![Fis::PioSetup(PioSetup {
            interrupt: true,
            device_to_host: true,
            status: status::DRDY | status::DRQ,
            e_status: status::DRDY | status::DSC,
            transfer_count: SECTOR_SIZE as u16,
            ..Default::default()
        })])
    }
}

impl SataDevice for InjectingDevice {
    fn comreset(&mut self) -> RegisterD2h {
        self.held.clear();
        self.fate = [Fate::Normal; 32];
        self.ncq_error = None;
        self.inner.comreset()
    }

    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        if fis.control & crate::ata::registers::control::SRST != 0 {
            self.held.clear();
            self.fate = [Fate::Normal; 32];
            self.ncq_error = None;
        }
        self.inner.device_control(fis)
    }

    fn submit_packet(
        &mut self,
        slot: u8,
        fis: &RegisterH2d,
        acmd: &[u8; 16],
        data: DataPath,
    ) -> Submission {
        // Rules match ATA commands; ATAPI commands pass, except into a dead link.
        self.fate[usize::from(slot & 31)] = Fate::Normal;
        self.sync_control();
        if self.is_down() {
            self.trace(Some(slot), "lost", "");
            return Submission::Pending { accepted: None };
        }
        self.inner.submit_packet(slot, fis, acmd, data)
    }

    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        let idx = usize::from(slot & 31);
        self.fate[idx] = Fate::Normal;
        self.sync_control();
        if self.is_down() {
            // Sent into a dead link: lost.
            self.trace(Some(slot), "lost", "");
            return Submission::Pending { accepted: None };
        }
        if self.started.is_none() {
            self.started = Some(self.clock.now());
            if self
                .rules
                .iter()
                .any(|st| matches!(st.rule.action, Action::LinkDown { after: Some(_), .. }))
            {
                // The event loop learns the link-down deadline when it next asks.
                let _ = self.notifier.write(1);
            }
        }
        let tf = Taskfile::decode(fis);
        let proto = protocol(tf.command, tf.features);
        if self.ncq_error.is_some() {
            if let Some(s) = self.read_ncq_log(slot, &tf, &data) {
                return s;
            }
            if proto.is_some_and(Protocol::is_queued) {
                return Submission::Complete(Completion {
                    slot,
                    fises: vec![Fis::RegisterD2h(d2h_abort(tf.device))],
                    bytes_transferred: 0,
                });
            }
        }
        let Some((rule, lba)) = self.matching(&tf, lba_range(&tf, proto)) else {
            return self.inner.submit(slot, fis, data);
        };
        self.trace(Some(slot), "fire", &rule.text);
        match rule.action {
            Action::Error(e) => self.fail(slot, &tf, proto, e, lba),
            Action::LinkDown { duration, .. } => {
                self.go_down(duration, &rule.text);
                Submission::Pending { accepted: None }
            }
            Action::Delay(_) | Action::Drop => {
                self.fate[idx] = match rule.action {
                    Action::Delay(d) => Fate::Delay(d),
                    _ => Fate::Drop,
                };
                match self.inner.submit(slot, fis, data) {
                    Submission::Complete(c) => {
                        self.hold(c);
                        Submission::Pending { accepted: None }
                    }
                    pending => pending,
                }
            }
        }
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        self.check_timers();
        for c in self.inner.poll_completions() {
            self.hold(c);
        }
        let now = self.clock.now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.held = later;
        due.into_iter().map(|(_, c)| c).collect()
    }

    fn abort_all(&mut self) {
        self.held.clear();
        self.fate = [Fate::Normal; 32];
        self.inner.abort_all();
    }

    fn max_link_gen(&self) -> u8 {
        self.inner.max_link_gen()
    }

    fn link_negotiated(&mut self, gen: u8) {
        self.inner.link_negotiated(gen)
    }

    fn poll_link(&mut self) -> Option<LinkEvent> {
        self.check_timers();
        if let Some(ev) = self.link_events.pop_front() {
            return Some(ev);
        }
        self.inner.poll_link()
    }

    fn draining(&self) -> bool {
        self.inner.draining()
    }

    fn engine_stats(&self) -> Option<(&'static str, crate::block::EngineStats)> {
        self.inner.engine_stats()
    }

    fn ready_fd(&self) -> Option<RawFd> {
        self.inner.ready_fd()
    }

    /// The earliest of: a held completion's time, the end of an outage, a time-triggered
    /// link drop that has not fired, the real device's own deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let link_drop = || {
            let started = self.started?;
            self.rules
                .iter()
                .filter(|st| !st.fired)
                .filter_map(|st| match st.rule.action {
                    Action::LinkDown {
                        after: Some(after), ..
                    } => Some(started + after),
                    _ => None,
                })
                .min()
        };
        let outage_or_drop = match self.down_until {
            Some(t) => Some(t),
            None if self.down_indefinitely => None,
            None => link_drop(),
        };
        [
            self.held.iter().map(|(t, _)| *t).min(),
            outage_or_drop,
            self.inner.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl InjectingDevice {
    /// A completion from the real device: on time, late, or never, by its slot's fate.
    fn hold(&mut self, c: Completion) {
        let idx = usize::from(c.slot & 31);
        match std::mem::replace(&mut self.fate[idx], Fate::Normal) {
            Fate::Normal => self.held.push((self.clock.now(), c)),
            Fate::Delay(d) => {
                self.trace(Some(c.slot), "delayed", "");
                self.held.push((self.clock.now() + d, c));
            }
            Fate::Drop => self.trace(Some(c.slot), "dropped", ""),
        }
    }
}
