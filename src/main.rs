//! satavm command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use satavm::ahci::sdb_aggregation::AggregationMode;
use satavm::ata::inject::InjectControl;
use satavm::ata::inject::{parse_file, Rule};
use satavm::disk_spec::DiskSpec;
use satavm::firmware::SELFTEST_ELF;
use satavm::hostfile::FileId;
use satavm::trace::file::{check_path, LateFile};
use satavm::trace::{Format, Sink, Tracer};
use satavm::vmm::api::{self, ApiSocket, EventQueue, VmCommands};
use satavm::vmm::boot::BootError;
use satavm::vmm::storage::{self, PreparedDisk, RegisterMode, StorageError, StorageOptions};
use satavm::vmm::{self, boot::DEFAULT_CMDLINE, signals, Boot, VmConfig, VmExit, VmmError};

mod args;
mod ctl;
use args::{
    parse_aggregation, parse_cpus, parse_memory, parse_on_off, parse_registers, trace_human_hint,
};

/// Exit statuses (besides 0, and 1 to 63 for a failure code the guest reported on the
/// exit-code port; the self-test firmware reports FAIL as 1). From sysexits.h; the table is
/// in EXIT_HELP.
mod exit_status {
    /// The command line is wrong: a bad option or value, options that contradict each other.
    pub const USAGE: u8 = 64;
    /// KVM cannot be used here (no /dev/kvm, no permission, wrong API).
    pub const KVM_UNAVAILABLE: u8 = 69;
    /// The guest or KVM failed while running (KVM_EXIT_INTERNAL_ERROR, a triple fault of
    /// firmware, a failed VM entry, --strict), or a vCPU thread panicked.
    pub const GUEST_CRASHED: u8 = 70;
    /// satavm could not set the VM up (a file that cannot be used, a disk in use, KVM set-up).
    pub const SETUP_FAILED: u8 = 71;
    /// The guest rebooted (ACPI reset register, keyboard-controller reset, triple fault): satavm
    /// does not restart it. Not 0, so that a guest that panics and reboots (the default
    /// command line's panic=1) is not taken for one that shut down.
    pub const REBOOTED: u8 = 80;
    /// The guest kernel panicked and said so through the pvpanic port (Linux's pvpanic-mmio
    /// driver loaded; without it, a panic reboots: REBOOTED).
    pub const GUEST_PANICKED: u8 = 81;
    /// The guest halted: every vCPU stopped with interrupts off (Linux's `halt`, or
    /// `poweroff` where Linux cannot power off, e.g. with acpi=off).
    pub const HALTED: u8 = 82;
    /// Stopped by signal N: 128 + N, as a shell reports a process killed by N.
    pub const SIGNAL_BASE: u8 = 128;
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
#[command(version, about, after_long_help = AFTER_HELP)]
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
    /// Number of vCPUs, 1 to 32.
    #[arg(long, default_value = "1", value_parser = parse_cpus)]
    cpus: u8,
    /// Guest RAM: a number of MiB, or with a suffix K, M, G or T (512M, 1G, 1.5G); at least
    /// 64 MiB and at most the host's RAM.
    #[arg(long, value_name = "SIZE", default_value = "512", value_parser = parse_memory)]
    memory: u64,
    /// A SATA drive on the next AHCI port (repeatable, up to 32):
    /// path=FILE[,model=M][,serial=S][,readonly=on][,lock=off][,engine=io_uring|threads] for
    /// an emulated drive over an image file or block device, or
    /// passthrough=/dev/sgN|/dev/sdX[,timeout=SECS][,allow=all][,readonly=on][,lock=off]
    /// [,engine=sg|threads] for a host SATA drive, or
    /// cdrom=ISO[,model=M][,serial=S][,lock=off][,engine=E] (also path=ISO,media=cdrom) for an
    /// ATAPI CD/DVD drive; cdrom= or media=cdrom without a file is an empty tray. Files are
    /// locked (shared with readonly=on) like QEMU's; lock=off does not lock. `,,` is a comma
    /// inside a value (path=a,,b.img is a,b.img).
    #[arg(long = "disk", value_name = "SPEC")]
    disks: Vec<DiskSpec>,
    /// The HBA has N ports (1 to 32), the --disks on the first ones and the rest empty; every
    /// port is then declared hot-pluggable (PxCMD.HPCP) for drive-add/drive-del on the control
    /// socket. Default: one port per --disk.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=32))]
    ports: Option<u8>,
    /// Trace the SATA conversation (AHCI register accesses, FISes, ATA commands, SG_IO) to
    /// FILE as JSON lines (docs/trace-schema.md); `-` writes the compact text form to stderr
    /// instead. The file is created once the VM is set up.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Also write the compact text trace: to stderr, or to FILE (--trace-human=FILE, with
    /// `=`).
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
    /// How the guest's reads of the AHCI registers are answered: `trap` makes every read an
    /// exit to satavm (and lets the doorbells take the issue writes); `mapped` keeps the
    /// register file in a read-only memslot the guest reads without an exit (writes exit,
    /// doorbells are off, register reads are not traced): fewest exits, fastest at queue
    /// depth 1.
    #[arg(long, value_name = "trap|mapped", default_value = "trap", value_parser = parse_registers)]
    registers: RegisterMode,
    /// A fault injection rule (repeatable); see below.
    #[arg(long = "inject", value_name = "RULE")]
    inject: Vec<Rule>,
    /// Fault injection rules, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    inject_file: Vec<PathBuf>,
    /// Check the configuration and stop before /dev/kvm is opened: options, kernel,
    /// initramfs and firmware (loaded into guest memory), disks (opened and locked), trace
    /// paths and injection rules. Prints what it checked; exits 0 when all is well.
    #[arg(long)]
    check: bool,
    /// A control socket at PATH (created 0600; a stale one is replaced, anything else there
    /// is refused): JSON commands and events, see the README, and `satavm ctl`.
    #[arg(long, value_name = "PATH")]
    api_socket: Option<PathBuf>,
}

