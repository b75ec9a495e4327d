//! Host signals that end satavm: SIGTERM, SIGINT and SIGHUP.
//!
//! - Before the VM runs, they end satavm at once through [`on_fatal_signal`] (nothing has
//!   started that needs stopping).
//! - While the VM runs they are blocked in every thread ([`block_exit_signals`], called before
//!   the first thread starts, so all threads inherit the mask) and read from a signalfd in the
//!   event loop ([`ExitOnSignal`]): the VM stops through the normal exit path, as when the
//!   guest powers off (vCPUs stopped and joined, trace flushed, statistics printed, the
//!   scratch image removed), as QEMU and cloud-hypervisor do.
//! - After the first one they are unblocked again in the main thread: a second signal ends
//!   satavm at once, while the exit path runs.
//!
//! A signal satavm was started with ignored (SIG_IGN: `nohup` does that for SIGHUP, a
//! non-interactive shell for SIGINT and SIGQUIT of a background job) stays ignored, as Unix
//! programs do ([`install_fatal_handlers`] looks first).
//!
//! [`on_fatal_signal`] (also for SIGQUIT) does only async-signal-safe work: it puts the
//! terminal back ([`super::terminal::restore_from_signal_handler`]), unlinks the scratch image
//! named by [`remove_on_fatal_signal`], and re-raises the signal with its default action, so
//! the parent sees satavm killed by that signal.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::exit::{ExitSignal, VmExit};
use super::terminal;

/// The signals that stop the VM through the exit path.
pub const EXIT_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// The signals satavm was started with ignored (bit N: signal N), found by
/// [`install_fatal_handlers`].
static IGNORED: AtomicU64 = AtomicU64::new(0);

fn ignored(sig: Signal) -> bool {
    IGNORED.load(Ordering::SeqCst) & (1 << (sig as i32)) != 0
}

/// The exit signals satavm handles (those it was not started with ignored).
fn exit_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in EXIT_SIGNALS.into_iter().filter(|s| !ignored(*s)) {
        set.add(s);
    }
    set
}

/// True if `sig`'s disposition is SIG_IGN now.
fn is_ignored_now(sig: Signal) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig as libc::c_int, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// A file to unlink if a signal ends satavm at once (a leaked C string; null when none).
static SCRATCH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Remove `path` if a signal ends satavm before the normal exit path does (at most one path;
/// the last one given wins). [`forget_scratch`] takes it back.
pub fn remove_on_fatal_signal(path: &Path) {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let old = SCRATCH.swap(c.into_raw(), Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: `old` came from CString::into_raw above and is no longer reachable.
        drop(unsafe { CString::from_raw(old) });
    }
}

/// Stop removing the file [`remove_on_fatal_signal`] named (it is gone, or kept).
pub fn forget_scratch() {
    let old = SCRATCH.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: `old` came from CString::into_raw and is no longer reachable.
        drop(unsafe { CString::from_raw(old) });
    }
}

/// Ends the process for `sig` with async-signal-safe calls only: tcsetattr, unlink, signal
/// mask and disposition changes, raise.
extern "C" fn on_fatal_signal(sig: libc::c_int) {
    terminal::restore_from_signal_handler();
    let scratch = SCRATCH.load(Ordering::SeqCst);
    if !scratch.is_null() {
        // SAFETY: unlink is async-signal-safe; `scratch` is a NUL-terminated string that
        // stays allocated (it is only freed after being swapped out of SCRATCH, and the
        // handler is the last user of a process about to die).
        unsafe { libc::unlink(scratch) };
    }
    // SAFETY: signal(), sigprocmask() and raise() are async-signal-safe. With the default
    // action back and the signal unblocked, raise() ends the process by `sig`.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
}

/// Make SIGTERM, SIGINT, SIGHUP and SIGQUIT end satavm at once through [`on_fatal_signal`],
/// except those satavm was started with ignored (the first call finds them).
pub fn install_fatal_handlers() -> nix::Result<()> {
    static FIRST: std::sync::Once = std::sync::Once::new();
    let all = EXIT_SIGNALS.into_iter().chain([Signal::SIGQUIT]);
    FIRST.call_once(|| {
        let mask = all
            .clone()
            .filter(|s| is_ignored_now(*s))
            .fold(0u64, |m, s| m | 1 << (s as i32));
        IGNORED.store(mask, Ordering::SeqCst);
    });
    let action = SigAction::new(
        SigHandler::Handler(on_fatal_signal),
        SaFlags::SA_RESETHAND,
        SigSet::all(),
    );
    for sig in all.filter(|s| !ignored(*s)) {
        // SAFETY: the handler does only async-signal-safe work (see on_fatal_signal).
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Block SIGTERM, SIGINT and SIGHUP in this thread and every thread it starts from now on,
/// so that only the signalfd of [`ExitOnSignal`] sees them.
pub fn block_exit_signals() -> nix::Result<SigSet> {
    let set = exit_set();
    set.thread_block()?;
    Ok(set)
}

/// The name of `sig`, e.g. `SIGTERM`.
pub fn name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Reads the exit signals from a signalfd and stops the VM on the first.
pub struct ExitOnSignal {
    fd: SignalFd,
    exit: Arc<ExitSignal>,
    seen: u32,
}

impl ExitOnSignal {
    /// A signalfd for [`EXIT_SIGNALS`] (they must be blocked: [`block_exit_signals`]).
    pub fn new(exit: Arc<ExitSignal>) -> nix::Result<Self> {
        let fd = SignalFd::with_flags(&exit_set(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(ExitOnSignal { fd, exit, seen: 0 })
    }

    fn received(&mut self, signal: i32, pid: u32) {
        self.seen += 1;
        if self.seen > 1 {
            // Two at once: the second ends satavm now.
            on_fatal_signal(signal);
            return;
        }
        self.exit.raise(VmExit::Signal { signal, pid });
        // From now on the handler gets them, in this (the main) thread: the other threads
        // keep them blocked.
        if let Err(e) = install_fatal_handlers().and_then(|_| exit_set().thread_unblock()) {
            log::warn!("a second signal will not end satavm at once: {e}");
        }
    }
}

impl MutEventSubscriber for ExitOnSignal {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.fd, EventSet::IN)) {
            log::error!("cannot watch SIGTERM/SIGINT/SIGHUP: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        while let Ok(Some(info)) = self.fd.read_signal() {
            self.received(info.ssi_signo as i32, info.ssi_pid);
        }
    }
}
