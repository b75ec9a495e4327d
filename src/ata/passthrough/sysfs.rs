//! The host queue's limits, read from sysfs.
//!
//! - /dev/sgN: `/sys/class/scsi_generic/sgN/device` is the SCSI device; its `block/<name>/queue`
//!   holds the block queue of the disk behind it.
//! - /dev/sdX: `/sys/dev/block/<major>:<minor>` is the disk (a `partition` file there means a
//!   partition), with `queue/` and `device/` below it.
//!
//! `max_hw_sectors_kb` bounds one SG_IO (the block layer fails larger ones with EIO);
//! `max_segments` bounds it too when the buffer's pages are not physically contiguous;
//! `device/queue_depth` is the NCQ depth the host uses.

use std::fs;
use std::path::{Path, PathBuf};

/// The limits of the host path to the drive; `None` where sysfs did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_hw_sectors_kb: Option<u32>,
    pub max_segments: Option<u32>,
    pub queue_depth: Option<u32>,
}

/// Sectors of one host command when sysfs says nothing: 128 KiB, what every libata port takes.
pub const DEFAULT_MAX_SECTORS: u32 = 256;
/// A bounce buffer page (4 KiB) in 512-byte sectors: the worst case of one segment.
const SECTORS_PER_SEGMENT: u32 = 8;

impl QueueLimits {
    /// The largest transfer, in 512-byte sectors, one host command may carry.
    pub fn max_transfer_sectors(&self) -> u32 {
        let hw = self
            .max_hw_sectors_kb
            .map_or(DEFAULT_MAX_SECTORS, |kb| kb.saturating_mul(2));
        let seg = self
            .max_segments
            .map_or(u32::MAX, |s| s.saturating_mul(SECTORS_PER_SEGMENT));
        hw.min(seg).clamp(1, 65536)
    }

    /// How many commands to keep in flight on the host: its NCQ depth, at most 32.
    pub fn workers(&self) -> usize {
        self.queue_depth.unwrap_or(8).clamp(1, 32) as usize
    }
}

/// Where a device node's attributes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysfsError {
    /// The node is a partition, not a whole disk.
    Partition,
}

fn read_u32(p: &Path) -> Option<u32> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The queue directory and SCSI device directory of a device node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsPaths {
    pub queue: Option<PathBuf>,
    pub device: Option<PathBuf>,
}

