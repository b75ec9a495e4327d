//! The host side of preparing: the programs `prepare` runs (apt, dpkg-deb, busybox, ldd,
//! xz, zstd, cargo) with their failures as errors that say what ran, and finding programs
//! in PATH.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;

/// What `prepare` says as it goes ("rig: ..." lines; stderr for people, the test's output
/// in tests/rig.rs).
pub type Log<'a> = &'a mut dyn FnMut(&str);

/// Runs `cmd` and returns its stdout; a failure to start or a non-zero status is an error
/// with the command and what it printed on stderr.
pub fn output(cmd: &mut Command) -> Result<String, Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command(format!("{}: {e}", describe(cmd))))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "{} exited with {}: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with its output on our stderr (apt's and cargo's progress for people).
pub fn status(cmd: &mut Command) -> Result<(), Error> {
    let st = cmd
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| Error::Command(format!("{}: {e}", describe(cmd))))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::Command(format!(
            "{} exited with {st}",
            describe(cmd)
        )))
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `path` with `suffix` added to its last component (`x.cpio.gz` -> `x.cpio.gz.tmp`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A program's path: `name` itself if it names a file, else the first match in PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn require(name: &str) -> Result<PathBuf, Error> {
    which(name).ok_or_else(|| {
        Error::Prepare(format!(
            "no program {name} on this host (scripts/rig prepare installs it)"
        ))
    })
}

/// The shared libraries `ldd` lists for `program` (none for a static one).
pub fn shared_libs(program: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd")
        .arg(program)
        .stdin(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    parse_ldd(&String::from_utf8_lossy(&out.stdout))
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and `/lib64/ld-linux-x86-64.so.2
/// (0x...)` lines: the paths; `linux-vdso.so.1 (0x...)` has none.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => Some(PathBuf::from(path)),
                [path, ..] if path.starts_with('/') => Some(PathBuf::from(path)),
                _ => None,
            }
        })
        .collect()
}

/// Version strings ordered as `sort -V` orders them: digit runs by value, the rest by byte.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
            \tlibgone.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn versions_sort_like_sort_v() {
        use std::cmp::Ordering::*;
        assert_eq!(
            version_cmp("linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64"),
            Less
        );
        assert_eq!(version_cmp("qemu-10.0.2", "qemu-10.0.10"), Less);
        assert_eq!(version_cmp("seabios-1.16.3", "seabios-1.16.3"), Equal);
        assert_eq!(version_cmp("6.12.95", "6.12"), Greater);
    }

    #[test]
    fn which_finds_programs() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-satavm").is_none());
        assert!(require("no-such-program-satavm").is_err());
    }
}
