//! The control socket's server: an event-manager subscriber that accepts clients on the
//! listening socket, reads their request lines, has a [`Handler`] execute them and writes the
//! replies, and pushes queued [`ApiEvent`]s to every client. Everything is non-blocking and
//! runs in the VMM's event loop; no vCPU ever waits for it.
//!
//! Bounds, so that a client cannot take the VMM down or starve the loop:
//! - at most [`MAX_CLIENTS`] clients (one more is told `TooManyClients` and closed);
//! - request lines of at most [`MAX_LINE`] bytes (a longer one is answered `LineTooLong` and
//!   the client closed);
//! - at most [`COMMANDS_PER_WAKEUP`] requests of one client per wakeup: the rest wait for the
//!   next turn of the loop (the server wakes itself through an eventfd), and nothing more is
//!   read from a client while it has complete lines waiting, so a flood stays in the kernel's
//!   socket buffer and the client blocks;
//! - at most [`MAX_OUTPUT`] bytes of replies and events waiting for a client that does not
//!   read (it is closed past that);
//! - at most [`MAX_QUEUED_EVENTS`] events waiting for the loop (older ones are dropped and
//!   counted in an `EVENTS_LOST` event).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use serde_json::{Map, Value};
use vmm_sys_util::eventfd::EventFd;

pub use super::protocol::MAX_LINE;
use super::protocol::{self, class, ApiError, Line, LineBuffer};

/// Most clients connected at once.
pub const MAX_CLIENTS: usize = 8;
/// Most requests of one client handled per wakeup of the event loop.
pub const COMMANDS_PER_WAKEUP: usize = 16;
/// Most bytes of output held for one client.
pub const MAX_OUTPUT: usize = 1 << 20;
/// Most events waiting to be sent.
pub const MAX_QUEUED_EVENTS: usize = 1024;
/// Bytes read from a client per wakeup.
const READ_CHUNK: usize = 16 * 1024;

/// Executes requests (the VMM's commands; tests use their own).
pub trait Handler: Send {
    /// Run `command` with `arguments`: the `return` value, or the error.
    fn execute(&mut self, command: &str, arguments: &Map<String, Value>)
        -> Result<Value, ApiError>;
}

/// An asynchronous event: its name and data.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiEvent {
    pub name: &'static str,
    pub data: Value,
    pub at: SystemTime,
}

struct Queue {
    events: VecDeque<ApiEvent>,
    lost: u64,
}

/// Where events are queued from any thread (the AHCI event hook runs on vCPUs); the server
/// sends them from the event loop. Never blocks for more than a short critical section.
#[derive(Clone)]
pub struct EventQueue {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<EventFd>,
}

impl EventQueue {
    pub fn new() -> std::io::Result<Self> {
        Ok(EventQueue {
            queue: Arc::new(Mutex::new(Queue {
                events: VecDeque::new(),
                lost: 0,
            })),
            wake: Arc::new(EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?),
        })
    }

    /// Queue an event (the oldest is dropped when [`MAX_QUEUED_EVENTS`] wait).
    pub fn push(&self, name: &'static str, data: Value) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.events.len() >= MAX_QUEUED_EVENTS {
            q.events.pop_front();
            q.lost += 1;
        }
        q.events.push_back(ApiEvent {
            name,
            data,
            at: SystemTime::now(),
        });
        drop(q);
        let _ = self.wake.write(1);
    }

    /// Every queued event, and how many were dropped since the last call.
    pub fn drain(&self) -> (Vec<ApiEvent>, u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        (q.events.drain(..).collect(), std::mem::take(&mut q.lost))
    }
}

struct Client {
    stream: UnixStream,
    input: LineBuffer,
    output: Vec<u8>,
    /// Waiting for EPOLLOUT (output is pending).
    watching_out: bool,
    /// Close once the output is out (a refused line, EOF).
    closing: bool,
}

/// The subscriber; see the module documentation.
pub struct ApiServer<H: Handler> {
    listener: UnixListener,
    clients: Vec<Client>,
    handler: H,
    events: EventQueue,
    /// Signalled when a client has complete lines left over after its budget.
    again: EventFd,
}