/// Find the sysfs directories (under `root`, normally "/sys") for a character device named
/// `name` (sg) or a block device `major:minor`.
pub fn locate(
    root: &Path,
    node: &Path,
    is_block: bool,
    major: u64,
    minor: u64,
) -> Result<SysfsPaths, SysfsError> {
    if is_block {
        let dir = root.join(format!("dev/block/{major}:{minor}"));
        if dir.join("partition").exists() {
            return Err(SysfsError::Partition);
        }
        return Ok(SysfsPaths {
            queue: Some(dir.join("queue")),
            device: Some(dir.join("device")),
        });
    }
    let name = node
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let device = root.join("class/scsi_generic").join(&name).join("device");
    let queue = fs::read_dir(device.join("block"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path().join("queue"));
    Ok(SysfsPaths {
        queue,
        device: Some(device),
    })
}

/// The other device node of the same SCSI device, as sysfs (under `root`) names it: the disk
/// `/dev/sdX` of a `/dev/sgN` (char `major:minor`), or the `/dev/sgN` of a disk. `None` where
/// sysfs names none (no sg driver loaded, not a SCSI device) or the node is not in `dev`.
pub fn sibling(root: &Path, dev: &Path, is_block: bool, major: u64, minor: u64) -> Option<PathBuf> {
    let (kind, below) = if is_block {
        ("block", "device/scsi_generic")
    } else {
        ("char", "device/block")
    };
    let dir = root.join(format!("dev/{kind}/{major}:{minor}")).join(below);
    let name = fs::read_dir(dir).ok()?.flatten().next()?.file_name();
    let node = dev.join(name);
    node.exists().then_some(node)
}

/// The name of the sg node (`sgN`) of the SCSI device whose sysfs directory is `device`, if
/// the sg driver made one.
pub fn sg_name(device: &Path) -> Option<String> {
    fs::read_dir(device.join("scsi_generic"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with("sg"))
}

/// The SATA generation in a libata `sata_spd` attribute ("1.5 Gbps", "3.0 Gbps", "6.0 Gbps";
/// "<unknown>" while the link is down).
pub fn parse_sata_spd(text: &str) -> Option<u8> {
    match text.trim() {
        "1.5 Gbps" => Some(1),
        "3.0 Gbps" => Some(2),
        "6.0 Gbps" => Some(3),
        _ => None,
    }
}

/// The negotiated speed of the host's SATA link to the SCSI device whose sysfs directory is
/// `device` (…/ataN/hostM/target…/M:0:0:0): libata's `ataN/linkK/ata_link/linkK/sata_spd` of
/// the nearest `ataN` above it. `None` where there is none (not libata, a USB bridge...).
pub fn host_link_gen(device: &Path) -> Option<u8> {
    let device = fs::canonicalize(device).ok()?;
    let ata = device.ancestors().find(|d| {
        d.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("ata"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })?;
    fs::read_dir(ata)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("link"))
        .find_map(|n| {
            let f = ata.join(&n).join("ata_link").join(&n).join("sata_spd");
            parse_sata_spd(&fs::read_to_string(f).ok()?)
        })
}

/// Read the limits from `paths`.
pub fn read_limits(paths: &SysfsPaths) -> QueueLimits {
    let q = |f: &str| paths.queue.as_ref().and_then(|d| read_u32(&d.join(f)));
    QueueLimits {
        max_hw_sectors_kb: q("max_hw_sectors_kb"),
        max_segments: q("max_segments"),
        queue_depth: paths
            .device
            .as_ref()
            .and_then(|d| read_u32(&d.join("queue_depth"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("satavm-sysfs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn limits_of_an_sg_node() {
        let root = tmp("sg");
        let dev = root.join("class/scsi_generic/sg2/device");
        fs::create_dir_all(dev.join("block/sdc/queue")).unwrap();
        fs::write(dev.join("block/sdc/queue/max_hw_sectors_kb"), "32767\n").unwrap();
        fs::write(dev.join("block/sdc/queue/max_segments"), "168\n").unwrap();
        fs::write(dev.join("queue_depth"), "32\n").unwrap();
        let paths = locate(&root, Path::new("/dev/sg2"), false, 21, 2).unwrap();
        let l = read_limits(&paths);
        assert_eq!(
            l,
            QueueLimits {
                max_hw_sectors_kb: Some(32767),
                max_segments: Some(168),
                queue_depth: Some(32)
            }
        );
        // 168 segments of 4 KiB = 1344 sectors, below 65534.
        assert_eq!(l.max_transfer_sectors(), 1344);
        assert_eq!(l.workers(), 32);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn limits_of_a_block_node_and_partitions() {
        let root = tmp("blk");
        let disk = root.join("dev/block/8:0");
        fs::create_dir_all(disk.join("queue")).unwrap();
        fs::create_dir_all(disk.join("device")).unwrap();
        fs::write(disk.join("queue/max_hw_sectors_kb"), "128").unwrap();
        fs::write(disk.join("device/queue_depth"), "1").unwrap();
        let paths = locate(&root, Path::new("/dev/sda"), true, 8, 0).unwrap();
        let l = read_limits(&paths);
        assert_eq!(l.max_transfer_sectors(), 256);
        assert_eq!(sg_name(paths.device.as_deref().unwrap()), None);
        fs::create_dir_all(disk.join("device/scsi_generic/sg3")).unwrap();
        assert_eq!(
            sg_name(paths.device.as_deref().unwrap()).as_deref(),
            Some("sg3")
        );
        assert_eq!(l.workers(), 1);
        let part = root.join("dev/block/8:1");
        fs::create_dir_all(&part).unwrap();
        fs::write(part.join("partition"), "1").unwrap();
        assert_eq!(
            locate(&root, Path::new("/dev/sda1"), true, 8, 1),
            Err(SysfsError::Partition)
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_sg_and_sd_nodes_of_one_device_name_each_other() {
        let root = tmp("sibling");
        let dev = root.join("devnodes");
        let scsi = root.join("devices/0:0:0:0");
        fs::create_dir_all(scsi.join("block/sdb")).unwrap();
        fs::create_dir_all(scsi.join("scsi_generic/sg1")).unwrap();
        fs::create_dir_all(root.join("dev/char/21:1")).unwrap();
        fs::create_dir_all(root.join("dev/block/8:16")).unwrap();
        std::os::unix::fs::symlink(&scsi, root.join("dev/char/21:1/device")).unwrap();
        std::os::unix::fs::symlink(&scsi, root.join("dev/block/8:16/device")).unwrap();
        fs::create_dir_all(&dev).unwrap();
        // Not in /dev (yet): nothing to lock.
        assert_eq!(sibling(&root, &dev, false, 21, 1), None);
        fs::write(dev.join("sdb"), "").unwrap();
        fs::write(dev.join("sg1"), "").unwrap();
        assert_eq!(sibling(&root, &dev, false, 21, 1), Some(dev.join("sdb")));
        assert_eq!(sibling(&root, &dev, true, 8, 16), Some(dev.join("sg1")));
        assert_eq!(sibling(&root, &dev, true, 8, 32), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_sysfs_gives_safe_defaults() {
        let l = QueueLimits::default();
        assert_eq!(l.max_transfer_sectors(), DEFAULT_MAX_SECTORS);
        assert_eq!(l.workers(), 8);
    }

    #[test]
    fn host_link_speed_from_the_ata_link_above_the_scsi_device() {
        assert_eq!(parse_sata_spd("1.5 Gbps\n"), Some(1));
        assert_eq!(parse_sata_spd("6.0 Gbps"), Some(3));
        assert_eq!(parse_sata_spd("<unknown>"), None);
        let root = std::env::temp_dir().join(format!("satavm-sysfs-spd-{}", std::process::id()));
        let ata = root.join("pci0000:00/0000:00:1f.2/ata3");
        let dev = ata.join("host2/target2:0:0/2:0:0:0");
        fs::create_dir_all(&dev).unwrap();
        assert_eq!(host_link_gen(&dev), None, "no link directory");
        let link = ata.join("link3/ata_link/link3");
        fs::create_dir_all(&link).unwrap();
        fs::write(link.join("sata_spd"), "3.0 Gbps\n").unwrap();
        assert_eq!(host_link_gen(&dev), Some(2));
        fs::remove_dir_all(&root).unwrap();
    }
}
