//! AHCI layer: the HBA (AHCI 1.3.1).
//!
//! - [`regs`]: register offsets and bit names.
//! - [`hba`]: the generic host control registers (CAP, GHC, IS, PI, VS) and HBA reset.
//! - [`port`]: the port registers and the command list engine.
//! - [`command`]: command headers, command tables and PRDTs in guest memory.
//! - [`completion`]: what a finished command does to its port.
//! - [`rfis`]: the received-FIS area.
//! - [`events`]: link changes, errors and resets reported to an observer as they happen.
//! - [`posted_writes`]: PxSACT/PxCI writes a VMM took without an exit, applied in order.
//! - [`sdb_aggregation`]: when queued completions are reported (one SDB FIS for several).
//! - [`pci_function`]: [`AhciFunction`], the PCI function the VMM plugs into its PCI bus.
//!
//! Each port talks to its device only through [`crate::sata::SataDevice`]: Register H2D FISes
//! and a [`crate::sata::DataPath`] go down, FISes come back.

pub mod checks;
pub mod command;
mod completion;
pub mod events;
pub mod hba;
#[cfg(test)]
pub(crate) mod mock;
pub mod pci_function;
pub mod port;
pub mod posted_writes;
pub mod register_page;
pub mod regs;
pub mod rfis;
pub mod sdb_aggregation;

pub use pci_function::{AhciFunction, Observers, ABAR, ABAR_SIZE};

/// Per-port statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Commands (C = 1 FISes) sent to the device.
    pub commands: u64,
    /// The same, by opcode.
    pub by_opcode: std::collections::BTreeMap<u8, u64>,
    /// Bytes moved device to host by commands that completed (PRDBC, or the NCQ count).
    pub bytes_read: u64,
    /// Bytes moved host to device by commands that completed.
    pub bytes_written: u64,
    /// Times the device dropped off the link (PhyRdy lost).
    pub link_drops: u64,
    /// Most queued (NCQ) commands the device held at once.
    pub ncq_peak_depth: u32,
    /// Commands that ended in an error (task file, overflow, host bus or interface error).
    pub errors: u64,
    /// Port resets: COMRESETs through PxSCTL and HBA resets.
    pub resets: u64,
    /// SDB FISes that reported several held queued completions, and how many they reported.
    pub aggregated_sdbs: u64,
    pub aggregated_completions: u64,
}
