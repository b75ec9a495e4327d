//! The vCPU threads: KVM_RUN and the exits they handle, and their lifecycle ([`Vcpus`]).
//!
//! Lifecycle:
//! - each vCPU runs on its own thread (`vcpu<N>`); a panic on it is caught and ends the VM
//!   with [`VmExit::Panic`] (status 70) instead of leaving the VM running without that vCPU;
//! - [`Vcpus::stop`] (also on drop) stops them all: it sets the stop flag and kicks each
//!   thread with a real-time signal whose handler sets `immediate_exit` in the thread's
//!   `kvm_run` (as Firecracker's vstate/vcpu.rs does): a vCPU inside KVM_RUN returns with
//!   EINTR, one about to enter it returns at once, one handling an exit sees the flag at the
//!   top of its loop. Then it joins them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use super::bus::IoBus;
use super::exit::{ExitSignal, VmExit};
use super::halt::{HaltWatch, RFLAGS_IF};

/// How many exits the vCPUs brought to satavm (userspace exits only: KVM handles HLT, the
/// LAPIC timer, ioeventfd writes and the like without returning from KVM_RUN), by kind.
/// Shared by all vCPU threads; printed at exit, e.g. to compare with the guest's I/O count.
#[derive(Debug, Default)]
pub struct ExitCounters {
    /// MMIO reads (KVM_EXIT_MMIO, !is_write): each is a guest load the vCPU waits on.
    pub mmio_reads: AtomicU64,
    /// MMIO writes (KVM_EXIT_MMIO, is_write).
    pub mmio_writes: AtomicU64,
    /// Port reads (KVM_EXIT_IO, IN).
    pub pio_in: AtomicU64,
    /// Port writes (KVM_EXIT_IO, OUT).
    pub pio_out: AtomicU64,
    /// Every other return from KVM_RUN (signals, system events, ...).
    pub other: AtomicU64,
    /// Port accesses (IN and OUT) by port number, to name the busiest ones in the summary.
    pio_ports: Mutex<BTreeMap<u16, u64>>,
}

impl ExitCounters {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn count_pio(&self, counter: &AtomicU64, port: u16) {
        Self::count(counter);
        let mut ports = self.pio_ports.lock().unwrap_or_else(|e| e.into_inner());
        *ports.entry(port).or_default() += 1;
    }

