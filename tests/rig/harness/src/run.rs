//! One L1 boot that runs scenarios: QEMU started with the results port on a file, polled
//! cheaply (this machine's cores are QEMU's), scenarios reported as they end, the scenarios'
//! requests carried out over QMP, and three ways out besides L1 powering off: the overall
//! timeout, a stall, and results that are in while L1 does not power off.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::machine::Machine;
use crate::prepared::Prepared;
use crate::protocol::Results;
use crate::stall::{Stall, StallWatch};
use crate::{qmp, Error};

/// How long L1 may take to power off after its last result.
const POWER_OFF_GRACE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// One scenario's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub name: String,
    /// Its exit status in L1; None if it never finished.
    pub rc: Option<i32>,
    pub secs: Option<f64>,
    pub log: String,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.rc == Some(0)
    }
}

/// What one boot came to.
#[derive(Debug)]
pub struct Report {
    /// One per scenario asked for, in that order.
    pub outcomes: Vec<Outcome>,
    /// L1 stalled (idle or spinning, see `stall`) and QEMU was stopped.
    pub stall: Option<Stall>,
    /// The overall timeout ran out.
    pub timed_out: bool,
    /// Seconds from QEMU's start to L1's last result, if it came.
    pub t_done: Option<f64>,
    /// Seconds from QEMU's start to L1 being ready (from L1's uptime), if known.
    pub t_ready: Option<f64>,
    /// Seconds QEMU ran.
    pub wall: f64,
    pub qemu_status: Option<ExitStatus>,
    /// QEMU's own messages, less the ones the rig expects.
    pub qemu_said: String,
}

impl Report {
    /// Every scenario passed and L1 finished.
    pub fn passed(&self) -> bool {
        self.complete() && self.outcomes.iter().all(Outcome::passed)
    }

    /// L1 gave its results (no stall, no timeout).
    pub fn complete(&self) -> bool {
        self.t_done.is_some() && !self.timed_out && self.stall.is_none()
    }
}

