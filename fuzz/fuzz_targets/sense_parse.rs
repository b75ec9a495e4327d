//! The SG_IO sense parser on any bytes: no panic, and what it reports is consistent with the
//! bytes (response code, sense key, the ATA registers of the format found).
#![no_main]

use libfuzzer_sys::fuzz_target;
use satavm::ata::passthrough::sense::Sense;

fuzz_target!(|data: &[u8]| {
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
    assert!(s.key <= 0xf);
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    if let Some(r) = s.ata {
        assert!(r.lba < 1 << 48, "LBA is 48 bits");
        if matches!(code, Some(0x72 | 0x73)) {
            assert_eq!(s.key, at(1) & 0xf);
            assert!(!r.count_upper_lost && !r.lba_upper_lost);
            if !r.extend {
                assert!(
                    r.count <= 0xff && r.lba <= 0xff_ffff,
                    "no exp bytes without EXTEND"
                );
            }
        } else {
            assert_eq!(s.key, at(2) & 0xf);
            assert_eq!((r.status, r.error, r.device), (at(4), at(3), at(5)));
            assert!(
                r.count <= 0xff && r.lba <= 0xff_ffff,
                "fixed format has 24 LBA bits"
            );
            // lba_near never moves the LBA outside 48 bits and keeps its low 24 bits.
            let near = r.lba_near(u64::from(at(0)) << 40, u64::from(at(1)) << 24);
            assert_eq!(near & 0xff_ffff, r.lba & 0xff_ffff);
        }
    }
});
