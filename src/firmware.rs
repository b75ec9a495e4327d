//! Firmware embedded in satavm: the bare-metal AHCI self-test (firmware/), built by build.rs.
//! `satavm` without `--kernel` boots it; see firmware/src/main.rs for what it checks.

/// The self-test firmware, a static ELF for the 64-bit entry (`vmm::boot::load_firmware`).
pub const SELFTEST_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/satavm-selftest.elf"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_firmware_is_a_static_x86_64_executable() {
        assert_eq!(&SELFTEST_ELF[..4], b"\x7fELF");
        assert_eq!(SELFTEST_ELF[4], 2, "ELFCLASS64");
        assert_eq!(
            u16::from_le_bytes([SELFTEST_ELF[16], SELFTEST_ELF[17]]),
            2,
            "ET_EXEC"
        );
        assert_eq!(
            u16::from_le_bytes([SELFTEST_ELF[18], SELFTEST_ELF[19]]),
            62,
            "EM_X86_64"
        );
        let entry = u64::from_le_bytes(SELFTEST_ELF[24..32].try_into().unwrap());
        assert_eq!(
            entry, 0x20_0000,
            "_start is placed at 2 MiB by firmware/link.ld"
        );
    }
}
