//! Shared code of the satavm fuzz targets: the `ahci_mmio` input format ([`program`]) and the
//! machine that runs it with its invariants ([`harness`]). The seed generator
//! (`examples/gen_seeds.rs`) writes seeds in the same format.

pub mod harness;
pub mod program;
