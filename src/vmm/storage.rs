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
use crate::ata::{DriveConfig, EmulatedDrive};
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
    #[error("--disk passthrough={0}: SG_IO pass-through is not available in this build")]
    PassthroughUnavailable(String),
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

/// The attached controller, kept for its statistics.
pub struct Storage {
    ahci: Arc<Mutex<AhciFunction>>,
}

impl Storage {
    /// Per-port statistics so far.
    pub fn port_stats(&self) -> Vec<PortStats> {
        self.ahci
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .port_stats()
    }
}

fn open_drive(
    spec: &DiskSpec,
    notifier: &CompletionNotifier,
) -> Result<Box<dyn SataDevice>, StorageError> {
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
            Ok(Box::new(drive))
        }
        DiskSpec::Passthrough { path, .. } => Err(StorageError::PassthroughUnavailable(
            path.display().to_string(),
        )),
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
    let devices = disks
        .iter()
        .map(|d| open_drive(d, &notifier))
        .collect::<Result<Vec<_>, _>>()?;
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
    Ok(Some(Storage { ahci }))
}
