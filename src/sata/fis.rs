//! Frame Information Structures (SATA 3.x section 10.5), encoded and decoded in one place.
//!
//! Each FIS is a typed value; [`Fis::encode`] produces its bytes as they appear on the link and
//! in the AHCI received-FIS area, [`Fis::decode`] reads them back (for example the CFIS of a
//! command table).

use thiserror::Error;

/// FIS type codes (SATA 3.x table 63).
pub mod fis_type {
    pub const REGISTER_H2D: u8 = 0x27;
    pub const REGISTER_D2H: u8 = 0x34;
    pub const DMA_ACTIVATE: u8 = 0x39;
    pub const DMA_SETUP: u8 = 0x41;
    pub const DATA: u8 = 0x46;
    pub const BIST_ACTIVATE: u8 = 0x58;
    pub const PIO_SETUP: u8 = 0x5F;
    pub const SET_DEVICE_BITS: u8 = 0xA1;
}

/// Why bytes are not a FIS.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FisError {
    #[error("empty FIS")]
    Empty,
    #[error("unknown FIS type {0:#04x}")]
    UnknownType(u8),
    #[error("FIS type {fis_type:#04x} needs {needed} bytes, got {got}")]
    TooShort {
        fis_type: u8,
        needed: usize,
        got: usize,
    },
}

/// Register Host to Device FIS (10.5.5): a command (C=1) or a Device Control update (C=0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterH2d {
    pub pm_port: u8,
    /// C: the FIS carries a new Command register value.
    pub c: bool,
    pub command: u8,
    /// Features 15:0 (15:8 is "features (exp)").
    pub features: u16,
    /// LBA 47:0 (LBA low/mid/high and their exp bytes).
    pub lba: u64,
    pub device: u8,
    /// Count 15:0 (NCQ: the tag is in bits 7:3).
    pub count: u16,
    pub icc: u8,
    /// Device Control register (SRST is bit 2).
    pub control: u8,
    pub auxiliary: u32,
}

/// Register Device to Host FIS (10.5.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterD2h {
    pub pm_port: u8,
    /// I: raise an interrupt (AHCI PxIS.DHRS).
    pub interrupt: bool,
    pub status: u8,
    pub error: u8,
    pub lba: u64,
    pub device: u8,
    pub count: u16,
}

/// PIO Setup FIS (10.5.11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PioSetup {
    pub pm_port: u8,
    pub interrupt: bool,
    /// D: data flows device to host (a PIO data-in command).
    pub device_to_host: bool,
    pub status: u8,
    pub error: u8,
    pub lba: u64,
    pub device: u8,
    pub count: u16,
    /// E_Status: the status the device has at the end of the data FIS that follows.
    pub e_status: u8,
    /// Bytes in the Data FIS that follows.
    pub transfer_count: u16,
}

/// DMA Setup FIS (10.5.9), used by first-party DMA (NCQ).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmaSetup {
    pub pm_port: u8,
    pub interrupt: bool,
    pub device_to_host: bool,
    /// A: auto-activate.
    pub auto_activate: bool,
    /// DMA buffer identifier (for NCQ the tag in bits 4:0).
    pub buffer_id: u64,
    pub buffer_offset: u32,
    pub transfer_count: u32,
}

/// Set Device Bits FIS (10.5.7): NCQ completions and asynchronous notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetDeviceBits {
    pub pm_port: u8,
    pub interrupt: bool,
    /// N: asynchronous notification.
    pub notification: bool,
    /// Status bits 6:4 and 2:0 (bits 7 and 3, BSY and DRQ, are not carried and stay as they were).
    pub status: u8,
    pub error: u8,
    /// SActive: tags whose commands completed successfully.
    pub sactive: u32,
}

/// Data FIS (10.5.12): payload words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataFis {
    pub pm_port: u8,
    pub payload: Vec<u8>,
}

