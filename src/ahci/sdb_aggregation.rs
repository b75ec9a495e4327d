//! When the device end of a port sends its Set Device Bits FIS: NCQ completion aggregation.
//!
//! A queued command's completion reaches the host as a bit in the SActive field of a Set
//! Device Bits FIS (SATA 3.x 13.6.4.2, 10.5.7), and a device may report any number of finished
//! commands in one SDB FIS, whenever it chooses. Each SDB FIS with I set costs the guest an
//! interrupt and, with Linux's libahci, five register accesses (IS, PxIS read and clear, PxSACT,
//! IS), each a VM exit. When the drive finishes every command before the guest has issued the
//! next one (an image file in the page cache does), reporting each at once turns a QD32
//! workload into QD1: issue, interrupt, issue, interrupt.
//!
//! So a successful queued completion may be held back for a short window while the guest keeps
//! issuing commands, and reported together with the ones that follow in one SDB FIS:
//! - The window scales with the guest's own speed: [`WINDOW_GAPS`] times the typical time
//!   between two of its register accesses (an exit round trip: microseconds on a real host,
//!   a few hundred in the nested rig), within [`MIN_WINDOW`] and the configured maximum.
//!   Every new command issued restarts the window; no completion waits longer than
//!   [`MAX_HOLD_WINDOWS`] windows.
//! - Whether to hold at all is learned: a held completion during whose window the guest
//!   issued nothing means the guest was waiting for it (QD1, a synchronous writer). After
//!   a few such episodes in a row the port reports at once again and only probes now and then (every
//!   [`PROBE_FIRST`] completions, backing off to [`PROBE_MAX`]), so waiting guests pay
//!   almost nothing.
//! - Only completions of a device that keeps up with the guest are held: the command took
//!   less than one window, and at most two other queued commands are still in the device.
//!   A device with a queue of its own is the bottleneck itself, and holding its completions
//!   would only keep the guest from refilling that queue (measured in the rig: 1 MiB
//!   sequential reads at QD4 fell from 246 to about 155 MB/s when they were held).
//! - Anything that is not a plain successful queued completion (an error, a non-queued
//!   command, a PIO or D2H FIS, a PRD interrupt) is reported at once, with everything held
//!   before it.
//!
//! Held commands keep their PxSACT bits: software sees them outstanding, as it would a device
//! that has not sent its SDB FIS yet. Engine stop, COMRESET and HBA reset drop them with the
//! rest of the port's commands.

use std::time::{Duration, Instant};

use crate::sata::Completion;

/// Whether, and how long at most, a port holds queued completions (the VMM's `--ncq-aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AggregationMode {
    /// Every completion is reported as soon as the device returns it.
    #[default]
    Off,
    /// Adaptive holding, the window never longer than `max_window`.
    Auto { max_window: Duration },
}

/// The window in guest register-access gaps.
pub const WINDOW_GAPS: u32 = 8;
/// The shortest window.
pub const MIN_WINDOW: Duration = Duration::from_micros(5);
/// A held completion waits at most this many windows, however busy the guest is.
pub const MAX_HOLD_WINDOWS: u32 = 16;
/// Gaps between register accesses longer than this are idle time, not an exit round trip.
const GAP_CAP: Duration = Duration::from_millis(5);
/// Initial guess of the access gap, before the guest has made any.
const INITIAL_GAP: Duration = Duration::from_micros(20);
/// Completions reported at once before the first probe, and the most between probes.
pub const PROBE_FIRST: u32 = 32;
pub const PROBE_MAX: u32 = 256;
/// Episodes with new commands needed (at most) before waiting guests are served at once again.
const SCORE_MAX: u32 = 4;

/// One run of held completions.
#[derive(Debug, Clone, Copy)]
struct Episode {
    started: Instant,
    last_issue: Option<Instant>,
    issues: u32,
}

/// A port's aggregation state.
#[derive(Debug, Default)]
pub(super) struct SdbAggregation {
    mode: AggregationMode,
    held: Vec<Completion>,
    episode: Option<Episode>,
    /// Moving average of the gap between two guest register accesses, in nanoseconds.
    gap_ns: u64,
    last_access: Option<Instant>,
    /// > 0: the guest has been issuing while completions were held: hold.
    score: u32,
    /// Completions reported at once since the last probe, and the current probe interval.
    since_probe: u32,
    probe_every: u32,
    /// Figures for the statistics: SDB FISes sent for held completions, completions in them.
    pub batches: u64,
    pub batched: u64,
}

impl SdbAggregation {
    /// Start holding (a guest that only waits is recognised after [`SCORE_MAX`] episodes).
    pub fn set_mode(&mut self, mode: AggregationMode) {
        self.mode = mode;
        self.score = SCORE_MAX;
        self.probe_every = PROBE_FIRST;
    }

    /// A guest access to one of the port's registers (to learn the exit round trip).
    pub fn note_access(&mut self, now: Instant) {
        if let Some(prev) = self.last_access {
            let gap = now.saturating_duration_since(prev);
            if gap < GAP_CAP {
                let g = gap.as_nanos() as u64;
                // EWMA, weight 1/8.
                self.gap_ns = if self.gap_ns == 0 {
                    g
                } else {
                    self.gap_ns - self.gap_ns / 8 + g / 8
                };
            }
        }
        self.last_access = Some(now);
    }