/// Boots L1 for `names` (the payload `scripts/rig` built for them), prints a line per event
/// through `say`, writes logs into the prepared log directory.
pub fn run(
    prepared: &Prepared,
    names: &[String],
    overall: Duration,
    say: &mut dyn FnMut(String),
) -> Result<Report, Error> {
    let logs = &prepared.logs;
    fs::create_dir_all(logs).map_err(|e| Error::io(logs, e))?;
    let results_path = prepared.build.join("results.txt");
    let console = logs.join("console.log");
    // L1's heartbeat (its third serial port): the stall watch's sign of life.
    let heartbeat = prepared.build.join("heartbeat.txt");
    for f in [&results_path, &console, &heartbeat] {
        let _ = fs::remove_file(f);
    }
    let _ = fs::remove_file(logs.join("summary.tsv"));
    let _ = fs::remove_file(logs.join("qmp.log"));
    for name in names {
        let _ = fs::remove_file(logs.join(format!("{name}.log")));
    }
    fs::write(&results_path, "").map_err(|e| Error::io(&results_path, e))?;

    let machine = Machine::new(prepared)?;
    let mut cmd = machine.command();
    cmd.args(["-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", results_path.display()))
        .arg("-serial")
        .arg(format!("file:{}", heartbeat.display()));
    let qmp_socket = prepared
        .fault_drives
        .then(|| std::env::temp_dir().join(format!("satavm-rig-qmp.{}", std::process::id())));
    if let Some(sock) = &qmp_socket {
        let _ = fs::remove_file(sock);
        cmd.arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()));
    }
    let qemu_out = prepared.build.join("qemu.out");
    let out = fs::File::create(&qemu_out).map_err(|e| Error::io(&qemu_out, e))?;
    let err = out.try_clone().map_err(|e| Error::io(&qemu_out, e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);

    say(format!("rig: booting L1 for: {}", names.join(" ")));
    let t0 = Instant::now();
    let mut child = cmd.spawn().map_err(|e| Error::io(&prepared.qemu_bin, e))?;
    let mut watch = StallWatch::new(child.id(), Some(heartbeat.clone()), t0);
    let deadline = t0 + overall;
    let mut done_deadline: Option<Instant> = None;
    let (mut size, mut reported, mut unplugs_done) = (0u64, 0usize, 0usize);
    let mut unplugs: Vec<JoinHandle<(Result<(), Error>, qmp::Transcript)>> = Vec::new();
    let (mut stall_seen, mut timed_out, mut t_done) = (None, false, None);
    let mut results = Results::default();
    let mut lines = Vec::new();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::io(&prepared.qemu_bin, e))?
        {
            break Some(status);
        }
        let now = Instant::now();
        let new_size = fs::metadata(&results_path).map(|m| m.len()).unwrap_or(size);
        if new_size != size {
            size = new_size;
            results = Results::parse(&fs::read_to_string(&results_path).unwrap_or_default());
            if let Some(sock) = &qmp_socket {
                for id in results.unplugs.iter().skip(unplugs_done) {
                    let (sock, id) = (sock.clone(), id.clone());
                    unplugs.push(std::thread::spawn(move || qmp::device_del(&sock, &id)));
                }
                unplugs_done = results.unplugs.len();
            }
            reported += report_ended(&results, reported, logs, &mut lines, say)?;
            if t_done.is_none() && results.done_uptime.is_some() {
                t_done = Some(t0.elapsed().as_secs_f64());
                done_deadline = Some(now + POWER_OFF_GRACE);
            }
        }
        if now > deadline {
            say(format!(
                "rig: overall timeout ({} s): stopping QEMU",
                overall.as_secs()
            ));
            timed_out = true;
            break stop(&mut child);
        }
        if let Some(stall) = watch.stalled(now) {
            say(format!("rig: {}; stopping QEMU", stall.describe()));
            stall_seen = Some(stall);
            break stop(&mut child);
        }
        if done_deadline.is_some_and(|d| now > d) {
            say("rig: L1 did not power off 20 s after its results: stopping QEMU".into());
            break stop(&mut child);
        }
        std::thread::sleep(POLL);
    };
    let wall = t0.elapsed().as_secs_f64();
    // Requests still waiting for an event end when QEMU closes the monitor.
    let mut transcript = String::new();
    for (i, handle) in unplugs.into_iter().enumerate() {
        let id = results.unplugs.get(i).cloned().unwrap_or_default();
        transcript += &format!("rig: device_del {id}\n");
        if let Ok((result, messages)) = handle.join() {
            for (t, m) in messages {
                transcript += &format!("{t:.1} {m}\n");
            }
            if let Err(e) = result {
                transcript += &format!("rig: {e}\n");
            }
        }
    }
    if let Some(sock) = &qmp_socket {
        let _ = fs::remove_file(sock);
        write(&logs.join("qmp.log"), &transcript)?;
    }
    results = Results::parse(&fs::read_to_string(&results_path).unwrap_or_default());
    report_ended(&results, reported, logs, &mut lines, say)?;
    if t_done.is_none() && results.done_uptime.is_some() {
        t_done = Some(wall);
    }
    let t_ready = match (t_done, results.start_uptime, results.done_uptime) {
        (Some(done), Some(start), Some(end)) => Some(done - (end - start)),
        _ => None,
    };

    // Scenarios without an END line: L1 died, hung or ran out of time.
    let mut outcomes = Vec::new();
    for name in names {
        let found = results.scenarios.iter().rev().find(|s| &s.name == name);
        let outcome = match found {
            Some(s) => Outcome {
                name: name.clone(),
                rc: s.end.map(|(rc, _)| rc),
                secs: s.end.map(|(_, secs)| secs),
                log: s.log.clone(),
            },
            None => {
                let log = "(no output: the scenario never started)\n".to_string();
                write(&logs.join(format!("{name}.log")), &log)?;
                Outcome {
                    name: name.clone(),
                    rc: None,
                    secs: None,
                    log,
                }
            }
        };
        if outcome.rc.is_none() {
            if let Some(s) = found {
                write(&logs.join(format!("{name}.log")), &s.log)?;
            }
            say(format!(
                "rig: {name} FAIL (no result: L1 died or timed out) — log: {}",
                logs.join(format!("{name}.log")).display()
            ));
            lines.push(format!("{name}\tFAIL\tnone\t"));
        }
        outcomes.push(outcome);
    }
    write(&logs.join("summary.tsv"), &(lines.join("\n") + "\n"))?;

    let raw = fs::read_to_string(&qemu_out).unwrap_or_default();
    let qemu_said: String = raw
        .lines()
        .filter(|l| !expected_noise(l))
        .map(|l| format!("{l}\n"))
        .collect();
    write(&logs.join("qemu.log"), &qemu_said)?;
    if !qemu_said.is_empty() || status.is_some_and(|s| !s.success()) {
        say(format!(
            "rig: QEMU exited with {}; it said:",
            describe(status)
        ));
        for l in qemu_said.lines() {
            say(format!("  {l}"));
        }
    }
    let prepare = &prepared.prepare_secs;
    match t_done {
        Some(done) => say(format!(
            "rig: wall {done:.1} s from QEMU start to results (L1 ready at {} s, QEMU exited at \
             {wall:.1} s); prepare {prepare} s; L1 console: {}",
            t_ready.map_or("?".into(), |t| format!("{t:.1}")),
            console.display()
        )),
        None => say(format!(
            "rig: no complete results after {wall:.1} s of QEMU; prepare {prepare} s; L1 console: {}",
            console.display()
        )),
    }
    Ok(Report {
        outcomes,
        stall: stall_seen,
        timed_out,
        t_done,
        t_ready,
        wall,
        qemu_status: status,
        qemu_said,
    })
}