/// BIST Activate FIS (10.5.10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bist {
    pub pm_port: u8,
    pub pattern: u8,
    pub data: [u32; 2],
}

/// Any FIS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fis {
    RegisterH2d(RegisterH2d),
    RegisterD2h(RegisterD2h),
    PioSetup(PioSetup),
    DmaSetup(DmaSetup),
    SetDeviceBits(SetDeviceBits),
    Data(DataFis),
    Bist(Bist),
}

/// Status bits that a Set Device Bits FIS carries (SATA 3.x 10.5.7: Status-Hi 6:4, Status-Lo 2:0).
pub const SDB_STATUS_MASK: u8 = 0x77;

/// Bits of the Status field a device FIS carries (the ATA Status register, ACS-3 6.2; SATA 3.x
/// 10.5.5): what the port needs to tell a finished command from a failed one.
pub mod status {
    /// Error: the command failed (the Error field says why).
    pub const ERR: u8 = 0x01;
    /// Data request.
    pub const DRQ: u8 = 0x08;
    /// Busy.
    pub const BSY: u8 = 0x80;
}

/// True for the first-party DMA queued commands (SATA 3.x 13.6: READ/WRITE FPDMA QUEUED, NCQ
/// NON-DATA, SEND/RECEIVE FPDMA QUEUED): the commands a port issues with their PxSACT bit.
pub fn is_fpdma_queued(command: u8) -> bool {
    matches!(command, 0x60..=0x65) && command != 0x62
}

fn put_lba(b: &mut [u8], lba: u64) {
    b[4] = lba as u8;
    b[5] = (lba >> 8) as u8;
    b[6] = (lba >> 16) as u8;
    b[8] = (lba >> 24) as u8;
    b[9] = (lba >> 32) as u8;
    b[10] = (lba >> 40) as u8;
}

fn get_lba(b: &[u8]) -> u64 {
    u64::from(b[4])
        | u64::from(b[5]) << 8
        | u64::from(b[6]) << 16
        | u64::from(b[8]) << 24
        | u64::from(b[9]) << 32
        | u64::from(b[10]) << 40
}

