//! `--disk` specifications: `path=FILE[,model=M][,serial=S][,wwn=W][,readonly=on][,lock=off]
//! [,engine=E]` for an emulated drive over an image file or block device,
//! `passthrough=/dev/sgN|/dev/sdX[,timeout=SECS][,allow=all][,readonly=on][,lock=off]
//! [,engine=sg|threads]` for a host SATA drive reached through SG_IO, and
//! `cdrom=ISO[,model=M][,serial=S][,lock=off][,engine=E]` (or `path=ISO,media=cdrom`) for an
//! emulated ATAPI CD/DVD drive ([`crate::ata::atapi`]); `cdrom=` with no file, or `media=cdrom`
//! with no `path=`, is a drive with an empty tray. As in QEMU's option syntax, `,,` stands for
//! a comma inside a value (`path=a,,b.img` is the file `a,b.img`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::block::EngineChoice;

/// Default per-command timeout of pass-through commands.
pub const DEFAULT_PASSTHROUGH_TIMEOUT: Duration = Duration::from_secs(30);

/// One `--disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSpec {
    /// An emulated SATA drive backed by an image file or block device.
    Image {
        path: PathBuf,
        model: Option<String>,
        serial: Option<String>,
        /// World wide name (NAA 5, IDENTIFY words 108-111); default derived from the serial.
        wwn: Option<u64>,
        read_only: bool,
        /// Take an OFD lock on the file (`lock=off` turns it off; see [`crate::hostfile`]).
        lock: bool,
        /// The I/O engine: io_uring (default where the host has it) or threads.
        engine: EngineChoice,
    },
    /// A host SATA drive reached with SG_IO ATA PASS-THROUGH.
    Passthrough {
        path: PathBuf,
        timeout: Duration,
        allow_all: bool,
        read_only: bool,
        /// Lock the device nodes (`lock=off` turns it off).
        lock: bool,
        /// The I/O engine: the sg driver's asynchronous interface (default) or threads.
        engine: EngineChoice,
    },
    /// An emulated ATAPI CD/DVD drive with an ISO image in it (always read-only), or with an
    /// empty tray (`path` None).
    Cdrom {
        path: Option<PathBuf>,
        model: Option<String>,
        serial: Option<String>,
        /// Take a shared OFD lock on the image (`lock=off` turns it off).
        lock: bool,
        /// The I/O engine: io_uring (default where the host has it) or threads.
        engine: EngineChoice,
    },
}

impl DiskSpec {
    /// The file or device node (an empty CD/DVD tray: the empty path, which names no file).
    pub fn path(&self) -> &std::path::Path {
        match self {
            DiskSpec::Image { path, .. } | DiskSpec::Passthrough { path, .. } => path,
            DiskSpec::Cdrom { path, .. } => path.as_deref().unwrap_or(std::path::Path::new("")),
        }
    }

    /// Opened read-only.
    pub fn read_only(&self) -> bool {
        match self {
            DiskSpec::Image { read_only, .. } | DiskSpec::Passthrough { read_only, .. } => {
                *read_only
            }
            DiskSpec::Cdrom { .. } => true,
        }
    }
}

