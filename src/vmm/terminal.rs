//! The host terminal: raw mode while the guest owns the console, restored on every exit path
//! (normal return, error, panic, and a signal that ends satavm at once, see
//! [`super::signals`]).
//!
//! The saved settings live in a static that is written once, before raw mode is switched on
//! and before anything can read it, and only read afterwards; a flag says whether they are
//! valid. That makes [`restore_from_signal_handler`] async-signal-safe: an atomic swap and
//! `tcsetattr`, no lock (a signal that arrives while a thread holds a lock would otherwise
//! wait on it forever).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// The termios satavm found at start-up.
struct Saved(UnsafeCell<libc::termios>);

// SAFETY: written only by `RawModeGuard::new` before VALID is set (Release) and read only
// after VALID was seen set (Acquire); see the module documentation.
unsafe impl Sync for Saved {}

// SAFETY (zeroed): termios is a plain C struct, all zeros is a valid value.
static SAVED: Saved = Saved(UnsafeCell::new(unsafe { std::mem::zeroed() }));
/// SAVED holds settings to put back.
static VALID: AtomicBool = AtomicBool::new(false);
/// Raw mode was switched on once already (SAVED is written at most once).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Restores the terminal when dropped.
pub struct RawModeGuard {
    active: bool,
}

impl RawModeGuard {
    /// Put stdin in raw mode if it is a terminal; otherwise do nothing.
    pub fn new() -> Self {
        let inactive = RawModeGuard { active: false };
        // SAFETY: tcgetattr writes one termios into the local; fd 0 may be anything, errors
        // are checked.
        let mut original: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut original) } != 0 {
            return inactive;
        }
        if TAKEN.swap(true, Ordering::SeqCst) {
            // One guard per process; a second (tests) leaves the terminal as it is.
            return inactive;
        }
        // SAFETY: no reader yet: VALID is false and TAKEN makes this the only writer.
        unsafe { *SAVED.0.get() = original };
        VALID.store(true, Ordering::Release);
        let mut raw = original;
        // SAFETY: cfmakeraw edits the local struct.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Keep output post-processing so guest "\n" still starts a new line on the host.
        raw.c_oflag = original.c_oflag;
        // SAFETY: a valid termios for fd 0, checked.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            VALID.store(false, Ordering::SeqCst);
            return inactive;
        }
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
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

/// Put the saved terminal settings back (once; later calls do nothing).
pub fn restore() {
    restore_from_signal_handler();
}

/// As [`restore`]; async-signal-safe (an atomic swap and tcsetattr).
pub fn restore_from_signal_handler() {
    if VALID.swap(false, Ordering::AcqRel) {
        // SAFETY: VALID was set after SAVED was written, and SAVED is never written again;
        // tcsetattr is async-signal-safe.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, SAVED.0.get()) };
    }
}

/// True when stdin is a terminal (the console is interactive: raw mode and the escape key).
pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only looks at the descriptor.
    unsafe { libc::isatty(0) == 1 }
}
