//! [`MemEngine`]: an engine for tests of the layers above — a RAM disk for reads, writes,
//! flushes and discards, and a scripted SCSI target ([`SgTransport`]) for pass-through —
//! that finishes each request at once (so tests need no sleeps and no threads), or holds
//! requests until the test releases them, to see what a drive does while its I/O is still in
//! the kernel. The test keeps a [`MemEngineHandle`] to the engine it gave away.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::sg::{SgRequest, SgTransport};
use super::{Completed, Engine, EngineStats, Reply, Request};
use crate::sata::CompletionNotifier;

#[derive(Default)]
struct State {
    disk: Vec<u8>,
    hold: bool,
    held: VecDeque<(u64, Request)>,
    done: Vec<Completed>,
    /// Byte offsets whose reads and writes fail with EIO.
    bad: Vec<u64>,
    /// Discards answer EOPNOTSUPP (a host that cannot punch holes).
    no_discard: bool,
    /// Every request as it was carried out: "read 4096+512", "flush"...
    log: Vec<String>,
    flushes: u64,
    target: Option<Arc<dyn SgTransport>>,
    submitted: u64,
    peak: u32,
}

/// The test's side of a [`MemEngine`].
#[derive(Clone)]
pub struct MemEngineHandle {
    state: Arc<Mutex<State>>,
    notifier: CompletionNotifier,
}

/// See the module documentation.
pub struct MemEngine {
    handle: MemEngineHandle,
    in_flight: usize,
}

impl MemEngine {
    /// A RAM disk of `bytes` zero bytes; completions write `notifier`.
    pub fn new(bytes: usize, notifier: CompletionNotifier) -> (MemEngine, MemEngineHandle) {
        let handle = MemEngineHandle {
            state: Arc::new(Mutex::new(State {
                disk: vec![0; bytes],
                ..State::default()
            })),
            notifier,
        };
        (
            MemEngine {
                handle: handle.clone(),
                in_flight: 0,
            },
            handle,
        )
    }

    /// An engine whose SCSI requests go to `target`.
    pub fn scsi(
        target: Arc<dyn SgTransport>,
        notifier: CompletionNotifier,
    ) -> (MemEngine, MemEngineHandle) {
        let (e, h) = Self::new(0, notifier);
        h.lock().target = Some(target);
        (e, h)
    }
}

impl MemEngineHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hold every request from now on until released (or finish them at once again).
    pub fn set_hold(&self, hold: bool) {
        self.lock().hold = hold;
    }

    /// Requests held so far.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// Carry out the `n` oldest held requests now (their completions become reapable).
    pub fn release(&self, n: usize) {
        let mut st = self.lock();
        for _ in 0..n {
            let Some((tag, req)) = st.held.pop_front() else {
                break;
            };
            let result = carry_out(&mut st, req);
            st.done.push(Completed { tag, result });
        }
        drop(st);
        let _ = self.notifier.write(1);
    }

    /// Carry out the `n` newest held requests now, newest first.
    pub fn release_newest(&self, n: usize) {
        let mut st = self.lock();
        for _ in 0..n {
            let Some((tag, req)) = st.held.pop_back() else {
                break;
            };
            let result = carry_out(&mut st, req);
            st.done.push(Completed { tag, result });
        }
        drop(st);
        let _ = self.notifier.write(1);
    }

    /// Carry out every held request.
    pub fn release_all(&self) {
        let n = self.held();
        self.release(n);
    }

    /// Reads and writes that touch byte `offset` fail with EIO from now on.
    pub fn fail_at(&self, offset: u64) {
        self.lock().bad.push(offset);
    }

    /// Discards fail with EOPNOTSUPP from now on.
    pub fn refuse_discards(&self) {
        self.lock().no_discard = true;
    }

    /// The disk's bytes `[offset, offset + len)`.
    pub fn disk(&self, offset: usize, len: usize) -> Vec<u8> {
        self.lock().disk[offset..offset + len].to_vec()
    }

    /// Overwrite the disk at `offset`.
    pub fn set_disk(&self, offset: usize, data: &[u8]) {
        self.lock().disk[offset..offset + data.len()].copy_from_slice(data);
    }

    /// The requests carried out so far.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Flushes carried out so far.
    pub fn flushes(&self) -> u64 {
        self.lock().flushes
    }
}

