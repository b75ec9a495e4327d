//! Stall detection. Under TCG, L1 (and anything in it) always burns CPU while a scenario runs,
//! and L1's /init writes a heartbeat line on its third serial port every few seconds
//! (tests/rig/init/l1-init). QEMU's vCPU now and then stops for good (tests/rig/README.md,
//! "QEMU stalls") in one of two ways, both of which this watch calls a stall:
//! - idle: QEMU uses under a second of CPU in a minute (the emulated CPU halted with nothing
//!   to wake it: QEMU 7.2's kind);
//! - silent: QEMU keeps a CPU busy but L1's heartbeat stopped for a minute (the emulated CPU
//!   runs L2 and never takes L1's pending timer interrupt: seen with QEMU 10).

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long QEMU may use almost no CPU, or L1 stay silent, before the boot counts as stalled.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How a stalled L1 looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// QEMU used under a second of CPU in the last window.
    Idle,
    /// QEMU was busy, but L1's heartbeat did not grow in the last window.
    Silent,
}

impl Stall {
    /// What the harness says about it (tests/rig.rs looks for "L1 stalled").
    pub fn describe(self) -> &'static str {
        match self {
            Stall::Idle => "QEMU used under 1 s of CPU in the last 60 s: L1 stalled (idle)",
            Stall::Silent => {
                "no heartbeat from L1 in the last 60 s while QEMU kept a CPU busy: L1 stalled (spinning)"
            }
        }
    }
}

pub struct StallWatch {
    pid: u32,
    heartbeat: Option<PathBuf>,
    ticks_per_sec: u64,
    last_ticks: u64,
    last_beat_len: u64,
    next_check: Instant,
}

impl StallWatch {
    /// Watches QEMU process `pid` and, if given, the file L1's heartbeat port writes to.
    pub fn new(pid: u32, heartbeat: Option<PathBuf>, now: Instant) -> StallWatch {
        // SAFETY: sysconf only reads a configuration value.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        StallWatch {
            pid,
            heartbeat,
            ticks_per_sec: u64::try_from(tck).ok().filter(|&t| t > 0).unwrap_or(100),
            last_ticks: 0,
            last_beat_len: 0,
            next_check: now + WINDOW,
        }
    }

    /// Called often; says once per window whether L1 stalled in it.
    pub fn stalled(&mut self, now: Instant) -> Option<Stall> {
        if now < self.next_check {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let ticks = cpu_ticks(&stat).unwrap_or(self.last_ticks);
        let idle = ticks.saturating_sub(self.last_ticks) < self.ticks_per_sec;
        self.last_ticks = ticks;
        // The heartbeat counts only once L1 has started it (the first window is the boot).
        let beat_len = self
            .heartbeat
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        let silent = self.last_beat_len > 0 && beat_len == self.last_beat_len;
        self.last_beat_len = beat_len;
        self.next_check = now + WINDOW;
        if idle {
            Some(Stall::Idle)
        } else if silent {
            Some(Stall::Silent)
        } else {
            None
        }
    }
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line. The command name (field 2) is
/// in parentheses and may hold spaces and parentheses itself: fields are counted after the
/// last ')'.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ')' comes field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        let stat = "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 1 0 0 0 1234 56 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(1290));
    }

    #[test]
    fn a_name_with_spaces_and_parentheses() {
        let stat = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 10 5 0 0";
        assert_eq!(cpu_ticks(stat), Some(15));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(cpu_ticks("1 (x) R 1"), None);
    }

    #[test]
    fn no_verdict_before_a_window_has_passed() {
        let t0 = Instant::now();
        // A pid that cannot exist: no CPU used at all.
        let mut watch = StallWatch::new(u32::MAX, None, t0);
        assert_eq!(watch.stalled(t0 + WINDOW / 2), None);
        assert_eq!(watch.stalled(t0 + WINDOW), Some(Stall::Idle));
        // The next verdict waits for the next window.
        assert_eq!(watch.stalled(t0 + WINDOW + WINDOW / 2), None);
    }

    /// A process that keeps using CPU: this test's own, busy for a while each window.
    fn burn(d: Duration) {
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < d {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn a_busy_qemu_with_a_silent_l1_is_a_stall_once_the_heartbeat_began() {
        let dir = std::env::temp_dir().join(format!("satavm-rig-stall-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let beat = dir.join("heartbeat.txt");
        let _ = std::fs::remove_file(&beat);
        let t0 = Instant::now();
        let mut watch = StallWatch::new(std::process::id(), Some(beat.clone()), t0);
        // Ticks: busy for over a second of CPU before every verdict.
        let busy = || burn(Duration::from_millis(1200));
        // Window 1: no heartbeat file yet (L1 still booting): no stall.
        busy();
        assert_eq!(watch.stalled(t0 + WINDOW), None);
        // Window 2: L1 beats.
        std::fs::write(&beat, "12.5\n").unwrap();
        busy();
        assert_eq!(watch.stalled(t0 + 2 * WINDOW), None);
        // Window 3: it beat again.
        std::fs::write(&beat, "12.5\n17.5\n").unwrap();
        busy();
        assert_eq!(watch.stalled(t0 + 3 * WINDOW), None);
        // Window 4: silence while QEMU (here: this process) kept busy.
        busy();
        assert_eq!(watch.stalled(t0 + 4 * WINDOW), Some(Stall::Silent));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
