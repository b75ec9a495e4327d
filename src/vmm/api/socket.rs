//! Creating the control socket's path safely (`--api-socket PATH`).
//!
//! The socket is created with mode 0600 (owner only: anyone who can connect can stop the VM
//! and pull its drives) by binding under a umask of 0177, so there is no moment at which it
//! is more open. An existing PATH is replaced only when it is a stale socket: a socket owned
//! by this user that nobody listens on (a satavm that was killed). Anything else — a file, a
//! directory, a symbolic link, a live socket, someone else's socket — is refused and left
//! alone; nothing is ever chmod-ed or followed. The path is removed when the [`ApiSocket`]
//! is dropped (the normal exit path).

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why the socket could not be created.
#[derive(Debug, Error)]
pub enum SocketError {
    #[error("--api-socket {}: exists and is not a socket; remove it or choose another path", .0.display())]
    NotASocket(PathBuf),
    #[error("--api-socket {}: a live socket (another satavm?) is listening there", .0.display())]
    InUse(PathBuf),
    #[error("--api-socket {}: a socket of another user (uid {uid}); refusing to replace it", .path.display())]
    NotOurs { path: PathBuf, uid: u32 },
    #[error("--api-socket {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The listening socket and its path (unlinked on drop).
#[derive(Debug)]
pub struct ApiSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

/// Clear a stale socket at `path`, or say why not.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let io = |source| SocketError::Io {
        path: path.into(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SocketError::NotOurs {
            path: path.into(),
            uid: meta.uid(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse(path.into())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            log::info!("--api-socket {}: removing a stale socket", path.display());
            std::fs::remove_file(path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

impl ApiSocket {
    /// Create the socket at `path`; see the module documentation.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        clear_stale(path)?;
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| match e.kind() {
            ErrorKind::AddrInUse => SocketError::NotASocket(path.into()),
            _ => SocketError::Io {
                path: path.into(),
                source: e,
            },
        })?;
        Ok(ApiSocket {
            listener: Some(listener),
            path: path.into(),
        })
    }

    /// The path it listens on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, for the server (once; the path stays until drop).
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        // Only if it is still our socket (not replaced by something else meanwhile).
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("satavm-api-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn created_owner_only_and_removed_on_drop() {
        let d = dir("mode");
        let p = d.join("api.sock");
        let s = ApiSocket::bind(&p).unwrap();
        let mode = std::fs::symlink_metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(s);
        assert!(!p.exists());
    }

    #[test]
    fn a_file_a_link_or_a_live_socket_is_refused_and_left_alone() {
        let d = dir("refuse");
        let f = d.join("file");
        std::fs::write(&f, b"keep").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ApiSocket::bind(&f),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&f).unwrap(), b"keep");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let l = d.join("link");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert!(matches!(
            ApiSocket::bind(&l),
            Err(SocketError::NotASocket(_))
        ));
        assert!(std::fs::symlink_metadata(&l)
            .unwrap()
            .file_type()
            .is_symlink());
        let live = d.join("live.sock");
        let _first = ApiSocket::bind(&live).unwrap();
        assert!(matches!(ApiSocket::bind(&live), Err(SocketError::InUse(_))));
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let d = dir("stale");
        let p = d.join("api.sock");
        // A socket nobody listens on any more (its listener closed without unlinking).
        drop(UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let mut s = ApiSocket::bind(&p).unwrap();
        let l = s.take_listener().unwrap();
        let _c = UnixStream::connect(&p).unwrap();
        assert!(l.accept().is_ok());
    }
}
