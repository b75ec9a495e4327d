//! Plugs the AHCI function and its drives into the VM: one port per `--disk`, interrupts
//! through KVM, device completions through the event loop.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use thiserror::Error;
use vmm_sys_util::eventfd::EventFd;

use super::interrupts::KvmInterrupts;
use super::layout::{PCI_INTX_GSI, PCI_MMIO_START};
use super::DeviceContext;
use crate::ahci::{AhciFunction, PortStats};
use crate::ata::passthrough::PassthroughStats;
use crate::ata::{DriveConfig, EmulatedDrive, PassthroughConfig, PassthroughDrive};
use crate::disk_spec::DiskSpec;
use crate::mem::GuestMemory;
use crate::sata::{CompletionNotifier, SataDevice};

/// Most ports an AHCI HBA has (CAP.NP is 5 bits).
pub const MAX_DISKS: usize = 32;

/// Why the drives could not be attached.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("at most {MAX_DISKS} --disk options (one AHCI port each), got {0}")]
    TooManyDisks(usize),
    #[error("--disk {path}: {source}")]
    Drive {
        path: String,
        source: crate::ata::DriveError,
    },
    #[error("--disk passthrough: {0}")]
    Passthrough(#[from] crate::ata::PassthroughError),
    #[error("completion eventfd: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs `process_completions` whenever a drive signals that commands finished.
struct CompletionPump {
    ahci: Arc<Mutex<AhciFunction>>,
    notifier: CompletionNotifier,
}

impl MutEventSubscriber for CompletionPump {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&*self.notifier, EventSet::IN)) {
            log::error!("AHCI: cannot watch drive completions: {e:?}");
        }
    }
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.notifier.as_raw_fd() {
            let _ = self.notifier.read();
            self.ahci
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .process_completions();
        }
    }
}

/// Reads a pass-through drive's host-side counters.
type HostStatsReader = Box<dyn Fn() -> PassthroughStats + Send + Sync>;

/// The attached controller, kept for its statistics.
pub struct Storage {
    ahci: Arc<Mutex<AhciFunction>>,
    host_stats: Vec<Option<HostStatsReader>>,
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
        self.host_stats.get(port)?.as_ref().map(|read| read())
    }

    /// One line per port for the user: what the guest did, and for pass-through what the
    /// host drive saw.
    pub fn summary(&self) -> Vec<String> {
        self.port_stats()
            .iter()
            .enumerate()
            .map(|(port, s)| {
                let mut line = format!(
                    "port {port}: {} commands, NCQ peak depth {}, {} errors, {} resets",
                    s.commands, s.ncq_peak_depth, s.errors, s.resets
                );
                if let Some(h) = self.host_stats(port) {
                    line += &format!(
                        "; host: {} SG_IO commands, peak {} in flight, {} errors, {} timeouts",
                        h.commands_sent, h.peak_in_flight, h.errors, h.timeouts
                    );
                }
                line
            })
            .collect()
    }
}

type OpenedDrive = (Box<dyn SataDevice>, Option<HostStatsReader>);

fn open_drive(spec: &DiskSpec, notifier: &CompletionNotifier) -> Result<OpenedDrive, StorageError> {
    match spec {
        DiskSpec::Image {
            path,
            model,
            serial,
            read_only,
        } => {
            let config = DriveConfig {
                path: path.clone(),
                model: model.clone(),
                serial: serial.clone(),
                read_only: *read_only,
            };
            let drive = EmulatedDrive::open(&config, notifier.clone()).map_err(|source| {
                StorageError::Drive {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Ok((Box::new(drive), None))
        }
        DiskSpec::Passthrough {
            path,
            timeout,
            allow_all,
            read_only,
        } => {
            let config = PassthroughConfig {
                path: path.clone(),
                timeout: *timeout,
                allow_all: *allow_all,
                read_only: *read_only,
            };
            let drive = PassthroughDrive::open(&config, notifier.clone())?;
            log::info!(
                "{}: pass-through, at most {} sectors per host command",
                path.display(),
                drive.max_transfer_sectors()
            );
            let reader: HostStatsReader = Box::new(drive.stats_reader());
            Ok((Box::new(drive), Some(reader)))
        }
    }
}

/// Add the AHCI function with one port per disk (none when `disks` is empty).
pub fn attach(
    ctx: &mut DeviceContext,
    disks: &[DiskSpec],
) -> Result<Option<Storage>, StorageError> {
    if disks.is_empty() {
        return Ok(None);
    }
    if disks.len() > MAX_DISKS {
        return Err(StorageError::TooManyDisks(disks.len()));
    }
    let notifier: CompletionNotifier = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
    let (devices, host_stats): (Vec<_>, Vec<_>) = disks
        .iter()
        .map(|d| open_drive(d, &notifier))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let mem: Arc<dyn GuestMemory> = ctx.mem.clone();
    let irq = Arc::new(KvmInterrupts::new(ctx.vm.clone(), PCI_INTX_GSI));
    let ahci = Arc::new(Mutex::new(AhciFunction::new(
        devices,
        mem,
        irq,
        PCI_MMIO_START as u32,
        PCI_INTX_GSI as u8,
    )));
    let device_number = ctx.pci.add(ahci.clone());
    ctx.pci_intx.push((device_number, 1));
    ctx.events.add_subscriber(Box::new(CompletionPump {
        ahci: ahci.clone(),
        notifier,
    }));
    Ok(Some(Storage { ahci, host_stats }))
}
