//! The host terminal: raw mode while the guest owns the console, restored on every exit path
//! (normal return, error, panic, SIGTERM/SIGHUP).

use std::os::fd::BorrowedFd;
use std::sync::Mutex;

use nix::sys::termios::{self, SetArg, Termios};

static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Restores the terminal when dropped.
pub struct RawModeGuard {
    active: bool,
}

impl RawModeGuard {
    /// Put stdin in raw mode if it is a terminal; otherwise do nothing.
    pub fn new() -> Self {
        let fd = stdin_fd();
        let Ok(original) = termios::tcgetattr(fd) else {
            return RawModeGuard { active: false };
        };
        let mut raw = original.clone();
        termios::cfmakeraw(&mut raw);
        // Keep output post-processing so guest "\n" still starts a new line on the host.
        raw.output_flags = original.output_flags;
        if termios::tcsetattr(fd, SetArg::TCSANOW, &raw).is_err() {
            return RawModeGuard { active: false };
        }
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(original);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        install_signal_restore();
        RawModeGuard { active: true }
    }

    /// True when the terminal was switched to raw mode.
    pub fn is_active(&self) -> bool {
        self.active
    }
}

impl Default for RawModeGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        if self.active {
            restore();
        }
    }
}

/// Put the saved terminal settings back.
pub fn restore() {
    if let Ok(mut saved) = SAVED.try_lock() {
        if let Some(t) = saved.take() {
            let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, &t);
        }
    }
}

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    restore();
    // SAFETY: _exit is async-signal-safe and ends the process.
    unsafe { libc::_exit(128 + sig) };
}

fn install_signal_restore() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_fatal_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler only restores termios and calls _exit.
        let _ = unsafe { sigaction(sig, &action) };
    }
}
