//! Initramfs archives: the "newc" cpio format the kernel unpacks (Documentation/
//! driver-api/early-userspace/buffer-format.rst), built from a list of entries rather than a
//! directory on disk, written plain or gzip'd. Entries go out sorted by path with every
//! parent directory before its children, owned by root, so an archive of the same inputs is
//! the same archive.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// S_IFMT bits of the newc mode field.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// What one path in the archive is.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Dir,
    /// A host file's contents (symbolic links followed), with this permission mode.
    HostFile(PathBuf, u32),
    Bytes(Vec<u8>, u32),
    Symlink(String),
}

/// An archive being put together: paths inside it (absolute, as the guest sees them) to
/// what they are. A later entry for the same path replaces the earlier one.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// The archive's paths, relative (`bin/sh`), the way `cpio -t` lists them.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|k| k.as_str())
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(relative(path))
    }

    pub fn dir(&mut self, path: &str) -> &mut Archive {
        self.insert(path, Entry::Dir)
    }

    /// The host file `src` at `path`, read when the archive is written.
    pub fn host_file(&mut self, path: &str, src: &Path, mode: u32) -> &mut Archive {
        self.insert(path, Entry::HostFile(src.to_path_buf(), mode & 0o7777))
    }

    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> &mut Archive {
        self.insert(path, Entry::Bytes(data.into(), mode & 0o7777))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Archive {
        self.insert(path, Entry::Symlink(target.to_string()))
    }

    /// A host directory's tree at `path` (like `cp -rL`: links followed, modes kept).
    pub fn host_tree(&mut self, path: &str, src: &Path) -> Result<&mut Archive, Error> {
        let meta = std::fs::metadata(src).map_err(|e| Error::io(src, e))?;
        if !meta.is_dir() {
            return Ok(self.host_file(path, src, permissions(&meta)));
        }
        self.dir(path);
        let mut children: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| Error::io(src, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| Error::io(src, e))?;
        children.sort_by_key(|c| c.file_name());
        for child in children {
            let name = child.file_name();
            let name = name.to_string_lossy();
            self.host_tree(
                &format!("{}/{name}", path.trim_end_matches('/')),
                &child.path(),
            )?;
        }
        Ok(self)
    }

    /// Adds every entry of `other` (its entries win).
    pub fn merge(&mut self, other: Archive) -> &mut Archive {
        self.entries.extend(other.entries);
        self
    }

    fn insert(&mut self, path: &str, entry: Entry) -> &mut Archive {
        let path = relative(path).to_string();
        // Every parent, so that the kernel can create the entry (it makes no directories).
        let mut dir = path.as_str();
        while let Some(slash) = dir.rfind('/') {
            dir = &dir[..slash];
            self.entries.entry(dir.to_string()).or_insert(Entry::Dir);
        }
        self.entries.insert(path, entry);
        self
    }

    /// Writes the archive plain (for segments the kernel copies rather than inflates).
    pub fn write(&self, out: &Path) -> Result<(), Error> {
        self.write_to(out, |file| Ok(Box::new(BufWriter::new(file))))
    }

    /// Writes the archive gzip'd (fast level: these are rebuilt often and read once).
    pub fn write_gzip(&self, out: &Path) -> Result<(), Error> {
        self.write_to(out, |file| {
            Ok(Box::new(flate2::write::GzEncoder::new(
                BufWriter::new(file),
                flate2::Compression::fast(),
            )))
        })
    }

    fn write_to(
        &self,
        out: &Path,
        wrap: impl FnOnce(File) -> io::Result<Box<dyn FinishWrite>>,
    ) -> Result<(), Error> {
        let tmp = super::host::with_suffix(out, ".tmp");
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = wrap(file).map_err(|e| Error::io(&tmp, e))?;
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            self.write_entry(&mut *w, path, entry, ino)?;
        }
        header(&mut *w, "TRAILER!!!", 0, 0, 0, 1)
            .and_then(|()| w.finish_write())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
    }

    fn write_entry(
        &self,
        w: &mut dyn FinishWrite,
        path: &str,
        entry: &Entry,
        ino: u32,
    ) -> Result<(), Error> {
        let io_err = |e| Error::io(Path::new(path), e);
        match entry {
            Entry::Dir => header(w, path, S_IFDIR | 0o755, 0, ino, 2).map_err(io_err),
            Entry::Symlink(target) => header(w, path, S_IFLNK | 0o777, target.len(), ino, 1)
                .and_then(|()| w.write_all(target.as_bytes()))
                .and_then(|()| pad(w, target.len()))
                .map_err(io_err),
            Entry::Bytes(data, mode) => header(w, path, S_IFREG | mode, data.len(), ino, 1)
                .and_then(|()| w.write_all(data))
                .and_then(|()| pad(w, data.len()))
                .map_err(io_err),
            Entry::HostFile(src, mode) => {
                let mut file = File::open(src).map_err(|e| Error::io(src, e))?;
                let len = file.metadata().map_err(|e| Error::io(src, e))?.len();
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| u32::try_from(l).is_ok())
                    .ok_or_else(|| {
                        Error::Prepare(format!("{}: too large for newc", src.display()))
                    })?;
                header(w, path, S_IFREG | mode, len, ino, 1).map_err(io_err)?;
                let copied = io::copy(&mut (&mut file).take(len as u64), w)
                    .map_err(|e| Error::io(src, e))?;
                if copied != len as u64 {
                    return Err(Error::Prepare(format!(
                        "{}: changed while archived",
                        src.display()
                    )));
                }
                pad(w, len).map_err(io_err)
            }
        }
    }
}

