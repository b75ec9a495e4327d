//! Shared code of the satavm fuzz targets: the `ahci_mmio` input format ([`program`]) and the
//! machine that runs it with its invariants ([`harness`]); the bodies of every target
//! ([`targets`]). The seed generator
//! (`examples/gen_seeds.rs`) writes seeds in the same format.

mod checked;
pub mod harness;
mod pool;
pub mod program;
pub mod targets;
