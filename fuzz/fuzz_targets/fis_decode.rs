//! `Fis::decode` on any bytes, then the encode round trip: `decode(encode(f)) == f`, and
//! `encode(decode(b))` is `b` with the bits the FIS does not carry (reserved bits, the bytes
//! after a fixed-size FIS) cleared, per SATA 3.x 10.5.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satavm::sata::fis::fis_type;
use satavm::sata::Fis;

/// The bits of each byte that FIS type `t` carries (a Data FIS: its header; the payload is
/// carried whole).
fn carried(t: u8) -> &'static [u8] {
    const F: u8 = 0xff;
    match t {
        fis_type::REGISTER_H2D => &[
            F, 0x8f, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,
        ],
        fis_type::REGISTER_D2H => &[
            F, 0x4f, F, F, F, F, F, F, F, F, F, 0, F, F, 0, 0, 0, 0, 0, 0,
        ],
        fis_type::PIO_SETUP => &[
            F, 0x6f, F, F, F, F, F, F, F, F, F, 0, F, F, 0, F, F, F, 0, 0,
        ],
        fis_type::DMA_SETUP => &[
            F, 0xef, 0, 0, F, F, F, F, F, F, F, F, 0, 0, 0, 0, F, F, F, F, F, F, F, F, 0, 0, 0, 0,
        ],
        fis_type::SET_DEVICE_BITS => &[F, 0xcf, 0x77, F, F, F, F, F],
        fis_type::BIST_ACTIVATE => &[F, 0x0f, F, 0, F, F, F, F, F, F, F, F],
        fis_type::DATA => &[F, 0x0f, 0, 0],
        _ => &[],
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(fis) = Fis::decode(data) else {
        return;
    };
    let bytes = fis.encode();
    assert_eq!(
        Fis::decode(&bytes).as_ref(),
        Ok(&fis),
        "decode(encode(f)) == f"
    );
    let mask = carried(data[0]);
    assert_eq!(Fis::encoded_len(data[0]), Some(mask.len()));
    let mut want: Vec<u8> = data.iter().zip(mask).map(|(b, m)| b & m).collect();
    if let Fis::Data(_) = fis {
        want.extend_from_slice(&data[mask.len()..]);
    }
    assert_eq!(
        bytes, want,
        "encode(decode(b)) is b without the bits the FIS does not carry"
    );
});
