//! `Fis::decode` on any bytes, then the encode round trip: a decoded FIS encodes to bytes that
//! decode to the same FIS, and those bytes agree with the input on every field the FIS keeps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satavm::sata::Fis;

fuzz_target!(|data: &[u8]| {
    let Ok(fis) = Fis::decode(data) else {
        return;
    };
    let bytes = fis.encode();
    assert_eq!(bytes[0], data[0], "FIS type");
    assert_eq!(
        Fis::decode(&bytes).as_ref(),
        Ok(&fis),
        "decode(encode(f)) == f"
    );
    // The encoding is no longer than the input (a Data FIS is exactly as long), and encoding
    // again gives the same bytes.
    assert!(bytes.len() <= data.len());
    if let Fis::Data(_) = fis {
        assert_eq!(bytes, data, "a Data FIS is its header and payload");
    }
    assert_eq!(Fis::decode(&bytes).map(|f| f.encode()), Ok(bytes.clone()));
    assert_eq!(
        Fis::encoded_len(data[0]).map(|n| n <= bytes.len()),
        Some(true)
    );
});
