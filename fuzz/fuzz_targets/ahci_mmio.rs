//! A hostile guest against the AHCI function and the emulated drive: see
//! `satavm_fuzz::harness` for the invariants and `satavm_fuzz::program` for the input format.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| satavm_fuzz::harness::run(data));
