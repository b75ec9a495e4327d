//! `--disk` specifications: `path=FILE[,model=M][,serial=S][,readonly=on][,engine=E]` for an emulated
//! drive over an image file or block device, `passthrough=/dev/sgN[,timeout=SECS][,allow=all]
//! [,readonly=on][,engine=sg|threads]` for a host SATA drive reached through SG_IO.

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
        read_only: bool,
        /// The I/O engine: io_uring (default where the host has it) or threads.
        engine: EngineChoice,
    },
    /// A host SATA drive reached with SG_IO ATA PASS-THROUGH.
    Passthrough {
        path: PathBuf,
        timeout: Duration,
        allow_all: bool,
        read_only: bool,
        /// The I/O engine: the sg driver's asynchronous interface (default) or threads.
        engine: EngineChoice,
    },
}

/// A `--disk` value that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DiskSpecError {
    #[error("--disk needs path=FILE or passthrough=DEVICE, got {0:?}")]
    NoTarget(String),
    #[error("--disk: both path= and passthrough= given")]
    BothTargets,
    #[error("--disk: unknown option {0:?} (known: path, model, serial, readonly, engine, passthrough, timeout, allow)")]
    UnknownKey(String),
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

impl FromStr for DiskSpec {
    type Err = DiskSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut path, mut passthrough, mut model, mut serial) = (None, None, None, None);
        let (mut read_only, mut timeout, mut allow_all) = (false, None, false);
        let mut engine = None;
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "path" => path = Some(PathBuf::from(value)),
                "passthrough" => passthrough = Some(PathBuf::from(value)),
                "model" => model = Some(ata_string(key, value, 40)?),
                "serial" => serial = Some(ata_string(key, value, 20)?),
                "readonly" => read_only = on_off(key, value)?,
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
                    read_only,
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
                if model.is_some() || serial.is_some() {
                    let key = if model.is_some() { "model" } else { "serial" };
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
                read_only: true,
                engine: EngineChoice::Auto,
            })
        );
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
