//! [`InterruptSink`] over KVM: MSI through irqfds with GSI routing, INTx as a level on an
//! IOAPIC pin.
//!
//! The device reports *which* message to send ([`MsiMessage`], from its MSI capability);
//! here the VMM gives each distinct message a GSI with an MSI route (KVM_SET_GSI_ROUTING)
//! and an eventfd bound to it (KVM_IRQFD), once, the first time it is sent. From then on an
//! interrupt is one eventfd write, from whichever thread completed the command: KVM injects
//! it without an ioctl. The routing table keeps the irqchip's default entries (GSIs 0-23 as
//! KVM sets them up: PIC and IOAPIC pins), which KVM_SET_GSI_ROUTING replaces wholesale.
//! A guest that keeps reprogramming its MSI messages (affinity changes) fills at most
//! [`MAX_MSI_ROUTES`] routes; then they are all dropped and rebuilt as messages come.

use std::io;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_irq_routing_msi, kvm_msi, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use super::layout::IOAPIC_PINS;
use crate::irq::{InterruptSink, MsiMessage};

/// Most MSI messages with a route at once (a 32-port HBA with one vector per port needs 32).
pub const MAX_MSI_ROUTES: usize = 32;

/// One message's route: its GSI and the eventfd KVM watches for it.
struct MsiRoute {
    msg: MsiMessage,
    gsi: u32,
    fd: EventFd,
}

/// Delivers a PCI function's interrupts into the VM.
pub struct KvmInterrupts {
    vm: Arc<VmFd>,
    intx_gsi: u32,
    routes: Mutex<Vec<MsiRoute>>,
    /// Set when routing failed: send each MSI with KVM_SIGNAL_MSI instead.
    direct: std::sync::atomic::AtomicBool,
}

fn os_err(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

/// The irqchip entries KVM's default routing has (arch/x86/kvm/irq_comm.c): GSIs 0-15 on
/// the PICs and the IOAPIC, 16-23 on the IOAPIC.
fn irqchip_routes() -> Vec<kvm_irq_routing_entry> {
    let entry = |gsi: u32, irqchip: u32, pin: u32| kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip, pin },
        },
        ..Default::default()
    };
    let mut v = Vec::new();
    for gsi in 0..u32::from(IOAPIC_PINS) {
        if gsi < 8 {
            v.push(entry(gsi, KVM_IRQCHIP_PIC_MASTER, gsi));
        } else if gsi < 16 {
            v.push(entry(gsi, KVM_IRQCHIP_PIC_SLAVE, gsi - 8));
        }
        v.push(entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    v
}

fn msi_route(gsi: u32, msg: MsiMessage) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            msi: kvm_irq_routing_msi {
                address_lo: msg.address as u32,
                address_hi: (msg.address >> 32) as u32,
                data: msg.data,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

impl KvmInterrupts {
    /// Interrupts of a function whose INTx pin is wired to `intx_gsi`.
    pub fn new(vm: Arc<VmFd>, intx_gsi: u32) -> Self {
        KvmInterrupts {
            vm,
            intx_gsi,
            routes: Mutex::new(Vec::new()),
            direct: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Install the routing table for `routes` (after the irqchip's entries).
    fn set_routing(&self, routes: &[MsiRoute]) -> io::Result<()> {
        let mut entries = irqchip_routes();
        entries.extend(routes.iter().map(|r| msi_route(r.gsi, r.msg)));
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|e| io::Error::other(format!("GSI routing table: {e:?}")))?;
        self.vm.set_gsi_routing(&table).map_err(os_err)
    }

    /// Give `msg` a GSI, a route and a bound eventfd; returns its index in `routes`.
    fn add_route(&self, routes: &mut Vec<MsiRoute>, msg: MsiMessage) -> io::Result<usize> {
        if routes.len() >= MAX_MSI_ROUTES {
            for r in routes.drain(..) {
                if let Err(e) = self.vm.unregister_irqfd(&r.fd, r.gsi) {
                    log::warn!("MSI irqfd: KVM_IRQFD deassign GSI {}: {e}", r.gsi);
                }
            }
        }
        let used: Vec<u32> = routes.iter().map(|r| r.gsi).collect();
        let gsi = (u32::from(IOAPIC_PINS)..)
            .find(|g| !used.contains(g))
            .unwrap_or(u32::from(IOAPIC_PINS));
        let fd = EventFd::new(libc::EFD_NONBLOCK)?;
        routes.push(MsiRoute { msg, gsi, fd });
        let bound = self.set_routing(routes).and_then(|()| {
            let last = &routes[routes.len() - 1];
            self.vm.register_irqfd(&last.fd, last.gsi).map_err(os_err)
        });
        if let Err(e) = bound {
            routes.pop();
            return Err(e);
        }
        Ok(routes.len() - 1)
    }

    fn signal_direct(&self, msg: MsiMessage) -> io::Result<()> {
        let msi = kvm_msi {
            address_lo: msg.address as u32,
            address_hi: (msg.address >> 32) as u32,
            data: msg.data,
            ..Default::default()
        };
        self.vm.signal_msi(msi).map(|_| ()).map_err(os_err)
    }

    /// How many MSI messages have a route now.
    pub fn msi_routes(&self) -> usize {
        self.routes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl InterruptSink for KvmInterrupts {
    fn signal_msi(&self, msg: MsiMessage) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.direct.load(Ordering::Relaxed) {
            return self.signal_direct(msg);
        }
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let i = match routes.iter().position(|r| r.msg == msg) {
            Some(i) => i,
            None => match self.add_route(&mut routes, msg) {
                Ok(i) => i,
                Err(e) => {
                    log::warn!("MSI through irqfd: {e}; sending each MSI with KVM_SIGNAL_MSI");
                    self.direct.store(true, Ordering::Relaxed);
                    drop(routes);
                    return self.signal_direct(msg);
                }
            },
        };
        routes[i].fd.write(1)
    }

    fn set_intx(&self, asserted: bool) -> io::Result<()> {
        self.vm
            .set_irq_line(self.intx_gsi, asserted)
            .map_err(os_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_irqchip_routes_are_kept() {
        let r = irqchip_routes();
        // 16 GSIs on a PIC and the IOAPIC, 8 more on the IOAPIC alone.
        assert_eq!(r.len(), 16 * 2 + 8);
        let pins = |gsi: u32| -> Vec<(u32, u32)> {
            r.iter()
                .filter(|e| e.gsi == gsi)
                // SAFETY: every entry built by irqchip_routes is of type IRQCHIP.
                .map(|e| unsafe { (e.u.irqchip.irqchip, e.u.irqchip.pin) })
                .collect()
        };
        assert_eq!(
            pins(4),
            [(KVM_IRQCHIP_PIC_MASTER, 4), (KVM_IRQCHIP_IOAPIC, 4)]
        );
        assert_eq!(
            pins(11),
            [(KVM_IRQCHIP_PIC_SLAVE, 3), (KVM_IRQCHIP_IOAPIC, 11)]
        );
        assert_eq!(pins(20), [(KVM_IRQCHIP_IOAPIC, 20)]);
        let m = msi_route(
            24,
            MsiMessage {
                address: 0x1_fee0_1000,
                data: 0x4041,
            },
        );
        // SAFETY: msi_route builds an MSI entry.
        let msi = unsafe { m.u.msi };
        assert_eq!(
            (m.type_, msi.address_lo, msi.address_hi, msi.data),
            (KVM_IRQ_ROUTING_MSI, 0xfee0_1000, 1, 0x4041)
        );
    }
}
