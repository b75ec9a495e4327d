//! `drive-add` and `drive-del` (the control socket): a drive opened exactly as `--disk` opens
//! it, put on an empty port, and a drive taken off its port as a cable pull does it (see
//! [`crate::ahci::port::hotplug`] for what the port and the guest see).

use std::path::PathBuf;

use super::{lock, prepare, PreparedDisk, Storage, StorageError};
use crate::ahci::pci_function::HotPlugRequestError;
use crate::disk_spec::DiskSpec;
use crate::hostfile::FileId;

/// Why a drive could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum HotPlugError {
    #[error("no port {port} (this HBA has {ports})")]
    NoPort { port: usize, ports: usize },
    #[error("port {0} already has a drive")]
    Occupied(usize),
    #[error("port {0} has no drive")]
    Empty(usize),
    #[error("{} is the same file or device as port {port}'s drive: two drives would write one medium", .path.display())]
    SameDisk { port: usize, path: PathBuf },
    #[error(transparent)]
    Open(#[from] StorageError),
    #[error(transparent)]
    Port(#[from] HotPlugRequestError),
}

/// What [`Storage::remove_drive`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The drive's host I/O was still in flight: its files close once it drained.
    pub draining: bool,
}

impl Storage {
    fn check_port(&self, port: usize) -> Result<(), HotPlugError> {
        let ports = self.port_count();
        if port >= ports {
            return Err(HotPlugError::NoPort { port, ports });
        }
        Ok(())
    }

    /// Open `spec` as `--disk` would (same checks and locks; a file another port's drive
    /// writes, or writes to one it reads, is refused) and put it on the empty `port`.
    pub fn add_drive(&self, port: usize, spec: DiskSpec) -> Result<(), HotPlugError> {
        self.check_port(port)?;
        if lock(&self.specs)[port].is_some() {
            return Err(HotPlugError::Occupied(port));
        }
        if let Some(id) = FileId::of_path(spec.path()) {
            let specs = lock(&self.specs);
            let clash = specs.iter().enumerate().find_map(|(p, other)| {
                let other = other.as_ref()?;
                let same = FileId::of_path(other.path()) == Some(id);
                (same && (!other.read_only() || !spec.read_only())).then_some(p)
            });
            if let Some(p) = clash {
                return Err(HotPlugError::SameDisk {
                    port: p,
                    path: spec.path().into(),
                });
            }
        }
        let prepared: PreparedDisk = prepare(std::slice::from_ref(&spec))?
            .pop()
            .ok_or(HotPlugError::Empty(port))?;
        let opened = self.plug.open(prepared, port as u8)?;
        {
            let mut ahci = lock(&self.ahci);
            ahci.attach_device(port, opened.device)?;
        }
        lock(&self.specs)[port] = Some(spec);
        lock(&self.host_stats)[port] = opened.host_stats;
        if let Some(control) = opened.media {
            lock(&self.media).push((port, control));
        }
        // The event loop watches the new drive's descriptors from its next turn.
        let _ = self.plug.notifier.write(1);
        Ok(())
    }

    /// Take the drive off `port` (a surprise removal). With `graceful`, an image's data is
    /// synced to its medium (fdatasync) once the drive's last write has drained, before
    /// satavm lets go of the file.
    pub fn remove_drive(&self, port: usize, graceful: bool) -> Result<Removed, HotPlugError> {
        self.check_port(port)?;
        let spec = lock(&self.specs)[port]
            .clone()
            .ok_or(HotPlugError::Empty(port))?;
        let sync = match (&spec, graceful) {
            (
                DiskSpec::Image {
                    path, read_only, ..
                },
                true,
            ) if !read_only => {
                // Opened now, while the drive still holds its lock on the file.
                match std::fs::File::open(path) {
                    Ok(f) => Some((f, path.clone())),
                    Err(e) => {
                        log::warn!("drive-del {}: cannot open it to sync: {e}", path.display());
                        None
                    }
                }
            }
            _ => None,
        };
        let on_drained = sync.map(|(file, path)| {
            Box::new(move || {
                if let Err(e) = file.sync_data() {
                    log::warn!("drive-del {}: fdatasync: {e}", path.display());
                }
            }) as crate::ahci::port::hotplug::OnDrained
        });
        let draining = {
            let mut ahci = lock(&self.ahci);
            ahci.detach_device(port, on_drained)?;
            ahci.port_draining(port)
        };
        lock(&self.specs)[port] = None;
        lock(&self.host_stats)[port] = None;
        lock(&self.media).retain(|(p, _)| *p != port);
        let _ = self.plug.notifier.write(1);
        Ok(Removed { draining })
    }
}
