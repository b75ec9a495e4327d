//! Plugs the AHCI function and its drives into the VM: one port per `--disk` (or `--ports N`,
//! the rest empty and hot-pluggable: `storage/hotplug.rs`), interrupts through KVM, device
//! completions through the event loop; tracing, spec checks (`--strict` stops the VM through
//! its [`super::ExitSignal`]), fault injection around each drive, and
//! statistics at exit and on SIGUSR1; SIGUSR2 re-reads the image path of every CD/DVD drive
//! ([`crate::ata::atapi::MediaControl::reload`]: a file there is inserted, none ejects).

use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

use super::bus::BarFollowerEntry;
use super::doorbells::{DoorbellPump, Doorbells};
use super::interrupts::KvmInterrupts;
use super::layout::{PCI_INTX_GSI, PCI_MMIO_START};
use super::register_slot::RegisterSlot;
use super::{DeviceContext, VmExit};
use crate::ahci::checks::{SpecChecks, Violation, ViolationHook};
use crate::ahci::sdb_aggregation::AggregationMode;
use crate::ahci::{AhciFunction, Observers, PortStats, ABAR};
use crate::ata::atapi::{AtapiDrive, CdromConfig, MediaControl, MediaError, Medium};
use crate::ata::inject::{InjectingDevice, Rule};
use crate::ata::names::opcode_name;
use crate::ata::passthrough::{check_host_node, lock_host_nodes, HostLocks, PassthroughStats};
use crate::ata::{DriveConfig, EmulatedDrive, PassthroughConfig, PassthroughDrive};
use crate::disk_spec::DiskSpec;
use crate::hostfile::{self, DiskFile, FileId, HostFileError};
use crate::mem::GuestMemory;
use crate::sata::{CompletionNotifier, SataDevice};
use crate::trace::Tracer;

mod hotplug;
pub use hotplug::{HotPlugError, Removed};

/// Most ports an AHCI HBA has (CAP.NP is 5 bits).
pub const MAX_DISKS: usize = 32;

