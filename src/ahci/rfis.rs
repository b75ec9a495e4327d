//! The received-FIS area a port posts the device's FISes to (AHCI 1.3.1 section 4.2.1).

use crate::mem::{GuestMemory, MemError};
use crate::sata::Fis;

/// Offsets within the 256-byte received-FIS structure (4.2.1, figure 4).
pub mod offset {
    /// DSFIS: DMA Setup FIS.
    pub const DSFIS: u64 = 0x00;
    /// PSFIS: PIO Setup FIS.
    pub const PSFIS: u64 = 0x20;
    /// RFIS: Register D2H FIS.
    pub const RFIS: u64 = 0x40;
    /// SDBFIS: Set Device Bits FIS.
    pub const SDBFIS: u64 = 0x58;
    /// UFIS: unknown FIS (up to 64 bytes).
    pub const UFIS: u64 = 0x60;
}

/// Size of the received-FIS structure.
pub const SIZE: u64 = 0x100;
/// Longest FIS the UFIS slot holds.
pub const UFIS_MAX: usize = 64;

/// Where `fis` goes in the received-FIS area, or None for FISes the area does not hold
/// (Data FISes carry payload, not status; a Register H2D never comes from a device).
pub fn slot_of(fis: &Fis) -> Option<u64> {
    Some(match fis {
        Fis::DmaSetup(_) => offset::DSFIS,
        Fis::PioSetup(_) => offset::PSFIS,
        Fis::RegisterD2h(_) => offset::RFIS,
        Fis::SetDeviceBits(_) => offset::SDBFIS,
        Fis::Bist(_) => offset::UFIS,
        Fis::Data(_) | Fis::RegisterH2d(_) => return None,
    })
}

/// Post `fis` into the received-FIS area at `fb` (the caller checks PxCMD.FRE).
pub fn post(mem: &dyn GuestMemory, fb: u64, fis: &Fis) -> Result<(), MemError> {
    let Some(off) = slot_of(fis) else {
        return Ok(());
    };
    let mut bytes = fis.encode();
    bytes.truncate(UFIS_MAX);
    let addr = fb.checked_add(off).ok_or(MemError::OutOfRange {
        addr: fb,
        len: bytes.len() as u64,
    })?;
    mem.write(addr, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecMemory;
    use crate::sata::{RegisterD2h, SetDeviceBits};

    #[test]
    fn fises_land_at_their_offsets() {
        let mem = VecMemory::new(0x1000);
        let d2h = Fis::RegisterD2h(RegisterD2h {
            status: 0x50,
            lba: 0x1234,
            ..Default::default()
        });
        post(&mem, 0x200, &d2h).unwrap();
        let mut b = [0u8; 20];
        mem.read(0x240, &mut b).unwrap();
        assert_eq!(Fis::decode(&b), Ok(d2h.clone()));
        let sdb = Fis::SetDeviceBits(SetDeviceBits {
            sactive: 0x5,
            ..Default::default()
        });
        post(&mem, 0x200, &sdb).unwrap();
        let mut b = [0u8; 8];
        mem.read(0x258, &mut b).unwrap();
        assert_eq!(Fis::decode(&b), Ok(sdb));
        assert!(post(&mem, 0xff0, &d2h).is_err());
        assert!(post(&mem, u64::MAX, &d2h).is_err());
    }
}