/// A `--disk` value that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DiskSpecError {
    #[error("--disk needs path=FILE, passthrough=DEVICE or cdrom=ISO, got {0:?}")]
    NoTarget(String),
    #[error("--disk: both path= and passthrough= given")]
    BothTargets,
    #[error("--disk: unknown option {0:?} (known: path, model, serial, wwn, readonly, lock, engine, passthrough, timeout, allow, cdrom, media)")]
    UnknownKey(String),
    #[error("--disk: {0}= needs a file name{hint}", hint = if *.0 == "path" { " (path=FILE, e.g. path=disk.img)" } else { " (passthrough=/dev/sgN or /dev/sdX)" })]
    EmptyPath(&'static str),
    #[error("--disk: {0}= given twice")]
    Repeated(String),
    #[error("--disk: option {key} does not apply to {kind} disks")]
    NotApplicable { key: String, kind: &'static str },
    #[error("--disk: bad value {value:?} for {key}: {why}")]
    BadValue {
        key: String,
        value: String,
        why: &'static str,
    },
}

fn on_off(key: &str, value: &str) -> Result<bool, DiskSpecError> {
    match value {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(DiskSpecError::BadValue {
            key: key.into(),
            value: value.into(),
            why: "expected on or off",
        }),
    }
}

/// ATA strings are ASCII and fixed-length (model 40, serial 20 characters; ACS-3 7.12.7).
fn ata_string(key: &str, value: &str, max: usize) -> Result<String, DiskSpecError> {
    if value.len() > max || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(DiskSpecError::BadValue {
            key: key.into(),
            value: value.into(),
            why: if value.len() > max {
                "too long for the ATA IDENTIFY field"
            } else {
                "must be printable ASCII"
            },
        });
    }
    Ok(value.to_string())
}

/// A world wide name: 16 hex digits (an optional 0x before them) of an NAA 5 name, the only
/// format IDENTIFY words 108-111 carry (ACS-3 7.12.7.60: bits 63:60 = 5h).
fn wwn(key: &str, value: &str) -> Result<u64, DiskSpecError> {
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value);
    let bad = |why| DiskSpecError::BadValue {
        key: key.into(),
        value: value.into(),
        why,
    };
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("expected 16 hex digits, e.g. 0x5000c500a1b2c3d4"));
    }
    let v = u64::from_str_radix(digits, 16).map_err(|_| bad("expected 16 hex digits"))?;
    if v >> 60 != 5 {
        return Err(bad("must be an NAA 5 name (first hex digit 5)"));
    }
    Ok(v)
}

/// `s` split at single commas, `,,` standing for a comma inside a part (QEMU's rule).
fn split_options(s: &str) -> Vec<String> {
    let (mut parts, mut cur) = (Vec::new(), String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                cur.push(',');
            }
            ',' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts.retain(|p| !p.is_empty());
    parts
}

fn file_name(key: &'static str, value: &str) -> Result<PathBuf, DiskSpecError> {
    if value.is_empty() {
        return Err(DiskSpecError::EmptyPath(key));
    }
    Ok(PathBuf::from(value))
}

