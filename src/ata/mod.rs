//! ATA register layer: the device (ACS-3).
//!
//! [`registers`] names the taskfile bits, [`command`] maps each opcode to its protocol; the
//! drives implement [`crate::sata::SataDevice`] on top of them.

pub mod atapi;
pub mod command;
pub mod dco;
pub mod emulated;
pub mod identify;
pub mod inject;
pub mod log;
pub mod names;
pub mod passthrough;
pub mod registers;
pub mod smart;
pub mod stats_log;
pub mod taskfile;

pub use emulated::{DriveConfig, DriveError, EmulatedDrive};
pub use passthrough::{PassthroughConfig, PassthroughDrive, PassthroughError};
