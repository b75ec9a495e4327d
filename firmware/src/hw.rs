//! x86 port I/O, MMIO, the COM1 console and the satavm exit-code port.

use core::arch::asm;
use core::fmt;

/// Read a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O has no memory effects visible to Rust; the firmware owns the machine.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Write a byte to an I/O port.
pub fn outb(port: u16, v: u8) {
    // SAFETY: as for inb.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// Read a dword from an I/O port.
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for inb.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Write a dword to an I/O port.
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for inb.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

/// A window of memory-mapped registers.
#[derive(Clone, Copy)]
pub struct Mmio(pub u64);

impl Mmio {
    /// Read the 32-bit register at byte offset `off`.
    pub fn read32(self, off: u64) -> u32 {
        // SAFETY: the window is device memory identity-mapped by the boot page tables.
        unsafe { core::ptr::read_volatile((self.0 + off) as *const u32) }
    }

    /// Write the 32-bit register at byte offset `off`.
    pub fn write32(self, off: u64, v: u32) {
        // SAFETY: as for read32.
        unsafe { core::ptr::write_volatile((self.0 + off) as *mut u32, v) }
    }
}

/// COM1, 16550 registers.
const COM1: u16 = 0x3f8;
const THR: u16 = 0;
const IER: u16 = 1;
const FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const LSR_THR_EMPTY: u8 = 1 << 5;
/// satavm's exit-code port (src/vmm/bus.rs EXIT_CODE_PORT): a 32-bit OUT ends the VM.
const EXIT_CODE_PORT: u16 = 0x501;

/// 115200 8N1, FIFOs on, interrupts off.
pub fn serial_init() {
    outb(COM1 + IER, 0);
    outb(COM1 + LCR, 0x80);
    outb(COM1, 1);
    outb(COM1 + 1, 0);
    outb(COM1 + LCR, 0x03);
    outb(COM1 + FCR, 0xc7);
    outb(COM1 + MCR, 0x0b);
}

fn serial_put(b: u8) {
    // Bounded: a serial port that never drains must not hang the self-test.
    for _ in 0..100_000 {
        if inb(COM1 + LSR) & LSR_THR_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    outb(COM1 + THR, b);
}

/// The console.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                serial_put(b'\r');
            }
            serial_put(b);
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::hw::Serial, format_args!($($arg)*));
    }};
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        $crate::print!("\n");
    }};
}

/// End the VM with `code` (0 = pass). Halts if the port is not there.
pub fn exit(code: u32) -> ! {
    outl(EXIT_CODE_PORT, code);
    loop {
        // SAFETY: interrupts are off; hlt just stops this vCPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}