    /// The `n` most used I/O ports, busiest first: `0x3fd x 120, 0x70 x 4`.
    fn busiest_ports(&self, n: usize) -> String {
        let ports = self.pio_ports.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(u16, u64)> = ports.iter().map(|(p, c)| (*p, *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.iter()
            .take(n)
            .map(|(p, c)| format!("{p:#x} x {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Port and MMIO exits so far (what a guest that runs makes, and a halted one never).
    pub fn io_exits(&self) -> u64 {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        get(&self.mmio_reads) + get(&self.mmio_writes) + get(&self.pio_in) + get(&self.pio_out)
    }

    /// One line for the user: `vCPU exits: N (MMIO R reads, W writes; PIO I in, O out; X other)`.
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (r, w, i, o, x) = (
            get(&self.mmio_reads),
            get(&self.mmio_writes),
            get(&self.pio_in),
            get(&self.pio_out),
            get(&self.other),
        );
        let busiest = if i + o > 0 {
            format!(" [busiest ports: {}]", self.busiest_ports(3))
        } else {
            String::new()
        };
        format!(
            "vCPU exits: {} (MMIO {r} reads, {w} writes; PIO {i} in, {o} out; {x} other){busiest}",
            r + w + i + o + x
        )
    }
}

// KVM_SYSTEM_EVENT types (Documentation/virt/kvm/api.rst).
const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;
/// KVM_MP_STATE_HALTED (Documentation/virt/kvm/api.rst, KVM_GET_MP_STATE).
const KVM_MP_STATE_HALTED: u32 = 3;

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

thread_local! {
    /// `immediate_exit` in the kvm_run page of the vCPU this thread runs, for the kick
    /// handler (null when none).
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

/// The kick: make this thread's KVM_RUN return (or not start). Async-signal-safe: a
/// thread-local read (const-initialised, no destructor) and a store into the kvm_run page.
extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let flag = IMMEDIATE_EXIT.with(Cell::get);
    if !flag.is_null() {
        // SAFETY: IMMEDIATE_EXIT points into the kvm_run mapping of the VcpuFd that `run`
        // owns on this very thread while it is set (cleared before the VcpuFd goes away); the
        // kernel reads the byte at the next KVM_RUN (Documentation/virt/kvm/api.rst).
        unsafe { std::ptr::write_volatile(flag, 1) };
    }
    std::sync::atomic::fence(Ordering::SeqCst);
}

/// Set the kick handler (once per process, before the first vCPU thread starts).
pub fn install_kick_handler() -> std::io::Result<()> {
    register_signal_handler(kick_signal(), on_kick).map_err(std::io::Error::from)
}

/// Tells a vCPU thread to return.
#[derive(Debug, Default)]
pub struct StopFlag(AtomicBool);

impl StopFlag {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// The vCPU threads of a VM; see the module documentation.
pub struct Vcpus {
    threads: Vec<(u8, JoinHandle<()>)>,
    stop: Arc<StopFlag>,
    done_tx: mpsc::Sender<u8>,
    done_rx: mpsc::Receiver<u8>,
}

/// How long [`Vcpus::stop`] waits for the threads before it gives up on them.
pub const STOP_DEADLINE: Duration = Duration::from_secs(5);

impl Default for Vcpus {
    fn default() -> Self {
        Self::new()
    }
}

impl Vcpus {
    pub fn new() -> Self {
        let (done_tx, done_rx) = mpsc::channel();
        Vcpus {
            threads: Vec::new(),
            stop: Arc::new(StopFlag::default()),
            done_tx,
            done_rx,
        }
    }

    /// Start `body` on thread `vcpu<id>`. A panic in it raises [`VmExit::Panic`] on `exit`.
    pub fn spawn(
        &mut self,
        id: u8,
        exit: Arc<ExitSignal>,
        body: impl FnOnce(&StopFlag) + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, done) = (self.stop.clone(), self.done_tx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| body(&stop))) {
                    exit.raise(VmExit::Panic(format!(
                        "vCPU {id} thread panicked: {}",
                        panic_message(payload.as_ref())
                    )));
                }
                let _ = done.send(id);
            })?;
        self.threads.push((id, handle));
        Ok(())
    }

    /// Kick every thread out of KVM_RUN once (it runs on): each then reports to the
    /// [`HaltWatch`] whether its vCPU is halted with interrupts off.
    pub fn kick_all(&self) {
        for (_, t) in &self.threads {
            let _ = t.kill(kick_signal());
        }
    }

    /// Stop and join every thread, waiting at most `deadline`; the ids of those that did not
    /// stop in time (left running: the process is about to end).
    pub fn stop(&mut self, deadline: Duration) -> Vec<u8> {
        self.stop.0.store(true, Ordering::SeqCst);
        let until = Instant::now() + deadline;
        let mut finished: Vec<u8> = Vec::new();
        while finished.len() < self.threads.len() {
            for (id, t) in &self.threads {
                if !finished.contains(id) {
                    // ESRCH: it ended meanwhile.
                    let _ = t.kill(kick_signal());
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Kick again now and then: a thread busy outside KVM_RUN (a device handler)
            // sees the flag when it is back at the top of its loop.
            match self
                .done_rx
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(id) => finished.push(id),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let mut stuck = Vec::new();
        for (id, t) in self.threads.drain(..) {
            if finished.contains(&id) {
                let _ = t.join();
            } else {
                stuck.push(id);
            }
        }
        stuck
    }
}

impl Drop for Vcpus {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let stuck = self.stop(STOP_DEADLINE);
            if !stuck.is_empty() {
                log::warn!("vCPU threads {stuck:?} did not stop within {STOP_DEADLINE:?}");
            }
        }
    }
}

/// Clears [`IMMEDIATE_EXIT`] when `run` returns or unwinds.
struct KickGuard;

impl Drop for KickGuard {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|r| r.set(std::ptr::null_mut()));
    }
}