impl FromStr for DiskSpec {
    type Err = DiskSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut path, mut passthrough, mut model, mut serial) = (None, None, None, None);
        let (mut read_only, mut timeout, mut allow_all, mut lock) = (false, None, false, true);
        let mut engine = None;
        let mut wwn_value = None;
        // `cdrom=` (its file, None when empty) and `media=cdrom`.
        let (mut cdrom, mut media_cdrom): (Option<Option<PathBuf>>, bool) = (None, false);
        for part in split_options(s) {
            let (key, value) = part.split_once('=').unwrap_or((&part, ""));
            match key {
                "cdrom" => {
                    if cdrom.is_some() {
                        return Err(DiskSpecError::Repeated(key.into()));
                    }
                    cdrom = Some((!value.is_empty()).then(|| PathBuf::from(value)));
                }
                "media" => match value {
                    "cdrom" => media_cdrom = true,
                    "disk" => media_cdrom = false,
                    _ => {
                        return Err(DiskSpecError::BadValue {
                            key: key.into(),
                            value: value.into(),
                            why: "expected cdrom or disk",
                        })
                    }
                },
                "path" | "passthrough" => {
                    let slot = if key == "path" {
                        &mut path
                    } else {
                        &mut passthrough
                    };
                    if slot.is_some() {
                        return Err(DiskSpecError::Repeated(key.into()));
                    }
                    let key = if key == "path" { "path" } else { "passthrough" };
                    *slot = Some(file_name(key, value)?);
                }
                "model" => model = Some(ata_string(key, value, 40)?),
                "serial" => serial = Some(ata_string(key, value, 20)?),
                "wwn" => wwn_value = Some(wwn(key, value)?),
                "readonly" => read_only = on_off(key, value)?,
                "lock" => lock = on_off(key, value)?,
                "engine" => {
                    engine = Some(value.parse().map_err(|_| DiskSpecError::BadValue {
                        key: key.into(),
                        value: value.into(),
                        why: "expected auto, io_uring (images), sg (pass-through) or threads",
                    })?)
                }
                "timeout" => {
                    let secs: u64 = value.parse().ok().filter(|&v| v > 0).ok_or_else(|| {
                        DiskSpecError::BadValue {
                            key: key.into(),
                            value: value.into(),
                            why: "expected whole seconds > 0",
                        }
                    })?;
                    timeout = Some(Duration::from_secs(secs));
                }
                "allow" => match value {
                    "all" => allow_all = true,
                    "safe" => allow_all = false,
                    _ => {
                        return Err(DiskSpecError::BadValue {
                            key: key.into(),
                            value: value.into(),
                            why: "expected all or safe",
                        })
                    }
                },
                _ => return Err(DiskSpecError::UnknownKey(key.into())),
            }
        }
        if cdrom.is_some() || media_cdrom {
            if passthrough.is_some() || (cdrom.is_some() && path.is_some()) {
                return Err(DiskSpecError::BothTargets);
            }
            let not_for_cdrom = [
                ("timeout", timeout.is_some()),
                ("allow", allow_all),
                ("engine=sg", engine == Some(EngineChoice::Sg)),
                ("wwn", wwn_value.is_some()),
            ];
            if let Some((key, _)) = not_for_cdrom.iter().find(|(_, given)| *given) {
                return Err(DiskSpecError::NotApplicable {
                    key: (*key).into(),
                    kind: "cdrom",
                });
            }
            let _ = read_only; // A disc is read-only whatever readonly= says.
            return Ok(DiskSpec::Cdrom {
                path: cdrom.unwrap_or(path),
                model,
                serial,
                lock,
                engine: engine.unwrap_or_default(),
            });
        }
        match (path, passthrough) {
            (Some(_), Some(_)) => Err(DiskSpecError::BothTargets),
            (Some(path), None) => {
                if timeout.is_some() || allow_all {
                    let key = if timeout.is_some() {
                        "timeout"
                    } else {
                        "allow"
                    };
                    return Err(DiskSpecError::NotApplicable {
                        key: key.into(),
                        kind: "image",
                    });
                }
                if engine == Some(EngineChoice::Sg) {
                    return Err(DiskSpecError::NotApplicable {
                        key: "engine=sg".into(),
                        kind: "image",
                    });
                }
                Ok(DiskSpec::Image {
                    path,
                    model,
                    serial,
                    wwn: wwn_value,
                    read_only,
                    lock,
                    engine: engine.unwrap_or_default(),
                })
            }
            (None, Some(path)) => {
                if engine == Some(EngineChoice::IoUring) {
                    return Err(DiskSpecError::NotApplicable {
                        key: "engine=io_uring".into(),
                        kind: "pass-through (Linux has no io_uring SG_IO; engine=sg or threads)",
                    });
                }
                if model.is_some() || serial.is_some() || wwn_value.is_some() {
                    let key = if model.is_some() {
                        "model"
                    } else if serial.is_some() {
                        "serial"
                    } else {
                        "wwn"
                    };
                    return Err(DiskSpecError::NotApplicable {
                        key: key.into(),
                        kind: "pass-through (the drive's own IDENTIFY data is used)",
                    });
                }
                Ok(DiskSpec::Passthrough {
                    path,
                    timeout: timeout.unwrap_or(DEFAULT_PASSTHROUGH_TIMEOUT),
                    allow_all,
                    read_only,
                    lock,
                    engine: engine.unwrap_or_default(),
                })
            }
            (None, None) => Err(DiskSpecError::NoTarget(s.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_and_passthrough_specs() {
        assert_eq!(
            "path=/tmp/d.img,model=TEST MODEL,serial=S1,readonly=on".parse(),
            Ok(DiskSpec::Image {
                path: "/tmp/d.img".into(),
                model: Some("TEST MODEL".into()),
                serial: Some("S1".into()),
                wwn: None,
                read_only: true,
                lock: true,
                engine: EngineChoice::Auto,
            })
        );
        assert!(matches!(
            "path=d.img,wwn=0x5000C500A1B2C3D4".parse(),
            Ok(DiskSpec::Image {
                wwn: Some(0x5000_c500_a1b2_c3d4),
                ..
            })
        ));
        assert!(matches!(
            "path=d.img,wwn=5000c500a1b2c3d4".parse(),
            Ok(DiskSpec::Image {
                wwn: Some(0x5000_c500_a1b2_c3d4),
                ..
            })
        ));
        for bad in [
            "0x6000c500a1b2c3d4",
            "0x5000c500a1b2c3",
            "0x5000c500a1b2c3dz",
            "",
        ] {
            assert!(
                matches!(
                    format!("path=d.img,wwn={bad}").parse::<DiskSpec>(),
                    Err(DiskSpecError::BadValue { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            "passthrough=/dev/sg0,wwn=0x5000c500a1b2c3d4".parse::<DiskSpec>(),
            Err(DiskSpecError::NotApplicable { .. })
        ));
        assert!(matches!(
            "path=d.img,engine=threads".parse(),
            Ok(DiskSpec::Image {
                engine: EngineChoice::Threads,
                ..
            })
        ));
        assert!(matches!(
            "path=d.img,engine=io_uring".parse(),
            Ok(DiskSpec::Image {
                engine: EngineChoice::IoUring,
                ..
            })
        ));
        assert_eq!(
            "passthrough=/dev/sg0,timeout=5,allow=all".parse(),
            Ok(DiskSpec::Passthrough {
                path: "/dev/sg0".into(),
                timeout: Duration::from_secs(5),
                allow_all: true,
                read_only: false,
                lock: true,
                engine: EngineChoice::Auto,
            })
        );
        assert!(matches!(
            "passthrough=/dev/sda,engine=threads".parse(),
            Ok(DiskSpec::Passthrough {
                engine: EngineChoice::Threads,
                ..
            })
        ));
        assert_eq!(
            "passthrough=/dev/sda".parse::<DiskSpec>().map(|d| matches!(d, DiskSpec::Passthrough { timeout, .. } if timeout == DEFAULT_PASSTHROUGH_TIMEOUT)),
            Ok(true)
        );
    }

    #[test]
    fn cdrom_specs() {
        let iso = DiskSpec::Cdrom {
            path: Some("/tmp/a.iso".into()),
            model: None,
            serial: None,
            lock: true,
            engine: EngineChoice::Auto,
        };
        assert_eq!("cdrom=/tmp/a.iso".parse(), Ok(iso.clone()));
        assert_eq!("path=/tmp/a.iso,media=cdrom".parse(), Ok(iso.clone()));
        assert!(iso.read_only());
        let empty = DiskSpec::Cdrom {
            path: None,
            model: Some("DRIVE".into()),
            serial: None,
            lock: false,
            engine: EngineChoice::Threads,
        };
        assert_eq!(
            "cdrom=,model=DRIVE,lock=off,engine=threads".parse(),
            Ok(empty.clone())
        );
        assert_eq!(
            "media=cdrom,model=DRIVE,lock=off,engine=threads".parse(),
            Ok(empty.clone())
        );
        assert_eq!(empty.path(), std::path::Path::new(""));
        assert_eq!(
            "cdrom=a.iso,path=b.iso".parse::<DiskSpec>(),
            Err(DiskSpecError::BothTargets)
        );
        assert_eq!(
            "cdrom=a.iso,cdrom=b.iso".parse::<DiskSpec>(),
            Err(DiskSpecError::Repeated("cdrom".into()))
        );
        assert!(matches!(
            "media=cdrom,passthrough=/dev/sg0".parse::<DiskSpec>(),
            Err(DiskSpecError::BothTargets)
        ));
        assert!(matches!(
            "cdrom=a.iso,timeout=3".parse::<DiskSpec>(),
            Err(DiskSpecError::NotApplicable { .. })
        ));
        assert!(matches!(
            "path=a.iso,media=floppy".parse::<DiskSpec>(),
            Err(DiskSpecError::BadValue { .. })
        ));
        assert!(matches!(
            "path=a.img,media=disk".parse::<DiskSpec>(),
            Ok(DiskSpec::Image { .. })
        ));
    }

    #[test]
    fn double_commas_are_commas_in_values_and_lock_can_be_turned_off() {
        let d: DiskSpec = "path=a,,b.img,readonly=on,lock=off".parse().unwrap();
        assert_eq!(d.path(), std::path::Path::new("a,b.img"));
        assert!(d.read_only());
        assert!(matches!(d, DiskSpec::Image { lock: false, .. }));
        let d: DiskSpec = "path=,,,,x,,,model=M,,N".parse().unwrap();
        assert_eq!(d.path(), std::path::Path::new(",,x,"));
        assert!(matches!(d, DiskSpec::Image { model: Some(m), .. } if m == "M,N"));
        assert!(matches!(
            "passthrough=/dev/sg1,lock=off".parse::<DiskSpec>(),
            Ok(DiskSpec::Passthrough { lock: false, .. })
        ));
        assert!(matches!(
            "passthrough=/dev/sg1".parse::<DiskSpec>(),
            Ok(DiskSpec::Passthrough { lock: true, .. })
        ));
    }

    #[test]
    fn empty_and_repeated_paths_are_explained() {
        for (spec, key) in [
            ("path=", "path"),
            ("path", "path"),
            ("passthrough=,readonly=on", "passthrough"),
        ] {
            let e = spec.parse::<DiskSpec>().unwrap_err();
            assert_eq!(e, DiskSpecError::EmptyPath(key), "{spec}");
            assert!(
                e.to_string().contains(&format!("{key}= needs a file name")),
                "{e}"
            );
        }
        assert_eq!(
            "path=a,path=b".parse::<DiskSpec>(),
            Err(DiskSpecError::Repeated("path".into()))
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(matches!(
            "model=x".parse::<DiskSpec>(),
            Err(DiskSpecError::NoTarget(_))
        ));
        assert_eq!(
            "path=a,passthrough=b".parse::<DiskSpec>(),
            Err(DiskSpecError::BothTargets)
        );
        assert!(
            matches!("path=a,colour=red".parse::<DiskSpec>(), Err(DiskSpecError::UnknownKey(k)) if k == "colour")
        );
        assert!(matches!(
            "path=a,readonly=maybe".parse::<DiskSpec>(),
            Err(DiskSpecError::BadValue { .. })
        ));
        assert!(matches!(
            "path=a,serial=123456789012345678901".parse::<DiskSpec>(),
            Err(DiskSpecError::BadValue { .. })
        ));
        assert!(matches!(
            "passthrough=/dev/sg0,model=x".parse::<DiskSpec>(),
            Err(DiskSpecError::NotApplicable { .. })
        ));
        assert!(matches!(
            "path=a,timeout=3".parse::<DiskSpec>(),
            Err(DiskSpecError::NotApplicable { .. })
        ));
        assert!(matches!(
            "path=a,engine=magic".parse::<DiskSpec>(),
            Err(DiskSpecError::BadValue { .. })
        ));
        assert!(matches!(
            "passthrough=/dev/sg0,engine=io_uring".parse::<DiskSpec>(),
            Err(DiskSpecError::NotApplicable { .. })
        ));
        assert!(matches!(
            "path=a,engine=sg".parse::<DiskSpec>(),
            Err(DiskSpecError::NotApplicable { .. })
        ));
        assert!(matches!(
            "passthrough=/dev/sg0,timeout=0".parse::<DiskSpec>(),
            Err(DiskSpecError::BadValue { .. })
        ));
    }
}
