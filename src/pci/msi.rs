//! MSI capability, 64-bit address, multi-message (PCI Local Bus 3.0 section 6.8.1).

use super::ConfigSpace;
use crate::irq::MsiMessage;

/// Capability ID of MSI.
pub const CAP_ID_MSI: u8 = 0x05;

/// Message Control bits.
mod control {
    pub const ENABLE: u16 = 1 << 0;
    pub const MMC_SHIFT: u16 = 1;
    pub const MME_SHIFT: u16 = 4;
    pub const ADDR64: u16 = 1 << 7;
}

/// An MSI capability installed in a [`ConfigSpace`]; the state lives in the config space bytes.
#[derive(Debug, Clone, Copy)]
pub struct MsiCapability {
    at: usize,
}

impl MsiCapability {
    /// Add an MSI capability that can request `2^log2_vectors` vectors (0 to 5).
    pub fn install(config: &mut ConfigSpace, log2_vectors: u8) -> Self {
        let ctl = control::ADDR64 | (u16::from(log2_vectors.min(5)) << control::MMC_SHIFT);
        let mut body = [0u8; 12];
        body[0..2].copy_from_slice(&ctl.to_le_bytes());
        let mut writable = [0u8; 12];
        writable[0] = 0x71; // enable + multiple message enable
        writable[2..6].copy_from_slice(&0xffff_fffcu32.to_le_bytes()); // address 31:2
        writable[6..10].copy_from_slice(&[0xff; 4]); // address 63:32
        writable[10..12].copy_from_slice(&[0xff; 2]); // data
        let at = config.add_capability(CAP_ID_MSI, &body, &writable);
        MsiCapability { at }
    }

    /// Offset of the capability in configuration space.
    pub fn offset(&self) -> usize {
        self.at
    }

    fn control(&self, config: &ConfigSpace) -> u16 {
        config.u16_at(self.at + 2)
    }

    /// MSI Enable.
    pub fn enabled(&self, config: &ConfigSpace) -> bool {
        self.control(config) & control::ENABLE != 0
    }

    /// Vectors the guest allocated (Multiple Message Enable), never more than capable.
    pub fn vectors(&self, config: &ConfigSpace) -> u32 {
        let ctl = self.control(config);
        let mmc = (ctl >> control::MMC_SHIFT) & 7;
        let mme = ((ctl >> control::MME_SHIFT) & 7).min(mmc);
        1 << mme
    }

    /// The message for `vector` (folded into the allocated count), or None when MSI is off.
    pub fn message(&self, config: &ConfigSpace, vector: u32) -> Option<MsiMessage> {
        if !self.enabled(config) {
            return None;
        }
        let n = self.vectors(config);
        let v = vector.min(n - 1);
        let address =
            u64::from(config.u32_at(self.at + 4)) | u64::from(config.u32_at(self.at + 8)) << 32;
        let data = u32::from(config.u16_at(self.at + 12));
        Some(MsiMessage {
            address,
            data: (data & !(n - 1)) | v,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_message_vectors_fold_into_data() {
        let mut c = ConfigSpace::new(0x8086, 0x2922, (1, 6, 1), 2);
        let msi = MsiCapability::install(&mut c, 3);
        let at = msi.offset();
        assert_eq!(c.u8_at(at), CAP_ID_MSI);
        assert!(!msi.enabled(&c), "MSI is off at reset");
        assert_eq!(msi.message(&c, 0), None);
        c.write(at + 4, &0xfee0_0000u32.to_le_bytes());
        c.write(at + 12, &0x4160u16.to_le_bytes());
        // Enable with 4 vectors (MME = 2).
        c.write(at + 2, &(1u16 | 2 << 4).to_le_bytes());
        assert_eq!(msi.vectors(&c), 4);
        assert_eq!(
            msi.message(&c, 2),
            Some(MsiMessage {
                address: 0xfee0_0000,
                data: 0x4162
            })
        );
        assert_eq!(msi.message(&c, 9).map(|m| m.data), Some(0x4163));
        // MMC is read-only.
        c.write(at + 2, &0xffffu16.to_le_bytes());
        assert_eq!((c.u16_at(at + 2) >> 1) & 7, 3);
        assert_eq!(msi.vectors(&c), 8);
    }
}
