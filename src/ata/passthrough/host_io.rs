//! Guest commands in flight on the host: each one's host commands (the segments of its
//! [`Plan`]) are SCSI requests to the drive's block [`Engine`], all submitted at once, with
//! the retries [`Executor::after`] asks for; when the last is back, the guest command's
//! [`Outcome`] (the first failing segment decides, and the bytes before it count).
//!
//! Data moves between the drive and guest RAM through iovecs over the command's PRDT: no
//! buffer of satavm's in between. Aborted commands are forgotten at once; their requests in
//! the engine cannot be recalled (with direct I/O the drive may still be writing guest pages),
//! so they become orphans that are dropped when they come back, and until then
//! [`HostIo::draining`] is true and new requests wait (a write after a reset never races an
//! aborted one to the same sectors).

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::RawFd;
use std::sync::Arc;

use super::exec::{Executor, Outcome, Step};
use super::transfer::Plan;
use crate::block::{Completed, Engine, EngineStats, GuestBuf, Reply, Request, ScsiCommand};

/// One host command (segment) of a guest command.
#[derive(Debug)]
struct Segment {
    use12: bool,
    retried: bool,
    done: Option<Result<Option<super::sense::AtaRegisters>, Outcome>>,
}

#[derive(Debug)]
struct Pending {
    plan: Plan,
    buf: Option<GuestBuf>,
    segments: Vec<Segment>,
    outstanding: usize,
}

/// See the module documentation.
pub struct HostIo {
    engine: Box<dyn Engine>,
    exec: Arc<Executor>,
    commands: HashMap<u64, Pending>,
    requests: HashMap<u64, (u64, usize)>,
    orphans: HashSet<u64>,
    deferred: VecDeque<(u64, Request)>,
    next_command: u64,
    next_request: u64,
    reaped: Vec<Completed>,
}

impl HostIo {
    pub fn new(engine: Box<dyn Engine>, exec: Arc<Executor>) -> Self {
        HostIo {
            engine,
            exec,
            commands: HashMap::new(),
            requests: HashMap::new(),
            orphans: HashSet::new(),
            deferred: VecDeque::new(),
            next_command: 0,
            next_request: 0,
            reaped: Vec::new(),
        }
    }

    /// The engine's name and counters.
    pub fn engine_stats(&self) -> (&'static str, EngineStats) {
        (self.engine.name(), self.engine.stats())
    }

    /// The engine's own descriptor for the event loop, if it has one.
    pub fn ready_fd(&self) -> Option<RawFd> {
        self.engine.ready_fd()
    }

    /// Aborted commands still have host commands in flight.
    pub fn draining(&self) -> bool {
        !self.orphans.is_empty()
    }

    /// Guest commands in flight.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// True when no guest command is in flight.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Start a guest command: `plan` with its data in `buf` (guest memory, the whole
    /// transfer). Returns its id; its outcome comes from [`HostIo::poll`].
    pub fn start(&mut self, plan: Plan, buf: Option<GuestBuf>) -> u64 {
        let id = self.next_command;
        self.next_command += 1;
        let segments = plan
            .segments
            .iter()
            .map(|s| Segment {
                use12: self.exec.first_use12(&s.pt),
                retried: false,
                done: None,
            })
            .collect();
        self.commands.insert(
            id,
            Pending {
                plan,
                buf,
                segments,
                outstanding: 0,
            },
        );
        let n = self.commands.get(&id).map_or(0, |p| p.segments.len());
        for i in 0..n {
            self.send(id, i);
        }
        id
    }

    /// Send segment `i` of command `id` (again).
    fn send(&mut self, id: u64, i: usize) {
        let Some(p) = self.commands.get_mut(&id) else {
            return;
        };
        let (Some(seg), Some(state)) = (p.plan.segments.get(i), p.segments.get(i)) else {
            return;
        };
        let buf = p
            .buf
            .as_ref()
            .filter(|_| seg.len > 0)
            .map(|b| b.slice(seg.offset, u64::from(seg.len)));
        let request = Request::Scsi(ScsiCommand {
            cdb: self.exec.cdb(&seg.pt, state.use12),
            direction: Executor::direction(&seg.pt),
            buf,
            timeout: self.exec.timeout,
        });
        p.outstanding += 1;
        let tag = self.next_request;
        self.next_request += 1;
        self.requests.insert(tag, (id, i));
        self.exec.sent();
        if self.orphans.is_empty() {
            self.submit(tag, request);
        } else {
            self.deferred.push_back((tag, request));
        }
    }

