//! Counting QEMU's stalls (`scripts/rig stalls`, tests/rig/README.md "QEMU stalls"): long L1
//! boots, alternating between the L0 QEMUs named so that both see the same machine load, each
//! running tests/rig/stall/stall-probe.sh (12 L2 boots with I/O, the fault drives in L1). A
//! boot passed, stalled idle, stalled spinning, or failed otherwise; one line a boot, the
//! lines in target/rig/stalls.tsv, then a table. The logs of a boot that did not pass are
//! kept in target/rig/logs-stall-QEMU-boot-N/.

use std::fmt::Write as _;
use std::path::Path;

use crate::prepare::host::Log;
use crate::prepare::knobs::QemuChoice;
use crate::prepare::{self, Knobs, Mode, Satavm};
use crate::run;
use crate::stall::Stall;
use crate::Error;

/// The probe's per-scenario limit in L1 (its 12 L2 boots take about 3 minutes).
const PROBE_TIMEOUT: u64 = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Stalled(Stall),
    /// Anything else: a failed probe, a timeout, a boot that never started.
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Stalled(Stall::Idle) => "stalled-idle",
            Verdict::Stalled(Stall::Silent) => "stalled-spinning",
            Verdict::Fail => "fail",
        }
    }
}

/// One long boot's result.
#[derive(Debug, Clone, PartialEq)]
pub struct LongBoot {
    pub qemu: QemuChoice,
    pub index: u32,
    pub verdict: Verdict,
    /// L2 boots the probe finished ("probe: L2 boot N done" lines).
    pub l2_boots: u32,
    pub wall_secs: f64,
}

pub fn qemu_name(q: QemuChoice) -> &'static str {
    match q {
        QemuChoice::Qemu10 => "10",
        QemuChoice::Qemu7_2 => "7.2",
    }
}