/// QEMU's messages the rig expects: its warnings about CPUID bits TCG does not emulate and,
/// for QEMU 10 unpacked beside the host's 7.2, about the host's 7.2 modules it probes at
/// start (ui-opengl, audio: "Only modules from the same build can be loaded"). The rig
/// uses no module.
fn expected_noise(line: &str) -> bool {
    line.contains("TCG doesn't support requested feature")
        || line.starts_with("Only modules from the same build can be loaded")
        || (line.contains("failed to ")
            && line.contains(" module: /usr/lib/x86_64-linux-gnu/qemu/"))
}

/// Reports (and logs) the scenarios that ended since the first `already` ones.
fn report_ended(
    results: &Results,
    already: usize,
    logs: &Path,
    lines: &mut Vec<String>,
    say: &mut dyn FnMut(String),
) -> Result<usize, Error> {
    let mut n = 0;
    for (s, rc, secs) in results.ended().skip(already) {
        let log = logs.join(format!("{}.log", s.name));
        write(&log, &s.log)?;
        if rc == 0 {
            say(format!("rig: {} PASS ({secs} s)", s.name));
            lines.push(format!("{}\tPASS\t{rc}\t{secs}", s.name));
        } else {
            let why = if rc == 124 { " (timed out)" } else { "" };
            say(format!(
                "rig: {} FAIL rc={rc}{why} — log: {}",
                s.name,
                log.display()
            ));
            lines.push(format!("{}\tFAIL\t{rc}\t{secs}", s.name));
        }
        n += 1;
    }
    Ok(n)
}

/// SIGTERM, a second to go, then SIGKILL.
fn stop(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child's pid; it has not been reaped (try_wait said so).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    child.wait().ok()
}

fn describe(status: Option<ExitStatus>) -> String {
    match status.and_then(|s| s.code()) {
        Some(code) => format!("status {code}"),
        None => "no status (killed)".into(),
    }
}

fn write(path: &PathBuf, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_noise_is_filtered_and_real_messages_kept() {
        assert!(expected_noise(
            "qemu-system-x86_64: warning: TCG doesn't support requested feature: CPUID.80000001H:EDX.fxsr-opt [bit 25]"
        ));
        assert!(expected_noise(
            "qemu-system-x86_64: failed to initialize module: /usr/lib/x86_64-linux-gnu/qemu/ui-opengl.so"
        ));
        assert!(expected_noise(
            "Only modules from the same build can be loaded."
        ));
        assert!(!expected_noise(
            "qemu-system-x86_64: -drive if=none: Could not open 'x'"
        ));
    }
}