/// Why the drives could not be attached.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("at most {MAX_DISKS} --disk options (one AHCI port each), got {0}")]
    TooManyDisks(usize),
    #[error("--ports {ports}: must be 1 to {MAX_DISKS} and at least the number of --disk options ({disks})")]
    Ports { ports: usize, disks: usize },
    #[error("--disk {path}: {source}")]
    Drive {
        path: String,
        source: crate::ata::DriveError,
    },
    #[error("--disk {}: {source}", .path.display())]
    Disk {
        path: std::path::PathBuf,
        source: HostFileError,
    },
    #[error("--disk {} (port {second}) is the same {what} as port {first}'s{}: two drives would write one medium (readonly=on on both shares it read-only)", .path.display(), same_as(.first_path, .path))]
    SameDisk {
        first: usize,
        second: usize,
        first_path: std::path::PathBuf,
        path: std::path::PathBuf,
        what: &'static str,
    },
    #[error("--disk passthrough: {0}")]
    Passthrough(#[from] crate::ata::PassthroughError),
    #[error("--inject: rule for port {port}, but there are only {disks} disks: {rule}")]
    InjectPort {
        port: u8,
        disks: usize,
        rule: String,
    },
    #[error("--disk cdrom: {0}")]
    Cdrom(#[from] MediaError),
    #[error("completion eventfd: {0}")]
    Io(#[from] std::io::Error),
    #[error("SIGUSR1 signalfd or completion timer: {0}")]
    Signal(#[from] nix::Error),
}

fn same_as(first: &std::path::Path, second: &std::path::Path) -> String {
    if first == second {
        String::new()
    } else {
        format!(" ({})", first.display())
    }
}

/// How to observe and disturb the drives.
#[derive(Debug, Clone, Default)]
pub struct StorageOptions {
    /// Where trace events go (off by default).
    pub tracer: Tracer,
    /// Stop the VM at the first AHCI spec violation.
    pub strict: bool,
    /// Fault injection rules.
    pub inject: Vec<Rule>,
    /// How ports hold queued completions back to report several in one SDB FIS.
    pub aggregation: AggregationMode,
    /// Take single-bit PxSACT/PxCI writes without an exit (KVM ioeventfd doorbells; trap
    /// mode only).
    pub doorbells: bool,
    /// How guest reads of the HBA registers are answered.
    pub registers: RegisterMode,
    /// Injection rules and link requests that change while the VM runs (the control
    /// socket): every drive is wrapped for injection and takes its rules from here (`inject`
    /// is then ignored: the control holds those rules too).
    pub inject_control: Option<crate::ata::inject::InjectControl>,
    /// Where link changes, command errors and resets are reported (the control socket).
    pub events: Option<crate::ahci::events::EventHook>,
    /// `--ports N`: the HBA has N ports, those past the disks empty, every port declared
    /// hot-pluggable (0: one port per disk, none hot-pluggable).
    pub ports: usize,
}

/// How guest reads of the HBA registers are answered (`--registers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RegisterMode {
    /// Every read exits to satavm (and is traced); doorbells may take PxSACT/PxCI writes.
    /// The default: with the doorbells it moved the most data in the benchmark (see README).
    #[default]
    Trap,
    /// Reads come from a read-only memslot satavm keeps up to date: no exit (see
    /// [`crate::ahci::register_page`]); every write exits.
    Mapped,
}

impl RegisterMode {
    pub fn name(self) -> &'static str {
        match self {
            RegisterMode::Trap => "trap",
            RegisterMode::Mapped => "mapped",
        }
    }
}

/// Runs `process_completions` whenever a drive signals that commands finished (the shared
/// notifier, or a drive's I/O engine's own descriptor, e.g. the sg engine's epoll set), and
/// when something is due without a signal (`timer`, armed for the earliest deadline: held
/// completions of [`crate::ahci::sdb_aggregation`], a fault injection's delay or outage).
struct CompletionPump {
    ahci: Arc<Mutex<AhciFunction>>,
    notifier: CompletionNotifier,
    timer: TimerFd,
    /// Duplicates of the drives' own descriptors, watched now (they change with hot plug).
    watched: Vec<std::os::fd::OwnedFd>,
    /// [`AhciFunction::plug_generation`] when they were read.
    generation: Option<u64>,
}

impl CompletionPump {
    fn new(ahci: Arc<Mutex<AhciFunction>>, notifier: CompletionNotifier) -> nix::Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(Self {
            ahci,
            notifier,
            timer,
            watched: Vec::new(),
            generation: None,
        })
    }

    /// Watch the drives' own readiness descriptors, again whenever the drives changed (hot
    /// plug). The loop watches duplicates of them, so that a descriptor closed with its
    /// drive can be taken out of epoll, and a new drive's descriptor that reuses its number
    /// is not mistaken for it.
    fn watch_ready_fds(&mut self, ops: &mut EventOps) {
        let ahci = lock(&self.ahci);
        let generation = ahci.plug_generation();
        if self.generation == Some(generation) {
            return;
        }
        self.generation = Some(generation);
        for fd in self.watched.drain(..) {
            let _ = ops.remove(Events::new_raw(fd.as_raw_fd(), EventSet::IN));
        }
        for fd in ahci.device_ready_fds() {
            // SAFETY: the drive owns `fd` and keeps it open while the HBA is locked.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let dup = match borrowed.try_clone_to_owned() {
                Ok(d) => d,
                Err(e) => {
                    log::error!("AHCI: cannot watch a drive's I/O engine: {e}");
                    continue;
                }
            };
            match ops.add(Events::new_raw(dup.as_raw_fd(), EventSet::IN)) {
                Ok(()) => self.watched.push(dup),
                Err(e) => log::error!("AHCI: cannot watch a drive's I/O engine: {e:?}"),
            }
        }
    }

    fn pump(&mut self) {
        let deadline = {
            let mut ahci = self.ahci.lock().unwrap_or_else(|e| e.into_inner());
            ahci.process_completions();
            ahci.next_deadline()
        };
        let armed = match deadline {
            Some(at) => {
                // At least 1 ns: a zero expiration would disarm the timer.
                let wait = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1));
                self.timer.set(
                    Expiration::OneShot(TimeSpec::from_duration(wait)),
                    TimerSetTimeFlags::empty(),
                )
            }
            None => self.timer.unset(),
        };
        if let Err(e) = armed {
            // Without the timer, held completions would wait for the next one: stop holding.
            log::error!("AHCI: completion timer: {e}; NCQ aggregation off");
            let mut ahci = self.ahci.lock().unwrap_or_else(|e| e.into_inner());
            ahci.set_aggregation(AggregationMode::Off);
            ahci.flush_held();
        }
    }
}

