//! A PCI bus for the microVM: configuration mechanism #1, a host bridge, functions with BARs
//! and an MSI capability (PCI Local Bus 3.0). No KVM types: the VMM routes port and MMIO exits here.

pub mod bar_routes;
pub mod config;
pub mod msi;
pub mod root;

pub use bar_routes::BarRoutes;
pub use config::{BarKind, ConfigSpace};
pub use msi::MsiCapability;
pub use root::{BarChange, PciRoot, SharedFunction, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT};

/// One PCI function on the root bus.
pub trait PciFunction: Send {
    /// The function's configuration space.
    fn config(&self) -> &ConfigSpace;

    /// Write `data` at byte `offset` of configuration space. Functions that react to
    /// configuration writes (MSI enable, command register) override this.
    fn config_write(&mut self, offset: usize, data: &[u8]);

    /// Read from memory BAR `bar` at byte `offset` within it.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);

    /// Write to memory BAR `bar` at byte `offset` within it.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]);
}