const AFTER_HELP: &str = "\
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
            --inject 'op=write,nth=3,drop'       --inject 'link-down=after:2000,for:500'

Console keys (when stdin is a terminal; the guest gets every other key, Ctrl-C included):
  Ctrl-A x       quit: stop the VM through the normal exit path (statistics, trace flushed)
  Ctrl-A s       print the statistics now (as SIGUSR1)
  Ctrl-A h       this help
  Ctrl-A Ctrl-A  send one Ctrl-A to the guest
  Ctrl-A, then any other key: both go to the guest

Signals: SIGTERM, SIGINT and SIGHUP stop the VM through the normal exit path (vCPUs
stopped, trace flushed, statistics printed, the scratch image removed); a second one ends
satavm at once. SIGUSR1 prints the statistics. SIGUSR2 changes discs: every CD/DVD drive
re-reads its cdrom= file (a file there is inserted as a new disc, none ejects the disc).

Exit status:
  0        the guest powered off (ACPI S5: poweroff, shutdown), the firmware reported
           PASS, Ctrl-A x, quit on the control socket (--api-socket), or --check found
           nothing wrong
  1-63     a failure code the guest reported (the self-test's FAIL is 1; larger codes: 63)
  64       usage error: a bad option or value, options that contradict each other
  69       KVM cannot be used on this host (no /dev/kvm, no permission)
  70       the guest or KVM failed while running (e.g. KVM_EXIT_INTERNAL_ERROR, firmware
           stopped without a result, a --strict violation, a vCPU thread panicked)
  71       set-up failed: a file that cannot be used (kernel, initramfs, firmware, disk,
           trace file), a disk in use by another program, KVM set-up
  80       the guest rebooted (reboot, a triple fault; a kernel panic too when the guest
           has no pvpanic driver, as panic=N on the command line reboots); satavm does
           not restart it
  81       the guest kernel panicked (reported through pvpanic, ACPI device QEMU0001)
  82       the guest halted: every vCPU stopped with interrupts off (halt; poweroff
           with acpi=off, where Linux halts instead)
  128+N    stopped by signal N (SIGHUP 129, SIGINT 130, SIGTERM 143)

Environment: RUST_LOG sets what is logged to stderr (default warn; e.g. RUST_LOG=info,
RUST_LOG=satavm::ata=debug); TMPDIR is where the self-test's scratch image goes.";

/// Why satavm stops before the VM runs: the exit status and the message.
#[derive(Debug)]
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            status: exit_status::USAGE,
            message: message.into(),
        }
    }
    fn setup(message: impl Into<String>) -> Self {
        Failure {
            status: exit_status::SETUP_FAILED,
            message: message.into(),
        }
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::TooManyDisks(_)
            | StorageError::SameDisk { .. }
            | StorageError::InjectPort { .. } => Failure::usage(e.to_string()),
            e => Failure::setup(e.to_string()),
        }
    }
}

