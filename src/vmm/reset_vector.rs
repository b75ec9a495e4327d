//! The real-mode reset vector (physical 0xffff0, where a PC's BIOS starts): satavm has no BIOS,
//! so a guest that jumps there to reboot finds a stub that writes the ACPI reset register.
//!
//! Linux does jump there: on a hardware-reduced ACPI platform (`reboot_init()` in
//! arch/x86/kernel/reboot.c) it reboots through EFI, and without EFI runtime services it falls
//! back to BOOT_BIOS, `machine_real_restart()`: real mode, `ljmp $0xf000, $0xfff0`. Without
//! this stub the vCPU would run zeroed memory forever. `reboot=bios` lands here too.

use super::acpi::registers::{RESET_PORT, RESET_VALUE};

/// Physical address of the reset vector (segment 0xf000, offset 0xfff0).
pub const RESET_VECTOR: u64 = 0xf_fff0;

/// The stub, 16-bit code: `mov al, RESET_VALUE; mov dx, RESET_PORT; out dx, al; cli; hlt;
/// jmp back to hlt` (should the write not end the VM, the vCPU stays halted with interrupts
/// off, which satavm reports as a halt).
pub fn stub() -> [u8; 10] {
    let [port_lo, port_hi] = RESET_PORT.to_le_bytes();
    [
        0xb0,
        RESET_VALUE, // mov al, imm8
        0xba,
        port_lo,
        port_hi, // mov dx, imm16
        0xee,    // out dx, al
        0xfa,    // cli
        0xf4,    // hlt
        0xeb,
        0xfd, // jmp -3 (to the hlt)
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_writes_the_reset_value_to_the_reset_register_and_fits_below_1_mib() {
        let s = stub();
        assert_eq!(&s[..2], &[0xb0, RESET_VALUE]);
        assert_eq!(u16::from_le_bytes([s[3], s[4]]), RESET_PORT);
        assert_eq!(s[5], 0xee, "out dx, al");
        // The jmp lands on the hlt: its target is the next instruction's offset - 3.
        assert_eq!(s[7], 0xf4);
        assert_eq!(s.len() as i64 + i64::from(s[9] as i8), 7);
        assert!(RESET_VECTOR + s.len() as u64 <= 0x10_0000);
    }
}
