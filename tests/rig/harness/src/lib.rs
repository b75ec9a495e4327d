//! The host side of satavm's nested test rig (tests/rig/README.md).
//!
//! [`prepare`] gets a boot ready: Debian packages, the kernels and QEMU 10 in the cache, the
//! initramfs bases, then per boot the payload (satavm, the scenarios, the settings) and the
//! machine description ([`prepared`]). The rest boots it: L1's QEMU ([`machine`]), the
//! results protocol L1 speaks on its second serial port ([`protocol`]), QEMU's monitor
//! ([`qmp`]), stall detection ([`stall`]) and the boot loop ([`run`]). `tests/rig.rs` uses it
//! as a library, `scripts/rig` through its binary.

pub mod machine;
pub mod prepare;
pub mod prepared;
pub mod protocol;
pub mod qmp;
pub mod run;
pub mod stall;
pub mod stalls;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the prepared machine description: {0}")]
    Prepared(String),
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("{0}")]
    Usage(String),
    #[error("preparing: {0}")]
    Prepare(String),
    #[error("{0}")]
    Command(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
