//! Stall detection. Under TCG, L1 (and anything in it) always burns CPU while a scenario runs;
//! QEMU 7.2's vCPU now and then stopped for good (tests/rig/README.md, "QEMU stalls"). A QEMU
//! that used under a second of CPU in a minute has stalled.

use std::time::{Duration, Instant};

/// How long QEMU may use almost no CPU before the boot counts as stalled.
pub const WINDOW: Duration = Duration::from_secs(60);

pub struct StallWatch {
    pid: u32,
    ticks_per_sec: u64,
    last_ticks: u64,
    next_check: Instant,
}

impl StallWatch {
    pub fn new(pid: u32, now: Instant) -> StallWatch {
        // SAFETY: sysconf only reads a configuration value.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        StallWatch {
            pid,
            ticks_per_sec: u64::try_from(tck).ok().filter(|&t| t > 0).unwrap_or(100),
            last_ticks: 0,
            next_check: now + WINDOW,
        }
    }

    /// Called often; true once QEMU used under a second of CPU in the last window.
    pub fn stalled(&mut self, now: Instant) -> bool {
        if now < self.next_check {
            return false;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let ticks = cpu_ticks(&stat).unwrap_or(self.last_ticks);
        let stalled = ticks.saturating_sub(self.last_ticks) < self.ticks_per_sec;
        self.last_ticks = ticks;
        self.next_check = now + WINDOW;
        stalled
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
        let mut watch = StallWatch::new(u32::MAX, t0);
        assert!(!watch.stalled(t0 + WINDOW / 2));
        assert!(watch.stalled(t0 + WINDOW));
        // The next verdict waits for the next window.
        assert!(!watch.stalled(t0 + WINDOW + WINDOW / 2));
    }
}
