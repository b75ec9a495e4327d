//! MMIO routing to BARs: a range bus (rust-vmm's `vm_device::bus::Bus`) from guest-physical
//! ranges to the (function, BAR) that decodes them, kept up to date from the root's
//! [`BarChange`] reports. A lookup is a range search and takes only the function's own lock:
//! no global lock and no scan of every function on each MMIO exit. The VMM keeps it behind a
//! read-write lock (written only when the guest moves a BAR).

use vm_device::bus::{Bus, BusRange, MmioAddress};

use super::root::{BarChange, PciRoot, SharedFunction};

/// What a range routes to.
#[derive(Clone)]
struct Target {
    function: SharedFunction,
    bar: usize,
}

/// The MMIO ranges of every decoding memory BAR.
#[derive(Default)]
pub struct BarRoutes {
    bus: Bus<MmioAddress, Target>,
}

impl std::fmt::Debug for BarRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarRoutes").finish_non_exhaustive()
    }
}

impl BarRoutes {
    /// Routes for the BARs of `root` that decode now.
    pub fn new(root: &PciRoot) -> Self {
        let mut routes = BarRoutes::default();
        for (device, bar, base, size) in root.decoding_bars() {
            if let Some(f) = root.function(device) {
                routes.add(f.clone(), bar, base, size);
            }
        }
        routes
    }

    fn add(&mut self, function: SharedFunction, bar: usize, base: u64, size: u64) {
        let Ok(range) = BusRange::new(MmioAddress(base), size) else {
            log::warn!("PCI: BAR{bar} at {base:#x} size {size:#x} does not fit the address space");
            return;
        };
        // Overlapping BARs are a guest error (PCI 3.0 6.2.5.1 leaves the result undefined):
        // the first one keeps the range, as a real bus picks one decoder.
        if let Err(e) = self.bus.register(range, Target { function, bar }) {
            log::warn!("PCI: BAR{bar} at {base:#x} size {size:#x} not routed: {e}");
        }
    }

    /// Follow one change the root reported.
    pub fn apply(&mut self, root: &PciRoot, change: &BarChange) {
        if let Some((old, _)) = change.old {
            if let Some((range, t)) = self.bus.device(MmioAddress(old)) {
                let ours = range.base() == MmioAddress(old) && t.bar == change.bar;
                if ours {
                    self.bus.deregister(MmioAddress(old));
                }
            }
        }
        if let (Some((base, size)), Some(f)) = (change.new, root.function(change.device)) {
            self.add(f.clone(), change.bar, base, size);
        }
    }

    /// Route an MMIO read; false if no BAR decodes `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.route(addr, |f, bar, off| f.bar_read(bar, off, data))
    }

    /// Route an MMIO write; false if no BAR decodes `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        self.route(addr, |f, bar, off| f.bar_write(bar, off, data))
    }

    fn route(&self, addr: u64, op: impl FnOnce(&mut dyn super::PciFunction, usize, u64)) -> bool {
        let Some((range, t)) = self.bus.device(MmioAddress(addr)) else {
            return false;
        };
        let offset = addr - range.base().0;
        let mut f = t.function.lock().unwrap_or_else(|e| e.into_inner());
        op(&mut *f, t.bar, offset);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::pci::config::{command, offset, BarKind};
    use crate::pci::{ConfigSpace, PciFunction, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT};

    struct Scratch {
        config: ConfigSpace,
        last_write: Option<(usize, u64, Vec<u8>)>,
    }

    impl PciFunction for Scratch {
        fn config(&self) -> &ConfigSpace {
            &self.config
        }
        fn config_write(&mut self, offset: usize, data: &[u8]) {
            self.config.write(offset, data);
        }
        fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            data.fill((bar as u8) << 4 | offset as u8);
        }
        fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.last_write = Some((bar, offset, data.to_vec()));
        }
    }

    fn config_write(root: &mut PciRoot, routes: &mut BarRoutes, dev: u32, reg: u32, v: u32) {
        let addr = 1 << 31 | dev << 11 | reg;
        root.pio_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
        root.pio_write(CONFIG_DATA_PORT, &v.to_le_bytes());
        for c in root.take_bar_changes() {
            routes.apply(root, &c);
        }
    }

    #[test]
    fn mmio_follows_the_bar_the_guest_programs() {
        let mut root = PciRoot::new();
        let mut config = ConfigSpace::new(0x1234, 0x5678, (1, 6, 1), 0);
        config.add_bar(5, 0x2000, BarKind::Memory32, 0xc000_0000);
        let f = Arc::new(Mutex::new(Scratch {
            config,
            last_write: None,
        }));
        let dev = u32::from(root.add(f.clone()));
        let mut routes = BarRoutes::new(&root);
        let mut b = [0u8; 1];
        assert!(!routes.read(0xc000_0010, &mut b), "memory decoding off");

        let mse = u32::from(command::MEMORY_SPACE);
        config_write(&mut root, &mut routes, dev, offset::COMMAND as u32, mse);
        assert!(routes.read(0xc000_0010, &mut b));
        assert_eq!(b[0], 0x50);
        assert!(!routes.read(0xc000_2000, &mut b), "past the BAR's end");

        // Move the BAR: the root reports it, the old address no longer decodes.
        let bar5 = offset::BAR0 as u32 + 0x14;
        let addr = 1 << 31 | dev << 11 | bar5;
        root.pio_write(CONFIG_ADDRESS_PORT, &addr.to_le_bytes());
        root.pio_write(CONFIG_DATA_PORT, &0xd000_0000u32.to_le_bytes());
        let changes = root.take_bar_changes();
        assert_eq!(
            changes,
            [BarChange {
                device: dev as u8,
                bar: 5,
                old: Some((0xc000_0000, 0x2000)),
                new: Some((0xd000_0000, 0x2000)),
            }]
        );
        for c in &changes {
            routes.apply(&root, c);
        }
        assert!(root.take_bar_changes().is_empty(), "taken once");
        assert!(!routes.write(0xc000_0000, &[1]));
        assert!(routes.write(0xd000_1ffc, &[7, 7]));
        assert_eq!(f.lock().unwrap().last_write, Some((5, 0x1ffc, vec![7, 7])));

        // Memory decoding off: reported as a change to nowhere.
        config_write(&mut root, &mut routes, dev, offset::COMMAND as u32, 0);
        assert!(!routes.write(0xd000_0000, &[1]));
        config_write(&mut root, &mut routes, dev, offset::COMMAND as u32, mse);
        assert!(routes.write(0xd000_0000, &[1]));
    }

    #[test]
    fn overlapping_bars_route_to_the_first_and_do_not_panic() {
        let mut root = PciRoot::new();
        let mut devs = Vec::new();
        for _ in 0..2 {
            let mut config = ConfigSpace::new(0x1234, 0x5678, (1, 6, 1), 0);
            config.add_bar(0, 0x1000, BarKind::Memory32, 0xc000_0000);
            let f = Arc::new(Mutex::new(Scratch {
                config,
                last_write: None,
            }));
            devs.push((u32::from(root.add(f.clone())), f));
        }
        let mut routes = BarRoutes::new(&root);
        let mse = u32::from(command::MEMORY_SPACE);
        for (dev, _) in &devs {
            config_write(&mut root, &mut routes, *dev, offset::COMMAND as u32, mse);
        }
        assert!(routes.write(0xc000_0004, &[1]));
        assert!(devs[0].1.lock().unwrap().last_write.is_some());
        assert!(devs[1].1.lock().unwrap().last_write.is_none());
    }
}
