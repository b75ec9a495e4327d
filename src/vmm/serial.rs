//! COM1: vm-superio's 8250 UART on 0x3f8, its interrupt on an irqfd (GSI 4), guest output to
//! stdout and host stdin into the receive FIFO through the event loop.
//!
//! When stdin is a terminal (raw mode: Ctrl-C is a byte for the guest), Ctrl-A is an escape
//! key as in QEMU: see [`ESCAPE_HELP`] and [`Escape`].

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

use super::exit::{ExitSignal, VmExit};

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

/// The console escape key: Ctrl-A.
pub const ESCAPE_KEY: u8 = 0x01;

/// What Ctrl-A h prints (and `--help` says).
pub const ESCAPE_HELP: &str = "\
Console keys (when stdin is a terminal; the guest gets every other key, Ctrl-C included):
  Ctrl-A x       quit: stop the VM through the normal exit path (statistics, trace flushed)
  Ctrl-A s       print the statistics now (as SIGUSR1)
  Ctrl-A h       this help
  Ctrl-A Ctrl-A  send one Ctrl-A to the guest
  Ctrl-A, then any other key: both go to the guest";

/// A console escape command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeAction {
    Quit,
    Help,
    Statistics,
}

/// The escape-key state machine over console input.
#[derive(Debug, Default)]
pub struct Escape {
    /// The last byte was Ctrl-A.
    armed: bool,
}

impl Escape {
    /// Feed `input`: bytes for the guest go to `to_guest`, the commands come back in order.
    pub fn feed(&mut self, input: &[u8], to_guest: &mut VecDeque<u8>) -> Vec<EscapeAction> {
        let mut actions = Vec::new();
        for &b in input {
            if !self.armed {
                if b == ESCAPE_KEY {
                    self.armed = true;
                } else {
                    to_guest.push_back(b);
                }
                continue;
            }
            self.armed = false;
            match b {
                b'x' | b'X' => actions.push(EscapeAction::Quit),
                b'h' | b'H' | b'?' => actions.push(EscapeAction::Help),
                b's' | b'S' => actions.push(EscapeAction::Statistics),
                ESCAPE_KEY => to_guest.push_back(ESCAPE_KEY),
                other => to_guest.extend([ESCAPE_KEY, other]),
            }
        }
        actions
    }
}

/// The escape key at work: what its commands act on.
pub struct ConsoleEscape {
    escape: Escape,
    exit: Arc<ExitSignal>,
}

impl ConsoleEscape {
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        ConsoleEscape {
            escape: Escape::default(),
            exit,
        }
    }

    fn act(&self, action: EscapeAction) {
        match action {
            EscapeAction::Quit => self.exit.raise(VmExit::Quit),
            EscapeAction::Help => eprintln!("\n{ESCAPE_HELP}"),
            EscapeAction::Statistics => {
                // The statistics signalfd (vmm::storage) answers SIGUSR1.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::this(),
                    nix::sys::signal::Signal::SIGUSR1,
                );
            }
        }
    }
}

/// Feeds host stdin into the UART's receive FIFO without losing bytes when the FIFO is full:
/// bytes wait in `pending` and a short timer retries, with stdin unwatched meanwhile.
pub struct StdinInput {
    serial: Arc<Mutex<SerialDevice>>,
    pending: VecDeque<u8>,
    retry: TimerFd,
    watching_stdin: bool,
    stdin_closed: bool,
    escape: Option<ConsoleEscape>,
}

const STDIN_FD: i32 = 0;
const RETRY: Duration = Duration::from_millis(2);

impl StdinInput {
    /// Input for `serial`; with `escape`, Ctrl-A sequences are commands (see [`Escape`]).
    pub fn new(
        serial: Arc<Mutex<SerialDevice>>,
        escape: Option<ConsoleEscape>,
    ) -> io::Result<Self> {
        Ok(StdinInput {
            serial,
            pending: VecDeque::new(),
            retry: TimerFd::new()?,
            watching_stdin: false,
            stdin_closed: false,
            escape,
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
            Ok(n) => match &mut self.escape {
                Some(esc) => {
                    for action in esc.escape.feed(&buf[..n], &mut self.pending) {
                        esc.act(action);
                    }
                }
                None => self.pending.extend(&buf[..n]),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(input: &[u8]) -> (Vec<u8>, Vec<EscapeAction>) {
        let mut e = Escape::default();
        let mut out = VecDeque::new();
        let mut actions = Vec::new();
        // Byte by byte and all at once must agree.
        for b in input {
            actions.extend(e.feed(std::slice::from_ref(b), &mut out));
        }
        let (mut e2, mut out2) = (Escape::default(), VecDeque::new());
        assert_eq!(e2.feed(input, &mut out2), actions);
        assert_eq!(out2, out);
        (out.into(), actions)
    }

    #[test]
    fn ctrl_a_commands() {
        assert_eq!(feed(b"ls\x01x"), (b"ls".to_vec(), vec![EscapeAction::Quit]));
        assert_eq!(feed(b"\x01h\x01?"), (vec![], vec![EscapeAction::Help; 2]));
        assert_eq!(feed(b"\x01s"), (vec![], vec![EscapeAction::Statistics]));
        // Ctrl-A Ctrl-A is one Ctrl-A; Ctrl-A and another key are both sent.
        assert_eq!(feed(b"\x01\x01a"), (b"\x01a".to_vec(), vec![]));
        assert_eq!(feed(b"\x01b\x03"), (b"\x01b\x03".to_vec(), vec![]));
        // A Ctrl-A at the end waits for the next read.
        let mut e = Escape::default();
        let mut out = VecDeque::new();
        assert!(e.feed(b"q\x01", &mut out).is_empty());
        assert_eq!(e.feed(b"x", &mut out), vec![EscapeAction::Quit]);
        assert_eq!(out, b"q".to_vec());
    }
}