impl MutEventSubscriber for CompletionPump {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&*self.notifier, EventSet::IN)) {
            log::error!("AHCI: cannot watch drive completions: {e:?}");
        }
        self.watch_ready_fds(ops);
        if let Err(e) = ops.add(Events::new_raw(
            self.timer.as_fd().as_raw_fd(),
            EventSet::IN,
        )) {
            log::error!("AHCI: cannot watch the completion timer: {e:?}; NCQ aggregation off");
            let mut ahci = self.ahci.lock().unwrap_or_else(|e| e.into_inner());
            ahci.set_aggregation(AggregationMode::Off);
        }
    }
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.notifier.as_raw_fd() {
            let _ = self.notifier.read();
        } else if events.fd() == self.timer.as_fd().as_raw_fd() {
            // Non-blocking: EAGAIN if re-armed since it fired.
            let _ = self.timer.wait();
        }
        self.pump();
        self.watch_ready_fds(ops);
    }
}

/// Prints the statistics (and flushes the trace) on SIGUSR1.
struct StatsOnSignal {
    signals: SignalFd,
    storage: Storage,
}

impl MutEventSubscriber for StatsOnSignal {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.signals, EventSet::IN)) {
            log::error!("cannot watch SIGUSR1: {e:?}");
        }
    }
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            if info.ssi_signo == Signal::SIGUSR2 as u32 {
                self.storage.reload_media();
                continue;
            }
            self.storage.tracer.flush();
            for line in self.storage.summary() {
                eprintln!("satavm: {line}");
            }
        }
    }
}

/// Reads a pass-through drive's host-side counters.
type HostStatsReader = Box<dyn Fn() -> PassthroughStats + Send + Sync>;

/// The attached controller, kept for its statistics.
#[derive(Clone)]
pub struct Storage {
    ahci: Arc<Mutex<AhciFunction>>,
    host_stats: Arc<Mutex<Vec<Option<HostStatsReader>>>>,
    tracer: Tracer,
    /// The `--disk` of each port (None: an empty port).
    specs: Arc<Mutex<Vec<Option<DiskSpec>>>>,
    /// The tray of each CD/DVD drive, by port.
    media: Arc<Mutex<Vec<(usize, MediaControl)>>>,
    /// What opening a drive needs, for `drive-add`.
    plug: Arc<PlugContext>,
}

