//! Type 0 configuration space header (PCI Local Bus 3.0 section 6.1) with BAR sizing and a
//! capability list, as a register file with per-bit write masks.

/// Configuration space size (conventional PCI).
pub const CONFIG_SPACE_SIZE: usize = 256;

/// Header offsets (PCI 3.0 figure 6-1).
pub mod offset {
    pub const VENDOR_ID: usize = 0x00;
    pub const DEVICE_ID: usize = 0x02;
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const REVISION_ID: usize = 0x08;
    pub const CLASS_CODE: usize = 0x09;
    pub const HEADER_TYPE: usize = 0x0e;
    pub const BAR0: usize = 0x10;
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
    pub const CAPABILITIES_POINTER: usize = 0x34;
    pub const INTERRUPT_LINE: usize = 0x3c;
    pub const INTERRUPT_PIN: usize = 0x3d;
}

/// Command register bits.
pub mod command {
    pub const IO_SPACE: u16 = 1 << 0;
    pub const MEMORY_SPACE: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register: capabilities list present.
pub const STATUS_CAPABILITIES_LIST: u16 = 1 << 4;
/// Status register: INTx pending (read-only, maintained by the function).
pub const STATUS_INTERRUPT: u16 = 1 << 3;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit, non-prefetchable memory.
    Memory32,
}

#[derive(Debug, Clone, Copy)]
struct Bar {
    size: u64,
    kind: BarKind,
}

/// A function's 256-byte configuration space.
#[derive(Debug, Clone)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    /// Bits the guest may change.
    writable: [u8; CONFIG_SPACE_SIZE],
    /// Bits a write of 1 clears (status register error bits).
    write_one_clear: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<Bar>; 6],
    /// Where the next capability goes.
    next_capability: usize,
    last_capability: Option<usize>,
}

