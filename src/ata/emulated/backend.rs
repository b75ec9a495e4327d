//! The drive's medium: a raw image file or host block device, addressed in 512-byte sectors.
//!
//! Every method takes `&self` (positioned I/O), so the NCQ workers share one [`Image`].

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::fcntl::{fallocate, FallocateFlags};

use crate::ata::registers::SECTOR_SIZE;
use crate::hostfile::{self, DiskFile, HostFileError};

const SECTOR: u64 = SECTOR_SIZE as u64;

/// A failed medium access: the first sector that could not be read or written.
#[derive(Debug)]
pub struct MediaError {
    pub lba: u64,
    pub source: io::Error,
}

/// The image file.
#[derive(Debug)]
pub struct Image {
    file: File,
    sectors: u64,
    read_only: bool,
}

impl Image {
    /// Open `path` (a regular file or a block device) with the checks and the lock of
    /// [`hostfile::open_disk`]. Its size, rounded down to whole sectors, is the capacity.
    pub fn open(path: &Path, read_only: bool) -> Result<Image, HostFileError> {
        hostfile::open_disk(path, read_only, true).map(Image::from_disk)
    }

    /// The medium of a disk [`hostfile::open_disk`] opened (its lock stays with the file).
    pub fn from_disk(disk: DiskFile) -> Image {
        let (sectors, read_only) = (disk.sectors(), disk.read_only());
        Image {
            file: disk.into_file(),
            sectors,
            read_only,
        }
    }

    /// Capacity in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// True when opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Read whole sectors starting at `lba` into `buf` (a multiple of 512 bytes). On failure
    /// the failing sector is found by retrying one sector at a time.
    pub fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), MediaError> {
        let off = lba * SECTOR;
        if self.file.read_exact_at(buf, off).is_ok() {
            return Ok(());
        }
        for (i, sector) in buf.chunks_mut(SECTOR_SIZE).enumerate() {
            let at = lba + i as u64;
            self.file
                .read_exact_at(sector, at * SECTOR)
                .map_err(|source| MediaError { lba: at, source })?;
        }
        // The whole-range read failed but every sector succeeded on retry (a transient error).
        Ok(())
    }

    /// Write whole sectors starting at `lba`; on failure, the failing sector as for `read`.
    pub fn write(&self, lba: u64, data: &[u8]) -> Result<(), MediaError> {
        let off = lba * SECTOR;
        if self.file.write_all_at(data, off).is_ok() {
            return Ok(());
        }
        for (i, sector) in data.chunks(SECTOR_SIZE).enumerate() {
            let at = lba + i as u64;
            self.file
                .write_all_at(sector, at * SECTOR)
                .map_err(|source| MediaError { lba: at, source })?;
        }
        Ok(())
    }

    /// Make written data durable (fdatasync).
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Deallocate `sectors` sectors at `lba` so that they read back as zeros: punch a hole
    /// (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE); where the host cannot (a block device,
    /// a filesystem without hole punching), write zeros instead.
    pub fn discard(&self, lba: u64, sectors: u64) -> Result<(), MediaError> {
        let (Ok(off), Ok(len)) = (
            libc::off_t::try_from(lba * SECTOR),
            libc::off_t::try_from(sectors * SECTOR),
        ) else {
            return Err(MediaError {
                lba,
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        };
        let mode = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if fallocate(self.file.as_raw_fd(), mode, off, len).is_ok() {
            return Ok(());
        }
        const ZERO_CHUNK: u64 = 256;
        let zeros = vec![0u8; ZERO_CHUNK as usize * SECTOR_SIZE];
        let mut done = 0;
        while done < sectors {
            let n = (sectors - done).min(ZERO_CHUNK);
            self.write(lba + done, &zeros[..n as usize * SECTOR_SIZE])?;
            done += n;
        }
        Ok(())
    }
}
