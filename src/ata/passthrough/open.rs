//! Opening the host drive: the checks that turn "it does not work" into a message a user can
//! act on (no such device, a partition, not a SCSI device, not ATA, no CAP_SYS_RAWIO).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use super::cdb::{HostTaskfile, PassThrough, SatProtocol, TLength};
use super::sense::{key, Sense, ASC_INVALID_OPCODE};
use super::sysfs::{self, SysfsError};
use super::traced::TracedEngine;
use super::{PassthroughConfig, PassthroughDrive, PassthroughError};
use crate::ata::command::opcode;
use crate::block::sg::engine::{sg_allows_direct_io, SgEngine, SgEngineConfig};
use crate::block::sg::threads::SgThreadEngine;
use crate::block::sg::{host_status, scsi_status, DataDirection, SgDevice, SgRequest, SgTransport};
use crate::block::Engine;
use crate::hostfile::{self, HostFileError};
use crate::sata::CompletionNotifier;
use crate::trace::Tracer;

impl PassthroughDrive {
    /// Open the host drive at `config.path` (/dev/sgN or /dev/sdX): check that it is a whole
    /// SCSI device that answers ATA PASS-THROUGH IDENTIFY DEVICE as an ATA drive, read the host
    /// queue's limits from sysfs, and set up the engine its commands run on (see
    /// [`host_engine`]); completions write `notifier` or the engine's own descriptor.
    pub fn open(
        config: &PassthroughConfig,
        notifier: CompletionNotifier,
    ) -> Result<PassthroughDrive, PassthroughError> {
        Self::open_traced(config, notifier, Tracer::off(), 0)
    }

    /// As [`PassthroughDrive::open`]; with `tracer` on, every SG_IO (CDB, status, sense) is
    /// traced as the drive on AHCI port `port` (see [`super::traced`]). Unless `config.lock`
    /// is off, the device nodes are locked first ([`lock_host_nodes`]).
    pub fn open_traced(
        config: &PassthroughConfig,
        notifier: CompletionNotifier,
        tracer: Tracer,
        port: u8,
    ) -> Result<PassthroughDrive, PassthroughError> {
        let locks = if config.lock {
            lock_host_nodes(&config.path, config.read_only)?
        } else {
            HostLocks::default()
        };
        Self::open_locked(config, locks, notifier, tracer, port)
    }

    /// As [`PassthroughDrive::open_traced`], with the nodes' locks taken already (kept as
    /// long as the drive lives); `config.lock` is not looked at.
    pub fn open_locked(
        config: &PassthroughConfig,
        locks: HostLocks,
        notifier: CompletionNotifier,
        tracer: Tracer,
        port: u8,
    ) -> Result<PassthroughDrive, PassthroughError> {
        let path = config.path.as_path();
        let (meta, is_block) = device_node(path)?;
        let dev = SgDevice::open(path).map_err(|e| open_error(path, e))?;
        dev.version().map_err(|e| PassthroughError::NotScsi {
            path: path.into(),
            detail: format!("SG_GET_VERSION_NUM failed ({e})"),
        })?;
        let rdev = meta.rdev();
        let paths = sysfs::locate(
            Path::new("/sys"),
            path,
            is_block,
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev),
        )
        .map_err(|SysfsError::Partition| PassthroughError::Partition(path.into()))?;
        let limits = sysfs::read_limits(&paths);
        let id = probe_identify(&dev, config.timeout, path)?;
        let (engine, how, limits) =
            host_engine(dev, is_block, &paths, limits, config.engine, notifier)?;
        let engine: Box<dyn Engine> = if tracer.enabled() {
            Box::new(TracedEngine::new(engine, tracer, port))
        } else {
            engine
        };
        let mut drive = PassthroughDrive::with_engine(engine, limits, config);
        drive.host_locks = locks;
        let host_gen = paths.device.as_deref().and_then(sysfs::host_link_gen);
        drive.set_host_link_gen(host_gen);
        log::info!(
            "{}: host link speed {}",
            path.display(),
            match host_gen {
                Some(1) => "1.5 Gbps",
                Some(2) => "3.0 Gbps",
                Some(3) => "6.0 Gbps",
                _ => "unknown (the guest's link offers 6.0 Gbps)",
            }
        );
        log::info!("{}: {how}", path.display());
        log::info!(
            "{}: ATA drive \"{}\", {} sectors; host limits {:?}: up to {} sectors per command",
            path.display(),
            model(&id),
            capacity(&id),
            limits,
            drive.max_transfer_sectors()
        );
        Ok(drive)
    }
}