    /// Software issued new commands (PxCI bits set).
    pub fn note_issue(&mut self, now: Instant) {
        if let Some(e) = &mut self.episode {
            e.issues += 1;
            e.last_issue = Some(now);
        }
    }

    /// The current window (zero when off).
    pub fn window(&self) -> Duration {
        let Some(max) = (match self.mode {
            AggregationMode::Off => None,
            AggregationMode::Auto { max_window } => Some(max_window),
        }) else {
            return Duration::ZERO;
        };
        let gap = if self.gap_ns == 0 {
            INITIAL_GAP
        } else {
            Duration::from_nanos(self.gap_ns)
        };
        (gap * WINDOW_GAPS).clamp(MIN_WINDOW, max.max(MIN_WINDOW))
    }

    /// When the held completions are due, if any are held.
    pub fn deadline(&self) -> Option<Instant> {
        let e = self.episode?;
        let w = self.window();
        let restart = e.last_issue.unwrap_or(e.started).max(e.started);
        Some((restart + w).min(e.started + w * MAX_HOLD_WINDOWS))
    }

    /// Completions the device returned; `holdable` says, per completion, whether it is a
    /// plain successful queued one. Returns what to report now, in order.
    pub fn offer(
        &mut self,
        now: Instant,
        done: Vec<Completion>,
        holdable: impl Fn(&Completion) -> bool,
    ) -> Vec<Completion> {
        if self.mode == AggregationMode::Off {
            return done;
        }
        if !done.iter().all(&holdable) {
            let mut all = self.take(None);
            all.extend(done);
            return all;
        }
        if self.episode.is_none() {
            if self.score == 0 {
                // The guest was waiting last time: report at once, probing now and then.
                self.since_probe += done.len() as u32;
                if self.since_probe < self.probe_every {
                    return done;
                }
                self.since_probe = 0;
            }
            self.episode = Some(Episode {
                started: now,
                last_issue: None,
                issues: 0,
            });
        }
        self.held.extend(done);
        self.due(now)
    }

    /// The held completions if their deadline has passed (else nothing).
    pub fn due(&mut self, now: Instant) -> Vec<Completion> {
        match self.deadline() {
            Some(d) if now >= d => {
                let e = self.episode;
                self.take(e)
            }
            _ => Vec::new(),
        }
    }

    /// Everything held, now.
    pub fn take_all(&mut self) -> Vec<Completion> {
        self.take(None)
    }

    /// End the episode: learn from it and hand back what it held.
    fn take(&mut self, ended: Option<Episode>) -> Vec<Completion> {
        if let Some(e) = ended.or(self.episode) {
            if e.issues > 0 {
                self.score = SCORE_MAX;
                self.probe_every = PROBE_FIRST;
            } else {
                self.score = self.score.saturating_sub(1);
                if self.score == 0 {
                    self.probe_every = (self.probe_every * 2).min(PROBE_MAX);
                }
            }
        }
        self.episode = None;
        let held = std::mem::take(&mut self.held);
        if held.len() > 1 {
            self.batches += 1;
            self.batched += held.len() as u64;
        }
        held
    }

    /// The port dropped its commands (engine stop, COMRESET, HBA reset, link loss).
    pub fn clear(&mut self) {
        self.held.clear();
        self.episode = None;
    }