impl ConfigSpace {
    /// A type 0 header with the given identity; `class` is (base class, sub-class, prog-if).
    pub fn new(vendor: u16, device: u16, class: (u8, u8, u8), revision: u8) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SPACE_SIZE],
            writable: [0; CONFIG_SPACE_SIZE],
            write_one_clear: [0; CONFIG_SPACE_SIZE],
            bars: [None; 6],
            next_capability: 0x40,
            last_capability: None,
        };
        c.set_u16(offset::VENDOR_ID, vendor);
        c.set_u16(offset::DEVICE_ID, device);
        c.bytes[offset::REVISION_ID] = revision;
        c.bytes[offset::CLASS_CODE] = class.2;
        c.bytes[offset::CLASS_CODE + 1] = class.1;
        c.bytes[offset::CLASS_CODE + 2] = class.0;
        let cmd =
            command::IO_SPACE | command::MEMORY_SPACE | command::BUS_MASTER | command::INTX_DISABLE;
        c.writable[offset::COMMAND..offset::COMMAND + 2].copy_from_slice(&cmd.to_le_bytes());
        // Status: the error bits 15:11 and 8 are write-one-to-clear.
        c.write_one_clear[offset::STATUS + 1] = 0xf9;
        c.writable[offset::INTERRUPT_LINE] = 0xff;
        c
    }

    /// Set the subsystem vendor and subsystem IDs.
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.set_u16(offset::SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(offset::SUBSYSTEM_VENDOR_ID + 2, id);
    }

    /// Declare INTx pin `pin` (1 = INTA#) routed to interrupt line `line`.
    pub fn set_interrupt(&mut self, pin: u8, line: u8) {
        self.bytes[offset::INTERRUPT_PIN] = pin;
        self.bytes[offset::INTERRUPT_LINE] = line;
    }

    /// Declare BAR `index` of `size` bytes (a power of two, at least 16) at `address`.
    pub fn add_bar(&mut self, index: usize, size: u64, kind: BarKind, address: u64) {
        debug_assert!(size.is_power_of_two() && size >= 16 && index < 6);
        self.bars[index] = Some(Bar { size, kind });
        let at = offset::BAR0 + 4 * index;
        let mask = !(size as u32 - 1);
        self.writable[at..at + 4].copy_from_slice(&mask.to_le_bytes());
        self.set_u32(at, (address as u32) & mask);
    }

    /// Append a capability whose body (after the ID and next pointer) is `body`; `writable`
    /// masks the body bytes the guest may change. Returns the capability's offset.
    pub fn add_capability(&mut self, id: u8, body: &[u8], writable: &[u8]) -> usize {
        let at = self.next_capability;
        self.bytes[at] = id;
        self.bytes[at + 1] = 0;
        self.bytes[at + 2..at + 2 + body.len()].copy_from_slice(body);
        self.writable[at + 2..at + 2 + writable.len()].copy_from_slice(writable);
        match self.last_capability {
            Some(prev) => self.bytes[prev + 1] = at as u8,
            None => self.bytes[offset::CAPABILITIES_POINTER] = at as u8,
        }
        let status = self.u16_at(offset::STATUS) | STATUS_CAPABILITIES_LIST;
        self.set_u16(offset::STATUS, status);
        self.last_capability = Some(at);
        self.next_capability = (at + 2 + body.len() + 3) & !3;
        at
    }

    /// Read `data.len()` bytes at `offset` (out-of-range bytes read as 0xff).
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.bytes.get(offset + i).copied().unwrap_or(0xff);
        }
    }

    /// Guest write of `data` at `offset`, honouring the write masks.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let at = offset + i;
            if at >= CONFIG_SPACE_SIZE {
                break;
            }
            let w = self.writable[at];
            let w1c = self.write_one_clear[at];
            self.bytes[at] = (self.bytes[at] & !w & !(w1c & v)) | (v & w);
        }
    }

    /// A byte of configuration space.
    pub fn u8_at(&self, at: usize) -> u8 {
        self.bytes[at]
    }

    /// A little-endian word of configuration space.
    pub fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    /// A little-endian dword of configuration space.
    pub fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ])
    }

    /// Store a word regardless of write masks (device-side update).
    pub fn set_u16(&mut self, at: usize, v: u16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Store a dword regardless of write masks (device-side update).
    pub fn set_u32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.u16_at(offset::COMMAND)
    }

    /// Where memory BAR `index` decodes now, as (address, size), if it exists and memory
    /// decoding is enabled.
    pub fn bar_range(&self, index: usize) -> Option<(u64, u64)> {
        let bar = self.bars.get(index).copied().flatten()?;
        if self.command() & command::MEMORY_SPACE == 0 {
            return None;
        }
        match bar.kind {
            BarKind::Memory32 => {
                let addr = u64::from(self.u32_at(offset::BAR0 + 4 * index) & !0xf);
                (addr != 0).then_some((addr, bar.size))
            }
        }
    }

    /// Indices of the BARs this function has.
    pub fn bar_indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..6).filter(|&i| self.bars[i].is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read32(c: &ConfigSpace, at: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(at, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn bar_sizing_protocol() {
        let mut c = ConfigSpace::new(0x8086, 0x2922, (1, 6, 1), 2);
        c.add_bar(5, 0x1000, BarKind::Memory32, 0xfebf_0000);
        let at = offset::BAR0 + 20;
        assert_eq!(read32(&c, at), 0xfebf_0000);
        c.write(at, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(
            read32(&c, at),
            0xffff_f000,
            "size 4 KiB, 32-bit non-prefetchable memory"
        );
        c.write(at, &0xe000_0000u32.to_le_bytes());
        assert_eq!(c.bar_range(5), None, "memory decoding off");
        c.write(offset::COMMAND, &command::MEMORY_SPACE.to_le_bytes());
        assert_eq!(c.bar_range(5), Some((0xe000_0000, 0x1000)));
        // A BAR that does not exist reads 0 and ignores writes.
        c.write(offset::BAR0, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read32(&c, offset::BAR0), 0);
    }

    #[test]
    fn identity_is_read_only_and_capabilities_chain() {
        let mut c = ConfigSpace::new(0x8086, 0x2922, (1, 6, 1), 2);
        c.write(0, &[0xff; 16]);
        assert_eq!(read32(&c, 0), 0x2922_8086);
        assert_eq!(read32(&c, 8), 0x0106_0102);
        let a = c.add_capability(0x05, &[0; 12], &[0; 12]);
        let b = c.add_capability(0x01, &[0; 6], &[0; 6]);
        assert_eq!(c.u8_at(offset::CAPABILITIES_POINTER) as usize, a);
        assert_eq!(c.u8_at(a + 1) as usize, b);
        assert_eq!(c.u8_at(b + 1), 0);
        assert_ne!(c.u16_at(offset::STATUS) & STATUS_CAPABILITIES_LIST, 0);
    }
}
