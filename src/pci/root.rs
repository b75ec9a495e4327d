//! The root bus: configuration mechanism #1 (PCI 3.0 section 3.2.2.3.2) on ports 0xCF8/0xCFC,
//! a host bridge at 00:00.0, and routing of MMIO accesses to the BAR that decodes them.

use std::sync::{Arc, Mutex};

use super::{ConfigSpace, PciFunction};

/// CONFIG_ADDRESS.
pub const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// CONFIG_DATA (0xCFC to 0xCFF).
pub const CONFIG_DATA_PORT: u16 = 0xcfc;

const ENABLE: u32 = 1 << 31;

/// A shared PCI function.
pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// The host bridge at 00:00.0: an Intel host bridge (class 06.00.00), which is what Linux's
/// `pci_sanity_check` (arch/x86/pci/direct.c) looks for before trusting mechanism #1.
#[derive(Debug)]
pub struct HostBridge {
    config: ConfigSpace,
}

impl Default for HostBridge {
    fn default() -> Self {
        HostBridge {
            config: ConfigSpace::new(0x8086, 0x0d57, (0x06, 0x00, 0x00), 0),
        }
    }
}

impl PciFunction for HostBridge {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

/// A memory BAR that now decodes somewhere else, or nowhere (PCI 3.0 section 6.2.5.1: the
/// guest wrote the BAR or the command register's Memory Space bit). The root reports these;
/// the VMM moves what it keeps at BAR addresses (MMIO routes, ioeventfds, memslots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarChange {
    /// Device number on bus 0.
    pub device: u8,
    /// BAR index (0 to 5).
    pub bar: usize,
    /// Where it decoded before: (base, size).
    pub old: Option<(u64, u64)>,
    /// Where it decodes now: (base, size).
    pub new: Option<(u64, u64)>,
}

/// Bus 0 with up to 32 single-function devices.
pub struct PciRoot {
    config_address: u32,
    devices: Vec<SharedFunction>,
    /// BAR changes not yet taken by the VMM.
    bar_changes: Vec<BarChange>,
}

impl Default for PciRoot {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(f: &SharedFunction) -> std::sync::MutexGuard<'_, dyn PciFunction + 'static> {
    f.lock().unwrap_or_else(|e| e.into_inner())
}

impl PciRoot {
    /// A root bus holding only the host bridge.
    pub fn new() -> Self {
        PciRoot {
            config_address: 0,
            devices: vec![Arc::new(Mutex::new(HostBridge::default()))],
            bar_changes: Vec::new(),
        }
    }

    /// Plug `function` into the next free device number and return that number.
    pub fn add(&mut self, function: SharedFunction) -> u8 {
        self.devices.push(function);
        (self.devices.len() - 1) as u8
    }

    /// The function at `device`, if any.
    pub fn function(&self, device: u8) -> Option<&SharedFunction> {
        self.devices.get(usize::from(device))
    }

    /// Every memory BAR that decodes now: (device, BAR, base, size).
    pub fn decoding_bars(&self) -> Vec<(u8, usize, u64, u64)> {
        let mut out = Vec::new();
        for (d, f) in self.devices.iter().enumerate() {
            let f = lock(f);
            let config = f.config();
            for bar in config.bar_indices() {
                if let Some((base, size)) = config.bar_range(bar) {
                    out.push((d as u8, bar, base, size));
                }
            }
        }
        out
    }

    /// The BAR changes since the last call, oldest first.
    pub fn take_bar_changes(&mut self) -> Vec<BarChange> {
        std::mem::take(&mut self.bar_changes)
    }

    /// The function CONFIG_ADDRESS selects: (device number, function, register offset).
    fn selected(&self) -> Option<(u8, &SharedFunction, usize)> {
        let a = self.config_address;
        if a & ENABLE == 0 {
            return None;
        }
        let bus = (a >> 16) & 0xff;
        let device = ((a >> 11) & 0x1f) as usize;
        let function = (a >> 8) & 0x7;
        let register = (a & 0xfc) as usize;
        if bus != 0 || function != 0 {
            return None;
        }
        self.devices
            .get(device)
            .map(|f| (device as u8, f, register))
    }

    /// A port read in the configuration mechanism's range. Returns false if `port` is not ours.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) -> bool {
        match port {
            CONFIG_ADDRESS_PORT..=0xcfb => {
                let bytes = self.config_address.to_le_bytes();
                let at = usize::from(port - CONFIG_ADDRESS_PORT);
                for (i, b) in data.iter_mut().enumerate() {
                    *b = bytes.get(at + i).copied().unwrap_or(0xff);
                }
                true
            }
            CONFIG_DATA_PORT..=0xcff => {
                match self.selected() {
                    Some((_, f, register)) => {
                        let at = register + usize::from(port - CONFIG_DATA_PORT);
                        lock(f).config().read(at, data);
                    }
                    None => data.fill(0xff),
                }
                true
            }
            _ => false,
        }
    }

    /// A port write in the configuration mechanism's range. Returns false if `port` is not ours.
    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> bool {
        match port {
            CONFIG_ADDRESS_PORT => {
                // Only dword writes reach CONFIG_ADDRESS; byte writes to 0xCFB probe for
                // mechanism #2 and are ignored.
                if let Ok(b) = <[u8; 4]>::try_from(data) {
                    self.config_address = u32::from_le_bytes(b) & 0x80ff_fffc;
                }
                true
            }
            0xcf9..=0xcfb => true,
            CONFIG_DATA_PORT..=0xcff => {
                if let Some((device, f, register)) = self.selected() {
                    let at = register + usize::from(port - CONFIG_DATA_PORT);
                    let f = f.clone();
                    let mut f = lock(&f);
                    // Absent BARs decode nowhere before and after.
                    let before: [_; 6] = std::array::from_fn(|b| f.config().bar_range(b));
                    f.config_write(at, data);
                    for (bar, old) in before.into_iter().enumerate() {
                        let new = f.config().bar_range(bar);
                        if new != old {
                            self.bar_changes.push(BarChange {
                                device,
                                bar,
                                old,
                                new,
                            });
                        }
                    }
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_read32(root: &mut PciRoot, dev: u32, reg: u32) -> u32 {
        assert!(root.pio_write(
            CONFIG_ADDRESS_PORT,
            &(ENABLE | dev << 11 | reg).to_le_bytes()
        ));
        let mut b = [0u8; 4];
        assert!(root.pio_read(CONFIG_DATA_PORT, &mut b));
        u32::from_le_bytes(b)
    }

    #[test]
    fn linux_type1_probe_and_sanity_check_pass() {
        let mut root = PciRoot::new();
        // pci_check_type1: byte write to 0xCFB, then CONFIG_ADDRESS must read back.
        root.pio_write(0xcfb, &[1]);
        root.pio_write(CONFIG_ADDRESS_PORT, &0x8000_0000u32.to_le_bytes());
        let mut b = [0u8; 4];
        root.pio_read(CONFIG_ADDRESS_PORT, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0000);
        // pci_sanity_check: a host bridge class or an Intel vendor on bus 0.
        let class = cfg_read32(&mut root, 0, 8) >> 16;
        assert_eq!(class, 0x0600);
        assert_eq!(cfg_read32(&mut root, 0, 0) & 0xffff, 0x8086);
        // Empty slots and other functions read all ones.
        assert_eq!(cfg_read32(&mut root, 7, 0), 0xffff_ffff);
        assert_eq!(cfg_read32(&mut root, 0, 0x100), 0xffff_ffff);
    }
}