impl From<VmmError> for Failure {
    fn from(e: VmmError) -> Self {
        match e {
            VmmError::Cpus(_)
            | VmmError::Memory(_)
            | VmmError::MemoryAlignment(_)
            | VmmError::MemoryHost { .. }
            | VmmError::Boot(BootError::FirmwareArgs { .. } | BootError::Cmdline(_)) => {
                Failure::usage(e.to_string())
            }
            VmmError::OpenKvm(_) | VmmError::KvmApi(_) => Failure {
                status: exit_status::KVM_UNAVAILABLE,
                message: e.to_string(),
            },
            VmmError::Storage(s) => s.into(),
            e => Failure::setup(e.to_string()),
        }
    }
}

/// A sparse image in $TMPDIR, removed when dropped (and by a signal that ends satavm at
/// once, see [`signals::remove_on_fatal_signal`]).
struct ScratchDisk(PathBuf);

impl ScratchDisk {
    fn create(bytes: u64) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("satavm-selftest-{}.img", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        signals::remove_on_fatal_signal(&path);
        let disk = ScratchDisk(path);
        file.set_len(bytes)?;
        Ok(disk)
    }
}

impl Drop for ScratchDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        signals::forget_scratch();
    }
}

/// What the vCPUs boot: the kernel if given, else a firmware ELF (the built-in self-test
/// unless --firmware names another).
fn boot_source(cli: &Cli) -> Result<Boot, Failure> {
    if let Some(kernel) = &cli.kernel {
        return Ok(Boot::Linux {
            kernel: kernel.clone(),
            initramfs: cli.initramfs.clone(),
            cmdline: cli.cmdline.clone(),
        });
    }
    let elf = match &cli.firmware {
        Some(path) => std::fs::read(path)
            .map_err(|e| Failure::setup(format!("cannot read {}: {e}", path.display())))?,
        None => SELFTEST_ELF.to_vec(),
    };
    Ok(Boot::Firmware {
        elf,
        args: cli.firmware_args.clone(),
    })
}

/// --inject rules, then those of each --inject-file.
fn inject_rules(cli: &Cli) -> Result<Vec<Rule>, Failure> {
    let mut rules = cli.inject.clone();
    for f in &cli.inject_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Failure::setup(format!("cannot read {}: {e}", f.display())))?;
        rules.extend(
            parse_file(&f.display().to_string(), &text)
                .map_err(|e| Failure::usage(e.to_string()))?,
        );
    }
    Ok(rules)
}

/// A trace path that is a file (not `-`, stderr).
fn trace_file(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| p.as_os_str() != "-")
}

/// Everything checked and opened that needs no KVM: what `run` and `--check` work from.
struct Plan {
    guest: vmm::LoadedGuest,
    firmware: bool,
    disks: Vec<PreparedDisk>,
    options: StorageOptions,
    /// Trace files, created when the VM is set up.
    trace_files: Vec<LateFile>,
    /// The run's own files (disks, kernel, ...), which no trace file may be.
    own_files: Vec<(FileId, String)>,
    /// The scratch image of a self-test without --disk (removed at exit).
    scratch: Option<ScratchDisk>,
    /// What was checked, for --check.
    report: Vec<String>,
    /// The control socket, its event queue and the injection rules it changes.
    api: Option<(ApiSocket, EventQueue)>,
}

