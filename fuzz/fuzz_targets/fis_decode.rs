//! `Fis::decode` on any bytes, then the encode round trip; see
//! `satavm_fuzz::targets::fis_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| satavm_fuzz::targets::fis_decode(data));
