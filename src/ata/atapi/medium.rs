//! The disc in the drive and how the host changes it while the guest runs.
//!
//! A [`Medium`] is an ISO image, opened read-only (and locked as images are, see
//! [`crate::hostfile`]), with the block engine its reads go through. A [`MediaControl`] is
//! the host's handle on one drive's tray: [`MediaControl::insert`] loads an image (a swap if
//! one is in), [`MediaControl::eject`] takes it out, [`MediaControl::reload`] re-reads the path
//! the drive was given (what SIGUSR2 does; a control socket calls the same functions). The
//! image is opened on the caller's thread; the drive takes the change over when it next runs
//! (at its next command or completion pass, once no read of the old disc is in the engine) and
//! the guest learns of it as a removable-medium drive tells: UNIT ATTENTION 28h/00h and a
//! media event (GET EVENT STATUS NOTIFICATION).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use super::mmc::BLOCK;
use crate::block::{self, Engine, EngineChoice};
use crate::sata::CompletionNotifier;

/// Images larger than this are DVD-ROM media, smaller ones CD-ROM (an 80-minute CD holds
/// about 700 MiB).
pub const CD_MAX_BYTES: u64 = 700 << 20;

/// Why a medium cannot be loaded or taken out.
#[derive(Debug, Error)]
pub enum MediaError {
    #[error(transparent)]
    Disk(#[from] crate::hostfile::HostFileError),
    #[error("{path}: cannot start its I/O engine: {source}")]
    Engine {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: smaller than one 2048-byte block")]
    TooSmall(PathBuf),
    #[error("the guest prevents medium removal (PREVENT ALLOW MEDIUM REMOVAL); it was sent an eject request")]
    Locked,
    #[error("this drive was given no image path to re-read")]
    NoPath,
}

/// A disc: an image and its engine.
pub struct Medium {
    pub path: PathBuf,
    /// 2048-byte blocks (a partial last block is not part of the disc).
    pub blocks: u64,
    pub engine: Box<dyn Engine>,
}

impl std::fmt::Debug for Medium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Medium")
            .field("path", &self.path)
            .field("blocks", &self.blocks)
            .finish_non_exhaustive()
    }
}

impl Medium {
    /// Open `path` read-only (locked unless `lock` is false) with an engine of `choice`.
    pub fn open(
        path: &Path,
        choice: EngineChoice,
        lock: bool,
        notifier: CompletionNotifier,
    ) -> Result<Medium, MediaError> {
        let disk = crate::hostfile::open_disk(path, true, lock)?;
        Self::with_disk(disk, choice, notifier)
    }

    /// A medium over an image opened (and locked) already.
    pub fn with_disk(
        disk: crate::hostfile::DiskFile,
        choice: EngineChoice,
        notifier: CompletionNotifier,
    ) -> Result<Medium, MediaError> {
        let path = disk.path().to_path_buf();
        let blocks = disk.bytes() / BLOCK;
        if blocks == 0 {
            return Err(MediaError::TooSmall(path));
        }
        if !disk.bytes().is_multiple_of(BLOCK) {
            log::warn!(
                "{}: size is not a multiple of 2048 bytes; the last {} bytes are not on the disc",
                path.display(),
                disk.bytes() % BLOCK
            );
        }
        let engine =
            block::file_engine(Arc::new(disk.into_file()), choice, notifier).map_err(|source| {
                MediaError::Engine {
                    path: path.clone(),
                    source,
                }
            })?;
        Ok(Medium {
            path,
            blocks,
            engine,
        })
    }

    /// A medium of `blocks` blocks behind `engine` (tests).
    pub fn with_engine(path: PathBuf, blocks: u64, engine: Box<dyn Engine>) -> Medium {
        Medium {
            path,
            blocks,
            engine,
        }
    }

    /// A DVD-ROM (else a CD-ROM), by size.
    pub fn is_dvd(&self) -> bool {
        self.blocks * BLOCK > CD_MAX_BYTES
    }
}

/// A change the host asked for, waiting for the drive.
#[derive(Debug)]
pub enum Change {
    Insert(Medium),
    Eject,
}

/// What the drive and the host share.
#[derive(Debug, Default)]
pub struct Shared {
    pub pending: Option<Change>,
    /// The guest prevents medium removal (the drive keeps this up to date).
    pub prevent: bool,
    /// The host asked for an eject the guest prevents: report an eject request event.
    pub eject_request: bool,
}

/// The host's handle on a drive's tray; see the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct MediaControl {
    shared: Arc<Mutex<Shared>>,
    notifier: CompletionNotifier,
    engine: EngineChoice,
    lock: bool,
    /// The path the drive was configured with (re-read by [`MediaControl::reload`]).
    path: Option<PathBuf>,
}

impl std::fmt::Debug for MediaControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaControl")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl MediaControl {
    /// A control over `shared`; `notifier` wakes the drive's event loop.
    pub fn new(
        shared: Arc<Mutex<Shared>>,
        notifier: CompletionNotifier,
        engine: EngineChoice,
        lock: bool,
        path: Option<PathBuf>,
    ) -> Self {
        MediaControl {
            shared,
            notifier,
            engine,
            lock,
            path,
        }
    }

    /// The image path the drive was given, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self, change: Change) {
        self.shared().pending = Some(change);
        // The event loop runs the drive's completion pass, which takes the change over.
        let _ = self.notifier.write(1);
    }

    /// Load the image at `path` (a swap if a disc is in). Refused while the guest prevents
    /// removal of a disc that is in (the guest then sees an eject request).
    pub fn insert(&self, path: &Path) -> Result<(), MediaError> {
        self.check_unlocked()?;
        let medium = Medium::open(path, self.engine, self.lock, self.notifier.clone())?;
        log::info!(
            "cdrom: inserting {} ({} blocks)",
            path.display(),
            medium.blocks
        );
        self.queue(Change::Insert(medium));
        Ok(())
    }

    /// Take the disc out (the tray opens). Refused while the guest prevents removal.
    pub fn eject(&self) -> Result<(), MediaError> {
        self.check_unlocked()?;
        log::info!("cdrom: ejecting");
        self.queue(Change::Eject);
        Ok(())
    }

    /// Re-read the configured path: an image there is inserted (a new disc, even under the
    /// same name), no file there ejects the disc.
    pub fn reload(&self) -> Result<(), MediaError> {
        let path = self.path.clone().ok_or(MediaError::NoPath)?;
        if path.exists() {
            self.insert(&path)
        } else {
            self.eject()
        }
    }

    fn check_unlocked(&self) -> Result<(), MediaError> {
        let mut s = self.shared();
        if s.prevent {
            s.eject_request = true;
            drop(s);
            let _ = self.notifier.write(1);
            return Err(MediaError::Locked);
        }
        Ok(())
    }
}