    fn submit(&mut self, tag: u64, request: Request) {
        if let Err(e) = self.engine.submit(tag, request) {
            log::error!("pass-through: {e}");
            self.reaped.push(Completed {
                tag,
                result: Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            });
        }
    }

    /// Forget the commands `ids` (none is reported); their host commands drain in the
    /// background.
    pub fn abort(&mut self, ids: &[u64]) {
        for id in ids {
            self.commands.remove(id);
        }
        let gone: HashSet<u64> = ids.iter().copied().collect();
        let tags: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, (id, _))| gone.contains(id))
            .map(|(t, _)| *t)
            .collect();
        let mut never_sent = HashSet::new();
        self.deferred.retain(|(t, _)| {
            let drop = tags.contains(t);
            if drop {
                never_sent.insert(*t);
            }
            !drop
        });
        for t in tags {
            self.requests.remove(&t);
            if never_sent.contains(&t) {
                self.exec
                    .counters
                    .in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                self.orphans.insert(t);
            }
        }
    }

    /// Forget every command.
    pub fn abort_all(&mut self) {
        let ids: Vec<u64> = self.commands.keys().copied().collect();
        self.abort(&ids);
    }

    /// Collect what the engine finished; return the guest commands that ended, by id.
    /// Retries and deferred requests the engine finished meanwhile are collected too.
    pub fn poll(&mut self) -> Vec<(u64, Outcome)> {
        loop {
            let mut reaped = std::mem::take(&mut self.reaped);
            self.engine.reap(&mut reaped);
            if reaped.is_empty() {
                break;
            }
            self.handle(reaped);
        }
        let finished: Vec<u64> = self
            .commands
            .iter()
            .filter(|(_, p)| p.outstanding == 0 && p.segments.iter().all(|s| s.done.is_some()))
            .map(|(id, _)| *id)
            .collect();
        let mut ended: Vec<(u64, Outcome)> = finished
            .into_iter()
            .filter_map(|id| Some((id, outcome(&self.commands.remove(&id)?))))
            .collect();
        ended.sort_by_key(|(id, _)| *id);
        ended
    }

    fn handle(&mut self, reaped: Vec<Completed>) {
        let mut resend = Vec::new();
        for c in reaped {
            if self.orphans.remove(&c.tag) {
                self.exec
                    .counters
                    .in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let Some((id, i)) = self.requests.remove(&c.tag) else {
                continue;
            };
            let Some(p) = self.commands.get_mut(&id) else {
                continue;
            };
            p.outstanding -= 1;
            let result = c.result.and_then(|r| match r {
                Reply::Scsi(r) => Ok(r),
                Reply::Done => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
            });
            let seg = &p.plan.segments[i];
            let state = &mut p.segments[i];
            match self
                .exec
                .after(&seg.pt, state.use12, state.retried, &result)
            {
                Step::Done(r) => state.done = Some(r),
                Step::Retry(_) => {
                    state.retried = true;
                    resend.push((id, i));
                }
                Step::RetryAs12 => {
                    state.use12 = true;
                    resend.push((id, i));
                }
            }
        }
        for (id, i) in resend {
            self.send(id, i);
        }
        if self.orphans.is_empty() {
            while let Some((tag, request)) = self.deferred.pop_front() {
                self.submit(tag, request);
            }
        }
    }
}

/// A guest command's outcome from its segments': the first failure (in transfer order)
/// decides, with the bytes of the segments before it.
fn outcome(p: &Pending) -> Outcome {
    let mut regs = None;
    let mut bytes = 0u64;
    for (seg, state) in p.plan.segments.iter().zip(&p.segments) {
        match &state.done {
            Some(Ok(r)) => {
                regs = *r;
                bytes += u64::from(seg.len);
            }
            Some(Err(Outcome::Device { regs, .. })) => {
                return Outcome::Device {
                    regs: *regs,
                    bytes_before: bytes,
                }
            }
            Some(Err(Outcome::Host { failure, .. })) => {
                return Outcome::Host {
                    failure: *failure,
                    bytes_before: bytes,
                }
            }
            Some(Err(other)) => return *other,
            None => return Outcome::Aborted,
        }
    }
    Outcome::Success { regs, bytes }
}
