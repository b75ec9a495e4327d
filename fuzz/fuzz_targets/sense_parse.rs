//! The SG_IO sense parser on any bytes: no panic, and what it reports is consistent with the
//! bytes in the layout they are in; see `satavm_fuzz::targets::sense_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| satavm_fuzz::targets::sense_parse(data));