/// What a drive is opened and wrapped with (at start and by [`Storage::add_drive`]).
struct PlugContext {
    notifier: CompletionNotifier,
    tracer: Tracer,
    inject: Vec<Rule>,
    inject_control: Option<crate::ata::inject::InjectControl>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every counter the statistics report, read at one time: the text at exit and on SIGUSR1
/// ([`Storage::summary`]) and the control socket's `query-stats` are both made from it.
#[derive(Debug, Clone)]
pub struct StatsSnapshot {
    /// Per port: what the guest did.
    pub ports: Vec<PortStats>,
    /// Per port: a pass-through drive's host-side counters.
    pub host: Vec<Option<PassthroughStats>>,
    /// Per port: the drive's I/O engine and its counters.
    pub engines: Vec<Option<(&'static str, crate::block::EngineStats)>>,
    /// PxSACT/PxCI writes taken by KVM ioeventfds.
    pub posted_writes: u64,
    /// Register dwords stored into the mapped register page.
    pub register_page_stores: u64,
}

/// A port's registers as the guest would read them now (AHCI 1.3.1 3.3), without side
/// effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRegisters {
    pub cmd: u32,
    pub tfd: u32,
    pub ssts: u32,
    pub serr: u32,
    pub sact: u32,
    pub ci: u32,
    pub is: u32,
}

/// `n` bytes for people: "0 B", "12.0 KiB", "3.5 MiB".
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// One port's statistics as a line.
pub fn port_summary(port: usize, s: &PortStats) -> String {
    let mut ops: Vec<_> = s.by_opcode.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let ops = ops
        .iter()
        .map(|(op, n)| format!("{} {n}", opcode_name(**op)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut line = format!("port {port}: {} commands", s.commands);
    if !ops.is_empty() {
        line += &format!(" ({ops})");
    }
    line += &format!(
        ", read {}, written {}, NCQ peak depth {}, {} errors, {} resets",
        bytes(s.bytes_read),
        bytes(s.bytes_written),
        s.ncq_peak_depth,
        s.errors,
        s.resets
    );
    if s.link_drops > 0 {
        line += &format!(", {} link drops", s.link_drops);
    }
    if s.aggregated_sdbs > 0 {
        line += &format!(
            ", {} completions in {} aggregated SDB FISes",
            s.aggregated_completions, s.aggregated_sdbs
        );
    }
    line
}

impl Storage {
    /// Per-port statistics so far.
    pub fn port_stats(&self) -> Vec<PortStats> {
        self.ahci
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .port_stats()
    }

    /// Host-side counters of port `port`, if its drive is a pass-through drive.
    pub fn host_stats(&self, port: usize) -> Option<PassthroughStats> {
        lock(&self.host_stats)
            .get(port)?
            .as_ref()
            .map(|read| read())
    }

    /// Every counter, read now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let (ports, engines, posted_writes, register_page_stores) = {
            let ahci = self.ahci.lock().unwrap_or_else(|e| e.into_inner());
            (
                ahci.port_stats(),
                ahci.port_engines(),
                ahci.posted_writes(),
                ahci.register_page_stores(),
            )
        };
        StatsSnapshot {
            host: (0..ports.len()).map(|p| self.host_stats(p)).collect(),
            ports,
            engines,
            posted_writes,
            register_page_stores,
        }
    }

    /// The `--disk` of each port now (None: an empty port).
    pub fn specs(&self) -> Vec<Option<DiskSpec>> {
        lock(&self.specs).clone()
    }

    /// How many ports the HBA has.
    pub fn port_count(&self) -> usize {
        lock(&self.specs).len()
    }

    /// Port `port`'s registers now (None if there is no such port).
    pub fn port_registers(&self, port: usize) -> Option<PortRegisters> {
        use crate::ahci::regs::{hba, port as px};
        if port >= self.port_count() {
            return None;
        }
        let ahci = self.ahci.lock().unwrap_or_else(|e| e.into_inner());
        let base = hba::PORTS_BASE + port as u64 * hba::PORT_SIZE;
        let r = |off| ahci.register(base + off);
        Some(PortRegisters {
            cmd: r(px::CMD),
            tfd: r(px::TFD),
            ssts: r(px::SSTS),
            serr: r(px::SERR),
            sact: r(px::SACT),
            ci: r(px::CI),
            is: r(px::IS),
        })
    }

    /// One line per port for the user: what the guest did, and for pass-through what the
    /// host drive saw.
    pub fn summary(&self) -> Vec<String> {
        let snap = self.snapshot();
        let posted = snap.posted_writes;
        let stores = snap.register_page_stores;
        let mapped = (stores > 0).then(|| {
            format!(
                "registers: mapped, {stores} register stores into the read-only memslot (guest reads of ABAR never exit)"
            )
        });
        let doorbells = (posted > 0).then(|| {
            format!(
                "doorbells: {posted} PxSACT/PxCI writes taken by KVM ioeventfds (no exit to satavm)"
            )
        });
        let engines = &snap.engines;
        snap.ports
            .iter()
            .enumerate()
            .map(|(port, s)| {
                let mut line = port_summary(port, s);
                if let Some(h) = snap.host.get(port).copied().flatten() {
                    line += &format!(
                        "; host: {} SG_IO commands, peak {} in flight, {} errors, {} timeouts, \
                         {} direct I/O, {} through the kernel's pages",
                        h.commands_sent,
                        h.peak_in_flight,
                        h.errors,
                        h.timeouts,
                        h.direct_io,
                        h.indirect_io
                    );
                }
                if let Some((name, e)) = engines.get(port).copied().flatten() {
                    line += &format!(
                        "; engine {name}: {} requests, {} system calls, peak {} in flight, {} bounced",
                        e.submitted,
                        e.syscalls,
                        e.peak_in_flight,
                        bytes(e.bounced_bytes)
                    );
                }
                line
            })
            .chain(mapped)
            .chain(doorbells)
            .collect()
    }

    /// The trays of the CD/DVD drives, by port (for SIGUSR2 and a control socket).
    pub fn media_controls(&self) -> Vec<(usize, MediaControl)> {
        lock(&self.media).clone()
    }

    /// SIGUSR2: every CD/DVD drive re-reads its image path (see [`MediaControl::reload`]).
    pub fn reload_media(&self) {
        let media = self.media_controls();
        if media.is_empty() {
            eprintln!("satavm: SIGUSR2: no CD/DVD drive (--disk cdrom=ISO) to change the disc of");
        }
        for (port, control) in media.iter() {
            let path = control
                .path()
                .map_or_else(String::new, |p| p.display().to_string());
            match control.reload() {
                Ok(()) if std::path::Path::new(&path).exists() => {
                    eprintln!("satavm: SIGUSR2: port {port}: disc {path} inserted")
                }
                Ok(()) => eprintln!("satavm: SIGUSR2: port {port}: no {path}: disc ejected"),
                Err(e) => eprintln!("satavm: SIGUSR2: port {port}: {e}"),
            }
        }
    }

    /// Write out what the tracer buffered (call before exiting).
    pub fn finish(&self) {
        self.tracer.flush();
    }
}

/// KVM ioeventfds for single-bit PxSACT/PxCI writes of the first ports (see
/// [`super::doorbells`]); without KVM's support, every write exits as before.
fn add_doorbells(
    ctx: &mut DeviceContext,
    ahci: &Arc<Mutex<AhciFunction>>,
    device: u8,
    ports: usize,
) {
    if !ctx.vm.check_extension(kvm_ioctls::Cap::Ioeventfd) {
        log::info!("KVM has no ioeventfds: AHCI doorbells off");
        return;
    }
    let doorbells = match Doorbells::new(ctx.vm.clone(), ports) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            log::warn!("AHCI doorbells: {e}; every PxCI/PxSACT write exits to satavm instead");
            return;
        }
    };
    // The pump first: set_posted_writes registers the doorbells, and only a watched doorbell
    // may ring (the pump disables them if it cannot watch).
    ctx.events.add_subscriber(Box::new(DoorbellPump {
        ahci: ahci.clone(),
        doorbells: doorbells.clone(),
    }));
    ahci.lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_posted_writes(doorbells.clone());
    follow_abar(ctx, device, doorbells);
}

