//! satavm command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use satavm::ahci::sdb_aggregation::AggregationMode;
use satavm::ata::inject::{parse_file, Rule};
use satavm::disk_spec::DiskSpec;
use satavm::firmware::SELFTEST_ELF;
use satavm::trace::{Format, Sink, Tracer};
use satavm::vmm::storage::StorageOptions;
use satavm::vmm::{self, boot::DEFAULT_CMDLINE, Boot, VmConfig, VmExit};

/// Exit statuses (besides 0, and 1 to 63 for a failure code the guest reported on the
/// exit-code port; the self-test firmware reports FAIL as 1). From sysexits.h.
mod exit_status {
    /// KVM cannot be used here (no /dev/kvm, no permission, wrong API).
    pub const KVM_UNAVAILABLE: u8 = 69;
    /// The guest or KVM failed while running (KVM_EXIT_INTERNAL_ERROR, a triple fault of
    /// firmware, a failed VM entry).
    pub const GUEST_CRASHED: u8 = 70;
    /// satavm could not set the VM up (bad kernel or disk, out of memory).
    pub const SETUP_FAILED: u8 = 71;
}

/// Size of the scratch image the self-test gets when no --disk is given.
const SCRATCH_DISK_BYTES: u64 = 64 << 20;

/// A KVM microVM whose storage controller is a layered AHCI HBA (AHCI / SATA FIS / ATA).
///
/// Without --kernel, satavm runs its built-in AHCI self-test firmware, which writes test
/// patterns to the disks it is given (a scratch image if none).
///
/// Statistics per port are printed at exit, and on SIGUSR1 while running.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = INJECT_HELP)]
struct Cli {
    /// Guest kernel: bzImage or ELF vmlinux. Without it, firmware runs instead.
    #[arg(long, conflicts_with = "firmware")]
    kernel: Option<PathBuf>,
    /// Initramfs (cpio, optionally compressed) for the guest.
    #[arg(long, requires = "kernel")]
    initramfs: Option<PathBuf>,
    /// A bare-metal ELF to run instead of the built-in self-test firmware.
    #[arg(long, value_name = "PATH")]
    firmware: Option<PathBuf>,
    /// Argument string for the firmware (the self-test knows `bench`).
    #[arg(
        long,
        value_name = "STR",
        default_value = "",
        conflicts_with = "kernel"
    )]
    firmware_args: String,
    /// Kernel command line.
    #[arg(long, default_value = DEFAULT_CMDLINE)]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// A SATA drive on the next AHCI port (repeatable, up to 32):
    /// path=FILE[,model=M][,serial=S][,readonly=on][,engine=io_uring|threads] or
    /// passthrough=/dev/sgN|/dev/sdX[,timeout=SECS][,allow=all][,readonly=on][,engine=sg|threads].
    #[arg(long = "disk", value_name = "SPEC")]
    disks: Vec<DiskSpec>,
    /// Trace the SATA conversation (AHCI register accesses, FISes, ATA commands, SG_IO) to
    /// FILE as JSON lines; `-` writes the compact text form to stderr instead.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Also write the compact text trace: to stderr, or to FILE if given.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    trace_human: Option<PathBuf>,
    /// Stop (exit status 70) at the first thing the guest does that AHCI 1.3.1 forbids or
    /// leaves undefined; without it such things are logged as warnings, once per rule.
    #[arg(long)]
    strict: bool,
    /// NCQ completion aggregation: `auto` holds successful queued completions back while the
    /// guest keeps issuing commands and reports them in one Set Device Bits FIS (one
    /// interrupt), the window learned from the guest's speed and at most 4 ms; `auto:US` caps
    /// the window at US microseconds; `off` reports each completion at once.
    #[arg(long, value_name = "auto|auto:US|off", default_value = "auto", value_parser = parse_aggregation)]
    ncq_aggregation: AggregationMode,
    /// Command-issue doorbells: `on` lets KVM take the guest's single-bit PxSACT/PxCI writes
    /// (ioeventfds on the first 4 ports) without an exit to satavm; `off` handles each write
    /// in satavm as it happens.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    doorbells: bool,
    /// A fault injection rule (repeatable); see below.
    #[arg(long = "inject", value_name = "RULE")]
    inject: Vec<Rule>,
    /// Fault injection rules, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    inject_file: Vec<PathBuf>,
}

