//! The Power Management feature set of the emulated drive (ACS-3 4.15): the power states and
//! the commands that move between them.
//!
//! - PM0 Active: after media access (any read, write, flush, verify, TRIM or self-test step).
//! - PM1 Idle: IDLE / IDLE IMMEDIATE. The next media access makes the drive active again.
//! - PM2 Standby: STANDBY / STANDBY IMMEDIATE, and where a reset leaves a sleeping drive
//!   (ACS-3 figure "Power management state diagram", PM3:PM2). Media access spins it up.
//! - PM3 Sleep: SLEEP. Only a reset — COMRESET or a software reset (SRST) — wakes it (ACS-3
//!   7.51 SLEEP: "the device shall only respond to a hardware or software reset"). A command
//!   sent to a sleeping drive gets no answer at all: it stays issued (PxCI set), as with a
//!   real drive, until the host gives up and resets the link. Linux never gets there: libata
//!   marks a device it put to sleep (`ATA_DFLAG_SLEEPING`) and resets the link ("waking up
//!   from sleep") before the next command.
//!
//! CHECK POWER MODE (ACS-3 7.3) answers Count FFh in Active or Idle and 00h in Standby (ACS-3
//! also allows 80h for Idle; FFh is what a drive that does not tell them apart answers). The
//! standby timer of IDLE and STANDBY (their Count) is accepted and not run: without it the
//! drive never changes state on its own, which ACS-3 permits (IDENTIFY word 49 bit 13 clear:
//! vendor-specific timer values).

/// A power state (ACS-3 4.15.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PowerState {
    /// PM0: Active.
    #[default]
    Active,
    /// PM1: Idle.
    Idle,
    /// PM2: Standby.
    Standby,
    /// PM3: Sleep.
    Sleep,
}

impl PowerState {
    /// The Count register CHECK POWER MODE returns (ACS-3 7.3.5).
    pub fn check_power_mode_count(self) -> u8 {
        match self {
            PowerState::Active | PowerState::Idle => 0xff,
            PowerState::Standby | PowerState::Sleep => 0x00,
        }
    }

    /// The state after a command that touches the medium: Active (the medium spins up from
    /// Standby). A sleeping drive never gets this far.
    pub fn after_media_access(self) -> Self {
        match self {
            PowerState::Sleep => PowerState::Sleep,
            _ => PowerState::Active,
        }
    }

    /// The state after COMRESET or a software reset: a sleeping drive wakes into Standby
    /// (PM3:PM2); the others keep their state.
    pub fn after_reset(self) -> Self {
        match self {
            PowerState::Sleep => PowerState::Standby,
            s => s,
        }
    }

    /// A name for logs and tests.
    pub fn name(self) -> &'static str {
        match self {
            PowerState::Active => "active",
            PowerState::Idle => "idle",
            PowerState::Standby => "standby",
            PowerState::Sleep => "sleep",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_and_check_power_mode_values() {
        use PowerState::*;
        assert_eq!(PowerState::default(), Active);
        assert_eq!(
            [Active, Idle, Standby, Sleep].map(PowerState::check_power_mode_count),
            [0xff, 0xff, 0x00, 0x00]
        );
        assert_eq!(Standby.after_media_access(), Active);
        assert_eq!(Idle.after_media_access(), Active);
        assert_eq!(Sleep.after_media_access(), Sleep);
        assert_eq!(Sleep.after_reset(), Standby);
        assert_eq!(Idle.after_reset(), Idle);
    }
}