impl<H: Handler> ApiServer<H> {
    /// Serve `listener` (made non-blocking here) with `handler`, sending `events`' events.
    pub fn new(listener: UnixListener, handler: H, events: EventQueue) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(ApiServer {
            listener,
            clients: Vec::new(),
            handler,
            events,
            again: EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
        })
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    fn accept(&mut self, ops: &mut EventOps) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != ErrorKind::WouldBlock {
                        log::warn!("control socket: accept: {e}");
                    }
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                let err = ApiError::new(
                    class::TOO_MANY_CLIENTS,
                    format!("at most {MAX_CLIENTS} clients; try again later"),
                );
                let _ = (&stream).write(protocol::reply_err(&err, None).as_bytes());
                continue;
            }
            if let Err(e) = ops.add(Events::new(&stream, EventSet::IN)) {
                log::warn!("control socket: cannot watch a client: {e:?}");
                continue;
            }
            self.clients.push(Client {
                stream,
                input: LineBuffer::default(),
                output: Vec::new(),
                watching_out: false,
                closing: false,
            });
        }
    }

    /// Handle up to the budget of `c`'s complete lines; true if some are left.
    fn serve(handler: &mut H, c: &mut Client) -> bool {
        for _ in 0..COMMANDS_PER_WAKEUP {
            if c.closing {
                return false;
            }
            match c.input.next_line() {
                None => return false,
                Some(Line::TooLong) => {
                    let err = ApiError::new(
                        class::LINE_TOO_LONG,
                        format!("request line longer than {MAX_LINE} bytes; closing"),
                    );
                    c.output
                        .extend_from_slice(protocol::reply_err(&err, None).as_bytes());
                    c.closing = true;
                    return false;
                }
                Some(Line::Complete(line)) if line.iter().all(u8::is_ascii_whitespace) => {}
                Some(Line::Complete(line)) => {
                    let reply = match protocol::parse_request(&line) {
                        Ok(req) => match handler.execute(&req.execute, &req.arguments) {
                            Ok(v) => protocol::reply_ok(v, req.id),
                            Err(e) => protocol::reply_err(&e, req.id),
                        },
                        Err((e, id)) => protocol::reply_err(&e, id),
                    };
                    c.output.extend_from_slice(reply.as_bytes());
                }
            }
        }
        c.input.has_line()
    }

    /// Read what `c` sent, unless lines are still waiting or it is being closed; false on EOF
    /// or error.
    fn read(c: &mut Client) -> bool {
        // A client being closed gets nothing more read (its input would only grow).
        if c.input.has_line() || c.closing {
            return true;
        }
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    c.input.push(&buf[..n]);
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return e.kind() == ErrorKind::WouldBlock,
            }
        }
    }

    /// Write what is pending to `c`; false if it must be closed.
    fn flush(c: &mut Client, ops: &mut EventOps) -> bool {
        while !c.output.is_empty() {
            match c.stream.write(&c.output) {
                Ok(0) => return false,
                Ok(n) => {
                    c.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if c.output.len() > MAX_OUTPUT {
            log::warn!("control socket: a client does not read its replies; closing it");
            return false;
        }
        if c.closing && c.output.is_empty() {
            return false;
        }
        let want_out = !c.output.is_empty();
        if want_out != c.watching_out {
            let set = if want_out {
                EventSet::IN | EventSet::OUT
            } else {
                EventSet::IN
            };
            if ops.modify(Events::new(&c.stream, set)).is_err() {
                return false;
            }
            c.watching_out = want_out;
        }
        true
    }

    fn close(&mut self, at: usize, ops: &mut EventOps) {
        let c = self.clients.swap_remove(at);
        let _ = ops.remove(Events::new(&c.stream, EventSet::IN));
    }

    fn broadcast(&mut self, ops: &mut EventOps) {
        let (events, lost) = self.events.drain();
        let mut lines: Vec<String> = events
            .into_iter()
            .map(|e| protocol::event_line(e.name, e.data, e.at))
            .collect();
        if lost > 0 {
            lines.insert(
                0,
                protocol::event_line(
                    "EVENTS_LOST",
                    serde_json::json!({ "count": lost }),
                    SystemTime::now(),
                ),
            );
        }
        let mut i = 0;
        while i < self.clients.len() {
            for l in &lines {
                self.clients[i].output.extend_from_slice(l.as_bytes());
            }
            if Self::flush(&mut self.clients[i], ops) {
                i += 1;
            } else {
                self.close(i, ops);
            }
        }
    }

    /// Serve every client with lines left from an earlier wakeup.
    fn serve_waiting(&mut self, ops: &mut EventOps) {
        let mut more = false;
        let mut i = 0;
        while i < self.clients.len() {
            let c = &mut self.clients[i];
            more |= Self::serve(&mut self.handler, c);
            if Self::flush(c, ops) {
                i += 1;
            } else {
                self.close(i, ops);
            }
        }
        if more {
            let _ = self.again.write(1);
        }
    }

    fn client_event(&mut self, fd: i32, set: EventSet, ops: &mut EventOps) {
        let Some(at) = self.clients.iter().position(|c| c.stream.as_raw_fd() == fd) else {
            return;
        };
        let c = &mut self.clients[at];
        let mut open = true;
        if set.contains(EventSet::IN) || set.contains(EventSet::HANG_UP) {
            // Serve what is waiting first, then read more only if nothing is.
            let mut more = Self::serve(&mut self.handler, c);
            if !more {
                open = Self::read(c);
                more = Self::serve(&mut self.handler, c);
            }
            if more {
                let _ = self.again.write(1);
            }
            if !open {
                // EOF: what is complete was served (or waits); a partial line is dropped.
                c.closing = !more;
            }
        }
        if set.contains(EventSet::ERROR) {
            self.close(at, ops);
            return;
        }
        let c = &mut self.clients[at];
        if !Self::flush(c, ops) || (!open && !c.input.has_line() && c.output.is_empty()) {
            self.close(at, ops);
        }
    }
}

impl<H: Handler> MutEventSubscriber for ApiServer<H> {
    fn init(&mut self, ops: &mut EventOps) {
        for (what, r) in [
            ("socket", ops.add(Events::new(&self.listener, EventSet::IN))),
            (
                "events",
                ops.add(Events::new(&*self.events.wake, EventSet::IN)),
            ),
            ("budget", ops.add(Events::new(&self.again, EventSet::IN))),
        ] {
            if let Err(e) = r {
                log::error!("control socket: cannot watch its {what} descriptor: {e:?}");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.listener.as_raw_fd() {
            self.accept(ops);
        } else if fd == self.events.wake.as_raw_fd() {
            let _ = self.events.wake.read();
            self.broadcast(ops);
        } else if fd == self.again.as_raw_fd() {
            let _ = self.again.read();
            self.serve_waiting(ops);
        } else {
            self.client_event(fd, events.event_set(), ops);
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
