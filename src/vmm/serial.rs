//! COM1: vm-superio's 8250 UART on 0x3f8, its interrupt on an irqfd (GSI 4), guest output to
//! stdout and host stdin into the receive FIFO through the event loop.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

/// First port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1 occupies eight ports.
pub const COM1_PORTS: u16 = 8;

/// A vm-superio trigger that writes an eventfd (registered with KVM as an irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Guest console output: stdout, flushed per write so prompts appear at once.
pub struct ConsoleOut;

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        let n = out.write(buf)?;
        out.flush()?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// The COM1 device.
pub type SerialDevice = Serial<EventFdTrigger, NoEvents, Box<dyn Write + Send>>;

/// Feeds host stdin into the UART's receive FIFO without losing bytes when the FIFO is full:
/// bytes wait in `pending` and a short timer retries, with stdin unwatched meanwhile.
pub struct StdinInput {
    serial: Arc<Mutex<SerialDevice>>,
    pending: VecDeque<u8>,
    retry: TimerFd,
    watching_stdin: bool,
    stdin_closed: bool,
}

const STDIN_FD: i32 = 0;
const RETRY: Duration = Duration::from_millis(2);

impl StdinInput {
    /// Input for `serial`.
    pub fn new(serial: Arc<Mutex<SerialDevice>>) -> io::Result<Self> {
        Ok(StdinInput {
            serial,
            pending: VecDeque::new(),
            retry: TimerFd::new()?,
            watching_stdin: false,
            stdin_closed: false,
        })
    }

    fn stdin_events() -> Events {
        Events::new_raw(STDIN_FD, EventSet::IN)
    }

    /// Move as many pending bytes as the FIFO takes.
    fn push(&mut self) {
        let mut serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        while !self.pending.is_empty() {
            let room = serial.fifo_capacity();
            if room == 0 {
                break;
            }
            let chunk: Vec<u8> = self.pending.iter().take(room).copied().collect();
            match serial.enqueue_raw_bytes(&chunk) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) => {
                    log::warn!("serial input dropped: {e:?}");
                    self.pending.clear();
                }
            }
        }
    }

    fn read_stdin(&mut self) {
        let mut buf = [0u8; 64];
        match io::stdin().lock().read(&mut buf) {
            Ok(0) => self.stdin_closed = true,
            Ok(n) => self.pending.extend(&buf[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::warn!("stdin: {e}; guest console input stops");
                self.stdin_closed = true;
            }
        }
    }

    fn update_interest(&mut self, ops: &mut EventOps) {
        let want_stdin = !self.stdin_closed && self.pending.is_empty();
        if want_stdin != self.watching_stdin {
            let r = if want_stdin {
                ops.add(Self::stdin_events())
            } else {
                ops.remove(Self::stdin_events())
            };
            if let Err(e) = r {
                log::warn!("stdin watch: {e:?}");
            }
            self.watching_stdin = want_stdin;
        }
        if !self.pending.is_empty() {
            if let Err(e) = self.retry.reset(RETRY, None) {
                log::warn!("serial retry timer: {e}");
            }
        }
    }
}

impl MutEventSubscriber for StdinInput {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.retry, EventSet::IN)) {
            log::warn!("serial retry timer watch: {e:?}");
        }
        // /dev/null or a closed stdin: nothing to watch (epoll refuses regular files).
        if ops.add(Self::stdin_events()).is_ok() {
            self.watching_stdin = true;
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.retry.as_raw_fd() {
            let _ = self.retry.wait();
        } else if events.event_set().contains(EventSet::IN) {
            self.read_stdin();
        } else {
            self.stdin_closed = true;
        }
        self.push();
        self.update_interest(ops);
    }
}