fn flag(b: u8, bit: u8) -> bool {
    b & (1 << bit) != 0
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Fis {
    /// The FIS type byte.
    pub fn fis_type(&self) -> u8 {
        match self {
            Fis::RegisterH2d(_) => fis_type::REGISTER_H2D,
            Fis::RegisterD2h(_) => fis_type::REGISTER_D2H,
            Fis::PioSetup(_) => fis_type::PIO_SETUP,
            Fis::DmaSetup(_) => fis_type::DMA_SETUP,
            Fis::SetDeviceBits(_) => fis_type::SET_DEVICE_BITS,
            Fis::Data(_) => fis_type::DATA,
            Fis::Bist(_) => fis_type::BIST_ACTIVATE,
        }
    }

    /// Length in bytes of a FIS of type `t` without payload, or None for an unknown type.
    pub fn encoded_len(t: u8) -> Option<usize> {
        Some(match t {
            fis_type::REGISTER_H2D | fis_type::REGISTER_D2H | fis_type::PIO_SETUP => 20,
            fis_type::DMA_SETUP => 28,
            fis_type::SET_DEVICE_BITS => 8,
            fis_type::BIST_ACTIVATE => 12,
            fis_type::DATA => 4,
            _ => return None,
        })
    }

    /// The FIS as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let t = self.fis_type();
        let mut b = vec![0u8; Self::encoded_len(t).unwrap_or(4)];
        b[0] = t;
        match self {
            Fis::RegisterH2d(f) => {
                b[1] = (f.pm_port & 0xf) | (u8::from(f.c) << 7);
                b[2] = f.command;
                b[3] = f.features as u8;
                put_lba(&mut b, f.lba);
                b[7] = f.device;
                b[11] = (f.features >> 8) as u8;
                b[12..14].copy_from_slice(&f.count.to_le_bytes());
                b[14] = f.icc;
                b[15] = f.control;
                b[16..20].copy_from_slice(&f.auxiliary.to_le_bytes());
            }
            Fis::RegisterD2h(f) => {
                b[1] = (f.pm_port & 0xf) | (u8::from(f.interrupt) << 6);
                b[2] = f.status;
                b[3] = f.error;
                put_lba(&mut b, f.lba);
                b[7] = f.device;
                b[12..14].copy_from_slice(&f.count.to_le_bytes());
            }
            Fis::PioSetup(f) => {
                b[1] = (f.pm_port & 0xf)
                    | (u8::from(f.device_to_host) << 5)
                    | (u8::from(f.interrupt) << 6);
                b[2] = f.status;
                b[3] = f.error;
                put_lba(&mut b, f.lba);
                b[7] = f.device;
                b[12..14].copy_from_slice(&f.count.to_le_bytes());
                b[15] = f.e_status;
                b[16..18].copy_from_slice(&f.transfer_count.to_le_bytes());
            }
            Fis::DmaSetup(f) => {
                b[1] = (f.pm_port & 0xf)
                    | (u8::from(f.device_to_host) << 5)
                    | (u8::from(f.interrupt) << 6)
                    | (u8::from(f.auto_activate) << 7);
                b[4..12].copy_from_slice(&f.buffer_id.to_le_bytes());
                b[16..20].copy_from_slice(&f.buffer_offset.to_le_bytes());
                b[20..24].copy_from_slice(&f.transfer_count.to_le_bytes());
            }
            Fis::SetDeviceBits(f) => {
                b[1] = (f.pm_port & 0xf)
                    | (u8::from(f.interrupt) << 6)
                    | (u8::from(f.notification) << 7);
                b[2] = f.status & SDB_STATUS_MASK;
                b[3] = f.error;
                b[4..8].copy_from_slice(&f.sactive.to_le_bytes());
            }
            Fis::Data(f) => {
                b[1] = f.pm_port & 0xf;
                b.extend_from_slice(&f.payload);
            }
            Fis::Bist(f) => {
                b[1] = f.pm_port & 0xf;
                b[2] = f.pattern;
                b[4..8].copy_from_slice(&f.data[0].to_le_bytes());
                b[8..12].copy_from_slice(&f.data[1].to_le_bytes());
            }
        }
        b
    }

    /// Read a FIS from `b` (trailing bytes beyond the FIS are ignored, except for a Data FIS,
    /// whose payload is everything after its header).
    pub fn decode(b: &[u8]) -> Result<Fis, FisError> {
        let t = *b.first().ok_or(FisError::Empty)?;
        let needed = Self::encoded_len(t).ok_or(FisError::UnknownType(t))?;
        if b.len() < needed {
            return Err(FisError::TooShort {
                fis_type: t,
                needed,
                got: b.len(),
            });
        }
        let pm_port = b[1] & 0xf;
        Ok(match t {
            fis_type::REGISTER_H2D => Fis::RegisterH2d(RegisterH2d {
                pm_port,
                c: flag(b[1], 7),
                command: b[2],
                features: u16::from(b[3]) | u16::from(b[11]) << 8,
                lba: get_lba(b),
                device: b[7],
                count: le16(b, 12),
                icc: b[14],
                control: b[15],
                auxiliary: le32(b, 16),
            }),
            fis_type::REGISTER_D2H => Fis::RegisterD2h(RegisterD2h {
                pm_port,
                interrupt: flag(b[1], 6),
                status: b[2],
                error: b[3],
                lba: get_lba(b),
                device: b[7],
                count: le16(b, 12),
            }),
            fis_type::PIO_SETUP => Fis::PioSetup(PioSetup {
                pm_port,
                interrupt: flag(b[1], 6),
                device_to_host: flag(b[1], 5),
                status: b[2],
                error: b[3],
                lba: get_lba(b),
                device: b[7],
                count: le16(b, 12),
                e_status: b[15],
                transfer_count: le16(b, 16),
            }),
            fis_type::DMA_SETUP => Fis::DmaSetup(DmaSetup {
                pm_port,
                interrupt: flag(b[1], 6),
                device_to_host: flag(b[1], 5),
                auto_activate: flag(b[1], 7),
                buffer_id: u64::from(le32(b, 4)) | u64::from(le32(b, 8)) << 32,
                buffer_offset: le32(b, 16),
                transfer_count: le32(b, 20),
            }),
            fis_type::SET_DEVICE_BITS => Fis::SetDeviceBits(SetDeviceBits {
                pm_port,
                interrupt: flag(b[1], 6),
                notification: flag(b[1], 7),
                status: b[2] & SDB_STATUS_MASK,
                error: b[3],
                sactive: le32(b, 4),
            }),
            fis_type::DATA => Fis::Data(DataFis {
                pm_port,
                payload: b[4..].to_vec(),
            }),
            fis_type::BIST_ACTIVATE => Fis::Bist(Bist {
                pm_port,
                pattern: b[2],
                data: [le32(b, 4), le32(b, 8)],
            }),
            other => return Err(FisError::UnknownType(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_h2d_layout_matches_sata_spec() {
        // READ FPDMA QUEUED, tag 5, 8 sectors at LBA 0x0102_0304_0506, FUA (device bit 7).
        let f = RegisterH2d {
            c: true,
            command: 0x60,
            features: 8,
            lba: 0x0102_0304_0506,
            device: 0xc0,
            count: 5 << 3,
            ..Default::default()
        };
        let b = Fis::RegisterH2d(f).encode();
        assert_eq!(
            b,
            [
                0x27, 0x80, 0x60, 8, 0x06, 0x05, 0x04, 0xc0, 0x03, 0x02, 0x01, 0, 0x28, 0, 0, 0, 0,
                0, 0, 0
            ]
        );
        assert_eq!(Fis::decode(&b), Ok(Fis::RegisterH2d(f)));
    }

    #[test]
    fn every_fis_round_trips() {
        let fises = [
            Fis::RegisterD2h(RegisterD2h {
                interrupt: true,
                status: 0x51,
                error: 0x10,
                lba: 0xabcdef,
                count: 1,
                ..Default::default()
            }),
            Fis::PioSetup(PioSetup {
                interrupt: true,
                device_to_host: true,
                status: 0x58,
                e_status: 0x50,
                transfer_count: 512,
                ..Default::default()
            }),
            Fis::DmaSetup(DmaSetup {
                auto_activate: true,
                device_to_host: true,
                buffer_id: 7,
                transfer_count: 4096,
                ..Default::default()
            }),
            Fis::SetDeviceBits(SetDeviceBits {
                interrupt: true,
                status: 0x41,
                error: 0x04,
                sactive: 0x8000_0001,
                ..Default::default()
            }),
            Fis::Data(DataFis {
                pm_port: 0,
                payload: vec![1, 2, 3, 4],
            }),
            Fis::Bist(Bist {
                pm_port: 0,
                pattern: 0x10,
                data: [1, 2],
            }),
        ];
        for f in fises {
            assert_eq!(Fis::decode(&f.encode()), Ok(f.clone()), "{f:?}");
        }
    }

    #[test]
    fn set_device_bits_never_carries_bsy_or_drq() {
        let b = Fis::SetDeviceBits(SetDeviceBits {
            status: 0xff,
            ..Default::default()
        })
        .encode();
        assert_eq!(b[2], 0x77);
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(Fis::decode(&[]), Err(FisError::Empty));
        assert_eq!(Fis::decode(&[0x99; 20]), Err(FisError::UnknownType(0x99)));
        assert_eq!(
            Fis::decode(&[0x27, 0, 0]),
            Err(FisError::TooShort {
                fis_type: 0x27,
                needed: 20,
                got: 3
            })
        );
    }
}