/// Check and open everything that can be without KVM; see [`Plan`].
fn plan(cli: &Cli) -> Result<Plan, Failure> {
    let mut report = Vec::new();
    let config = VmConfig {
        boot: Boot::Firmware {
            elf: Vec::new(),
            args: String::new(),
        },
        cpus: cli.cpus,
        memory: cli.memory,
    };
    vmm::check_config(&config)?;
    report.push(format!(
        "{} vCPU{}, {} MiB of RAM",
        cli.cpus,
        if cli.cpus == 1 { "" } else { "s" },
        cli.memory >> 20
    ));

    let inject = inject_rules(cli)?;
    if !inject.is_empty() {
        report.push(format!("{} fault injection rule(s)", inject.len()));
    }
    // Trace paths, by name (their contents are checked against the disks below).
    let traces: Vec<&Path> = [trace_file(&cli.trace), trace_file(&cli.trace_human)]
        .into_iter()
        .flatten()
        .collect();
    if let [a, b] = traces[..] {
        if a == b || FileId::of_path(a).is_some_and(|id| FileId::of_path(b) == Some(id)) {
            return Err(Failure::usage(format!(
                "--trace and --trace-human name one file, {}: give them two files",
                a.display()
            )));
        }
    }
    for t in &traces {
        check_path(t, &[]).map_err(|e| Failure::usage(e.to_string()))?;
    }

    let boot = boot_source(cli)?;
    let firmware = matches!(boot, Boot::Firmware { .. });
    let mut own_files: Vec<(FileId, String)> = Vec::new();
    let mut own = |p: &Path, what: String| {
        if let Some(id) = FileId::of_path(p) {
            own_files.push((id, what));
        }
    };
    if let Some(k) = &cli.kernel {
        own(k, "the --kernel".into());
    }
    if let Some(i) = &cli.initramfs {
        own(i, "the --initramfs".into());
    }
    if let Some(f) = &cli.firmware {
        own(f, "the --firmware".into());
    }
    for f in &cli.inject_file {
        own(f, "an --inject-file".into());
    }
    let guest = vmm::load(&VmConfig { boot, ..config })?;
    report.push(match (&cli.kernel, &cli.firmware) {
        (Some(k), _) => format!(
            "kernel {}{} loaded into guest memory (entry {:#x})",
            k.display(),
            cli.initramfs
                .as_ref()
                .map(|i| format!(" and initramfs {}", i.display()))
                .unwrap_or_default(),
            guest.entry_point()
        ),
        (None, Some(f)) => format!(
            "firmware {} loaded (entry {:#x})",
            f.display(),
            guest.entry_point()
        ),
        (None, None) => "the built-in self-test firmware".into(),
    });

    // Firmware without --disk gets a scratch image, so that `satavm` alone runs the self-test.
    let mut specs = cli.disks.clone();
    let scratch = if firmware && specs.is_empty() {
        let scratch = ScratchDisk::create(SCRATCH_DISK_BYTES).map_err(|e| {
            Failure::setup(format!(
                "cannot create a scratch disk image in {}: {e}",
                std::env::temp_dir().display()
            ))
        })?;
        specs.push(DiskSpec::Image {
            path: scratch.0.clone(),
            model: Some("SATAVM SELFTEST SCRATCH".into()),
            serial: Some(format!("SCRATCH{}", std::process::id())),
            wwn: None,
            read_only: false,
            lock: true,
            engine: Default::default(),
        });
        Some(scratch)
    } else {
        None
    };
    let ports = usize::from(cli.ports.unwrap_or(0));
    if ports > 0 && ports < specs.len() {
        return Err(Failure::usage(format!(
            "--ports {ports}: fewer ports than --disk options ({})",
            specs.len()
        )));
    }
    storage::check_inject_ports(&inject, specs.len().max(ports))?;
    let disks = storage::prepare(&specs)?;
    for (port, d) in disks.iter().enumerate() {
        if let Some(id) = d.id() {
            own_files.push((id, format!("the disk of port {port}")));
        }
        report.push(format!("port {port}: {}", d.describe()));
    }
    if ports > 0 {
        report.push(format!(
            "{ports} AHCI ports, hot-pluggable, {} of them empty",
            ports - specs.len()
        ));
    }
    for t in &traces {
        check_path(t, &own_files).map_err(|e| Failure::usage(e.to_string()))?;
        report.push(format!(
            "trace file {} (created when the VM starts)",
            t.display()
        ));
    }

    // The tracer: files wait until the VM is set up (see `run`).
    let mut sinks = Vec::new();
    let mut trace_files = Vec::new();
    let mut late = |p: &Path| {
        let f = LateFile::new(p);
        trace_files.push(f.clone());
        Box::new(f) as Box<dyn std::io::Write + Send>
    };
    match &cli.trace {
        Some(p) if p.as_os_str() == "-" => {
            sinks.push(Sink::new(Format::Human, Box::new(std::io::stderr())));
        }
        Some(p) => sinks.push(Sink::new(Format::Json, late(p))),
        None => {}
    }
    match &cli.trace_human {
        Some(p) if p.as_os_str() != "-" => sinks.push(Sink::new(Format::Human, late(p))),
        // Once is enough when --trace - already writes text to stderr.
        Some(_) if cli.trace.as_ref().is_none_or(|p| p.as_os_str() != "-") => {
            sinks.push(Sink::new(Format::Human, Box::new(std::io::stderr())));
        }
        _ => {}
    }
    let api = match &cli.api_socket {
        Some(path) => {
            let socket = ApiSocket::bind(path).map_err(|e| Failure::setup(e.to_string()))?;
            let queue =
                EventQueue::new().map_err(|e| Failure::setup(format!("control socket: {e}")))?;
            report.push(format!("control socket {} (0600)", path.display()));
            Some((socket, queue))
        }
        None => None,
    };
    let options = StorageOptions {
        // The control socket turns tracing on and off while the VM runs.
        tracer: if api.is_some() {
            Tracer::switchable(sinks)
        } else {
            Tracer::new(sinks)
        },
        inject_control: api.as_ref().map(|_| InjectControl::new(&inject)),
        events: api.as_ref().map(|(_, q)| api::event_hook(q.clone())),
        strict: cli.strict,
        inject,
        aggregation: cli.ncq_aggregation,
        doorbells: cli.doorbells,
        registers: cli.registers,
        ports,
    };
    Ok(Plan {
        guest,
        firmware,
        disks,
        options,
        trace_files,
        own_files,
        scratch,
        report,
        api,
    })
}

