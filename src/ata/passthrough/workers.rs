//! Commands in flight: a pool of worker threads, each running one guest command at a time with
//! blocking SG_IO calls, so that NCQ keeps as many host commands in flight as there are
//! workers.
//!
//! Each command's data lives in its own bounce buffer; the drive copies read data into guest
//! memory only when it takes the result (`take_done`), on its own thread, so a command aborted
//! by [`Pool::abort_all`] never touches guest memory afterwards.
//!
//! Abort also raises a barrier: host commands cannot be cancelled, so a job of the new
//! generation starts only after every host command of older generations has returned. A guest
//! write issued after a reset therefore never races with an aborted write to the same sectors.
//!
//! Timeouts are the kernel's: every SG_IO carries the configured timeout, after which the
//! host's error handler fails the command (and may reset the link). There is no user-space
//! watchdog on top, since a stuck ioctl could not be cancelled from here anyway.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use super::exec::{Executor, Outcome};
use super::transfer::Plan;
use crate::sata::CompletionNotifier;

/// A data buffer aligned to 4 KiB, so the block layer can map it without copying.
#[derive(Debug, Default)]
pub struct BounceBuffer {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

const ALIGN: usize = 4096;

impl BounceBuffer {
    /// `len` zeroed bytes.
    pub fn new(len: usize) -> Self {
        if len == 0 {
            return Self::default();
        }
        let raw = vec![0u8; len + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        BounceBuffer { raw, start, len }
    }

    /// Bytes it can hold without reallocating.
    fn capacity(&self) -> usize {
        self.raw.len().saturating_sub(self.start)
    }

    /// This buffer as `len` bytes (zeroed if `zero`), if it can hold them.
    fn reuse(mut self, len: usize, zero: bool) -> Option<Self> {
        if len > self.capacity() || len == 0 {
            return None;
        }
        self.len = len;
        if zero {
            self.as_mut_slice().fill(0);
        }
        Some(self)
    }

    pub fn as_slice(&self) -> &[u8] {
        self.raw
            .get(self.start..self.start + self.len)
            .unwrap_or(&[])
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let (s, l) = (self.start, self.len);
        self.raw.get_mut(s..s + l).unwrap_or(&mut [])
    }
}

/// Bytes of finished commands' buffers kept for the next commands: allocating a fresh buffer
/// per command costs page faults and, for large ones, an mmap/munmap pair each time. Kept
/// small: satavm's memory beyond guest RAM should stay within a few MiB.
pub const SPARE_BYTES: usize = 2 << 20;

/// Buffers of finished commands, for the next ones.
#[derive(Debug, Default)]
struct Spares {
    buffers: Vec<BounceBuffer>,
    bytes: usize,
}

impl Spares {
    /// A spare buffer that can hold `len` bytes.
    fn take(&mut self, len: usize) -> Option<BounceBuffer> {
        let i = self.buffers.iter().position(|b| b.capacity() >= len)?;
        let b = self.buffers.swap_remove(i);
        self.bytes -= b.raw.len();
        Some(b)
    }

