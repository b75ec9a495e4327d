//! Port I/O and MMIO dispatch for vCPU exits: COM1, i8042, CMOS, the ACPI sleep/reset
//! registers, pvpanic, PCI; everything else reads
//! as all-ones and ignores writes, so probing drivers move on instead of spinning.
//!
//! Each device has its own lock and an exit takes only the one it reaches. MMIO goes through
//! [`BarRoutes`], a range bus behind a read-write lock that only a BAR move writes; the PCI
//! root's lock is taken by configuration-space port I/O alone. When the guest moves a BAR,
//! the root reports it ([`crate::pci::BarChange`]) and this bus, on the VMM's side, moves the
//! routes and every KVM resource kept at BAR addresses ([`BarFollower`]: ioeventfd doorbells,
//! the register memslot).

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::acpi::registers::{self as acpi_registers, PowerRequest};
use super::cmos::{self, Cmos};
use super::exit::{ExitSignal, VmExit};
use super::i8042::I8042;
use super::pvpanic::{self, PanicEvent};
use super::serial::{EventFdTrigger, SerialDevice, COM1_BASE, COM1_PORTS};
use crate::pci::{BarChange, BarRoutes, PciRoot};

/// i8042 data port.
const I8042_DATA: u16 = 0x60;
/// i8042 command/status port.
const I8042_COMMAND: u16 = 0x64;
/// POST diagnostic port.
const POST_PORT: u16 = 0x80;
/// Guest exit-code port: a 32-bit write ends the VM with that code (0 = success). satavm's own
/// firmware reports its verdict here, like QEMU's isa-debug-exit.
pub const EXIT_CODE_PORT: u16 = 0x501;

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A KVM resource the VMM keeps at a BAR's address (an ioeventfd set, a memslot), moved when
/// the guest moves the BAR.
pub trait BarFollower: Send + Sync {
    /// The BAR decodes at `base` now (`None`: nowhere, memory decoding off).
    fn bar_moved(&self, base: Option<u64>);
}

/// A [`BarFollower`] for one BAR of one function.
pub struct BarFollowerEntry {
    pub device: u8,
    pub bar: usize,
    pub follower: Arc<dyn BarFollower>,
}

/// The devices vCPUs reach through exits.
pub struct IoBus {
    serial: Arc<Mutex<SerialDevice>>,
    i8042: Mutex<I8042<EventFdTrigger>>,
    cmos: Mutex<Cmos>,
    pci: Mutex<PciRoot>,
    mmio: RwLock<BarRoutes>,
    followers: Vec<BarFollowerEntry>,
    exit: Arc<ExitSignal>,
}

impl IoBus {
    /// The bus over these devices; `followers` are told where their BAR decodes now, and on
    /// every move.
    pub fn new(
        serial: Arc<Mutex<SerialDevice>>,
        i8042: I8042<EventFdTrigger>,
        pci: PciRoot,
        followers: Vec<BarFollowerEntry>,
        exit: Arc<ExitSignal>,
    ) -> Self {
        let mmio = RwLock::new(BarRoutes::new(&pci));
        let decoding = pci.decoding_bars();
        for f in &followers {
            let base = decoding
                .iter()
                .find(|&&(d, b, _, _)| d == f.device && b == f.bar)
                .map(|&(_, _, base, _)| base);
            f.follower.bar_moved(base);
        }
        IoBus {
            serial,
            i8042: Mutex::new(i8042),
            cmos: Mutex::new(Cmos::default()),
            pci: Mutex::new(pci),
            mmio,
            followers,
            exit,
        }
    }

    /// Move the routes and the followers after the root reported `changes`.
    fn follow(&self, pci: &PciRoot, changes: &[BarChange]) {
        let mut routes = self.mmio.write().unwrap_or_else(|e| e.into_inner());
        for c in changes {
            routes.apply(pci, c);
            for f in self
                .followers
                .iter()
                .filter(|f| f.device == c.device && f.bar == c.bar)
            {
                f.follower.bar_moved(c.new.map(|(base, _)| base));
            }
        }
    }

