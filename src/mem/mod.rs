//! Guest memory as the device layers see it: a byte-addressed space that may refuse an access,
//! and, for zero-copy I/O, the host addresses behind a guest range.
//!
//! The VMM implements [`GuestMemory`] over vm-memory's `GuestMemoryMmap`; tests use
//! [`VecMemory`], the same mmap-backed memory at guest address 0. Every address a device takes
//! from the guest (CLB, FB, CTBA, PRDT DBA) is checked here, so a PRDT pointing outside RAM
//! becomes an error, never a stray host access.

mod guest_buf;

pub use guest_buf::{GuestBuf, MAX_IOVECS};

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// A guest access that cannot be carried out.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// `[addr, addr + len)` is not entirely inside guest RAM.
    #[error("guest range {addr:#x}+{len:#x} is outside guest RAM")]
    OutOfRange { addr: u64, len: u64 },
    /// This memory has no host mapping to hand out (the caller copies instead).
    #[error("guest memory without host mappings")]
    NoHostMapping,
}

/// `len` bytes of guest RAM at host virtual address `addr`: what a host iovec over guest
/// memory points at. A plain address, not a pointer: only the kernel dereferences it (through
/// a system call that is given it), while the [`GuestMemory`] it came from is alive.
///
/// Laid out as `struct iovec` (a base address and a length, one word each), so that a slice of
/// ranges is an iovec array the kernel can be given as it is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRange {
    pub addr: usize,
    pub len: usize,
}

const _: () = assert!(
    std::mem::size_of::<HostRange>() == std::mem::size_of::<libc::iovec>()
        && std::mem::align_of::<HostRange>() == std::mem::align_of::<libc::iovec>()
);

impl HostRange {
    /// `ranges` as the iovec array the kernel reads (same layout, see above).
    pub fn as_iovecs(ranges: &[HostRange]) -> *const libc::iovec {
        ranges.as_ptr().cast()
    }

    /// Drop the first `n` bytes of `ranges` (after a short read or write).
    pub fn advance(ranges: &mut Vec<HostRange>, mut n: usize) {
        let mut skip = 0;
        for r in ranges.iter_mut() {
            if n == 0 {
                break;
            }
            let take = n.min(r.len);
            r.addr += take;
            r.len -= take;
            n -= take;
            if r.len == 0 {
                skip += 1;
            }
        }
        ranges.drain(..skip);
    }

    /// Bytes in `ranges`.
    pub fn total(ranges: &[HostRange]) -> usize {
        ranges.iter().map(|r| r.len).sum()
    }
}

/// Byte access to guest physical memory.
pub trait GuestMemory: Send + Sync {
    /// Fill `buf` from guest physical address `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Store `data` at guest physical address `addr`.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError>;

    /// Append to `out` the host ranges that back `[addr, addr + len)`, in order (more than one
    /// where the range crosses a memory region). The ranges stay valid while `self` lives.
    /// Memory that cannot hand out host addresses answers [`MemError::NoHostMapping`], and
    /// I/O engines copy through [`GuestMemory::read`] / [`GuestMemory::write`] instead.
    fn host_ranges(&self, addr: u64, len: u64, out: &mut Vec<HostRange>) -> Result<(), MemError> {
        let _ = (addr, len, out);
        Err(MemError::NoHostMapping)
    }

    /// Little-endian 32-bit read.
    fn read_u32(&self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Little-endian 32-bit write.
    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
        self.write(addr, &value.to_le_bytes())
    }
}

impl GuestMemory for GuestMemoryMmap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.read_slice(buf, GuestAddress(addr))
            .map_err(|_| MemError::OutOfRange {
                addr,
                len: buf.len() as u64,
            })
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.write_slice(data, GuestAddress(addr))
            .map_err(|_| MemError::OutOfRange {
                addr,
                len: data.len() as u64,
            })
    }

    fn host_ranges(&self, addr: u64, len: u64, out: &mut Vec<HostRange>) -> Result<(), MemError> {
        let err = MemError::OutOfRange { addr, len };
        let count = usize::try_from(len).map_err(|_| err)?;
        addr.checked_add(len).ok_or(err)?;
        let first = out.len();
        for slice in self.get_slices(GuestAddress(addr), count) {
            let Ok(slice) = slice else {
                out.truncate(first);
                return Err(err);
            };
            // For plain mmap regions the guard is the mapping's own address; it holds no
            // temporary mapping that would go away when dropped.
            let host = slice.ptr_guard_mut().as_ptr() as usize;
            let extend = out.len() > first;
            match out.last_mut() {
                Some(last) if extend && last.addr + last.len == host => last.len += slice.len(),
                _ => out.push(HostRange {
                    addr: host,
                    len: slice.len(),
                }),
            }
        }
        Ok(())
    }
}

/// Guest memory of `size` bytes at guest address 0, mmap-backed like the VM's, for tests and
/// fuzzing.
#[derive(Debug)]
pub struct VecMemory {
    mem: GuestMemoryMmap,
    size: u64,
}

impl VecMemory {
    /// `size` bytes of zeroed memory at guest address 0.
    ///
    /// # Panics
    /// If the host cannot map `size` bytes (a test set-up failure).
    pub fn new(size: usize) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)])
            .unwrap_or_else(|e| panic!("cannot map {size} bytes of test guest memory: {e}"));
        VecMemory {
            mem,
            size: size as u64,
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        GuestMemory::read(&self.mem, addr, buf)
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        GuestMemory::write(&self.mem, addr, data)
    }
    fn host_ranges(&self, addr: u64, len: u64, out: &mut Vec<HostRange>) -> Result<(), MemError> {
        self.mem.host_ranges(addr, len, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_memory_refuses_out_of_range() {
        let m = VecMemory::new(4096);
        m.write_u32(4092, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(4092).unwrap(), 0xdead_beef);
        assert_eq!(
            m.write_u32(4093, 1),
            Err(MemError::OutOfRange { addr: 4093, len: 4 })
        );
        let mut b = [0u8; 2];
        assert!(m.read(u64::MAX, &mut b).is_err());
    }

    #[test]
    fn host_ranges_point_at_the_guest_bytes_and_cross_regions() {
        let m = VecMemory::new(8192);
        m.write(100, b"hello").unwrap();
        let mut out = Vec::new();
        m.host_ranges(100, 5, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len, 5);
        // SAFETY: the range was just obtained from `m`, which is alive, and covers 5 bytes.
        let seen = unsafe { std::slice::from_raw_parts(out[0].addr as *const u8, 5) };
        assert_eq!(seen, b"hello");
        assert!(m.host_ranges(8190, 4, &mut out).is_err());
        assert!(m.host_ranges(u64::MAX, 2, &mut out).is_err());

        // Two regions with a hole: a range across the boundary of adjacent regions gives one
        // range per region; a range into the hole is refused.
        let two = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 4096),
            (GuestAddress(4096), 4096),
            (GuestAddress(0x10000), 4096),
        ])
        .unwrap();
        let mut out = Vec::new();
        two.host_ranges(4000, 200, &mut out).unwrap();
        assert_eq!(out.iter().map(|r| r.len).sum::<usize>(), 200);
        assert!(!out.is_empty() && out.len() <= 2);
        let mut out = Vec::new();
        assert!(two.host_ranges(8000, 400, &mut out).is_err());
        assert!(out.is_empty(), "nothing appended on failure");
    }
}
