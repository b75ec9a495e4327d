//! Debian packages: the host packages the rig needs (installed if missing), and packages
//! fetched into the cache without installing them (kernels, QEMU 10, SeaBIOS), from bookworm
//! or from bookworm-backports through a private apt configuration in the cache (its own
//! SourceParts and Lists: the machine's sources stay as they are).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::host::{self, Log};
use crate::Error;

/// Host packages the rig uses. mmdebstrap, fdisk and e2fsprogs build the installed Debian of
/// debian-boot (tests/rig/debian/); xz-utils and zstd unpack kernels and modules.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "fio",
    "hdparm",
    "eject",
    "smartmontools",
    "sg3-utils",
    "mmdebstrap",
    "fdisk",
    "e2fsprogs",
    "xz-utils",
    "zstd",
];

/// How old the private backports lists may get before `apt-get update` refreshes them.
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

pub struct Apt {
    cache: PathBuf,
    updated: bool,
    /// The options that point apt at the private backports configuration, once set up.
    backports: Option<Vec<String>>,
}

/// Which part of the archive a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// bookworm, through the machine's own sources.
    Host,
    BookwormBackports,
}

impl Apt {
    pub fn new(cache: &Path) -> Apt {
        Apt {
            cache: cache.to_path_buf(),
            updated: false,
            backports: None,
        }
    }