    /// Handle an IN.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        match port {
            p if (COM1_BASE..COM1_BASE + COM1_PORTS).contains(&p) => {
                data.fill(0);
                if let Some(b) = data.first_mut() {
                    *b = lock(&self.serial).read((p - COM1_BASE) as u8);
                }
            }
            I8042_DATA | I8042_COMMAND => {
                let v = lock(&self.i8042).read((port - I8042_DATA) as u8);
                data.fill(v);
            }
            cmos::INDEX_PORT | cmos::DATA_PORT => {
                let v = lock(&self.cmos).read(port);
                data.fill(v);
            }
            p if acpi_registers::claims(p) => data.fill(acpi_registers::read(p)),
            pvpanic::PORT => data.fill(pvpanic::SUPPORTED),
            _ => {
                if !lock(&self.pci).pio_read(port, data) {
                    data.fill(0xff);
                }
            }
        }
    }

    /// Handle an OUT.
    pub fn pio_write(&self, port: u16, data: &[u8]) {
        let Some(&first) = data.first() else { return };
        match port {
            p if (COM1_BASE..COM1_BASE + COM1_PORTS).contains(&p) => {
                if let Err(e) = lock(&self.serial).write((p - COM1_BASE) as u8, first) {
                    log::warn!("serial: {e:?}");
                }
            }
            I8042_DATA | I8042_COMMAND => {
                if let Err(e) = lock(&self.i8042).write((port - I8042_DATA) as u8, first) {
                    log::warn!("i8042 reset event: {e}");
                }
            }
            cmos::INDEX_PORT | cmos::DATA_PORT => lock(&self.cmos).write(port, first),
            POST_PORT => {}
            p if acpi_registers::claims(p) => match acpi_registers::write(p, first) {
                Some(PowerRequest::PowerOff) => self.exit.raise(VmExit::PowerOff),
                Some(PowerRequest::Reset) => self.exit.raise(VmExit::Reset),
                None => {}
            },
            pvpanic::PORT => match pvpanic::write(first) {
                Some(PanicEvent::Panicked) => self.exit.raise(VmExit::GuestPanic),
                Some(PanicEvent::CrashLoaded) => {
                    log::warn!("pvpanic: the guest kernel crashed; its crash kernel takes over")
                }
                None => {}
            },
            EXIT_CODE_PORT => {
                let mut b = [0u8; 4];
                let n = data.len().min(4);
                b[..n].copy_from_slice(&data[..n]);
                self.exit.raise(VmExit::GuestCode(u32::from_le_bytes(b)));
            }
            _ => {
                let mut pci = lock(&self.pci);
                if !pci.pio_write(port, data) {
                    log::trace!("unclaimed port write {port:#x} = {data:02x?}");
                }
                let changes = pci.take_bar_changes();
                if !changes.is_empty() {
                    self.follow(&pci, &changes);
                }
            }
        }
    }

    /// Handle an MMIO read.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if !self.routes().read(addr, data) {
            log::trace!("unclaimed MMIO read {addr:#x}");
            data.fill(0xff);
        }
    }

    /// Handle an MMIO write.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if !self.routes().write(addr, data) {
            log::trace!("unclaimed MMIO write {addr:#x} = {data:02x?}");
        }
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, BarRoutes> {
        self.mmio.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use vm_superio::Serial;
    use vmm_sys_util::eventfd::EventFd;

    use super::*;

    fn bus() -> (IoBus, Arc<ExitSignal>) {
        let fd = || EventFdTrigger(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let serial = Serial::new(
            fd(),
            Box::new(std::io::sink()) as Box<dyn std::io::Write + Send>,
        );
        let exit = Arc::new(ExitSignal::new().unwrap());
        let bus = IoBus::new(
            Arc::new(Mutex::new(serial)),
            I8042::new(fd()),
            PciRoot::new(),
            Vec::new(),
            exit.clone(),
        );
        (bus, exit)
    }

    #[test]
    fn the_s5_write_to_the_sleep_control_register_powers_the_vm_off() {
        let (bus, exit) = bus();
        // Linux first clears WAK_STS in the sleep status register, then writes SLP_TYP|SLP_EN.
        bus.pio_write(acpi_registers::SLEEP_STATUS_PORT, &[0x80]);
        assert_eq!(exit.reason(), None);
        let mut status = [0xffu8];
        bus.pio_read(acpi_registers::SLEEP_STATUS_PORT, &mut status);
        assert_eq!(status, [0]);
        bus.pio_write(
            acpi_registers::SLEEP_CONTROL_PORT,
            &[acpi_registers::S5_SLEEP_TYPE << 2 | 1 << 5],
        );
        assert_eq!(exit.reason(), Some(VmExit::PowerOff));
        assert_eq!(exit.evt.read().unwrap(), 1, "the main loop is woken");
    }

    #[test]
    fn a_pvpanic_write_ends_the_vm_as_a_guest_panic() {
        let (bus, exit) = bus();
        let mut caps = [0u8];
        bus.pio_read(pvpanic::PORT, &mut caps);
        assert_eq!(caps, [pvpanic::PANICKED | pvpanic::CRASH_LOADED]);
        bus.pio_write(pvpanic::PORT, &[pvpanic::CRASH_LOADED]);
        assert_eq!(exit.reason(), None, "a crash kernel runs on");
        bus.pio_write(pvpanic::PORT, &[pvpanic::PANICKED]);
        assert_eq!(exit.reason(), Some(VmExit::GuestPanic));
    }

    #[test]
    fn the_reset_register_resets_the_vm() {
        let (bus, exit) = bus();
        bus.pio_write(acpi_registers::RESET_PORT, &[0x06]);
        assert_eq!(exit.reason(), None, "not RESET_VALUE");
        bus.pio_write(acpi_registers::RESET_PORT, &[acpi_registers::RESET_VALUE]);
        assert_eq!(exit.reason(), Some(VmExit::Reset));
    }
}
