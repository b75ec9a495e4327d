//! The Linux SCSI generic (sg) driver, version 3 interface (`include/scsi/sg.h`): the
//! `sg_io_hdr` ABI, the blocking SG_IO ioctl behind the small [`SgTransport`] trait (used to
//! probe a drive when it is opened, and by scripted fakes in tests), and the two pass-through
//! engines:
//! - [`engine::SgEngine`]: the sg driver's asynchronous interface on /dev/sgN — `write()` a
//!   header to queue a command, `read()` it back when epoll says the descriptor is readable —
//!   with no thread of satavm's waiting;
//! - [`threads::SgThreadEngine`]: blocking SG_IO on worker threads, for a /dev/sdX whose sg
//!   node does not exist (the block layer's SG_IO has no asynchronous form).
//!
//! SG_IO works on both /dev/sgN and /dev/sdX and needs CAP_SYS_RAWIO for ATA PASS-THROUGH.

pub mod engine;
pub mod threads;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::mem::HostRange;

/// Which way the data buffer moves (`dxfer_direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    None,
    ToDevice,
    FromDevice,
}

/// One SCSI command to run synchronously.
#[derive(Debug)]
pub struct SgRequest<'a> {
    pub cdb: &'a [u8],
    pub direction: DataDirection,
    /// The data buffer: read by a `ToDevice` command, filled by a `FromDevice` one.
    pub data: &'a mut [u8],
    pub timeout: Duration,
}

/// What the kernel reported for a command that was run (the ioctl or write/read succeeded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SgResult {
    /// SCSI status (SAM-5): 00h GOOD, 02h CHECK CONDITION, 08h BUSY...
    pub status: u8,
    /// `host_status`: DID_* codes of the host adapter driver.
    pub host_status: u16,
    /// `driver_status`: DRIVER_* codes (08h DRIVER_SENSE only says sense is present).
    pub driver_status: u16,
    /// The sense bytes the kernel wrote (`sb_len_wr` of them).
    pub sense: Vec<u8>,
    /// Bytes not transferred.
    pub resid: i32,
    /// How long the command took on the host (`duration`, milliseconds).
    pub duration: Duration,
    /// The data moved between the device and the caller's pages directly (SG_INFO_DIRECT_IO)
    /// rather than through the kernel's own buffer.
    pub direct_io: bool,
}

/// Host adapter status codes (`include/scsi/scsi_status.h`, DID_*).
pub mod host_status {
    pub const DID_OK: u16 = 0x00;
    pub const DID_NO_CONNECT: u16 = 0x01;
    pub const DID_BUS_BUSY: u16 = 0x02;
    pub const DID_TIME_OUT: u16 = 0x03;
    pub const DID_BAD_TARGET: u16 = 0x04;
    pub const DID_ABORT: u16 = 0x05;
    pub const DID_PARITY: u16 = 0x06;
    pub const DID_ERROR: u16 = 0x07;
    pub const DID_RESET: u16 = 0x08;
    pub const DID_SOFT_ERROR: u16 = 0x0b;
    pub const DID_TRANSPORT_DISRUPTED: u16 = 0x0e;
}

/// Driver status codes (low nibble of `driver_status`).
pub mod driver_status {
    pub const DRIVER_TIMEOUT: u16 = 0x06;
    pub const DRIVER_SENSE: u16 = 0x08;
}

/// SCSI status codes (SAM-5 table 40).
pub mod scsi_status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
}

/// Something that runs SCSI commands on one device, synchronously.
pub trait SgTransport: Send + Sync {
    /// Run `req` and wait for it. `Err` is an errno from the ioctl (the command may not have
    /// reached the device).
    fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult>;
}

/// `struct sg_io_hdr` (`include/scsi/sg.h`).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SgIoHdr {
    pub interface_id: libc::c_int,
    pub dxfer_direction: libc::c_int,
    pub cmd_len: libc::c_uchar,
    pub mx_sb_len: libc::c_uchar,
    pub iovec_count: libc::c_ushort,
    pub dxfer_len: libc::c_uint,
    pub dxferp: *mut libc::c_void,
    pub cmdp: *const libc::c_uchar,
    pub sbp: *mut libc::c_uchar,
    pub timeout: libc::c_uint,
    pub flags: libc::c_uint,
    pub pack_id: libc::c_int,
    pub usr_ptr: *mut libc::c_void,
    pub status: libc::c_uchar,
    pub masked_status: libc::c_uchar,
    pub msg_status: libc::c_uchar,
    pub sb_len_wr: libc::c_uchar,
    pub host_status: libc::c_ushort,
    pub driver_status: libc::c_ushort,
    pub resid: libc::c_int,
    pub duration: libc::c_uint,
    pub info: libc::c_uint,
}

