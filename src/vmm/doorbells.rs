//! Command-issue doorbells: KVM ioeventfds on PxSACT and PxCI (AHCI 1.3.1 sections 3.3.13,
//! 3.3.14), so that issuing a command costs no exit to satavm.
//!
//! Linux's libahci issues a command with one 32-bit write of `1 << tag` to PxSACT (queued
//! commands only) and one to PxCI. Neither write needs a reply, so for each of the first
//! [`DOORBELL_PORTS`] ports and each of the 32 single-bit values of both registers, an eventfd
//! is registered with KVM_IOEVENTFD and a data match: KVM signals it and resumes the guest
//! without returning from KVM_RUN. Any other value (several bits, a byte write) still exits
//! and is handled as before. The eventfds sit in an epoll set of their own; the HBA collects
//! them ([`PostedWriteSource::take`]) before every other guest access to ABAR, and the event
//! loop collects them when they fire ([`DoorbellPump`]). The VMM moves them with ABAR
//! ([`BarFollower`]): the PCI root reports the move, the device code never sees KVM. See [`crate::ahci::posted_writes`]
//! for why that keeps the guest's order.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BarFollower;
use crate::ahci::posted_writes::{PostedBatch, PostedRegister, PostedWriteSource};
use crate::ahci::AhciFunction;

/// Ports that get doorbells: 64 eventfds each (KVM allows 1000 devices on its MMIO bus, and
/// the process has 1024 descriptors by default).
pub const DOORBELL_PORTS: usize = 4;

/// One eventfd: a write of `1 << bit` to `register` of `port`.
struct Doorbell {
    port: u8,
    register: PostedRegister,
    bit: u8,
    fd: EventFd,
}

impl Doorbell {
    /// Its guest-physical address with ABAR at `abar`.
    fn address(&self, abar: u64) -> IoEventAddress {
        IoEventAddress::Mmio(abar + self.register.abar_offset(self.port))
    }

    fn value(&self) -> u32 {
        1 << self.bit
    }
}

/// The doorbells of an AHCI function's first ports.
pub struct Doorbells {
    vm: Arc<VmFd>,
    bells: Vec<Doorbell>,
    /// The eventfds, with their index in `bells` as data.
    ready: Epoll,
    /// ABAR's address while the doorbells are registered with KVM.
    registered: Mutex<Option<u64>>,
    /// Set when nothing would collect rung doorbells: never register them again.
    disabled: AtomicBool,
}

impl Doorbells {
    /// Eventfds for ports `0..ports.min(DOORBELL_PORTS)` (registered once ABAR decodes).
    pub fn new(vm: Arc<VmFd>, ports: usize) -> io::Result<Self> {
        let ready = Epoll::new()?;
        let mut bells = Vec::new();
        for port in 0..ports.min(DOORBELL_PORTS) as u8 {
            for register in PostedRegister::ALL {
                for bit in 0..32 {
                    let fd = EventFd::new(libc::EFD_NONBLOCK)?;
                    ready.ctl(
                        ControlOperation::Add,
                        fd.as_raw_fd(),
                        EpollEvent::new(EventSet::IN, bells.len() as u64),
                    )?;
                    bells.push(Doorbell {
                        port,
                        register,
                        bit,
                        fd,
                    });
                }
            }
        }
        Ok(Self {
            vm,
            bells,
            ready,
            registered: Mutex::new(None),
            disabled: AtomicBool::new(false),
        })
    }

    /// Unregister the doorbells for good (every write exits to satavm again).
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
        self.bar_moved(None);
    }

    /// The epoll descriptor that is readable while a doorbell has rung.
    pub fn ready_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }

    /// Register every doorbell with ABAR at `abar`; on failure, none stays registered.
    fn register_at(&self, abar: u64) -> Result<(), kvm_ioctls::Error> {
        for (i, b) in self.bells.iter().enumerate() {
            if let Err(e) = self.vm.register_ioevent(&b.fd, &b.address(abar), b.value()) {
                self.unregister(&self.bells[..i], abar);
                return Err(e);
            }
        }
        Ok(())
    }

    fn unregister(&self, bells: &[Doorbell], abar: u64) {
        for b in bells {
            if let Err(e) = self
                .vm
                .unregister_ioevent(&b.fd, &b.address(abar), b.value())
            {
                log::warn!(
                    "AHCI doorbells: KVM_IOEVENTFD deassign at {:?}: {e}",
                    b.address(abar)
                );
            }
        }
    }
}

impl PostedWriteSource for Doorbells {
    fn take(&self, batch: &mut PostedBatch) {
        let mut events = [EpollEvent::default(); 64];
        loop {
            let n = match self.ready.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("AHCI doorbells: epoll_wait: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                let Some(b) = self.bells.get(ev.data() as usize) else {
                    continue;
                };
                // EAGAIN: another thread took it between the wait and the read.
                if let Ok(count) = b.fd.read() {
                    batch.add(b.port, b.register, b.value(), count);
                }
            }
            if n < events.len() {
                return;
            }
        }
    }
}

impl BarFollower for Doorbells {
    fn bar_moved(&self, base: Option<u64>) {
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if *registered == base {
            return;
        }
        if let Some(old) = registered.take() {
            self.unregister(&self.bells, old);
        }
        if let Some(new) = base.filter(|_| !self.disabled.load(Ordering::Relaxed)) {
            match self.register_at(new) {
                Ok(()) => *registered = Some(new),
                Err(e) => log::warn!(
                    "AHCI doorbells: KVM_IOEVENTFD at ABAR {new:#x}: {e}; every PxCI/PxSACT \
                     write exits to satavm instead"
                ),
            }
        }
    }
}

/// Applies posted writes when a doorbell rings (the event loop's side).
pub struct DoorbellPump {
    pub ahci: Arc<Mutex<AhciFunction>>,
    pub doorbells: Arc<Doorbells>,
}

impl MutEventSubscriber for DoorbellPump {
    fn init(&mut self, ops: &mut EventOps) {
        let fd = self.doorbells.ready_fd();
        if let Err(e) = ops.add(Events::new_raw(fd, event_manager::EventSet::IN)) {
            log::error!("AHCI doorbells: cannot watch them: {e:?}; doorbells off");
            self.doorbells.disable();
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        self.ahci
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply_posted_writes();
    }
}