/// Parse the command line; help and version print and end with 0, errors with 64.
fn parse_cli() -> Result<Cli, ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    Cli::try_parse_from(&args).map_err(|e| {
        let _ = e.print();
        if !e.use_stderr() {
            return ExitCode::SUCCESS;
        }
        if e.kind() == clap::error::ErrorKind::UnknownArgument {
            if let Some(hint) = trace_human_hint(&args) {
                eprintln!("\n{hint}");
            }
        }
        ExitCode::from(exit_status::USAGE)
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // Until the VM runs, a signal ends satavm at once (removing the scratch image); the
    // event loop takes them over then (vmm::signals).
    if let Err(e) = signals::install_fatal_handlers() {
        log::warn!("cannot install signal handlers: {e}");
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "ctl") {
        return ctl::main();
    }
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let plan = match plan(&cli) {
        Ok(p) => p,
        Err(f) => {
            eprintln!("satavm: {}", f.message);
            return ExitCode::from(f.status);
        }
    };
    if cli.check {
        println!("satavm --check: all good, /dev/kvm not opened:");
        for line in &plan.report {
            println!("  {line}");
        }
        return ExitCode::SUCCESS;
    }
    let Plan {
        guest,
        firmware,
        disks,
        options,
        trace_files,
        own_files,
        scratch: _scratch,
        report: _,
        api,
    } = plan;
    let cpus = cli.cpus;
    let mut storage = None;
    let mut exit_counters = None;
    // The socket's path stays until satavm exits; the server takes its listener.
    let mut api_socket = api;
    let api_parts = api_socket
        .as_mut()
        .and_then(|(s, q)| s.take_listener().map(|l| (l, q.clone())));
    let result = vmm::run(
        guest,
        |ctx| {
            exit_counters = Some(ctx.exit_counters.clone());
            storage = storage::attach_prepared(ctx, disks, &options)?;
            if let Some((socket, queue)) = api_parts {
                let commands = VmCommands {
                    storage: storage.clone(),
                    control: options.inject_control.clone().unwrap_or_default(),
                    exit: ctx.exit.clone(),
                    started: std::time::Instant::now(),
                    cpus,
                    tracer: options.tracer.clone(),
                    own_files: own_files.clone(),
                };
                api::attach(ctx, socket, commands, queue)?;
            }
            Ok(())
        },
        || {
            for f in &trace_files {
                f.open(&own_files).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
    );
    if let Some(counters) = &exit_counters {
        eprintln!("satavm: {}", counters.summary());
    }
    if let Some(storage) = &storage {
        storage.finish();
        for line in storage.summary() {
            eprintln!("satavm: {line}");
        }
    }
    match result {
        // Firmware reports its verdict through the exit-code port; stopping any other way
        // (a triple fault shows up as a reset) is a failure.
        Ok(exit @ (VmExit::Reset | VmExit::PowerOff | VmExit::Halted | VmExit::GuestPanic))
            if firmware =>
        {
            eprintln!("satavm: firmware stopped ({exit:?}) without reporting a result");
            ExitCode::from(exit_status::GUEST_CRASHED)
        }
        Ok(VmExit::PowerOff) | Ok(VmExit::GuestCode(0)) => ExitCode::SUCCESS,
        Ok(VmExit::Reset) => {
            eprintln!("satavm: the guest rebooted");
            ExitCode::from(exit_status::REBOOTED)
        }
        Ok(VmExit::GuestPanic) => {
            eprintln!("satavm: the guest kernel panicked (pvpanic)");
            ExitCode::from(exit_status::GUEST_PANICKED)
        }
        Ok(VmExit::Halted) => {
            eprintln!("satavm: the guest halted (every vCPU stopped with interrupts off)");
            ExitCode::from(exit_status::HALTED)
        }
        Ok(VmExit::GuestCode(code)) => {
            eprintln!("satavm: guest reported failure code {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(63).clamp(1, 63))
        }
        Ok(VmExit::Failure(msg)) => {
            eprintln!("satavm: guest failed: {msg}");
            ExitCode::from(exit_status::GUEST_CRASHED)
        }
        Ok(VmExit::Panic(msg)) => {
            eprintln!("satavm: internal error: {msg} (a bug in satavm; please report it)");
            ExitCode::from(exit_status::GUEST_CRASHED)
        }
        Ok(VmExit::Signal { signal, pid }) => {
            let from = if pid == 0 {
                String::new()
            } else {
                format!(" from pid {pid}")
            };
            eprintln!("satavm: stopped by {}{from}", signals::name(signal));
            let n = u8::try_from(signal).unwrap_or(0).min(127);
            ExitCode::from(exit_status::SIGNAL_BASE + n)
        }
        Ok(VmExit::Quit) => {
            eprintln!("satavm: quit from the console (Ctrl-A x)");
            ExitCode::SUCCESS
        }
        Ok(VmExit::ApiQuit) => {
            eprintln!("satavm: quit through the control socket");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let f = Failure::from(e);
            eprintln!("satavm: {}", f.message);
            ExitCode::from(f.status)
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
    fn registers_are_trapped_unless_mapped() {
        assert_eq!(parse(&[]).unwrap().registers, RegisterMode::Trap);
        assert_eq!(
            parse(&["--registers", "mapped"]).unwrap().registers,
            RegisterMode::Mapped
        );
        assert!(parse(&["--registers", "maybe"]).is_err());
    }

    #[test]
    fn doorbells_are_on_unless_turned_off() {
        assert!(parse(&[]).unwrap().doorbells);
        assert!(parse(&["--doorbells", "on"]).unwrap().doorbells);
        assert!(!parse(&["--doorbells", "off"]).unwrap().doorbells);
        assert!(parse(&["--doorbells", "maybe"]).is_err());
        assert!(parse(&["--doorbells"]).is_err());
    }

    #[test]
    fn help_lists_the_console_keys_the_console_knows() {
        assert!(
            AFTER_HELP.contains(satavm::vmm::serial::ESCAPE_HELP),
            "--help and vmm::serial::ESCAPE_HELP differ"
        );
    }
}
