//! `satavm-rig`: the nested test rig's command (what `scripts/rig` runs).
//!
//! ```text
//! satavm-rig prepare
//! satavm-rig run [--satavm PATH | --no-satavm] [--timeout SECS] [--overall-timeout SECS] [NAME...]
//! satavm-rig payload [the same options]   prepare a run, print "prepared=FILE overall=SECS"
//! satavm-rig shell [--satavm PATH] [--l1] [-- SATAVM-ARGS...]
//! satavm-rig satavm [--satavm PATH] [--] SATAVM-ARGS...
//! ```

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use satavm_rig::machine::Machine;
use satavm_rig::prepare::{self, Knobs, Mode, Satavm};
use satavm_rig::prepared::Prepared;
use satavm_rig::protocol::Results;
use satavm_rig::{run, Error};

/// `scripts/rig --help`.
const USAGE: &str = include_str!("usage.txt");

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rig: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// What the options of run, payload, shell and satavm say.
struct Options {
    satavm: Satavm,
    timeout: Option<u64>,
    overall: Option<u64>,
    l1: bool,
    /// Scenario names (run, payload) or satavm's arguments (shell, satavm).
    rest: Vec<String>,
}

fn parse_options(command: &str, args: &[String]) -> Result<Option<Options>, Error> {
    let mut o = Options {
        satavm: Satavm::Build,
        timeout: None,
        overall: None,
        l1: false,
        rest: Vec::new(),
    };
    let scenarios = matches!(command, "run" | "payload");
    let seconds = |v: Option<&String>, name: &str| -> Result<u64, Error> {
        let v = v.ok_or_else(|| Error::Usage(format!("{name} needs seconds")))?;
        v.parse()
            .map_err(|_| Error::Usage(format!("{name} {v:?}: seconds expected")))
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-h" | "--help" => return Ok(None),
            "--satavm" => {
                let p = args
                    .get(i + 1)
                    .ok_or_else(|| Error::Usage("--satavm needs a path".into()))?;
                o.satavm = Satavm::Path(p.into());
                i += 1;
            }
            "--no-satavm" if scenarios => o.satavm = Satavm::None,
            "--timeout" if scenarios => {
                o.timeout = Some(seconds(args.get(i + 1), "--timeout")?);
                i += 1;
            }
            "--overall-timeout" if scenarios => {
                o.overall = Some(seconds(args.get(i + 1), "--overall-timeout")?);
                i += 1;
            }
            "--l1" if command == "shell" => o.l1 = true,
            "--" if !scenarios => {
                o.rest.extend(args[i + 1..].iter().cloned());
                break;
            }
            _ if a.starts_with('-') && (scenarios || command == "shell") => {
                return Err(Error::Usage(format!(
                    "unknown option {a} (see scripts/rig --help)"
                )))
            }
            _ if scenarios => o.rest.push(a.to_string()),
            _ if command == "satavm" => {
                // The first word that is not ours starts satavm's arguments.
                o.rest.extend(args[i..].iter().cloned());
                break;
            }
            _ => {
                return Err(Error::Usage(format!(
                    "unexpected {a:?} (satavm's arguments go after --)"
                )))
            }
        }
        i += 1;
    }
    Ok(Some(o))
}

fn real_main() -> Result<ExitCode, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().map(String::as_str) else {
        eprint!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    if matches!(command, "help" | "-h" | "--help") {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    if !matches!(
        command,
        "prepare" | "run" | "payload" | "shell" | "satavm" | "stalls"
    ) {
        return Err(Error::Usage(format!(
            "unknown command {command:?} (see scripts/rig --help)"
        )));
    }
    let knobs = Knobs::from_env()?;
    let mut log = |line: &str| eprintln!("rig: {line}");
    if command == "prepare" {
        prepare::prepare(&knobs, &mut log)?;
        return Ok(ExitCode::SUCCESS);
    }
    if command == "stalls" {
        return count_stalls(&knobs, &args[1..], &mut log);
    }
    let Some(mut options) = parse_options(command, &args[1..])? else {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    let mode = match command {
        "run" | "payload" => Mode::Run {
            names: std::mem::take(&mut options.rest),
            timeout: options.timeout.unwrap_or(knobs.scenario_timeout),
        },
        "shell" => {
            if options.l1
                && options.satavm == Satavm::Build
                && !prepare::default_satavm_built(&knobs)
            {
                options.satavm = Satavm::None;
            }
            Mode::Shell {
                l1: options.l1,
                args: std::mem::take(&mut options.rest),
            }
        }
        _ => Mode::Satavm {
            args: std::mem::take(&mut options.rest),
        },
    };
    let boot = prepare::boot(&knobs, mode, &options.satavm, &mut log)?;
    let overall = options
        .overall
        .map_or(boot.overall, std::time::Duration::from_secs);
    let prepared = &boot.prepared;
    match command {
        "payload" => {
            println!(
                "prepared={} overall={}",
                prepared.build.join("prepared.env").display(),
                overall.as_secs()
            );
            Ok(ExitCode::SUCCESS)
        }
        "run" => {
            let report = run::run(prepared, &boot.names, overall, &mut |line| {
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
        _ => boot_interactive(command, prepared),
    }
}

/// `stalls [--satavm PATH] [BOOTS] [QEMU...]`: BOOTS (20) long boots per QEMU (7.2 and 10).
fn count_stalls(
    knobs: &Knobs,
    args: &[String],
    log: prepare::host::Log<'_>,
) -> Result<ExitCode, Error> {
    use satavm_rig::prepare::knobs::QemuChoice;
    let (mut satavm, mut boots, mut qemus) = (Satavm::Build, None, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--satavm" => {
                let p = it
                    .next()
                    .ok_or_else(|| Error::Usage("--satavm needs a path".into()))?;
                satavm = Satavm::Path(p.into());
            }
            "10" => qemus.push(QemuChoice::Qemu10),
            "7.2" => qemus.push(QemuChoice::Qemu7_2),
            _ if boots.is_none() && a.parse::<u32>().is_ok() => boots = a.parse().ok(),
            _ => {
                return Err(Error::Usage(format!(
                    "stalls: unexpected {a:?} (BOOTS, then 10 or 7.2)"
                )))
            }
        }
    }
    if qemus.is_empty() {
        qemus = vec![QemuChoice::Qemu7_2, QemuChoice::Qemu10];
    }
    // Built once, not once a boot.
    if let Some(path) = prepare::resolve_satavm(knobs, &satavm, log)? {
        satavm = Satavm::Path(path);
    }
    let lock = std::env::var_os("RIG_LOCK").map(std::path::PathBuf::from);
    let all = satavm_rig::stalls::count(
        knobs,
        boots.unwrap_or(20),
        &qemus,
        &satavm,
        lock.as_deref(),
        log,
    )?;
    println!();
    print!("{}", satavm_rig::stalls::table(&qemus, &all));
    Ok(ExitCode::SUCCESS)
}

fn boot_interactive(command: &str, prepared: &Prepared) -> Result<ExitCode, Error> {
    match command {
        "shell" => {
            let machine = Machine::new(prepared)?;
            let mut cmd = machine.command();
            cmd.args(["-nographic", "-serial", "mon:stdio", "-serial", "null"]);
            eprintln!(
                "rig: booting L1 (QEMU escape: Ctrl-A x); L1 console also goes to this terminal"
            );
            Err(Error::io(&prepared.qemu_bin, cmd.exec()))
        }
        "satavm" => {
            let machine = Machine::new(prepared)?;
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
