//! The bodies of the fuzz targets, shared by `fuzz_targets/*.rs` (libFuzzer) and
//! `examples/replay.rs` (the seed corpus and crash files without libFuzzer, as the test
//! command runs them). Each panics on a violated invariant.

use satavm::ata::passthrough::sense::Sense;
use satavm::sata::fis::fis_type;
use satavm::sata::Fis;

/// A target by name: `ahci_mmio`, `sense_parse`, `fis_decode`.
pub fn by_name(name: &str) -> Option<fn(&[u8])> {
    match name {
        "ahci_mmio" => Some(crate::harness::run),
        "sense_parse" => Some(sense_parse),
        "fis_decode" => Some(fis_decode),
        _ => None,
    }
}

/// Every target's name.
pub const NAMES: [&str; 3] = ["ahci_mmio", "sense_parse", "fis_decode"];

/// The SG_IO sense parser on any bytes: no panic, and what it reports is what the bytes say
/// in the layout they are in:
/// - descriptor format (72h/73h): key in byte 1, ASC/ASCQ in bytes 2-3, registers from the
///   ATA Status Return descriptor (SAT-3 12.2.2.7), exp bytes only with EXTEND;
/// - fixed format (70h/71h), key in byte 2, ASC/ASCQ in bytes 12-13, registers in one of two
///   layouts: SAT-3's (12.2.2.6: error, status, device, count in bytes 3-6, flags in 8, LBA
///   23:0 in 9-11) when VALID is set or byte 4 (status) is nonzero; else Linux's legacy
///   layout (libata before SAT fixed-format support: error, status, device, count in bytes
///   8-11, flags in 16, LBA 7:0, 15:8, 23:16 in 17-19) when byte 9 (its status) is nonzero,
///   which the parser reads on purpose (Linux 6.1 answers IDENTIFY aborts that way), with the
///   LBA bytes the sg driver cut off marked unknown.
pub fn sense_parse(data: &[u8]) {
    let parsed = Sense::parse(data);
    let code = data.first().map(|b| b & 0x7f);
    let Some(s) = parsed else {
        assert!(
            !matches!(code, Some(0x70..=0x73)),
            "sense data not recognised"
        );
        return;
    };
    assert!(
        matches!(code, Some(0x70..=0x73)),
        "parsed a non-sense buffer"
    );
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let descriptor = matches!(code, Some(0x72 | 0x73));
    if descriptor {
        assert_eq!((s.key, s.asc, s.ascq), (at(1) & 0xf, at(2), at(3)));
    } else {
        assert_eq!((s.key, s.asc, s.ascq), (at(2) & 0xf, at(12), at(13)));
    }
    let Some(r) = s.ata else {
        if !descriptor && data.len() >= 12 {
            assert!(
                at(0) & 0x80 == 0 && at(4) == 0 && at(9) == 0,
                "fixed sense with registers not read"
            );
        }
        return;
    };
    assert!(r.lba < 1 << 48, "LBA is 48 bits");
    if descriptor {
        assert!(!r.count_upper_lost && r.lba_known_bits.is_none());
        if !r.extend {
            assert!(
                r.count <= 0xff && r.lba <= 0xff_ffff,
                "no exp bytes without EXTEND"
            );
        }
        return;
    }
    assert!(data.len() >= 12, "registers from a short fixed sense");
    assert!(
        r.count <= 0xff && r.lba <= 0xff_ffff,
        "fixed format has 8 count and 24 LBA bits"
    );
    let sat = at(0) & 0x80 != 0 || at(4) != 0;
    let (regs, flags, lba) = if sat {
        ([at(3), at(4), at(5), at(6)], at(8), [at(9), at(10), at(11)])
    } else {
        assert_ne!(at(9), 0, "legacy layout only with a status byte");
        (
            [at(8), at(9), at(10), at(11)],
            at(16),
            [at(19), at(18), at(17)],
        )
    };
    assert_eq!(
        [r.error, r.status, r.device, r.count as u8],
        regs,
        "error, status, device, count"
    );
    assert_eq!(
        r.lba,
        u64::from(lba[0]) << 16 | u64::from(lba[1]) << 8 | u64::from(lba[2])
    );
    assert_eq!(r.extend, flags & 0x80 != 0);
    assert_eq!(r.count_upper_lost, flags & 0x40 != 0);
    let cut = (!sat && data.len() < 20).then(|| 8 * data.len().saturating_sub(17) as u8);
    let want_known = cut.or((flags & 0x20 != 0).then_some(24));
    assert_eq!(r.lba_known_bits, want_known, "known LBA bits");
    // lba_near keeps the known low bits, stays within 48 bits, and picks an LBA inside the
    // failed command's range or keeps what was reported.
    let (start, blocks) = (u64::from(at(0)) << 40, u64::from(at(1)) << 24);
    let near = r.lba_near(start, blocks);
    let mask = r.lba_known_bits.map_or(u64::MAX, |b| (1u64 << b) - 1);
    assert_eq!(near & mask, r.lba & mask, "lba_near keeps the known bits");
    assert!(near < 1 << 48);
    assert!(
        near == r.lba || (start..start + blocks).contains(&near),
        "lba_near {near:#x} outside [{start:#x}, +{blocks:#x}) and not {:#x}",
        r.lba
    );
}

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

/// `Fis::decode` on any bytes, then the encode round trip: `decode(encode(f)) == f`, and
/// `encode(decode(b))` is `b` with the bits the FIS does not carry (reserved bits, the bytes
/// after a fixed-size FIS) cleared, per SATA 3.x 10.5.
pub fn fis_decode(data: &[u8]) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_legacy_fixed_sense_passes_the_oracle() {
        // An IDENTIFY abort as Linux 6.1 reports it (open.rs's test), 18 bytes: LBA 7:0 only.
        let legacy = [
            0x70, 0, 0x0b, 0, 0, 0, 0, 0x0a, 0x04, 0x51, 0xa0, 0x01, 0, 0, 0, 0, 0x00, 0x00,
        ];
        let r = Sense::parse(&legacy).unwrap().ata.unwrap();
        assert_eq!((r.status, r.error, r.lba_known_bits), (0x51, 0x04, Some(8)));
        sense_parse(&legacy);
        // The same with all three LBA bytes.
        let mut full = legacy.to_vec();
        full.extend_from_slice(&[0x34, 0x12]);
        full[17] = 0x56;
        sense_parse(&full);
        // SAT-3 layout with "LBA upper nonzero".
        let sat = [
            0xf0, 0, 0x03, 0x40, 0x51, 0x40, 0x01, 10, 0x20, 0x12, 0x34, 0x56, 0x11, 0x04, 0, 0, 0,
            0,
        ];
        sense_parse(&sat);
    }

    #[test]
    fn the_seed_corpus_passes_every_target() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for name in NAMES {
            let target = by_name(name).unwrap();
            let mut n = 0;
            for e in std::fs::read_dir(root.join(name)).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with("seed-") {
                    target(&std::fs::read(e.path()).unwrap());
                    n += 1;
                }
            }
            assert!(n > 0, "no seeds for {name}");
        }
    }
}