const INJECT_HELP: &str = "\
Fault injection (--inject RULE): comma-separated filters and one action.
  Filters: port=N  op=read|write|flush|0xHH  lba=A[-B]  nth=N (the N-th match only)
  Actions: error=abrt|unc|idnf|icrc   fail the command (unc/idnf report the first bad LBA;
                                       NCQ failures are reported in the NCQ error log 10h)
           delay=MS                    complete it MS milliseconds late
           drop                        never complete it (the guest times out)
           link-down,for:MS            the drive drops off the link when the command arrives,
                                       and comes back after MS ms
           link-down=after:MS,for:MS   the same, MS ms after the drive's first command
  Examples: --inject 'port=0,op=read,lba=1000-1003,error=unc'
            --inject 'op=0x61,nth=5,error=abrt'   --inject 'op=read,delay=200'
            --inject 'op=write,nth=3,drop'       --inject 'link-down=after:2000,for:500'";

/// The tracer --trace and --trace-human ask for.
fn tracer(cli: &Cli) -> Result<Tracer, String> {
    let mut sinks = Vec::new();
    match &cli.trace {
        Some(p) if p.as_os_str() == "-" => {
            sinks.push(Sink::new(Format::Human, Box::new(std::io::stderr())));
        }
        Some(p) => {
            let f = std::fs::File::create(p)
                .map_err(|e| format!("cannot create trace file {}: {e}", p.display()))?;
            sinks.push(Sink::new(
                Format::Json,
                Box::new(std::io::BufWriter::with_capacity(1 << 16, f)),
            ));
        }
        None => {}
    }
    match &cli.trace_human {
        Some(p) if p.as_os_str() != "-" => {
            let f = std::fs::File::create(p)
                .map_err(|e| format!("cannot create trace file {}: {e}", p.display()))?;
            sinks.push(Sink::new(
                Format::Human,
                Box::new(std::io::BufWriter::with_capacity(1 << 16, f)),
            ));
        }
        // Once is enough when --trace - already writes text to stderr.
        Some(_) if cli.trace.as_ref().is_none_or(|p| p.as_os_str() != "-") => {
            sinks.push(Sink::new(Format::Human, Box::new(std::io::stderr())));
        }
        _ => {}
    }
    Ok(Tracer::new(sinks))
}

/// `on` or `off`.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// The default cap of the aggregation window.
const AGGREGATION_MAX_WINDOW: Duration = Duration::from_millis(4);

/// `--ncq-aggregation auto|auto:US|off`.
fn parse_aggregation(s: &str) -> Result<AggregationMode, String> {
    match s.split_once(':') {
        None if s == "off" => Ok(AggregationMode::Off),
        None if s == "auto" => Ok(AggregationMode::Auto {
            max_window: AGGREGATION_MAX_WINDOW,
        }),
        Some(("auto", us)) => match us.parse::<u64>() {
            Ok(0) => Ok(AggregationMode::Off),
            Ok(us) if us <= 1_000_000 => Ok(AggregationMode::Auto {
                max_window: Duration::from_micros(us),
            }),
            _ => Err(format!("{us}: a window in microseconds, at most 1000000")),
        },
        _ => Err(format!("{s}: expected auto, auto:MICROSECONDS or off")),
    }
}

/// --inject rules, then those of each --inject-file.
fn inject_rules(cli: &Cli) -> Result<Vec<Rule>, String> {
    let mut rules = cli.inject.clone();
    for f in &cli.inject_file {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        rules.extend(parse_file(&f.display().to_string(), &text).map_err(|e| e.to_string())?);
    }
    Ok(rules)
}

/// A sparse image in $TMPDIR, removed when dropped.
struct ScratchDisk(PathBuf);

impl ScratchDisk {
    fn create(bytes: u64) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("satavm-selftest-{}.img", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let disk = ScratchDisk(path);
        file.set_len(bytes)?;
        Ok(disk)
    }
}