    fn update_once(&mut self, log: Log<'_>) -> Result<(), Error> {
        if !self.updated {
            log("apt-get update");
            host::status(
                Command::new("apt-get")
                    .args(["update", "-qq"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            self.updated = true;
        }
        Ok(())
    }

    /// Installs whichever of `packages` are not installed.
    pub fn ensure_packages(&mut self, packages: &[&str], log: Log<'_>) -> Result<(), Error> {
        let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        log(&format!("installing {}", missing.join(" ")));
        self.update_once(log)?;
        host::status(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    }

    /// The apt options for `suite` (none for the host's own sources).
    pub fn options(&mut self, suite: Suite, log: Log<'_>) -> Vec<String> {
        match suite {
            Suite::Host => Vec::new(),
            Suite::BookwormBackports => self.backports_options(log),
        }
    }

    fn backports_options(&mut self, log: Log<'_>) -> Vec<String> {
        if let Some(opts) = &self.backports {
            return opts.clone();
        }
        let dir = self.cache.join("apt");
        let (parts, lists) = (dir.join("parts"), dir.join("lists"));
        let made = std::fs::create_dir_all(&parts)
            .and_then(|()| std::fs::create_dir_all(lists.join("partial")))
            .and_then(|()| {
                std::fs::write(
                    parts.join("bookworm-backports.sources"),
                    format!(
                        "Types: deb\nURIs: {}\nSuites: bookworm-backports\nComponents: main\n\
                         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
                        host_mirror()
                    ),
                )
            });
        if let Err(e) = made {
            log(&format!(
                "cannot write the private apt configuration in {}: {e}",
                dir.display()
            ));
        }
        let opts = vec![
            "-o".to_string(),
            format!("Dir::Etc::SourceParts={}", parts.display()),
            "-o".to_string(),
            "Dir::Etc::SourceList=/dev/null".to_string(),
            "-o".to_string(),
            format!("Dir::State::Lists={}", lists.display()),
        ];
        let stamp = lists.join(".updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if !fresh {
            log(&format!(
                "apt-get update (bookworm-backports, private lists in {})",
                lists.display()
            ));
            let ok = host::status(Command::new("apt-get").args(&opts).args(["update", "-qq"]));
            match ok {
                Ok(()) => {
                    let _ = std::fs::write(&stamp, "");
                }
                Err(e) => log(&format!(
                    "could not update the bookworm-backports lists ({e}); using what is cached"
                )),
            }
        }
        self.backports = Some(opts.clone());
        opts
    }

    /// The package `linux-image-amd64` depends on whose name starts with `prefix`
    /// (`linux-image-6.1.`: e.g. linux-image-6.1.0-57-amd64), if apt knows one.
    pub fn kernel_package(&mut self, suite: Suite, prefix: &str, log: Log<'_>) -> Option<String> {
        let find = |apt: &mut Apt, log: Log<'_>| {
            let opts = apt.options(suite, log);
            let out = host::output(
                Command::new("apt-cache")
                    .args(&opts)
                    .args(["depends", "linux-image-amd64"]),
            )
            .ok()?;
            out.lines().find_map(|l| {
                let dep = l.trim().strip_prefix("Depends: ")?.trim();
                dep.starts_with(prefix).then(|| dep.to_string())
            })
        };
        if let Some(p) = find(self, log) {
            return Some(p);
        }
        if suite == Suite::Host && !self.updated {
            // A machine whose lists were never updated: once, then look again.
            self.update_once(log).ok()?;
            return find(self, log);
        }
        None
    }

    /// The candidate version of `package`, if apt has one.
    pub fn candidate(&mut self, suite: Suite, package: &str, log: Log<'_>) -> Option<String> {
        let opts = self.options(suite, log);
        let out = host::output(
            Command::new("apt-cache")
                .args(&opts)
                .args(["policy", package]),
        )
        .ok()?;
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Candidate:")
                    .map(|v| v.trim().to_string())
            })
            .filter(|v| v != "(none)" && !v.is_empty())
    }

    /// Downloads `packages` (`name` or `name=version`) and unpacks them all into `dest`
    /// (`dpkg-deb -x`), marked complete with `dest/.complete`; a complete `dest` is kept.
    pub fn fetch_into(
        &mut self,
        suite: Suite,
        packages: &[String],
        dest: &Path,
        log: Log<'_>,
    ) -> Result<(), Error> {
        if dest.join(".complete").exists() {
            return Ok(());
        }
        log(&format!("downloading {}", packages.join(" ")));
        let opts = self.options(suite, log);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dl = self.cache.join(format!("download-{name}"));
        let tmp = super::host::with_suffix(dest, ".tmp");
        let _ = std::fs::remove_dir_all(&dl);
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(dest);
        std::fs::create_dir_all(&dl).map_err(|e| Error::io(&dl, e))?;
        // As root, apt downloads "unsandboxed" (its _apt user cannot write here): expected.
        let got = host::output(
            Command::new("apt-get")
                .args(&opts)
                .args(["download", "-q"])
                .args(packages)
                .current_dir(&dl),
        );
        let result = (|| {
            got?;
            for package in packages {
                let base = package.split('=').next().unwrap_or(package);
                let deb = std::fs::read_dir(&dl)
                    .map_err(|e| Error::io(&dl, e))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| {
                        p.file_name().map(|n| n.to_string_lossy()).is_some_and(|n| {
                            n.starts_with(&format!("{base}_")) && n.ends_with(".deb")
                        })
                    })
                    .ok_or_else(|| {
                        Error::Prepare(format!("apt-get download {package}: no .deb"))
                    })?;
                host::output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
            }
            std::fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))?;
            std::fs::write(dest.join(".complete"), "").map_err(|e| Error::io(dest, e))
        })();
        let _ = std::fs::remove_dir_all(&dl);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// The newest complete directory in the cache whose name starts with `prefix` (offline,
    /// when apt cannot name a version).
    pub fn cached(&self, prefix: &str) -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.cache)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
                    && p.join(".complete").exists()
            })
            .collect();
        found.sort_by(|a, b| host::version_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        found.pop()
    }
}

fn installed(package: &str) -> bool {
    host::output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", package]))
        .is_ok_and(|s| s.trim() == "install ok installed")
}

/// The Debian mirror the machine's own sources use (deb.debian.org if none is found).
fn host_mirror() -> String {
    let from_sources = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "sources"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .find_map(|text| {
            text.lines().find_map(|l| {
                let uri = l.strip_prefix("URIs:")?.split_whitespace().next()?;
                uri.trim_end_matches('/')
                    .ends_with("/debian")
                    .then(|| uri.to_string())
            })
        });
    let from_list = || {
        std::fs::read_to_string("/etc/apt/sources.list")
            .ok()?
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next()? == "deb").then_some(())?;
                let uri = w.next()?;
                uri.trim_end_matches('/')
                    .ends_with("/debian")
                    .then(|| uri.to_string())
            })
    };
    from_sources
        .or_else(from_list)
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}
