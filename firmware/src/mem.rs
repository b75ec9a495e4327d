//! Memory: the C memory primitives the compiler emits calls to (so nothing is pulled from
//! libc.a, whose IFUNC-resolved versions need the C runtime), a bump allocator over the DMA
//! arena, and a small fixed-capacity string for report lines.

use core::arch::asm;
use core::fmt;

/// Physical memory the firmware hands to the HBA: above the firmware image, below 64 MiB
/// (satavm's smallest RAM size). Identity-mapped, so virtual = physical.
const ARENA_START: u64 = 0x100_0000;
const ARENA_END: u64 = 0x400_0000;

/// # Safety
/// Standard memcpy contract.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees non-overlapping valid ranges of n bytes.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// Standard memmove contract.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dst is below src or past its end.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: backward copy with the direction flag set, restored afterwards.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             options(nostack))
    };
    dst
}

/// # Safety
/// Standard memset contract.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: caller guarantees a valid range of n bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// Standard memcmp contract.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: caller guarantees valid ranges of n bytes.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard bcmp contract.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// A bump allocator over the DMA arena. `mark`/`release` give scoped scratch space.
pub struct Arena {
    next: u64,
}

impl Arena {
    pub const fn new() -> Self {
        Arena { next: ARENA_START }
    }

    /// `len` zeroed bytes aligned to `align` (a power of two), as a physical address.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let start = (self.next + align - 1) & !(align - 1);
        let end = start.checked_add(len)?;
        if end > ARENA_END {
            return None;
        }
        self.next = end;
        // SAFETY: [start, end) is arena RAM owned by nobody else.
        unsafe { memset(start as *mut u8, 0, len as usize) };
        Some(start)
    }

    pub fn mark(&self) -> u64 {
        self.next
    }

    pub fn release(&mut self, mark: u64) {
        self.next = mark;
    }
}

/// The bytes at physical address `addr`.
///
/// # Safety
/// `addr..addr+len` must be arena memory not aliased by another live slice.
pub unsafe fn phys_slice<'a>(addr: u64, len: usize) -> &'a mut [u8] {
    // SAFETY: per the function contract.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// A string of at most N bytes (longer output is cut).
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Format into a report-line string.
#[macro_export]
macro_rules! text {
    ($($arg:tt)*) => {{
        let mut t = $crate::mem::Text::<256>::new();
        let _ = core::fmt::Write::write_fmt(&mut t, format_args!($($arg)*));
        t
    }};
}