    /// Keep `buffer` if the spares stay within [`SPARE_BYTES`].
    fn put(&mut self, buffer: BounceBuffer) {
        let size = buffer.raw.len();
        if size > 0 && self.bytes + size <= SPARE_BYTES {
            self.bytes += size;
            self.buffers.push(buffer);
        }
    }
}

/// One guest command handed to the pool.
#[derive(Debug)]
pub struct Job {
    pub id: u64,
    pub plan: Plan,
    pub buffer: BounceBuffer,
}

/// A finished job.
#[derive(Debug)]
pub struct Done {
    pub id: u64,
    pub outcome: Outcome,
    pub buffer: BounceBuffer,
}

struct State {
    generation: u64,
    queue: VecDeque<(u64, Job)>,
    done: Vec<Done>,
    /// Jobs running on the host, by generation.
    running: BTreeMap<u64, usize>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    spares: Mutex<Spares>,
    wake: Condvar,
    notifier: CompletionNotifier,
    exec: Arc<Executor>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The worker threads.
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Start `workers` threads running jobs on `exec`; each finished job writes `notifier`.
    pub fn new(exec: Arc<Executor>, workers: usize, notifier: CompletionNotifier) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                queue: VecDeque::new(),
                done: Vec::new(),
                running: BTreeMap::new(),
                shutdown: false,
            }),
            spares: Mutex::new(Spares::default()),
            wake: Condvar::new(),
            notifier,
            exec,
        });
        for i in 0..workers.max(1) {
            let s = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("sg-io-{i}"))
                .spawn(move || worker(&s));
            if let Err(e) = spawned {
                // Fewer workers only means fewer commands in flight.
                log::warn!("pass-through: cannot start worker {i}: {e}");
            }
        }
        Pool { shared }
    }

    /// Queue `job`.
    pub fn submit(&self, job: Job) {
        let mut st = self.shared.lock();
        let generation = st.generation;
        st.queue.push_back((generation, job));
        drop(st);
        self.shared.wake.notify_all();
    }

    /// Jobs finished since the last call (of the current generation only).
    pub fn take_done(&self) -> Vec<Done> {
        std::mem::take(&mut self.shared.lock().done)
    }

    /// Forget every queued, running and finished job: none of them is returned by `take_done`
    /// any more, queued ones never reach the host, and new jobs wait for running ones.
    pub fn abort_all(&self) {
        let mut st = self.shared.lock();
        st.generation += 1;
        st.queue.clear();
        st.done.clear();
    }

    /// A buffer of `len` bytes (zeroed if `zero`; else its content is undefined): a spare
    /// one if one is large enough.
    pub fn buffer(&self, len: usize, zero: bool) -> BounceBuffer {
        let spare = self.spares().take(len);
        spare
            .and_then(|b| b.reuse(len, zero))
            .unwrap_or_else(|| BounceBuffer::new(len))
    }

    /// Keep `buffer` for a later [`Pool::buffer`], while the spares stay within
    /// [`SPARE_BYTES`].
    pub fn recycle(&self, buffer: BounceBuffer) {
        self.spares().put(buffer);
    }

    fn spares(&self) -> MutexGuard<'_, Spares> {
        self.shared.spares.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The executor the workers use.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.shared.exec
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Workers are not joined: one may be blocked in SG_IO until the command times out.
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
    }
}

fn worker(s: &Shared) {
    loop {
        let (generation, mut job) = {
            let mut st = s.lock();
            loop {
                if st.shutdown {
                    return;
                }
                let barrier_clear = st.running.keys().all(|g| *g == st.generation);
                if barrier_clear {
                    if let Some(j) = st.queue.pop_front() {
                        *st.running.entry(j.0).or_insert(0) += 1;
                        break j;
                    }
                }
                st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let current = || s.lock().generation == generation;
        let outcome = s.exec.run(&job.plan, job.buffer.as_mut_slice(), &current);
        let delivered = {
            let mut st = s.lock();
            if let Some(n) = st.running.get_mut(&generation) {
                *n -= 1;
                if *n == 0 {
                    st.running.remove(&generation);
                }
            }
            let current = st.generation == generation;
            if current {
                st.done.push(Done {
                    id: job.id,
                    outcome,
                    buffer: std::mem::take(&mut job.buffer),
                });
            }
            current
        };
        s.wake.notify_all();
        if delivered {
            if let Err(e) = s.notifier.write(1) {
                log::error!("pass-through: cannot signal a completion: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffers_are_reused_zeroed_on_request_and_bounded() {
        let mut sp = Spares::default();
        let mut b = BounceBuffer::new(128 << 10);
        b.as_mut_slice().fill(0xa5);
        let at = b.as_slice().as_ptr();
        sp.put(b);
        // Too large for the spare: none.
        assert!(sp.take(256 << 10).is_none());
        // A smaller one reuses it, aligned, with the old bytes unless zeroed.
        let b = sp
            .take(64 << 10)
            .and_then(|b| b.reuse(64 << 10, false))
            .unwrap();
        assert_eq!((b.as_slice().as_ptr(), b.as_slice().len()), (at, 64 << 10));
        assert_eq!(at as usize % ALIGN, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0xa5));
        sp.put(b);
        let b = sp.take(4096).and_then(|b| b.reuse(4096, true)).unwrap();
        assert!(b.as_slice().iter().all(|&x| x == 0));
        assert_eq!(sp.bytes, 0);
        // The spares never hold more than SPARE_BYTES.
        for _ in 0..64 {
            sp.put(BounceBuffer::new(128 << 10));
        }
        assert!(sp.bytes <= SPARE_BYTES);
        assert_eq!(sp.buffers.len(), SPARE_BYTES / ((128 << 10) + ALIGN));
    }
}
