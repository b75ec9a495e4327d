//! PCI configuration mechanism #1 (PCI Local Bus 3.0 section 3.2.2.3.2) on bus 0.

use crate::hw::{inl, outl};

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Config-space offsets.
pub const VENDOR_ID: u8 = 0x00;
pub const COMMAND: u8 = 0x04;
pub const CLASS_REV: u8 = 0x08;
pub const HEADER_TYPE: u8 = 0x0c;
pub const BAR5: u8 = 0x24;
/// Command register: memory space enable, bus master enable, INTx disable.
pub const CMD_MEMORY: u32 = 1 << 1;
pub const CMD_BUS_MASTER: u32 = 1 << 2;
pub const CMD_INTX_DISABLE: u32 = 1 << 10;

/// A function on bus 0.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub dev: u8,
    pub func: u8,
}

impl Function {
    fn address(self, reg: u8) -> u32 {
        0x8000_0000
            | (u32::from(self.dev) << 11)
            | (u32::from(self.func) << 8)
            | u32::from(reg & 0xfc)
    }

    pub fn read32(self, reg: u8) -> u32 {
        outl(CONFIG_ADDRESS, self.address(reg));
        inl(CONFIG_DATA)
    }

    pub fn write32(self, reg: u8, v: u32) {
        outl(CONFIG_ADDRESS, self.address(reg));
        outl(CONFIG_DATA, v);
    }
}

/// Visit every function present on bus 0 with (function, vendor/device dword, class/revision dword).
pub fn scan_bus0(mut visit: impl FnMut(Function, u32, u32)) {
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let f = Function { dev, func };
            let id = f.read32(VENDOR_ID);
            if id & 0xffff == 0xffff {
                if func == 0 {
                    break;
                }
                continue;
            }
            visit(f, id, f.read32(CLASS_REV));
            // Functions 1-7 exist only behind a multi-function header.
            if func == 0 && (f.read32(HEADER_TYPE) >> 16) & 0x80 == 0 {
                break;
            }
        }
    }
}