/// Check that `path` is a device node (what can be known of a pass-through drive before it
/// is opened).
pub fn check_host_node(path: &Path) -> Result<(), PassthroughError> {
    device_node(path).map(|_| ())
}

/// The metadata of the device node `path`, and whether it is a block device; an error if it
/// is no device node.
fn device_node(path: &Path) -> Result<(fs::Metadata, bool), PassthroughError> {
    let meta = fs::metadata(path).map_err(|e| open_error(path, e))?;
    let ft = meta.file_type();
    let is_block = ft.is_block_device();
    if !is_block && !ft.is_char_device() {
        let detail = if ft.is_file() {
            "a regular file (an image is used with path=)"
        } else {
            "not a device node"
        };
        return Err(PassthroughError::NotScsi {
            path: path.into(),
            detail: detail.into(),
        });
    }
    Ok((meta, is_block))
}

/// OFD locks on a pass-through drive's device nodes, held while the drive lives (QEMU's
/// protocol, [`crate::hostfile::lock`]: a read-write drive shares with no one, read-only ones
/// share with each other).
#[derive(Debug, Default)]
pub struct HostLocks(Vec<File>);

impl HostLocks {
    /// How many nodes are locked.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Lock the node `path` (/dev/sgN or /dev/sdX) and the other node of the same SCSI device,
/// where sysfs names one and it is in /dev.
///
/// A lock belongs to an inode, and /dev/sg1 and /dev/sdb are two inodes of one drive. QEMU
/// (`-drive file=/dev/sdb`, or `file=/dev/sg1` for scsi-generic) locks only the node it was
/// given, and so would satavm: satavm on /dev/sg1 and QEMU on /dev/sdb (or two satavm, one on
/// each node) would both drive the disk without seeing each other's lock. Locking both nodes
/// makes either order refuse. (A node made elsewhere with mknod is another inode again: no
/// lock can see through that.) A sibling this user cannot open is left alone.
pub fn lock_host_nodes(path: &Path, read_only: bool) -> Result<HostLocks, PassthroughError> {
    let (meta, is_block) = device_node(path)?;
    let exclusive = !read_only;
    let mut locks = vec![hostfile::lock_node(path, exclusive).map_err(|e| match e {
        HostFileError::Open { source, .. } => open_error(path, source),
        e => e.into(),
    })?];
    let rdev = meta.rdev();
    let sibling = sysfs::sibling(
        Path::new("/sys"),
        Path::new("/dev"),
        is_block,
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev),
    );
    if let Some(other) = sibling {
        match hostfile::lock_node(&other, exclusive) {
            Ok(f) => locks.push(f),
            Err(HostFileError::Open { source, .. }) => log::info!(
                "{}: not locking {} too: {source}",
                path.display(),
                other.display()
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(HostLocks(locks))
}

/// The engine for the drive behind `dev`: the sg driver's asynchronous interface — on the node
/// itself for /dev/sgN, on the disk's sg node for /dev/sdX (found through sysfs) — so that no
/// thread waits on the drive; for a /dev/sdX without an sg node (the sg module not loaded),
/// blocking SG_IO on worker threads (the block layer maps guest pages for the transfer, so the
/// data still moves without a copy in satavm). Returns the engine and a line for the log.
fn host_engine(
    dev: SgDevice,
    is_block: bool,
    paths: &sysfs::SysfsPaths,
    limits: sysfs::QueueLimits,
    choice: crate::block::EngineChoice,
    notifier: CompletionNotifier,
) -> Result<(Box<dyn Engine>, String, sysfs::QueueLimits), PassthroughError> {
    let sg_node = if choice == crate::block::EngineChoice::Threads {
        None
    } else if is_block {
        paths
            .device
            .as_deref()
            .and_then(sysfs::sg_name)
            .map(|n| Path::new("/dev").join(n))
            .filter(|p| p.exists())
    } else {
        Some(dev.path().to_path_buf())
    };
    if sg_node.is_none() && choice == crate::block::EngineChoice::Sg {
        return Err(PassthroughError::NotScsi {
            path: dev.path().into(),
            detail: "engine=sg, but the disk has no sg node (is the sg module loaded?)".into(),
        });
    }
    let direct_io = sg_allows_direct_io();
    // Without direct I/O the sg driver moves the data through its own buffer (the reserved
    // one, in large chunks), so the queue's segment limit does not count guest pages: only
    // max_hw_sectors bounds a command. With direct I/O (or block-layer SG_IO, which maps guest
    // pages) each 4 KiB page may be a segment.
    let sg_limits = if direct_io {
        limits
    } else {
        sysfs::QueueLimits {
            max_segments: None,
            ..limits
        }
    };
    let sector = crate::ata::registers::SECTOR_SIZE;
    let max_transfer = sg_limits.max_transfer_sectors() as usize * sector;
    let limits_line = format!(
        "up to {} commands in flight, {} KiB each",
        limits.workers(),
        max_transfer >> 10
    );
    if let Some(node) = sg_node {
        let config = SgEngineConfig {
            path: node.clone(),
            max_in_flight: limits.workers(),
            max_transfer,
            direct_io,
        };
        match SgEngine::new(config) {
            Ok(e) => {
                let dio = if direct_io {
                    "direct I/O where the data is one aligned buffer"
                } else {
                    "the kernel copying to and from guest RAM (direct I/O off: \
                     /sys/module/sg/parameters/allow_dio is 0)"
                };
                return Ok((
                    Box::new(e),
                    format!(
                        "pass-through through {}'s asynchronous interface, {limits_line}, {dio}",
                        node.display()
                    ),
                    sg_limits,
                ));
            }
            Err(e) if !is_block || choice == crate::block::EngineChoice::Sg => {
                return Err(open_error(&node, e))
            }
            Err(e) => log::info!("{}: {e}; blocking SG_IO instead", node.display()),
        }
    }
    let path = dev.path().display().to_string();
    let e = SgThreadEngine::new(dev, notifier, limits.workers()).map_err(|source| {
        PassthroughError::Io {
            path: path.clone().into(),
            source,
        }
    })?;
    let max_transfer = limits.max_transfer_sectors() as usize * sector;
    Ok((
        Box::new(e),
        format!(
            "pass-through with blocking SG_IO on worker threads on {path}, up to {} commands \
             in flight, {} KiB each",
            limits.workers(),
            max_transfer >> 10
        ),
        limits,
    ))
}

fn open_error(path: &Path, e: io::Error) -> PassthroughError {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => PassthroughError::NotFound(path.into()),
        Some(libc::EACCES | libc::EPERM) => PassthroughError::Permission(path.into()),
        _ => PassthroughError::Io {
            path: path.into(),
            source: e,
        },
    }
}

/// The model string (IDENTIFY words 27-46, ACS-3 7.12.7).
fn model(id: &[u8; 512]) -> String {
    let mut s = String::new();
    for w in id[54..94].chunks_exact(2) {
        s.push(char::from(w[1]));
        s.push(char::from(w[0]));
    }
    s.trim().to_string()
}

/// User-addressable sectors (words 100-103 when 48-bit addressing is supported, else 60-61).
fn capacity(id: &[u8; 512]) -> u64 {
    let word = |i: usize| u64::from(u16::from_le_bytes([id[2 * i], id[2 * i + 1]]));
    if word(83) & (1 << 10) != 0 {
        word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48
    } else {
        word(60) | word(61) << 16
    }
}

/// Send IDENTIFY DEVICE through ATA PASS-THROUGH and check that an ATA drive answered.
///
/// The command goes without CK_COND (see [`PassThrough::ck_cond`]): a SATL that ran it answers
/// GOOD without sense, or with registers of a failure (an ATAPI device aborts it). GOOD is not
/// proof by itself, so the data must look like IDENTIFY DEVICE data: word 0 says ATA, and the
/// integrity word checks when its signature is there.
pub(crate) fn probe_identify(
    t: &dyn SgTransport,
    timeout: Duration,
    path: &Path,
) -> Result<[u8; 512], PassthroughError> {
    let not_ata = |reason: String| PassthroughError::NotAta {
        path: path.into(),
        reason,
    };
    let pt = PassThrough {
        protocol: SatProtocol::PioIn,
        extend: false,
        t_length: TLength::Count,
        from_device: true,
        multiple_count_log2: 0,
        tf: HostTaskfile {
            command: opcode::IDENTIFY_DEVICE,
            count: 1,
            ..Default::default()
        },
    };
    let cdb16 = pt.cdb16();
    let cdb12 = pt.cdb12().unwrap_or_default();
    let mut id = [0u8; 512];
    for cdb in [&cdb16[..], &cdb12[..]] {
        let r = t
            .execute(SgRequest {
                cdb,
                direction: DataDirection::FromDevice,
                data: &mut id,
                timeout,
            })
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => PassthroughError::NoRawIo(path.into()),
                Some(libc::ENODEV | libc::ENXIO) => PassthroughError::NotFound(path.into()),
                _ => PassthroughError::Io {
                    path: path.into(),
                    source: e,
                },
            })?;
        let sense = Sense::parse(&r.sense);
        let cdb16_rejected = r.host_status == host_status::DID_ABORT
            || matches!(
                sense,
                Some(Sense {
                    key: key::ILLEGAL_REQUEST,
                    asc: ASC_INVALID_OPCODE,
                    ata: None,
                    ..
                })
            );
        if cdb16_rejected && cdb[0] == super::cdb::ATA_16 {
            continue;
        }
        if r.host_status != host_status::DID_OK {
            return Err(not_ata(format!(
                "IDENTIFY DEVICE failed with host status {:#04x}",
                r.host_status
            )));
        }
        match sense {
            Some(Sense {
                ata: Some(regs), ..
            }) if regs.failed() => {
                return Err(not_ata(format!(
                "IDENTIFY DEVICE aborted (status {:#04x}, error {:#04x}); a PACKET (ATAPI) device?",
                regs.status, regs.error
            )))
            }
            // A SATL that returns the registers anyway.
            Some(s) if matches!(s.key, key::NO_SENSE | key::RECOVERED_ERROR) => {}
            Some(s) => {
                return Err(not_ata(format!(
                    "the host answered ATA PASS-THROUGH with sense key {:#x}, ASC/ASCQ \
                     {:02x}/{:02x} (SCSI status {:#04x}, sense bytes {})",
                    s.key,
                    s.asc,
                    s.ascq,
                    r.status,
                    hex(&r.sense)
                )))
            }
            None if r.status == scsi_status::GOOD => {}
            None => {
                return Err(not_ata(format!(
                    "IDENTIFY DEVICE failed with SCSI status {:#04x}",
                    r.status
                )))
            }
        }
        return check_identify(id).map_err(|m| not_ata(m.into()));
    }
    Err(not_ata(
        "the host does not translate ATA PASS-THROUGH (a SCSI, SAS or NVMe device?)".into(),
    ))
}