/// Have the bus keep `follower` where ABAR decodes, now and after every move.
fn follow_abar(ctx: &mut DeviceContext, device: u8, follower: Arc<dyn super::bus::BarFollower>) {
    ctx.bar_followers.push(BarFollowerEntry {
        device,
        bar: ABAR,
        follower,
    });
}

/// Map the register file at ABAR for exit-free reads; false (trap mode) if KVM cannot.
fn map_registers(ctx: &mut DeviceContext, ahci: &Arc<Mutex<AhciFunction>>, device: u8) -> bool {
    let slot = match RegisterSlot::new(ctx.vm.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::warn!("AHCI mapped registers: {e}; every register read exits to satavm instead");
            return false;
        }
    };
    ahci.lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_register_page(slot.clone());
    follow_abar(ctx, device, slot);
    true
}

type OpenedDrive = (Box<dyn SataDevice>, Option<HostStatsReader>);

/// A `--disk` whose host side is open and locked already ([`prepare`]): what can be checked
/// without KVM has been.
#[derive(Debug)]
pub enum PreparedDisk {
    /// An image or block device, opened and checked by [`hostfile::open_disk`].
    Image { spec: DiskSpec, disk: DiskFile },
    /// A pass-through device node, checked to be one, with its locks.
    Passthrough { spec: DiskSpec, locks: HostLocks },
    /// A CD/DVD drive and its ISO image, opened read-only (none: an empty tray).
    Cdrom {
        spec: DiskSpec,
        disk: Option<DiskFile>,
    },
}

impl PreparedDisk {
    /// The `--disk` it came from.
    pub fn spec(&self) -> &DiskSpec {
        match self {
            PreparedDisk::Image { spec, .. }
            | PreparedDisk::Passthrough { spec, .. }
            | PreparedDisk::Cdrom { spec, .. } => spec,
        }
    }

    /// The identity of its file or device, to find it given twice (or as a trace file).
    pub fn id(&self) -> Option<FileId> {
        match self {
            PreparedDisk::Image { disk, .. } => Some(disk.id()),
            PreparedDisk::Passthrough { spec, .. } => FileId::of_path(spec.path()),
            PreparedDisk::Cdrom { disk, .. } => disk.as_ref().map(DiskFile::id),
        }
    }

