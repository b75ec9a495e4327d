//! The hardware-reduced ACPI platform's fixed registers that satavm implements: the sleep
//! control and sleep status registers (ACPI 6.5 §4.8.3.7, §4.8.3.8) and the reset register
//! (§4.8.3.6), one byte each in port I/O space. The FADT points at them and the DSDT's `\_S5`
//! names the sleep type that means "soft off". This device only decodes what the guest wrote
//! and reports it ([`PowerRequest`]); the VMM decides what happens (the bus raises the exit).

/// Sleep control register (FADT SLEEP_CONTROL_REG), 8 bits.
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// Sleep status register (FADT SLEEP_STATUS_REG), 8 bits.
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// Reset register (FADT RESET_REG), 8 bits.
pub const RESET_PORT: u16 = 0x602;
/// First port of the block and how many ports it has (for the DSDT's resource claim).
pub const FIRST_PORT: u16 = SLEEP_CONTROL_PORT;
pub const PORT_COUNT: u16 = 3;

/// The value the guest writes to the reset register (FADT RESET_VALUE).
pub const RESET_VALUE: u8 = 0x01;
/// SLP_TYP for S5 (soft off): the first element of the DSDT's `\_S5` package.
pub const S5_SLEEP_TYPE: u8 = 5;

/// Sleep control register fields (ACPI 6.5 table 4.21): SLP_TYP in bits 2-4, SLP_EN bit 5.
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111;
const SLP_EN: u8 = 1 << 5;

/// What a register write asks of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    /// SLP_EN with the S5 sleep type: turn the machine off.
    PowerOff,
    /// RESET_VALUE written to the reset register: reset the machine.
    Reset,
}

/// Whether `port` is one of these registers.
pub fn claims(port: u16) -> bool {
    (FIRST_PORT..FIRST_PORT + PORT_COUNT).contains(&port)
}

/// A read: the sleep status register reads 0 (WAK_STS clear: the machine never wakes from a
/// sleep state, it only powers off); the control and reset registers are write-only and
/// read 0 as well.
pub fn read(_port: u16) -> u8 {
    0
}

/// A write of `value` to `port`: the request it makes, if any. A sleep type other than S5
/// (satavm's DSDT offers no other) and writes to the sleep status register (the guest
/// clearing WAK_STS before it sleeps) ask nothing.
pub fn write(port: u16, value: u8) -> Option<PowerRequest> {
    match port {
        SLEEP_CONTROL_PORT => {
            let sleep_type = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
            if value & SLP_EN != 0 && sleep_type == S5_SLEEP_TYPE {
                log::info!("ACPI: sleep control register: S5, power off");
                Some(PowerRequest::PowerOff)
            } else {
                if value & SLP_EN != 0 {
                    log::warn!("ACPI: guest asked for sleep type {sleep_type}, which satavm does not offer; ignored");
                }
                None
            }
        }
        RESET_PORT if value == RESET_VALUE => {
            log::info!("ACPI: reset register: reset");
            Some(PowerRequest::Reset)
        }
        RESET_PORT => {
            log::warn!("ACPI: reset register written with {value:#x}, not RESET_VALUE {RESET_VALUE:#x}; ignored");
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slp_en_with_the_s5_type_powers_off() {
        // What Linux's acpi_hw_extended_sleep() writes for S5: (SLP_TYP << 2) | SLP_EN.
        let value = (S5_SLEEP_TYPE << 2) | (1 << 5);
        assert_eq!(value, 0x34);
        assert_eq!(
            write(SLEEP_CONTROL_PORT, value),
            Some(PowerRequest::PowerOff)
        );
    }

    #[test]
    fn other_sleep_writes_ask_nothing() {
        // The S5 type without SLP_EN, SLP_EN with another type, and the WAK_STS clear that
        // precedes every sleep.
        assert_eq!(write(SLEEP_CONTROL_PORT, S5_SLEEP_TYPE << 2), None);
        assert_eq!(write(SLEEP_CONTROL_PORT, (3 << 2) | (1 << 5)), None);
        assert_eq!(write(SLEEP_STATUS_PORT, 0x80), None);
        assert_eq!(read(SLEEP_STATUS_PORT), 0, "WAK_STS never set");
    }

    #[test]
    fn the_reset_value_resets_and_nothing_else_does() {
        assert_eq!(write(RESET_PORT, RESET_VALUE), Some(PowerRequest::Reset));
        assert_eq!(write(RESET_PORT, 0x06), None);
        assert_eq!(write(SLEEP_CONTROL_PORT, RESET_VALUE), None);
    }

    #[test]
    fn the_block_is_three_ports() {
        assert!(claims(SLEEP_CONTROL_PORT) && claims(SLEEP_STATUS_PORT) && claims(RESET_PORT));
        assert!(!claims(FIRST_PORT - 1) && !claims(FIRST_PORT + PORT_COUNT));
    }
}