fn range(st: &State, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
    let end = offset
        .checked_add(len)
        .filter(|e| *e <= st.disk.len() as u64);
    let Some(end) = end else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    if st.bad.iter().any(|b| (offset..end).contains(b)) {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(offset as usize..end as usize)
}

fn mem_err() -> io::Error {
    io::Error::from_raw_os_error(libc::EFAULT)
}

fn carry_out(st: &mut State, req: Request) -> io::Result<Reply> {
    match req {
        Request::Read { offset, buf } => {
            st.log.push(format!("read {offset}+{}", buf.len()));
            let r = range(st, offset, buf.len())?;
            buf.write_from(&st.disk[r]).map_err(|_| mem_err())?;
            Ok(Reply::Done)
        }
        Request::Write { offset, buf, fua } => {
            st.log.push(format!(
                "write {offset}+{}{}",
                buf.len(),
                if fua { " fua" } else { "" }
            ));
            let r = range(st, offset, buf.len())?;
            let mut data = vec![0u8; r.len()];
            buf.read_into(&mut data).map_err(|_| mem_err())?;
            st.disk[r].copy_from_slice(&data);
            if fua {
                st.flushes += 1;
            }
            Ok(Reply::Done)
        }
        Request::Flush => {
            st.log.push("flush".into());
            st.flushes += 1;
            Ok(Reply::Done)
        }
        Request::Discard { offset, len } => {
            st.log.push(format!("discard {offset}+{len}"));
            if st.no_discard {
                return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
            }
            let r = range(st, offset, len)?;
            st.disk[r].fill(0);
            Ok(Reply::Done)
        }
        Request::WriteZeroes { offset, len } => {
            st.log.push(format!("zeroes {offset}+{len}"));
            let r = range(st, offset, len)?;
            st.disk[r].fill(0);
            Ok(Reply::Done)
        }
        Request::Scsi(cmd) => {
            st.log.push(format!("scsi {:02x?}", cmd.cdb));
            let Some(target) = st.target.clone() else {
                return Err(io::Error::from_raw_os_error(libc::ENOTTY));
            };
            let len = cmd.buf.as_ref().map_or(0, |b| b.len() as usize);
            let mut data = vec![0u8; len];
            if let Some(b) = &cmd.buf {
                if cmd.direction == super::DataDirection::ToDevice {
                    b.read_into(&mut data).map_err(|_| mem_err())?;
                }
            }
            let r = target.execute(SgRequest {
                cdb: &cmd.cdb,
                direction: cmd.direction,
                data: &mut data,
                timeout: cmd.timeout,
            })?;
            if let Some(b) = &cmd.buf {
                if cmd.direction == super::DataDirection::FromDevice {
                    b.write_from(&data).map_err(|_| mem_err())?;
                }
            }
            Ok(Reply::Scsi(r))
        }
    }
}

impl Engine for MemEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn submit(&mut self, tag: u64, request: Request) -> Result<(), super::SubmitError> {
        self.in_flight += 1;
        let mut st = self.handle.lock();
        st.submitted += 1;
        st.peak = st.peak.max(self.in_flight as u32);
        if st.hold {
            st.held.push_back((tag, request));
            return Ok(());
        }
        let result = carry_out(&mut st, request);
        st.done.push(Completed { tag, result });
        drop(st);
        let _ = self.handle.notifier.write(1);
        Ok(())
    }

    fn reap(&mut self, out: &mut Vec<Completed>) {
        let mut st = self.handle.lock();
        self.in_flight -= st.done.len();
        out.append(&mut st.done);
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn stats(&self) -> EngineStats {
        let st = self.handle.lock();
        EngineStats {
            submitted: st.submitted,
            peak_in_flight: st.peak,
            ..EngineStats::default()
        }
    }
}