/// Run vCPU `id` until the VM stops or `stop` is set.
pub fn run(
    id: u8,
    mut vcpu: VcpuFd,
    bus: Arc<IoBus>,
    exit: Arc<ExitSignal>,
    counters: Arc<ExitCounters>,
    halt: Arc<HaltWatch>,
    stop: &StopFlag,
) {
    let flag: *mut u8 = &mut vcpu.get_kvm_run().immediate_exit;
    IMMEDIATE_EXIT.with(|r| r.set(flag));
    let _kick = KickGuard;
    loop {
        if stop.is_set() {
            return;
        }
        let outcome = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                counters.count_pio(&counters.pio_in, port);
                bus.pio_read(port, data);
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                counters.count_pio(&counters.pio_out, port);
                bus.pio_write(port, data);
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                ExitCounters::count(&counters.mmio_reads);
                bus.mmio_read(addr, data);
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                ExitCounters::count(&counters.mmio_writes);
                bus.mmio_write(addr, data);
                None
            }
            Ok(VcpuExit::Shutdown) => Some(VmExit::Reset),
            Ok(VcpuExit::Hlt) => Some(VmExit::PowerOff),
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => Some(VmExit::PowerOff),
                KVM_SYSTEM_EVENT_RESET => Some(VmExit::Reset),
                other => Some(VmExit::Failure(format!("vCPU {id}: KVM system event {other}"))),
            },
            Ok(VcpuExit::InternalError) => Some(VmExit::Failure(internal_error(id, &mut vcpu))),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(VmExit::Failure(format!(
                "vCPU {id}: KVM_EXIT_FAIL_ENTRY, hardware entry failure reason {reason:#x} on host CPU {cpu}"
            ))),
            Ok(other) => {
                ExitCounters::count(&counters.other);
                log::debug!("vCPU {id}: ignoring exit {other:?}");
                None
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                ExitCounters::count(&counters.other);
                if !stop.is_set() {
                    // Kicked to look (or by another signal): say whether the vCPU is halted
                    // with interrupts off, and run on.
                    let halted = vcpu
                        .get_mp_state()
                        .is_ok_and(|m| m.mp_state == KVM_MP_STATE_HALTED);
                    if halted && vcpu.get_regs().is_ok_and(|r| r.rflags & RFLAGS_IF == 0) {
                        halt.report_halted(id);
                    }
                    vcpu.set_kvm_immediate_exit(0);
                }
                None
            }
            Err(e) => Some(VmExit::Failure(format!("vCPU {id}: KVM_RUN failed: {e}"))),
        };
        if let Some(reason) = outcome {
            exit.raise(reason);
            return;
        }
    }
}

/// Describe a KVM_EXIT_INTERNAL_ERROR with its suberror and the guest RIP.
fn internal_error(id: u8, vcpu: &mut VcpuFd) -> String {
    let run = vcpu.get_kvm_run();
    // SAFETY: after KVM_EXIT_INTERNAL_ERROR the `internal` member of the kvm_run union is the
    // one KVM filled in.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let suberror = match internal.suberror {
        1 => "emulation failure (KVM could not emulate an instruction)",
        2 => "simultaneous exceptions",
        3 => "delivery event",
        4 => "unexpected exit reason",
        _ => "unknown",
    };
    let rip = vcpu
        .get_regs()
        .map(|r| format!("{:#x}", r.rip))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let n = (internal.ndata as usize).min(internal.data.len());
    format!(
        "vCPU {id}: KVM could not run the guest: KVM_EXIT_INTERNAL_ERROR, suberror {} \
         ({suberror}), RIP {rip}, data {:x?}. On a host with hardware virtualization (VT-x/AMD-V) \
         this does not happen; a KVM that emulates guest instructions in software (some nested \
         or sandboxed hosts) fails like this on common instructions. Run satavm on a host with \
         VT-x/AMD-V, or inside the nested rig (scripts/rig).",
        internal.suberror,
        &internal.data[..n]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_vcpu_thread_ends_the_vm_with_its_message() {
        // stop() kicks the thread if it has not said it is done yet: without the handler the
        // kick signal's default action would end the whole test process.
        install_kick_handler().unwrap();
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut vcpus = Vcpus::new();
        vcpus
            .spawn(0, exit.clone(), |_| panic!("bus handler bug"))
            .unwrap();
        // The main loop wakes up on the exit eventfd.
        let start = Instant::now();
        while exit.reason().is_none() {
            assert!(start.elapsed() < Duration::from_secs(10), "no exit raised");
            std::thread::yield_now();
        }
        assert_eq!(
            exit.reason(),
            Some(VmExit::Panic(
                "vCPU 0 thread panicked: bus handler bug".into()
            ))
        );
        assert!(vcpus.stop(Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn stop_ends_and_joins_every_thread() {
        install_kick_handler().unwrap();
        let exit = Arc::new(ExitSignal::new().unwrap());
        let mut vcpus = Vcpus::new();
        let ran = Arc::new(AtomicU64::new(0));
        for id in 0..3 {
            let ran = ran.clone();
            vcpus
                .spawn(id, exit.clone(), move |stop| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    while !stop.is_set() {
                        std::thread::yield_now();
                    }
                })
                .unwrap();
        }
        assert!(vcpus.stop(Duration::from_secs(10)).is_empty());
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        assert!(vcpus.threads.is_empty());
        assert_eq!(exit.reason(), None, "a plain stop is no exit of its own");
    }
}
