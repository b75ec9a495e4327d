//! Port I/O and MMIO dispatch for vCPU exits: COM1, i8042, CMOS, PCI; everything else reads
//! as all-ones and ignores writes, so probing drivers move on instead of spinning.

use std::sync::{Arc, Mutex, MutexGuard};

use super::cmos::{self, Cmos};
use super::exit::{ExitSignal, VmExit};
use super::i8042::I8042;
use super::serial::{EventFdTrigger, SerialDevice, COM1_BASE, COM1_PORTS};
use crate::pci::PciRoot;

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

/// The devices vCPUs reach through exits.
pub struct IoBus {
    pub serial: Arc<Mutex<SerialDevice>>,
    pub i8042: Mutex<I8042<EventFdTrigger>>,
    pub cmos: Mutex<Cmos>,
    pub pci: Mutex<PciRoot>,
    pub exit: Arc<ExitSignal>,
}

impl IoBus {
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
            EXIT_CODE_PORT => {
                let mut b = [0u8; 4];
                let n = data.len().min(4);
                b[..n].copy_from_slice(&data[..n]);
                self.exit.raise(VmExit::GuestCode(u32::from_le_bytes(b)));
            }
            _ => {
                if !lock(&self.pci).pio_write(port, data) {
                    log::trace!("unclaimed port write {port:#x} = {data:02x?}");
                }
            }
        }
    }

    /// Handle an MMIO read.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if !lock(&self.pci).mmio_read(addr, data) {
            log::trace!("unclaimed MMIO read {addr:#x}");
            data.fill(0xff);
        }
    }

    /// Handle an MMIO write.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if !lock(&self.pci).mmio_write(addr, data) {
            log::trace!("unclaimed MMIO write {addr:#x} = {data:02x?}");
        }
    }
}