impl Drop for ScratchDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the vCPUs boot: the kernel if given, else a firmware ELF (the built-in self-test
/// unless --firmware names another).
fn boot_source(cli: &Cli) -> Result<Boot, String> {
    if let Some(kernel) = &cli.kernel {
        return Ok(Boot::Linux {
            kernel: kernel.clone(),
            initramfs: cli.initramfs.clone(),
            cmdline: cli.cmdline.clone(),
        });
    }
    let elf = match &cli.firmware {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        None => SELFTEST_ELF.to_vec(),
    };
    Ok(Boot::Firmware {
        elf,
        args: cli.firmware_args.clone(),
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // Before any thread starts: SIGUSR1 goes to the statistics signalfd only.
    if let Err(e) = vmm::storage::block_sigusr1() {
        eprintln!("satavm: {e}");
        return ExitCode::from(exit_status::SETUP_FAILED);
    }
    let options = match (tracer(&cli), inject_rules(&cli)) {
        (Ok(tracer), Ok(inject)) => StorageOptions {
            tracer,
            strict: cli.strict,
            inject,
            aggregation: cli.ncq_aggregation,
            doorbells: cli.doorbells,
        },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("satavm: {e}");
            return ExitCode::from(exit_status::SETUP_FAILED);
        }
    };
    let boot = match boot_source(&cli) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("satavm: {e}");
            return ExitCode::from(exit_status::SETUP_FAILED);
        }
    };
    // Firmware without --disk gets a scratch image, so that `satavm` alone runs the self-test.
    let mut disks = cli.disks.clone();
    let _scratch = match (&boot, disks.is_empty()) {
        (Boot::Firmware { .. }, true) => match ScratchDisk::create(SCRATCH_DISK_BYTES) {
            Ok(scratch) => {
                disks.push(DiskSpec::Image {
                    path: scratch.0.clone(),
                    model: Some("SATAVM SELFTEST SCRATCH".into()),
                    serial: Some(format!("SCRATCH{}", std::process::id())),
                    read_only: false,
                    engine: Default::default(),
                });
                Some(scratch)
            }
            Err(e) => {
                eprintln!(
                    "satavm: cannot create a scratch disk image in {}: {e}",
                    std::env::temp_dir().display()
                );
                return ExitCode::from(exit_status::SETUP_FAILED);
            }
        },
        _ => None,
    };
    let config = VmConfig {
        boot,
        cpus: cli.cpus,
        memory_mib: cli.memory,
    };
    let mut storage = None;
    let mut exit_counters = None;
    let result = vmm::run(&config, |ctx| {
        exit_counters = Some(ctx.exit_counters.clone());
        storage = vmm::storage::attach_with(ctx, &disks, &options)?;
        Ok(())
    });
    if let Some(counters) = &exit_counters {
        eprintln!("satavm: {}", counters.summary());
    }
    if let Some(storage) = &storage {
        storage.finish();
        for line in storage.summary() {
            eprintln!("satavm: {line}");
        }
    }
    let firmware = matches!(config.boot, Boot::Firmware { .. });
    match result {
        // Firmware reports its verdict through the exit-code port; stopping any other way
        // (a triple fault shows up as a reset) is a failure.
        Ok(exit @ (VmExit::Reset | VmExit::PowerOff)) if firmware => {
            eprintln!("satavm: firmware stopped ({exit:?}) without reporting a result");
            ExitCode::from(exit_status::GUEST_CRASHED)
        }
        Ok(VmExit::Reset) | Ok(VmExit::PowerOff) | Ok(VmExit::GuestCode(0)) => ExitCode::SUCCESS,
        Ok(VmExit::GuestCode(code)) => {
            eprintln!("satavm: guest reported failure code {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(63).clamp(1, 63))
        }
        Ok(VmExit::Failure(msg)) => {
            eprintln!("satavm: guest failed: {msg}");
            ExitCode::from(exit_status::GUEST_CRASHED)
        }
        Err(e @ (vmm::VmmError::OpenKvm(_) | vmm::VmmError::KvmApi(_))) => {
            eprintln!("satavm: {e}");
            ExitCode::from(exit_status::KVM_UNAVAILABLE)
        }
        Err(e) => {
            eprintln!("satavm: {e}");
            ExitCode::from(exit_status::SETUP_FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["satavm", "--kernel", "bzImage"].iter().chain(args))
    }

    #[test]
    fn doorbells_are_on_unless_turned_off() {
        assert!(parse(&[]).unwrap().doorbells);
        assert!(parse(&["--doorbells", "on"]).unwrap().doorbells);
        assert!(!parse(&["--doorbells", "off"]).unwrap().doorbells);
        assert!(parse(&["--doorbells", "maybe"]).is_err());
        assert!(parse(&["--doorbells"]).is_err());
    }
}
