//! The vCPU threads: KVM_RUN and the exits they handle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::eventfd::EventFd;

use super::bus::IoBus;

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The guest reset the machine (reboot, i8042 reset, triple fault).
    Reset,
    /// The guest powered off.
    PowerOff,
    /// The guest wrote an exit code to the exit-code port (0 = success).
    GuestCode(u32),
    /// KVM or the guest failed.
    Failure(String),
}

/// How a vCPU thread tells the main loop the VM is over.
pub struct ExitSignal {
    pub evt: EventFd,
    reason: Mutex<Option<VmExit>>,
}

impl ExitSignal {
    /// A fresh signal.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitSignal {
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
            reason: Mutex::new(None),
        })
    }

    /// Record `exit` (the first one wins) and wake the main loop.
    pub fn raise(&self, exit: VmExit) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(exit);
        }
        let _ = self.evt.write(1);
    }

    /// The recorded exit, if any.
    pub fn reason(&self) -> Option<VmExit> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

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

/// Run vCPU `id` until the VM stops.
pub fn run(
    id: u8,
    mut vcpu: VcpuFd,
    bus: Arc<IoBus>,
    exit: Arc<ExitSignal>,
    counters: Arc<ExitCounters>,
) {
    loop {
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