/// How many of the probe's L2 boots ended, from its log.
pub fn l2_boots_done(log: &str) -> u32 {
    let n = log
        .lines()
        .filter(|l| {
            l.strip_prefix("probe: L2 boot ")
                .and_then(|rest| rest.split_once(' '))
                .is_some_and(|(n, rest)| n.parse::<u32>().is_ok() && rest.starts_with("done"))
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One long boot of the probe on `qemu`, its logs in `logs`.
fn long_boot(
    base: &Knobs,
    qemu: QemuChoice,
    index: u32,
    satavm: &Satavm,
    log: Log<'_>,
) -> LongBoot {
    let mut knobs = base.clone();
    knobs.qemu = qemu;
    knobs.scenario_dir = base.rig_src().join("stall");
    knobs.logs = base.rig_dir.join(format!("logs-stall-{}", qemu_name(qemu)));
    let t0 = std::time::Instant::now();
    let names = vec!["stall-probe".to_string()];
    let mode = Mode::Run {
        names: names.clone(),
        timeout: PROBE_TIMEOUT,
    };
    let result = prepare::boot(&knobs, mode, satavm, log).and_then(|boot| {
        run::run(&boot.prepared, &boot.names, boot.overall, &mut |l| {
            eprintln!("{l}")
        })
    });
    let (verdict, l2_boots) = match result {
        Ok(report) => {
            let outcome = report.outcomes.first();
            let done = outcome.map_or(0, |o| l2_boots_done(&o.log));
            let verdict = match report.stall {
                Some(stall) => Verdict::Stalled(stall),
                None if report.passed() => Verdict::Pass,
                None => Verdict::Fail,
            };
            (verdict, done)
        }
        Err(e) => {
            log(&format!(
                "rig: long boot {index} on QEMU {}: {e}",
                qemu_name(qemu)
            ));
            (Verdict::Fail, 0)
        }
    };
    if verdict != Verdict::Pass {
        // The next boot writes the same logs: keep this one's (console, probe log, QEMU's).
        let kept = base
            .rig_dir
            .join(format!("logs-stall-{}-boot-{index}", qemu_name(qemu)));
        let _ = std::fs::remove_dir_all(&kept);
        match std::fs::rename(&knobs.logs, &kept) {
            Ok(()) => {
                for f in ["results.txt", "heartbeat.txt", "qemu.out"] {
                    let _ = std::fs::copy(knobs.build().join(f), kept.join(f));
                }
                log(&format!(
                    "long boot {index}: its logs are in {}",
                    kept.display()
                ))
            }
            Err(e) => log(&format!("long boot {index}: could not keep its logs: {e}")),
        }
    }
    LongBoot {
        qemu,
        index,
        verdict,
        l2_boots,
        wall_secs: t0.elapsed().as_secs_f64(),
    }
}

pub fn tsv_line(b: &LongBoot) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{:.0}\n",
        qemu_name(b.qemu),
        b.index,
        b.verdict.as_str(),
        b.l2_boots,
        b.wall_secs
    )
}

/// The summary table, a row per QEMU.
pub fn table(qemus: &[QemuChoice], boots: &[LongBoot]) -> String {
    let mut t = String::from(
        "QEMU  long boots  stalled (idle)  stalled (spinning)  failed otherwise  L2 boots done\n",
    );
    for &q in qemus {
        let mine: Vec<&LongBoot> = boots.iter().filter(|b| b.qemu == q).collect();
        let count = |v: Verdict| mine.iter().filter(|b| b.verdict == v).count();
        let _ = writeln!(
            t,
            "{:<5} {:>10} {:>15} {:>19} {:>17} {:>14}",
            qemu_name(q),
            mine.len(),
            count(Verdict::Stalled(Stall::Idle)),
            count(Verdict::Stalled(Stall::Silent)),
            count(Verdict::Fail),
            mine.iter().map(|b| u64::from(b.l2_boots)).sum::<u64>()
        );
    }
    t
}

/// `boots` long boots per QEMU of `qemus`, alternating. With `lock`, each boot holds that
/// file's flock (other rig work on the machine then runs between boots, never beside one).
pub fn count(
    knobs: &Knobs,
    boots: u32,
    qemus: &[QemuChoice],
    satavm: &Satavm,
    lock: Option<&Path>,
    log: Log<'_>,
) -> Result<Vec<LongBoot>, Error> {
    let tsv = knobs.rig_dir.join("stalls.tsv");
    std::fs::create_dir_all(&knobs.rig_dir).map_err(|e| Error::io(&knobs.rig_dir, e))?;
    let mut text = String::from("qemu\tboot\tresult\tl2_boots_done\twall_s\n");
    std::fs::write(&tsv, &text).map_err(|e| Error::io(&tsv, e))?;
    let mut all = Vec::new();
    for index in 1..=boots {
        for &q in qemus {
            let _held = lock.map(Flock::take).transpose()?;
            let b = long_boot(knobs, q, index, satavm, log);
            let line = tsv_line(&b);
            log(&format!("stalls: {}", line.trim_end()));
            text.push_str(&line);
            std::fs::write(&tsv, &text).map_err(|e| Error::io(&tsv, e))?;
            all.push(b);
        }
    }
    Ok(all)
}

/// An exclusive flock on a file, released when dropped.
struct Flock(std::fs::File);

impl Flock {
    fn take(path: &Path) -> Result<Flock, Error> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(Error::io(path, std::io::Error::last_os_error()));
        }
        Ok(Flock(file))
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as in `take`; the descriptor is still open.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_probe_lines() {
        let log = "probe: L2 boot 1 done at 40.1 s of L1 uptime\n\
            something else\nprobe: L2 boot 2 done at 55.0 s of L1 uptime\n\
            probe: L2 boot x done\nprobe: L2 boot 3 failed\n";
        assert_eq!(l2_boots_done(log), 2);
    }

    #[test]
    fn the_table_counts_each_kind_per_qemu() {
        let b = |qemu, verdict, l2_boots| LongBoot {
            qemu,
            index: 1,
            verdict,
            l2_boots,
            wall_secs: 170.0,
        };
        let boots = [
            b(QemuChoice::Qemu10, Verdict::Pass, 12),
            b(QemuChoice::Qemu10, Verdict::Stalled(Stall::Silent), 4),
            b(QemuChoice::Qemu7_2, Verdict::Stalled(Stall::Idle), 9),
            b(QemuChoice::Qemu7_2, Verdict::Fail, 0),
        ];
        let t = table(&[QemuChoice::Qemu7_2, QemuChoice::Qemu10], &boots);
        let rows: Vec<Vec<&str>> = t
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0], ["7.2", "2", "1", "0", "1", "9"]);
        assert_eq!(rows[1], ["10", "2", "0", "1", "0", "16"]);
        assert_eq!(tsv_line(&boots[1]), "10\t1\tstalled-spinning\t4\t170\n");
    }
}