pub(crate) const SG_DXFER_NONE: libc::c_int = -1;
pub(crate) const SG_DXFER_TO_DEV: libc::c_int = -2;
pub(crate) const SG_DXFER_FROM_DEV: libc::c_int = -3;
/// `flags`: move the data between the device and the user pages (needs the sg module's
/// `allow_dio`, one buffer, no iovec, aligned).
pub(crate) const SG_FLAG_DIRECT_IO: libc::c_uint = 1;
/// `info`: direct I/O was done.
pub(crate) const SG_INFO_DIRECT_IO: libc::c_uint = 2;
/// Sense buffer size: a descriptor header plus the ATA Status Return descriptor fit in 22
/// bytes; 64 leaves room for other descriptors.
pub(crate) const SENSE_LEN: usize = 64;

nix::ioctl_readwrite_bad!(sg_io_ioctl, 0x2285, SgIoHdr);
nix::ioctl_read_bad!(sg_get_version_num, 0x2282, libc::c_int);
nix::ioctl_write_ptr_bad!(sg_set_reserved_size, 0x2275, libc::c_int);

impl SgIoHdr {
    /// A header for `cdb` with no data yet; `sense` receives the sense bytes.
    pub(crate) fn new(cdb: &[u8], sense: &mut [u8; SENSE_LEN], timeout: Duration) -> Self {
        SgIoHdr {
            interface_id: libc::c_int::from(b'S'),
            dxfer_direction: SG_DXFER_NONE,
            cmd_len: cdb.len().min(255) as u8,
            mx_sb_len: SENSE_LEN as u8,
            iovec_count: 0,
            dxfer_len: 0,
            dxferp: std::ptr::null_mut(),
            cmdp: cdb.as_ptr(),
            sbp: sense.as_mut_ptr(),
            // Never 0: the sg driver takes 0 as "time out at once".
            timeout: u32::try_from(timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
            flags: 0,
            pack_id: 0,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        }
    }

    /// Data moves `direction` through the iovecs `iov` (an empty direction or no bytes: none).
    pub(crate) fn set_iovecs(&mut self, direction: DataDirection, iov: &[HostRange]) {
        let len = HostRange::total(iov);
        self.dxfer_direction = dxfer_direction(direction, len);
        if self.dxfer_direction == SG_DXFER_NONE {
            return;
        }
        self.dxfer_len = len as libc::c_uint;
        match iov {
            [one] => self.dxferp = one.addr as *mut libc::c_void,
            many => {
                self.iovec_count = many.len() as libc::c_ushort;
                self.dxferp = HostRange::as_iovecs(many) as *mut libc::c_void;
            }
        }
    }

    /// What came back, with the sense bytes from `sense`.
    pub(crate) fn result(&self, sense: &[u8; SENSE_LEN]) -> SgResult {
        let written = usize::from(self.sb_len_wr).min(SENSE_LEN);
        SgResult {
            status: self.status,
            host_status: self.host_status,
            driver_status: self.driver_status,
            sense: sense[..written].to_vec(),
            resid: self.resid,
            duration: Duration::from_millis(u64::from(self.duration)),
            direct_io: self.info & SG_INFO_DIRECT_IO != 0,
        }
    }
}

fn dxfer_direction(direction: DataDirection, len: usize) -> libc::c_int {
    match (direction, len) {
        (_, 0) | (DataDirection::None, _) => SG_DXFER_NONE,
        (DataDirection::ToDevice, _) => SG_DXFER_TO_DEV,
        (DataDirection::FromDevice, _) => SG_DXFER_FROM_DEV,
    }
}

/// Open `path` read-write (ATA PASS-THROUGH writes need it), non-blocking (the asynchronous
/// interface's `read()` then answers EAGAIN instead of waiting).
pub(crate) fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// SG_SET_RESERVED_SIZE: the sg driver keeps a buffer of `bytes` for this descriptor, so a
/// command that fits needs no fresh (zeroed) kernel pages. The driver caps it at the queue's
/// max_sectors.
pub(crate) fn set_reserved_size(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: SG_SET_RESERVED_SIZE reads one int through the pointer, a live local.
    unsafe { sg_set_reserved_size(fd, &v) }
        .map(|_| ())
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// SG_IO on `fd` with `hdr`, blocking until the command is done.
///
/// # Safety
/// Every pointer in `hdr` (CDB, data or iovec array and the memory it describes, sense) must
/// be valid for the lengths it gives until this returns.
pub(crate) unsafe fn sg_io(fd: RawFd, hdr: &mut SgIoHdr) -> io::Result<()> {
    // SAFETY: the caller's contract; SG_IO is synchronous, so the kernel touches none of the
    // buffers after the call.
    unsafe { sg_io_ioctl(fd, hdr) }
        .map(|_| ())
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// A SCSI device node (/dev/sgN or /dev/sdX) driven with blocking SG_IO.
#[derive(Debug)]
pub struct SgDevice {
    file: File,
    path: PathBuf,
    /// Descriptors for concurrent commands: the sg driver queues at most 16 commands per open
    /// file (SG_MAX_QUEUE; the 17th SG_IO fails with EDOM), so each command in flight borrows
    /// a descriptor of its own. The pool grows to the number of commands ever in flight at
    /// once.
    spare: Mutex<Vec<File>>,
}

impl SgDevice {
    /// Open `path` read-write.
    pub fn open(path: &Path) -> io::Result<SgDevice> {
        Ok(SgDevice {
            file: open_rw(path)?,
            path: path.to_path_buf(),
            spare: Mutex::new(Vec::new()),
        })
    }

    /// The node this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn borrow_fd(&self) -> io::Result<File> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match spare {
            Some(f) => Ok(f),
            None => open_rw(&self.path),
        }
    }

    fn return_fd(&self, f: File) {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// SG_GET_VERSION_NUM: fails (ENOTTY/EINVAL) on anything that is not a SCSI device.
    pub fn version(&self) -> io::Result<i32> {
        let mut v: libc::c_int = 0;
        // SAFETY: SG_GET_VERSION_NUM writes one int through the pointer, which points to a
        // live local; the fd is open for the lifetime of `self`.
        unsafe { sg_get_version_num(self.file.as_raw_fd(), &mut v) }
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        Ok(v)
    }

    /// Run `cdb` with its data in the host ranges `iov` (guest RAM, moved by the kernel
    /// without a copy through satavm), blocking until it is done.
    ///
    /// The caller keeps the memory behind `iov` mapped for the call (a `GuestBuf` does).
    pub fn execute_iov(
        &self,
        cdb: &[u8],
        direction: DataDirection,
        iov: &[HostRange],
        timeout: Duration,
    ) -> io::Result<SgResult> {
        let mut sense = [0u8; SENSE_LEN];
        let mut hdr = SgIoHdr::new(cdb, &mut sense, timeout);
        hdr.set_iovecs(direction, iov);
        let fd = self.borrow_fd()?;
        // SAFETY: `hdr` points to the CDB, the sense buffer (both locals alive for the call)
        // and the caller's ranges (or their iovec array, `iov`, borrowed for the call), which
        // the caller keeps mapped; `fd` is open until it goes back to the pool below.
        let r = unsafe { sg_io(fd.as_raw_fd(), &mut hdr) };
        self.return_fd(fd);
        r?;
        Ok(hdr.result(&sense))
    }
}

impl SgTransport for SgDevice {
    fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult> {
        let iov = [HostRange {
            addr: req.data.as_mut_ptr() as usize,
            len: req.data.len(),
        }];
        let iov: &[HostRange] = if req.data.is_empty() { &[] } else { &iov };
        // `req.data` is exclusively borrowed for the call: the ranges stay valid.
        self.execute_iov(req.cdb, req.direction, iov, req.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sg_io_hdr_has_the_kernel_layout() {
        // x86-64 and aarch64: 88 bytes, pointers at 16/24/32, status at 64.
        if cfg!(target_pointer_width = "64") {
            assert_eq!(std::mem::size_of::<SgIoHdr>(), 88);
            assert_eq!(std::mem::offset_of!(SgIoHdr, dxferp), 16);
            assert_eq!(std::mem::offset_of!(SgIoHdr, usr_ptr), 56);
            assert_eq!(std::mem::offset_of!(SgIoHdr, status), 64);
            assert_eq!(std::mem::offset_of!(SgIoHdr, resid), 72);
        }
    }

    #[test]
    fn one_range_is_a_plain_buffer_several_an_iovec_array() {
        let mut sense = [0u8; SENSE_LEN];
        let mut h = SgIoHdr::new(&[0x28; 10], &mut sense, Duration::ZERO);
        assert_eq!(h.timeout, 1, "0 would time out at once");
        let one = [HostRange {
            addr: 0x1000,
            len: 512,
        }];
        h.set_iovecs(DataDirection::FromDevice, &one);
        assert_eq!(
            (
                h.dxfer_direction,
                h.iovec_count,
                h.dxfer_len,
                h.dxferp as usize
            ),
            (SG_DXFER_FROM_DEV, 0, 512, 0x1000)
        );
        let two = [
            one[0],
            HostRange {
                addr: 0x9000,
                len: 8,
            },
        ];
        h.set_iovecs(DataDirection::ToDevice, &two);
        assert_eq!((h.iovec_count, h.dxfer_len), (2, 520));
        assert_eq!(h.dxferp as usize, two.as_ptr() as usize);
        let mut h = SgIoHdr::new(&[0; 16], &mut sense, Duration::from_secs(30));
        h.set_iovecs(DataDirection::FromDevice, &[]);
        assert_eq!((h.dxfer_direction, h.timeout), (SG_DXFER_NONE, 30_000));
    }

    #[test]
    fn a_regular_file_is_not_a_scsi_device() {
        let path = std::env::temp_dir().join(format!("satavm-sg-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let dev = SgDevice::open(&path).unwrap();
        assert!(dev.version().is_err());
        let mut buf = [0u8; 512];
        let r = dev.execute(SgRequest {
            cdb: &[0x12, 0, 0, 0, 36, 0],
            direction: DataDirection::FromDevice,
            data: &mut buf,
            timeout: Duration::from_secs(1),
        });
        assert!(r.is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
