//! `satavm-rig`: what `scripts/rig run|shell|satavm` hand over to once they prepared a boot.
//!
//! ```text
//! satavm-rig run --prepared FILE [--overall-timeout SECS] NAME...
//! satavm-rig shell --prepared FILE      L1's console on this terminal (Ctrl-A x quits)
//! satavm-rig satavm --prepared FILE     satavm's output here; exits with its status
//! ```

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use satavm_rig::machine::Machine;
use satavm_rig::prepared::Prepared;
use satavm_rig::protocol::Results;
use satavm_rig::{run, Error};

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("satavm-rig: error: {e}");
            ExitCode::from(2)
        }
    }
}

struct Args {
    command: String,
    prepared: PathBuf,
    overall: Option<u64>,
    names: Vec<String>,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or_else(|| {
        Error::Usage("usage: satavm-rig run|shell|satavm --prepared FILE ...".into())
    })?;
    let (mut prepared, mut overall, mut names) = (None, None, Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--prepared" => prepared = args.next().map(PathBuf::from),
            "--overall-timeout" => {
                let v = args.next().unwrap_or_default();
                overall = Some(v.parse().map_err(|_| {
                    Error::Usage(format!("--overall-timeout {v:?}: seconds expected"))
                })?);
            }
            _ if a.starts_with('-') => return Err(Error::Usage(format!("unknown option {a}"))),
            _ => names.push(a),
        }
    }
    let prepared = prepared.ok_or_else(|| Error::Usage("--prepared FILE is required".into()))?;
    Ok(Args {
        command,
        prepared,
        overall,
        names,
    })
}

fn real_main() -> Result<ExitCode, Error> {
    let args = parse_args()?;
    let prepared = Prepared::load(&args.prepared)?;
    match args.command.as_str() {
        "run" => {
            if args.names.is_empty() {
                return Err(Error::Usage("run: no scenario named".into()));
            }
            let overall = Duration::from_secs(args.overall.unwrap_or(420));
            let report = run::run(&prepared, &args.names, overall, &mut |line| {
                println!("{line}")
            })?;
            let failed = report.outcomes.iter().filter(|o| !o.passed()).count();
            if !report.complete() {
                println!(
                    "rig: run did not complete — see {}",
                    prepared.logs.join("console.log").display()
                );
                return Ok(ExitCode::from(1));
            }
            if failed > 0 {
                println!(
                    "rig: {failed} of {} scenario(s) failed",
                    report.outcomes.len()
                );
                return Ok(ExitCode::from(1));
            }
            println!("rig: all {} scenario(s) passed", report.outcomes.len());
            Ok(ExitCode::SUCCESS)
        }
        "shell" => {
            let machine = Machine::new(&prepared)?;
            let mut cmd = machine.command();
            cmd.args(["-nographic", "-serial", "mon:stdio", "-serial", "null"]);
            eprintln!(
                "rig: booting L1 (QEMU escape: Ctrl-A x); L1 console also goes to this terminal"
            );
            Err(Error::io(&prepared.qemu_bin, cmd.exec()))
        }
        "satavm" => {
            let machine = Machine::new(&prepared)?;
            let results = prepared.build.join("results.txt");
            let console = prepared.logs.join("console.log");
            std::fs::create_dir_all(&prepared.logs).map_err(|e| Error::io(&prepared.logs, e))?;
            std::fs::write(&results, "").map_err(|e| Error::io(&results, e))?;
            let qemu_log = prepared.logs.join("qemu.log");
            let log = std::fs::File::create(&qemu_log).map_err(|e| Error::io(&qemu_log, e))?;
            let mut cmd = machine.command();
            cmd.args(["-display", "none", "-monitor", "none"])
                .arg("-serial")
                .arg(format!("file:{}", console.display()))
                .arg("-serial")
                .arg(format!("file:{}", results.display()))
                .args([
                    "-chardev",
                    "stdio,id=satavm-out,signal=off",
                    "-serial",
                    "chardev:satavm-out",
                ])
                .stdin(std::process::Stdio::null())
                .stderr(log);
            eprintln!(
                "rig: booting L1; satavm runs inside it (L1 console: {})",
                console.display()
            );
            cmd.status().map_err(|e| Error::io(&prepared.qemu_bin, e))?;
            let text = std::fs::read_to_string(&results).map_err(|e| Error::io(&results, e))?;
            match Results::parse(&text).satavm_rc {
                Some(rc) => Ok(ExitCode::from(u8::try_from(rc).unwrap_or(125))),
                None => {
                    eprintln!(
                        "rig: satavm did not finish inside the rig; see {}",
                        console.display()
                    );
                    Ok(ExitCode::from(125))
                }
            }
        }
        other => Err(Error::Usage(format!("unknown command {other:?}"))),
    }
}
