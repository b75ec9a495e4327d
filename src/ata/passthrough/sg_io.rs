//! The SG_IO ioctl (Linux SCSI generic v3 interface, `include/scsi/sg.h`) behind a small
//! [`SgTransport`] trait, so that the drive logic runs against a scripted fake in tests.
//!
//! SG_IO blocks until the command finishes (O_NONBLOCK does not change that); it works on both
//! /dev/sgN and /dev/sdX and needs CAP_SYS_RAWIO for ATA PASS-THROUGH.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Which way the data buffer moves (`dxfer_direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    None,
    ToDevice,
    FromDevice,
}

/// One SCSI command to run.
#[derive(Debug)]
pub struct SgRequest<'a> {
    pub cdb: &'a [u8],
    pub direction: DataDirection,
    /// The data buffer: read by a `ToDevice` command, filled by a `FromDevice` one.
    pub data: &'a mut [u8],
    pub timeout: Duration,
}

/// What the kernel reported for a command that was run (the ioctl itself succeeded).
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

/// Something that runs SCSI commands on one device.
pub trait SgTransport: Send + Sync {
    /// Run `req` and wait for it. `Err` is an errno from the ioctl (the command may not have
    /// reached the device).
    fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult>;
}

/// `struct sg_io_hdr` (`include/scsi/sg.h`).
#[repr(C)]
#[derive(Debug)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: libc::c_uchar,
    mx_sb_len: libc::c_uchar,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *const libc::c_uchar,
    sbp: *mut libc::c_uchar,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: libc::c_uchar,
    masked_status: libc::c_uchar,
    msg_status: libc::c_uchar,
    sb_len_wr: libc::c_uchar,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

const SG_DXFER_NONE: libc::c_int = -1;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;
/// Sense buffer size: a descriptor header plus the ATA Status Return descriptor fit in 22
/// bytes; 64 leaves room for other descriptors.
const SENSE_LEN: usize = 64;

nix::ioctl_readwrite_bad!(sg_io_ioctl, 0x2285, SgIoHdr);
nix::ioctl_read_bad!(sg_get_version_num, 0x2282, libc::c_int);

/// A SCSI device node (/dev/sgN or /dev/sdX) driven with SG_IO.
#[derive(Debug)]
pub struct SgDevice {
    file: File,
    path: PathBuf,
    /// Descriptors for concurrent commands: the sg driver queues at most 16 commands per open
    /// file (SG_MAX_QUEUE; the 17th SG_IO fails with EDOM), so each command in flight borrows
    /// a descriptor of its own. The pool grows to the number of commands ever in flight at
    /// once (the worker count).
    spare: Mutex<Vec<File>>,
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

impl SgDevice {
    /// Open `path` read-write (ATA PASS-THROUGH writes need it).
    pub fn open(path: &Path) -> io::Result<SgDevice> {
        Ok(SgDevice {
            file: open_rw(path)?,
            path: path.to_path_buf(),
            spare: Mutex::new(Vec::new()),
        })
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
}

impl SgTransport for SgDevice {
    fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult> {
        let cmd_len =
            u8::try_from(req.cdb.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let dxfer_len = u32::try_from(req.data.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let direction = match (req.direction, dxfer_len) {
            (_, 0) | (DataDirection::None, _) => SG_DXFER_NONE,
            (DataDirection::ToDevice, _) => SG_DXFER_TO_DEV,
            (DataDirection::FromDevice, _) => SG_DXFER_FROM_DEV,
        };
        // Never 0: the sg driver takes 0 as "time out at once".
        let timeout = u32::try_from(req.timeout.as_millis())
            .unwrap_or(u32::MAX)
            .max(1);
        let mut sense = [0u8; SENSE_LEN];
        let mut hdr = SgIoHdr {
            interface_id: libc::c_int::from(b'S'),
            dxfer_direction: direction,
            cmd_len,
            mx_sb_len: SENSE_LEN as u8,
            iovec_count: 0,
            dxfer_len: if direction == SG_DXFER_NONE {
                0
            } else {
                dxfer_len
            },
            dxferp: req.data.as_mut_ptr().cast(),
            cmdp: req.cdb.as_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout,
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
        };
        let fd = self.borrow_fd()?;
        // SAFETY: `hdr` points to the CDB (`cmd_len` bytes), the data buffer (`dxfer_len`
        // bytes, exclusively borrowed for the call) and the sense buffer (`mx_sb_len` bytes),
        // all alive until the ioctl returns; SG_IO is synchronous, so the kernel touches none
        // of them afterwards. `fd` stays open until it goes back to the pool after the call.
        let r = unsafe { sg_io_ioctl(fd.as_raw_fd(), &mut hdr) };
        self.return_fd(fd);
        r.map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        let written = usize::from(hdr.sb_len_wr).min(SENSE_LEN);
        Ok(SgResult {
            status: hdr.status,
            host_status: hdr.host_status,
            driver_status: hdr.driver_status,
            sense: sense[..written].to_vec(),
            resid: hdr.resid,
        })
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