    /// What the user reads about it (e.g. for --check).
    pub fn describe(&self) -> String {
        match self {
            PreparedDisk::Image { disk, .. } => format!(
                "{} ({}, {} sectors, {}{})",
                disk.path().display(),
                match disk.kind() {
                    hostfile::DiskKind::Regular => "image file",
                    hostfile::DiskKind::Block => "block device",
                },
                disk.sectors(),
                if disk.read_only() {
                    "read-only"
                } else {
                    "read-write"
                },
                if disk.locked() {
                    ", locked"
                } else {
                    ", not locked"
                }
            ),
            PreparedDisk::Cdrom { disk: None, .. } => "CD/DVD drive, empty tray".to_string(),
            PreparedDisk::Cdrom { disk: Some(d), .. } => format!(
                "{} (CD/DVD image, {} blocks of 2048 bytes, read-only{})",
                d.path().display(),
                d.bytes() / 2048,
                if d.locked() {
                    ", locked"
                } else {
                    ", not locked"
                }
            ),
            PreparedDisk::Passthrough { spec, locks } => format!(
                "{} (pass-through device node, {}, {} node{} locked; the drive itself is probed \
                 when the VM is built)",
                spec.path().display(),
                if spec.read_only() {
                    "read-only"
                } else {
                    "read-write"
                },
                locks.len(),
                if locks.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Open and lock every disk's host side, in port order, and refuse one file given on two
/// ports where either would write it: everything about the disks that needs no KVM.
pub fn prepare(disks: &[DiskSpec]) -> Result<Vec<PreparedDisk>, StorageError> {
    if disks.len() > MAX_DISKS {
        return Err(StorageError::TooManyDisks(disks.len()));
    }
    let mut prepared: Vec<PreparedDisk> = Vec::new();
    for (port, spec) in disks.iter().enumerate() {
        // Before opening: a second open of a file this run locked would be refused as "in
        // use", which is true but less clear than this.
        if let Some(id) = FileId::of_path(spec.path()) {
            let clash = prepared.iter().enumerate().find(|(_, p)| {
                p.id() == Some(id)
                    && (!p.spec().read_only() || !spec.read_only())
                    && (locked(p.spec()) || locked(spec))
            });
            if let Some((first, p)) = clash {
                return Err(StorageError::SameDisk {
                    first,
                    second: port,
                    first_path: p.spec().path().into(),
                    path: spec.path().into(),
                    what: if matches!(id, FileId::Device(_)) {
                        "device"
                    } else {
                        "file"
                    },
                });
            }
        }
        prepared.push(match spec {
            DiskSpec::Image {
                path,
                read_only,
                lock,
                ..
            } => {
                let disk = hostfile::open_disk(path, *read_only, *lock).map_err(|source| {
                    StorageError::Disk {
                        path: path.clone(),
                        source,
                    }
                })?;
                for w in disk.warnings() {
                    log::warn!("--disk {w}");
                }
                PreparedDisk::Image {
                    spec: spec.clone(),
                    disk,
                }
            }
            DiskSpec::Passthrough {
                path,
                read_only,
                lock,
                ..
            } => {
                let locks = if *lock {
                    lock_host_nodes(path, *read_only)?
                } else {
                    check_host_node(path)?;
                    HostLocks::default()
                };
                PreparedDisk::Passthrough {
                    spec: spec.clone(),
                    locks,
                }
            }
            DiskSpec::Cdrom { path, lock, .. } => {
                let disk = match path {
                    Some(path) => {
                        Some(hostfile::open_disk(path, true, *lock).map_err(|source| {
                            StorageError::Disk {
                                path: path.clone(),
                                source,
                            }
                        })?)
                    }
                    None => None,
                };
                if disk.as_ref().is_some_and(|d| d.bytes() < 2048) {
                    return Err(MediaError::TooSmall(spec.path().into()).into());
                }
                PreparedDisk::Cdrom {
                    spec: spec.clone(),
                    disk,
                }
            }
        });
    }
    Ok(prepared)
}

fn locked(spec: &DiskSpec) -> bool {
    match spec {
        DiskSpec::Image { lock, .. }
        | DiskSpec::Passthrough { lock, .. }
        | DiskSpec::Cdrom { lock, .. } => *lock,
    }
}

fn open_drive(
    prepared: PreparedDisk,
    notifier: &CompletionNotifier,
    tracer: &Tracer,
    port: u8,
) -> Result<OpenedDrive, StorageError> {
    match prepared {
        PreparedDisk::Image {
            spec:
                DiskSpec::Image {
                    path,
                    model,
                    serial,
                    read_only,
                    wwn,
                    engine,
                    ..
                },
            disk,
        } => {
            let config = DriveConfig {
                path: path.clone(),
                model,
                serial,
                read_only,
                wwn,
                engine,
            };
            let drive =
                EmulatedDrive::with_disk(&config, disk, notifier.clone()).map_err(|source| {
                    StorageError::Drive {
                        path: path.display().to_string(),
                        source,
                    }
                })?;
            Ok((Box::new(drive), None))
        }
        PreparedDisk::Passthrough {
            spec:
                DiskSpec::Passthrough {
                    path,
                    timeout,
                    allow_all,
                    read_only,
                    lock,
                    engine,
                },
            locks,
        } => {
            // A CD/DVD drive (INQUIRY peripheral type 05h) is passed through as ATAPI.
            let host = crate::ata::atapi::host::HostConfig {
                path: path.clone(),
                timeout,
                // readonly=on refuses every write, whatever allow= says.
                allow_all: allow_all && !read_only,
            };
            let locks = match crate::ata::atapi::host::open_if_atapi(
                &host,
                locks,
                notifier.clone(),
                tracer,
                port,
            ) {
                Ok(Ok(drive)) => {
                    log::info!(
                        "{}: ATAPI pass-through of \"{}\"",
                        path.display(),
                        drive.model()
                    );
                    return Ok((Box::new(drive), None));
                }
                Ok(Err(locks)) => locks,
                Err(source) => {
                    return Err(StorageError::Io(source));
                }
            };
            let config = PassthroughConfig {
                path: path.clone(),
                timeout,
                allow_all,
                read_only,
                lock,
                engine,
            };
            let drive = PassthroughDrive::open_locked(
                &config,
                locks,
                notifier.clone(),
                tracer.clone(),
                port,
            )?;
            log::info!(
                "{}: pass-through, at most {} sectors per host command",
                path.display(),
                drive.max_transfer_sectors()
            );
            let reader: HostStatsReader = Box::new(drive.stats_reader());
            Ok((Box::new(drive), Some(reader)))
        }
        // prepare() pairs each spec with its own kind; CD/DVD drives are opened by open_cdrom.
        PreparedDisk::Image { spec, .. }
        | PreparedDisk::Passthrough { spec, .. }
        | PreparedDisk::Cdrom { spec, .. } => {
            unreachable!("prepared disk of the wrong kind: {spec:?}")
        }
    }
}

/// The CD/DVD drive of a prepared `cdrom=` disk, and its tray's control.
fn open_cdrom(
    spec: DiskSpec,
    disk: Option<DiskFile>,
    notifier: &CompletionNotifier,
) -> Result<(AtapiDrive, MediaControl), StorageError> {
    let DiskSpec::Cdrom {
        path,
        model,
        serial,
        lock,
        engine,
    } = spec
    else {
        unreachable!("prepared CD/DVD drive of the wrong kind: {spec:?}")
    };
    let config = CdromConfig {
        path,
        model,
        serial,
        engine,
        lock,
    };
    let medium = match disk {
        Some(d) => Some(Medium::with_disk(d, engine, notifier.clone())?),
        None => None,
    };
    Ok(AtapiDrive::with_medium(&config, medium, notifier.clone()))
}

/// A drive opened for a port, wrapped for injection.
struct OpenedPort {
    device: Box<dyn SataDevice>,
    host_stats: Option<HostStatsReader>,
    media: Option<MediaControl>,
}

impl PlugContext {
    /// Open `d`'s drive for `port` and wrap it for fault injection.
    fn open(&self, d: PreparedDisk, port: u8) -> Result<OpenedPort, StorageError> {
        let notifier = &self.notifier;
        let (drive, host_stats, media) = match d {
            PreparedDisk::Cdrom { spec, disk } => {
                let (drive, control) = open_cdrom(spec, disk, notifier)?;
                (Box::new(drive) as Box<dyn SataDevice>, None, Some(control))
            }
            d => {
                let (drive, stats) = open_drive(d, notifier, &self.tracer, port)?;
                (drive, stats, None)
            }
        };
        let wrapped = InjectingDevice::new(
            drive,
            port,
            &self.inject,
            notifier.clone(),
            self.tracer.clone(),
        );
        let device: Box<dyn SataDevice> = if let Some(control) = &self.inject_control {
            Box::new(wrapped.with_control(control.clone()))
        } else if wrapped.has_rules() {
            Box::new(wrapped)
        } else {
            wrapped.into_inner()
        };
        Ok(OpenedPort {
            device,
            host_stats,
            media,
        })
    }
}

/// Refuse `--inject` rules for ports that have no disk.
pub fn check_inject_ports(rules: &[Rule], disks: usize) -> Result<(), StorageError> {
    match rules
        .iter()
        .find(|r| r.port.is_some_and(|p| usize::from(p) >= disks))
    {
        Some(r) => Err(StorageError::InjectPort {
            port: r.port.unwrap_or(0),
            disks,
            rule: r.text.clone(),
        }),
        None => Ok(()),
    }
}

/// Add the AHCI function with one port per disk (none when `disks` is empty).
pub fn attach(
    ctx: &mut DeviceContext,
    disks: &[DiskSpec],
) -> Result<Option<Storage>, StorageError> {
    attach_with(ctx, disks, &StorageOptions::default())
}

/// Block SIGUSR1 and SIGUSR2 in this thread (and the threads it starts from now on), so that
/// only the signalfd sees them.
pub fn block_sigusr1() -> Result<SigSet, StorageError> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGUSR1);
    mask.add(Signal::SIGUSR2);
    mask.thread_block()?;
    Ok(mask)
}

/// As [`attach`], with tracing, spec checks and fault injection as `options` say.
pub fn attach_with(
    ctx: &mut DeviceContext,
    disks: &[DiskSpec],
    options: &StorageOptions,
) -> Result<Option<Storage>, StorageError> {
    check_inject_ports(&options.inject, disks.len())?;
    attach_prepared(ctx, prepare(disks)?, options)
}

/// As [`attach_with`], for disks [`prepare`] opened.
pub fn attach_prepared(
    ctx: &mut DeviceContext,
    disks: Vec<PreparedDisk>,
    options: &StorageOptions,
) -> Result<Option<Storage>, StorageError> {
    if disks.is_empty() && options.ports == 0 {
        return Ok(None);
    }
    if disks.len() > MAX_DISKS {
        return Err(StorageError::TooManyDisks(disks.len()));
    }
    if options.ports > MAX_DISKS || options.ports > 0 && options.ports < disks.len() {
        return Err(StorageError::Ports {
            ports: options.ports,
            disks: disks.len(),
        });
    }
    let ports = disks.len().max(options.ports);
    check_inject_ports(&options.inject, ports)?;
    let mut specs: Vec<Option<DiskSpec>> = disks.iter().map(|d| Some(d.spec().clone())).collect();
    specs.resize(ports, None);
    // Before the drives start their threads, which inherit the mask.
    let mask = block_sigusr1()?;
    let notifier: CompletionNotifier = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
    if let Some(control) = &options.inject_control {
        control.bind_notifier(notifier.clone());
    }
    let plug = PlugContext {
        notifier: notifier.clone(),
        tracer: options.tracer.clone(),
        inject: options.inject.clone(),
        inject_control: options.inject_control.clone(),
    };
    let mut devices: Vec<Box<dyn SataDevice>> = Vec::new();
    let mut host_stats = Vec::new();
    let mut media = Vec::new();
    let present = specs.iter().map(Option::is_some).collect::<Vec<_>>();
    for (port, d) in disks.into_iter().enumerate() {
        let opened = plug.open(d, port as u8)?;
        if let Some(control) = opened.media {
            media.push((port, control));
        }
        devices.push(opened.device);
        host_stats.push(opened.host_stats);
    }
    while devices.len() < ports {
        devices.push(Box::new(crate::ahci::port::hotplug::NoDevice));
        host_stats.push(None);
    }
    let mem: Arc<dyn GuestMemory> = ctx.mem.clone();
    let irq = Arc::new(KvmInterrupts::new(ctx.vm.clone(), PCI_INTX_GSI));
    let strict: Option<ViolationHook> = options.strict.then(|| {
        let exit = ctx.exit.clone();
        Arc::new(move |v: &Violation| {
            exit.raise(VmExit::Failure(format!("--strict: {v}")));
        }) as ViolationHook
    });
    let observers = Observers {
        tracer: options.tracer.clone(),
        checks: Arc::new(SpecChecks::new(options.tracer.clone(), strict)),
    };
    let ahci = Arc::new(Mutex::new(AhciFunction::with_observers(
        devices,
        mem,
        irq,
        PCI_MMIO_START as u32,
        PCI_INTX_GSI as u8,
        observers,
    )));
    if let Some(hook) = &options.events {
        ahci.lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_event_hook(hook.clone());
    }
    if options.ports > 0 {
        lock(&ahci).set_hot_plug(&present);
    }
    let device_number = ctx.pci.add(ahci.clone());
    ctx.pci_intx.push((device_number, 1));
    ahci.lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_aggregation(options.aggregation);
    ctx.events.add_subscriber(Box::new(CompletionPump::new(
        ahci.clone(),
        notifier.clone(),
    )?));
    let mapped =
        options.registers == RegisterMode::Mapped && map_registers(ctx, &ahci, device_number);
    if mapped {
        // Without doorbells every issue write exits; under load the event loop, not the
        // vCPU, then fetches and submits the command (see Port::set_deferred_issue).
        ahci.lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_deferred_issue(notifier);
    }
    // Doorbells cannot be combined with mapped registers (see crate::ahci::register_page).
    if options.doorbells && !mapped {
        add_doorbells(ctx, &ahci, device_number, ports);
    }
    let storage = Storage {
        ahci,
        host_stats: Arc::new(Mutex::new(host_stats)),
        tracer: options.tracer.clone(),
        specs: Arc::new(Mutex::new(specs)),
        media: Arc::new(Mutex::new(media)),
        plug: Arc::new(plug),
    };
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    ctx.events.add_subscriber(Box::new(StatsOnSignal {
        signals,
        storage: storage.clone(),
    }));
    Ok(Some(storage))
}
