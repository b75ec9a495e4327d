//! The Debian kernels: resolved at run time from the archive (the package
//! `linux-image-amd64` depends on), unpacked once into the cache, with the same kernel as an
//! ELF vmlinux beside the bzImage (satavm's ELF boot path is tested with it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::apt::{Apt, Suite};
use super::host::{self, Log};
use super::knobs::Generation;
use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub generation: Generation,
    /// The package, e.g. linux-image-6.1.0-57-amd64.
    pub package: String,
    /// Where it is unpacked.
    pub dir: PathBuf,
    /// Its modules directory's name (`uname -r`).
    pub version: String,
    pub vmlinuz: PathBuf,
    pub vmlinux: PathBuf,
}

impl Kernel {
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.version)
    }
}

/// Debian's newest kernel of `generation`, fetched into `cache` if it is not there.
pub fn fetch(
    apt: &mut Apt,
    cache: &Path,
    generation: Generation,
    log: Log<'_>,
) -> Result<Kernel, Error> {
    let suite = if generation.backports() {
        Suite::BookwormBackports
    } else {
        Suite::Host
    };
    let prefix = format!("linux-image-{}.", generation.as_str());
    let dir = match apt.kernel_package(suite, &prefix, log) {
        Some(package) => {
            let dir = cache.join(&package);
            apt.fetch_into(suite, &[package], &dir, log)?;
            dir
        }
        None => {
            // Offline with an empty package list: a kernel already cached.
            let dir = apt.cached(&prefix).ok_or_else(|| {
                Error::Prepare(format!(
                    "cannot resolve linux-image-amd64's kernel package for Linux {}",
                    generation.as_str()
                ))
            })?;
            log(&format!(
                "apt-cache found no Linux {} kernel package; using cached {}",
                generation.as_str(),
                dir.display()
            ));
            dir
        }
    };
    let package = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modules = dir.join("lib/modules");
    let version = std::fs::read_dir(&modules)
        .map_err(|e| Error::io(&modules, e))?
        .filter_map(Result::ok)
        .find(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .ok_or_else(|| Error::Prepare(format!("no modules directory in {package}")))?;
    let vmlinuz = dir.join("boot").join(format!("vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        return Err(Error::Prepare(format!(
            "no {} in {package}",
            vmlinuz.display()
        )));
    }
    let vmlinux = dir.join("boot").join(format!("vmlinux-{version}"));
    if !vmlinux.is_file() {
        extract_vmlinux(&vmlinuz, &vmlinux)?;
    }
    Ok(Kernel {
        generation,
        package,
        dir,
        version,
        vmlinuz,
        vmlinux,
    })
}

/// How a bzImage's payload is compressed (its magic bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
}

/// Where the compressed vmlinux lies in a bzImage: the protected-mode code follows the
/// setup_sects (offset 0x1f1; 0 means 4) sectors and the boot sector; payload_offset (0x248)
/// and payload_length (0x24c) place it there (boot protocol 2.08+).
pub fn payload(image: &[u8]) -> Result<(&[u8], Compression), Error> {
    let bad = |what: &str| Error::Prepare(format!("not a bzImage with a payload: {what}"));
    let word = |at: usize| -> Result<usize, Error> {
        let b = image.get(at..at + 4).ok_or_else(|| bad("too short"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let setup_sects = match *image.get(0x1f1).ok_or_else(|| bad("too short"))? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + word(0x248)?;
    let end = start
        .checked_add(word(0x24c)?)
        .ok_or_else(|| bad("length"))?;
    let data = image
        .get(start..end)
        .ok_or_else(|| bad("payload outside the image"))?;
    let compression = if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        return Err(bad(
            "a compression this rig does not unpack (xz and zstd it does)",
        ));
    };
    Ok((data, compression))
}

fn extract_vmlinux(vmlinuz: &Path, vmlinux: &Path) -> Result<(), Error> {
    let image = std::fs::read(vmlinuz).map_err(|e| Error::io(vmlinuz, e))?;
    let (data, compression) = payload(&image)?;
    let packed = host::with_suffix(vmlinux, ".payload");
    let tmp = host::with_suffix(vmlinux, ".tmp");
    std::fs::write(&packed, data).map_err(|e| Error::io(&packed, e))?;
    let (tool, args): (&str, &[&str]) = match compression {
        Compression::Xz => ("xz", &["-dc"]),
        Compression::Zstd => ("zstd", &["-qdc"]),
    };
    let input = File::open(&packed).map_err(|e| Error::io(&packed, e))?;
    let output = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    // The payload ends with the kernel's own 4-byte size after the stream: both tools
    // complain about it after writing everything, so the status does not decide; the ELF
    // header does.
    let _ = Command::new(host::require(tool)?)
        .args(args)
        .stdin(input)
        .stdout(output)
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&packed);
    let mut magic = [0u8; 4];
    let is_elf = File::open(&tmp)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF";
    if !is_elf {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Prepare(format!(
            "could not extract vmlinux from {}",
            vmlinuz.display()
        )));
    }
    std::fs::rename(&tmp, vmlinux).map_err(|e| Error::io(vmlinux, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(setup_sects: u8, offset: u32, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 {
            4
        } else {
            usize::from(setup_sects)
        };
        let start = (sects + 1) * 512 + offset as usize;
        let mut img = vec![0u8; start + payload.len() + 16];
        img[0x1f1] = setup_sects;
        img[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img[start..start + payload.len()].copy_from_slice(payload);
        img
    }

    #[test]
    fn finds_the_payload_from_the_setup_header() {
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2];
        let img = image(27, 0x3c0, &xz);
        assert_eq!(payload(&img).ok(), Some((&xz[..], Compression::Xz)));
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 9];
        let img = image(0, 16, &zstd);
        assert_eq!(payload(&img).ok(), Some((&zstd[..], Compression::Zstd)));
    }

    #[test]
    fn refuses_what_is_not_a_payload() {
        assert!(payload(&[0u8; 100]).is_err());
        assert!(payload(&image(4, 0, b"gzip?")).is_err());
        let mut img = image(4, 0, &[0x28, 0xb5, 0x2f, 0xfd]);
        img[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(payload(&img).is_err());
    }
}
