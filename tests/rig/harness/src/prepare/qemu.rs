//! The L0 QEMU (`RIG_QEMU`): 7.2 is the host's Debian package; 10 is bookworm-backports'
//! qemu-system-x86 with its -common and -data packages, unpacked into the cache (the host's
//! package stays, and its libraries serve both), run with its own firmware directories and
//! bookworm-backports' SeaBIOS.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::apt::{Apt, Suite};
use super::host::{self, Log};
use super::knobs::QemuChoice;
use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct Qemu {
    pub bin: PathBuf,
    /// Arguments that come with it (`-L` firmware directories).
    pub data_args: Vec<String>,
    /// What `--version` says, e.g. 10.0.2.
    pub version: String,
}

pub fn resolve(
    apt: &mut Apt,
    cache: &Path,
    choice: QemuChoice,
    log: Log<'_>,
) -> Result<Qemu, Error> {
    let (bin, data_args) = match choice {
        QemuChoice::Qemu7_2 => (host::require("qemu-system-x86_64")?, Vec::new()),
        QemuChoice::Qemu10 => {
            let suite = Suite::BookwormBackports;
            let dir = match apt
                .candidate(suite, "qemu-system-x86", log)
                .filter(|v| v.starts_with("1:10."))
            {
                Some(version) => {
                    let plain = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
                    let dir = cache.join(format!("qemu-{plain}"));
                    let packages = ["qemu-system-x86", "qemu-system-common", "qemu-system-data"]
                        .map(|p| format!("{p}={version}"));
                    apt.fetch_into(suite, &packages, &dir, log)?;
                    dir
                }
                None => {
                    let dir = apt.cached("qemu-10.").ok_or_else(|| {
                        Error::Prepare(
                            "cannot resolve QEMU 10 in bookworm-backports (RIG_QEMU=7.2 uses the host's)"
                                .into(),
                        )
                    })?;
                    log(&format!(
                        "apt-cache found no QEMU 10; using cached {}",
                        dir.display()
                    ));
                    dir
                }
            };
            let bin = dir.join("usr/bin/qemu-system-x86_64");
            let missing: Vec<String> = host::output(Command::new("ldd").arg(&bin))?
                .lines()
                .filter(|l| l.contains("not found"))
                .map(|l| l.trim().to_string())
                .collect();
            if !missing.is_empty() {
                return Err(Error::Prepare(format!(
                    "QEMU 10 misses host libraries: {}",
                    missing.join(", ")
                )));
            }
            // Its own firmware blobs and keymaps first, then SeaBIOS from bookworm-backports:
            // the host's 1.16.2 under QEMU 10's AHCI waited 32 s (its AHCI request timeout)
            // before every L1 kernel started; 1.16.3 does not.
            let seabios = backports_seabios(apt, cache, log);
            let data_args = vec![
                "-L".to_string(),
                dir.join("usr/share/qemu").display().to_string(),
                "-L".to_string(),
                seabios.display().to_string(),
            ];
            (bin, data_args)
        }
    };
    let out = host::output(Command::new(&bin).arg("--version"))?;
    let version = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("?")
        .to_string();
    Ok(Qemu {
        bin,
        data_args,
        version,
    })
}

/// The firmware directory of bookworm-backports' SeaBIOS, unpacked once into the cache; the
/// host's /usr/share/seabios if that cannot be had (then every L1 boot under QEMU 10 waits
/// 32 s longer).
fn backports_seabios(apt: &mut Apt, cache: &Path, log: Log<'_>) -> PathBuf {
    let host_seabios = PathBuf::from("/usr/share/seabios");
    let dir = match apt.candidate(Suite::BookwormBackports, "seabios", log) {
        Some(version) => {
            let dir = cache.join(format!("seabios-{version}"));
            if let Err(e) = apt.fetch_into(
                Suite::BookwormBackports,
                &[format!("seabios={version}")],
                &dir,
                log,
            ) {
                log(&format!(
                    "could not fetch SeaBIOS {version} ({e}): the host's (L1 boots wait 32 s longer)"
                ));
                return host_seabios;
            }
            dir
        }
        None => match apt.cached("seabios-") {
            Some(dir) => dir,
            None => {
                log("no SeaBIOS from bookworm-backports: the host's (L1 boots wait 32 s longer)");
                return host_seabios;
            }
        },
    };
    dir.join("usr/share/seabios")
}