/// A writer that can be finished (the gzip trailer written, buffers flushed).
trait FinishWrite: Write {
    fn finish_write(&mut self) -> io::Result<()>;
}

impl FinishWrite for BufWriter<File> {
    fn finish_write(&mut self) -> io::Result<()> {
        self.flush()
    }
}

impl FinishWrite for flate2::write::GzEncoder<BufWriter<File>> {
    fn finish_write(&mut self) -> io::Result<()> {
        self.try_finish()?;
        self.get_mut().flush()
    }
}

fn relative(path: &str) -> &str {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() {
        "."
    } else {
        p
    }
}

pub fn permissions(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// One newc header ("070701", 13 fields of 8 hex digits) and the name, padded to 4 bytes.
fn header(
    w: &mut dyn FinishWrite,
    name: &str,
    mode: u32,
    size: usize,
    ino: u32,
    nlink: u32,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size as u32,
        0,
        0,
        0,
        0,
        namesize as u32,
        0,
    ];
    let mut h = String::with_capacity(110);
    h.push_str("070701");
    for f in fields {
        h.push_str(&format!("{f:08x}"));
    }
    w.write_all(h.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, 110 + namesize)
}

fn pad(w: &mut dyn FinishWrite, len: usize) -> io::Result<()> {
    let n = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("satavm-rig-cpio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// The host's cpio (which `prepare` installs) unpacks what we write, files, modes,
    /// links and implied parent directories included.
    #[test]
    fn gnu_cpio_unpacks_the_archive() {
        let dir = scratch("unpack");
        let src = dir.join("host.txt");
        std::fs::write(&src, b"from the host\n").expect("write");
        let mut a = Archive::new();
        a.bytes("/rig/env", "A='b c'\n", 0o644)
            .host_file("/bin/tool", &src, 0o755)
            .symlink("/sbin", "bin")
            .dir("/tmp");
        let out = dir.join("a.cpio.gz");
        a.write_gzip(&out).expect("write archive");
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("root");
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "gzip -dc {} | cpio -id --quiet --no-absolute-filenames",
                out.display()
            ))
            .current_dir(&root)
            .status()
            .expect("cpio runs");
        assert!(st.success());
        assert_eq!(
            std::fs::read_to_string(root.join("rig/env"))
                .ok()
                .as_deref(),
            Some("A='b c'\n")
        );
        assert_eq!(
            std::fs::read(root.join("bin/tool")).ok(),
            Some(b"from the host\n".to_vec())
        );
        let meta = std::fs::metadata(root.join("bin/tool")).expect("tool");
        assert_eq!(permissions(&meta), 0o755);
        assert_eq!(
            std::fs::read_link(root.join("sbin")).ok(),
            Some(PathBuf::from("bin"))
        );
        assert!(root.join("tmp").is_dir());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parents_come_first_and_entries_are_padded() {
        let mut a = Archive::new();
        a.bytes("/a/b/c", "xyz", 0o600);
        assert_eq!(a.paths().collect::<Vec<_>>(), ["a", "a/b", "a/b/c"]);
        let dir = scratch("plain");
        let out = dir.join("p.cpio");
        a.write(&out).expect("write");
        let data = std::fs::read(&out).expect("read");
        assert_eq!(data.len() % 4, 0);
        assert!(data.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&data);
        assert!(text.find("a/b\0").expect("a/b") < text.find("a/b/c\0").expect("a/b/c"));
        assert!(text.contains("TRAILER!!!"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