    /// How many completions are held.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Held completions.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(slot: u8) -> Completion {
        Completion {
            slot,
            fises: Vec::new(),
            bytes_transferred: 4096,
        }
    }

    fn slots(v: &[Completion]) -> Vec<u8> {
        v.iter().map(|c| c.slot).collect()
    }

    const US: Duration = Duration::from_micros(1);

    /// An aggregator that has seen a guest whose register accesses are `gap` apart.
    fn with_gap(gap: Duration, t0: Instant) -> SdbAggregation {
        let mut a = SdbAggregation::default();
        a.set_mode(AggregationMode::Auto {
            max_window: Duration::from_millis(4),
        });
        for i in 0..64 {
            a.note_access(t0 + gap * i);
        }
        a
    }

    /// Run `n` completions of a guest that waits for each (QD1), each `rtt` after the last.
    fn waiting_guest(a: &mut SdbAggregation, t: &mut Instant, n: u32, rtt: Duration) -> Duration {
        let mut added = Duration::ZERO;
        for i in 0..n {
            *t += rtt;
            let now = *t;
            let got = a.offer(now, vec![c((i % 32) as u8)], |_| true);
            if got.is_empty() {
                let d = a.deadline().expect("held, so a deadline");
                added += d - now;
                *t = d;
                assert_eq!(a.due(d).len(), 1);
            }
        }
        added
    }

    #[test]
    fn off_reports_everything_at_once() {
        let mut a = SdbAggregation::default();
        let t = Instant::now();
        assert_eq!(slots(&a.offer(t, vec![c(1), c(2)], |_| true)), vec![1, 2]);
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn window_follows_the_guest_speed() {
        let t = Instant::now();
        let fast = with_gap(2 * US, t);
        assert_eq!(fast.window(), 16 * US);
        let rig = with_gap(200 * US, t);
        assert_eq!(rig.window(), 1600 * US);
        let slow = with_gap(Duration::from_millis(3), t);
        assert_eq!(
            slow.window(),
            Duration::from_millis(4),
            "capped by max_window"
        );
    }

    #[test]
    fn a_waiting_guest_pays_only_for_rare_probes() {
        let t0 = Instant::now();
        let mut a = with_gap(200 * US, t0);
        let mut t = t0 + Duration::from_secs(1);
        let added = waiting_guest(&mut a, &mut t, 2000, Duration::from_millis(2));
        // SCORE_MAX episodes to learn, then probes after 32, 64, 128, 256, 256, ... completions.
        assert!(added <= a.window() * 16, "added {added:?}");
        assert!(added >= a.window() * SCORE_MAX, "it held, then probed");
        assert_eq!(a.score, 0);
        assert_eq!(a.probe_every, PROBE_MAX);
    }

    #[test]
    fn a_guest_issuing_while_completions_wait_gets_them_in_batches() {
        let t0 = Instant::now();
        let mut a = with_gap(200 * US, t0);
        let mut t = t0 + Duration::from_secs(1);
        // A waiting guest first: the port learns to report at once.
        waiting_guest(&mut a, &mut t, 500, Duration::from_millis(2));
        assert_eq!(a.score, 0);
        // Now a burst: the guest issues a command every 600 µs, each finishes 100 µs later.
        let mut reported = Vec::new();
        let mut reports = 0;
        for i in 0..600u32 {
            t += 500 * US;
            a.note_issue(t);
            t += 100 * US;
            let got = a.offer(t, vec![c((i % 32) as u8)], |_| true);
            reports += u32::from(!got.is_empty());
            reported.extend(got);
        }
        reported.extend(a.take_all());
        assert_eq!(reported.len(), 600, "nothing lost");
        assert_eq!(a.score, SCORE_MAX, "the probe found the burst");
        // At most one probe interval reported one by one, then batches of up to
        // MAX_HOLD_WINDOWS windows' worth (25.6 ms / 600 µs = 42 completions).
        assert!(
            reports <= PROBE_MAX + 600 / 40,
            "{reports} reports for 600 completions"
        );
        assert!(
            a.batched >= 600 - u64::from(PROBE_MAX),
            "{} batched",
            a.batched
        );
    }

    #[test]
    fn a_burst_is_reported_when_the_guest_pauses() {
        let t0 = Instant::now();
        let mut a = with_gap(200 * US, t0);
        let mut t = t0 + Duration::from_secs(1);
        let mut reported = Vec::new();
        for i in 0..8u8 {
            t += 500 * US;
            a.note_issue(t);
            t += 100 * US;
            reported.extend(a.offer(t, vec![c(i)], |_| true));
        }
        assert!(reported.is_empty(), "held while the guest keeps issuing");
        let d = a.deadline().unwrap();
        assert_eq!(
            d,
            t - 100 * US + a.window(),
            "a window after the last issue"
        );
        assert!(a.due(d - US).is_empty());
        reported.extend(a.due(d));
        assert_eq!(slots(&reported), (0..8).collect::<Vec<_>>());
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn holding_is_bounded_however_busy_the_guest_is() {
        let t0 = Instant::now();
        let mut a = with_gap(10 * US, t0);
        a.score = SCORE_MAX;
        let start = t0 + Duration::from_secs(1);
        assert!(a.offer(start, vec![c(0)], |_| true).is_empty());
        let mut t = start;
        let limit = start + a.window() * MAX_HOLD_WINDOWS;
        loop {
            t += 20 * US;
            a.note_issue(t);
            let got = a.due(t);
            if !got.is_empty() {
                assert_eq!(slots(&got), vec![0]);
                break;
            }
            assert!(t < limit, "still held at {:?}", t - start);
        }
        assert!(t >= limit);
    }

    #[test]
    fn anything_but_a_plain_queued_completion_flushes_in_order() {
        let t0 = Instant::now();
        let mut a = with_gap(10 * US, t0);
        a.score = SCORE_MAX;
        let t = t0 + Duration::from_secs(1);
        assert!(a.offer(t, vec![c(3), c(4)], |_| true).is_empty());
        let got = a.offer(t, vec![c(9)], |x| x.slot != 9);
        assert_eq!(slots(&got), vec![3, 4, 9]);
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn clear_drops_what_is_held() {
        let t0 = Instant::now();
        let mut a = with_gap(10 * US, t0);
        a.score = SCORE_MAX;
        assert!(a.offer(t0, vec![c(1)], |_| true).is_empty());
        a.clear();
        assert_eq!(a.held(), 0);
        assert_eq!(a.deadline(), None);
        assert!(a.due(t0 + Duration::from_secs(1)).is_empty());
    }
}