/// `b` as space-separated hex bytes, for messages.
fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_identify(id: [u8; 512]) -> Result<[u8; 512], &'static str> {
    if id.iter().all(|b| *b == 0) {
        return Err("IDENTIFY DEVICE returned no data");
    }
    if id[1] & 0x80 != 0 {
        return Err("IDENTIFY DEVICE word 0 says this is not an ATA device");
    }
    // Integrity word 255 (ACS-3 7.12.7.91): signature A5h, checksum in the high byte.
    if id[510] == 0xa5 && id.iter().fold(0u8, |a, b| a.wrapping_add(*b)) != 0 {
        return Err("IDENTIFY DEVICE data has a bad checksum");
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::sg::SgResult;
    use std::sync::Mutex;
    use vmm_sys_util::eventfd::EventFd;

    /// One scripted answer: the result and the data to return.
    type Answer = io::Result<(SgResult, Option<[u8; 512]>)>;

    /// Answers each call with the next scripted result, recording the CDBs.
    struct Script {
        answers: Mutex<Vec<Answer>>,
        cdbs: Mutex<Vec<Vec<u8>>>,
    }

    impl SgTransport for Script {
        fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult> {
            self.cdbs.lock().unwrap().push(req.cdb.to_vec());
            let (r, data) = self.answers.lock().unwrap().remove(0)?;
            if let Some(d) = data {
                req.data.copy_from_slice(&d);
            }
            Ok(r)
        }
    }

    fn script(a: Vec<Answer>) -> Script {
        Script {
            answers: Mutex::new(a),
            cdbs: Mutex::new(Vec::new()),
        }
    }

    fn good_identify() -> [u8; 512] {
        let mut id = [0u8; 512];
        id[0] = 0x40; // word 0: fixed, ATA
        for (i, c) in b"SATAVM TEST DRIVE                       "
            .chunks(2)
            .enumerate()
        {
            id[54 + 2 * i] = c[1];
            id[55 + 2 * i] = c[0];
        }
        id[166] = 0x00;
        id[167] = 0x04; // word 83 bit 10: 48-bit
        id[200] = 0x00;
        id[201] = 0x10; // words 100..: 0x1000 sectors
        id[510] = 0xa5;
        let sum = id.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        id[511] = 0u8.wrapping_sub(sum);
        id
    }

    fn recovered() -> SgResult {
        let mut sense = vec![0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 14];
        sense.extend_from_slice(&[0x09, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0x50]);
        SgResult {
            status: 2,
            sense,
            ..Default::default()
        }
    }

    #[test]
    fn identify_of_an_ata_drive_is_accepted() {
        let s = script(vec![Ok((recovered(), Some(good_identify())))]);
        let id = probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")).unwrap();
        assert_eq!(model(&id), "SATAVM TEST DRIVE");
        assert_eq!(capacity(&id), 0x1000);
        // PIO data-in, T_DIR, BYT_BLOK, T_LENGTH = count, no CK_COND.
        assert_eq!(s.cdbs.lock().unwrap()[0][..3], [0x85, 0x08, 0x0e]);
    }

    #[test]
    fn good_status_without_sense_and_identify_data_is_an_ata_drive() {
        // Linux 6.1 libata, IDENTIFY DEVICE without CK_COND: GOOD, no sense, the data.
        let s = script(vec![Ok((SgResult::default(), Some(good_identify())))]);
        let id = probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")).unwrap();
        assert_eq!(model(&id), "SATAVM TEST DRIVE");
        assert_eq!(s.cdbs.lock().unwrap().len(), 1);
        // GOOD without data is not.
        let s = script(vec![Ok((SgResult::default(), None))]);
        let e = probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")).unwrap_err();
        assert!(e.to_string().contains("no data"), "{e}");
    }

    #[test]
    fn an_abort_in_linux_legacy_fixed_sense_is_not_ata() {
        // CHECK CONDITION, ABORTED COMMAND, registers at bytes 8-11: status 51h, error 04h.
        let abort = SgResult {
            status: 2,
            sense: vec![
                0x70, 0, 0x0b, 0, 0, 0, 0, 0x0a, 0x04, 0x51, 0xa0, 0x01, 0, 0, 0, 0, 0x00, 0x00,
            ],
            ..Default::default()
        };
        let s = script(vec![Ok((abort, None))]);
        let e = probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")).unwrap_err();
        assert!(
            e.to_string()
                .contains("IDENTIFY DEVICE aborted (status 0x51, error 0x04)"),
            "{e}"
        );
    }

    #[test]
    fn eperm_means_no_cap_sys_rawio() {
        let s = script(vec![Err(io::Error::from_raw_os_error(libc::EPERM))]);
        let e = probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")).unwrap_err();
        assert!(matches!(e, PassthroughError::NoRawIo(_)));
        assert!(e.to_string().contains("CAP_SYS_RAWIO"));
    }

    #[test]
    fn a_device_that_rejects_both_cdbs_is_not_ata() {
        let reject = SgResult {
            status: 2,
            sense: vec![
                0x70,
                0,
                key::ILLEGAL_REQUEST,
                0,
                0,
                0,
                0,
                10,
                0,
                0,
                0,
                0,
                0x20,
                0,
                0,
                0,
                0,
                0,
            ],
            ..Default::default()
        };
        let s = script(vec![Ok((reject.clone(), None)), Ok((reject, None))]);
        let e = probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")).unwrap_err();
        assert!(matches!(e, PassthroughError::NotAta { .. }), "{e}");
        let cdbs = s.cdbs.lock().unwrap();
        assert_eq!((cdbs[0][0], cdbs[1][0]), (0x85, 0xa1));
    }

    #[test]
    fn atapi_abort_and_bad_checksum_are_not_ata() {
        let mut abort = recovered();
        abort.sense[8 + 3] = 0x04;
        abort.sense[8 + 13] = 0x51;
        let s = script(vec![Ok((abort, None))]);
        assert!(matches!(
            probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")),
            Err(PassthroughError::NotAta { .. })
        ));
        let mut bad = good_identify();
        bad[100] ^= 1;
        let s = script(vec![Ok((recovered(), Some(bad)))]);
        assert!(matches!(
            probe_identify(&s, Duration::from_secs(1), Path::new("/dev/sg0")),
            Err(PassthroughError::NotAta { .. })
        ));
    }

    #[test]
    fn open_errors_are_clear() {
        let n = std::sync::Arc::new(EventFd::new(0).unwrap());
        let e =
            PassthroughDrive::open(&PassthroughConfig::new("/dev/sg-does-not-exist"), n.clone())
                .unwrap_err();
        assert!(matches!(e, PassthroughError::NotFound(_)), "{e}");
        // A character device that is not SCSI.
        let e =
            PassthroughDrive::open(&PassthroughConfig::new("/dev/null"), n.clone()).unwrap_err();
        assert!(matches!(e, PassthroughError::NotScsi { .. }), "{e}");
        // A regular file.
        let e =
            PassthroughDrive::open(&PassthroughConfig::new("/proc/self/status"), n).unwrap_err();
        assert!(matches!(e, PassthroughError::NotScsi { .. }), "{e}");
    }
}
