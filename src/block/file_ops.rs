//! What the file engines ([`super::uring`], [`super::threads`]) share: a [`Request`] turned
//! into the host operation it needs ([`FileOp`]: host iovecs over guest RAM, or a bounce
//! buffer where the memory gives no host mapping), and the progress of one operation across
//! short reads and writes.

use std::io;

use super::{Completed, Reply, Request, SubmitError};
use crate::mem::{GuestBuf, HostRange, MemError, MAX_IOVECS};

/// Bytes of zeros a file engine writes per step of [`Request::WriteZeroes`].
pub const ZERO_CHUNK: usize = 256 << 10;

/// A copy through satavm's own memory, for guest memory without host mappings (tests and
/// fuzzing wrap memory that way to watch every access; a VM's RAM is always mapped).
#[derive(Debug)]
pub struct Bounce {
    pub data: Vec<u8>,
    pub guest: GuestBuf,
}

/// A read or write in progress: the iovecs still to move and where.
#[derive(Debug)]
pub struct Transfer {
    pub write: bool,
    pub fua: bool,
    pub offset: u64,
    pub iov: Vec<HostRange>,
    pub bounce: Option<Bounce>,
    /// Keeps the guest memory mapped while the kernel holds `iov`.
    pub _guest: GuestBuf,
}

/// One host operation of a file engine.
#[derive(Debug)]
pub enum FileOp {
    Transfer(Box<Transfer>),
    Flush,
    Discard { offset: u64, len: u64 },
    Zeroes { offset: u64, remaining: u64 },
}

fn mem_error(e: MemError) -> io::Error {
    match e {
        MemError::OutOfRange { .. } => io::Error::from_raw_os_error(libc::EFAULT),
        MemError::NoHostMapping => io::Error::from_raw_os_error(libc::EINVAL),
    }
}

impl FileOp {
    /// The host operation for `request` (`engine` names the engine in the error for a SCSI
    /// request). `Ok(Err(e))`: the request fails at once with `e` (a buffer outside guest RAM).
    pub fn prepare(
        engine: &'static str,
        request: Request,
    ) -> Result<io::Result<FileOp>, SubmitError> {
        let (write, fua, offset, buf) = match request {
            Request::Read { offset, buf } => (false, false, offset, buf),
            Request::Write { offset, buf, fua } => (true, fua, offset, buf),
            Request::Flush => return Ok(Ok(FileOp::Flush)),
            Request::Discard { offset, len } => return Ok(Ok(FileOp::Discard { offset, len })),
            Request::WriteZeroes { offset, len } => {
                return Ok(Ok(FileOp::Zeroes {
                    offset,
                    remaining: len,
                }))
            }
            Request::Scsi(_) => {
                return Err(SubmitError::Unsupported {
                    engine,
                    request: "scsi",
                })
            }
        };
        Ok(Self::transfer(write, fua, offset, buf))
    }

    fn transfer(write: bool, fua: bool, offset: u64, buf: GuestBuf) -> io::Result<FileOp> {
        let (iov, bounce) = match buf.host_ranges() {
            Ok(iov) if iov.len() <= MAX_IOVECS => (iov, None),
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
            Err(MemError::NoHostMapping) => {
                let len =
                    usize::try_from(buf.len()).map_err(|_| mem_error(MemError::NoHostMapping))?;
                let mut data = vec![0u8; len];
                if write {
                    buf.read_into(&mut data).map_err(mem_error)?;
                }
                let iov = vec![HostRange {
                    addr: data.as_mut_ptr() as usize,
                    len,
                }];
                (
                    iov,
                    Some(Bounce {
                        data,
                        guest: buf.clone(),
                    }),
                )
            }
            Err(e) => return Err(mem_error(e)),
        };
        Ok(FileOp::Transfer(Box::new(Transfer {
            write,
            fua,
            offset,
            iov,
            bounce,
            _guest: buf,
        })))
    }

    /// Bytes a bounce buffer carries (for the statistics).
    pub fn bounced(&self) -> u64 {
        match self {
            FileOp::Transfer(t) => t.bounce.as_ref().map_or(0, |b| b.data.len() as u64),
            _ => 0,
        }
    }
}

impl Transfer {
    /// `n` bytes moved: true when the transfer is done, else the rest is still to move.
    /// A return of 0 bytes with bytes left is the end of the medium (EIO).
    pub fn advance(&mut self, n: usize) -> io::Result<bool> {
        if n == 0 && HostRange::total(&self.iov) > 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        HostRange::advance(&mut self.iov, n);
        self.offset += n as u64;
        Ok(self.iov.is_empty())
    }

    /// The transfer finished: a read through a bounce buffer lands in guest memory now.
    pub fn finish(self) -> io::Result<Reply> {
        if let Some(b) = self.bounce {
            if !self.write {
                b.guest.write_from(&b.data).map_err(mem_error)?;
            }
        }
        Ok(Reply::Done)
    }
}

/// A completion for `tag` from a host result (`-errno` or a count, as io_uring reports).
pub fn errno_completion(tag: u64, errno: i32) -> Completed {
    Completed {
        tag,
        result: Err(io::Error::from_raw_os_error(errno)),
    }
}
