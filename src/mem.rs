//! Guest memory as the device layers see it: a byte-addressed space that may refuse an access.
//!
//! The VMM implements [`GuestMemory`] over vm-memory's `GuestMemoryMmap`; tests use
//! [`VecMemory`]. Every address a device takes from the guest (CLB, FB, CTBA, PRDT DBA) is
//! checked here, so a PRDT pointing outside RAM becomes an error, never a stray host access.

use std::sync::Mutex;

use thiserror::Error;

/// A guest access that cannot be carried out.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// `[addr, addr + len)` is not entirely inside guest RAM.
    #[error("guest range {addr:#x}+{len:#x} is outside guest RAM")]
    OutOfRange { addr: u64, len: u64 },
}

/// Byte access to guest physical memory.
pub trait GuestMemory: Send + Sync {
    /// Fill `buf` from guest physical address `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Store `data` at guest physical address `addr`.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError>;

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

impl GuestMemory for vm_memory::GuestMemoryMmap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        use vm_memory::{Bytes, GuestAddress};
        self.read_slice(buf, GuestAddress(addr))
            .map_err(|_| MemError::OutOfRange {
                addr,
                len: buf.len() as u64,
            })
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        use vm_memory::{Bytes, GuestAddress};
        self.write_slice(data, GuestAddress(addr))
            .map_err(|_| MemError::OutOfRange {
                addr,
                len: data.len() as u64,
            })
    }
}

/// Guest memory made of one zero-based `Vec<u8>`, for tests and fuzzing.
#[derive(Debug)]
pub struct VecMemory {
    bytes: Mutex<Vec<u8>>,
}

impl VecMemory {
    /// `size` bytes of zeroed memory at guest address 0.
    pub fn new(size: usize) -> Self {
        VecMemory {
            bytes: Mutex::new(vec![0; size]),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.lock().len() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock cannot leave the bytes inconsistent: keep going.
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn range(
        &self,
        len_total: usize,
        addr: u64,
        len: usize,
    ) -> Result<std::ops::Range<usize>, MemError> {
        let err = MemError::OutOfRange {
            addr,
            len: len as u64,
        };
        let start = usize::try_from(addr).map_err(|_| err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > len_total {
            return Err(err);
        }
        Ok(start..end)
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let bytes = self.lock();
        let r = self.range(bytes.len(), addr, buf.len())?;
        buf.copy_from_slice(&bytes[r]);
        Ok(())
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let mut bytes = self.lock();
        let r = self.range(bytes.len(), addr, data.len())?;
        bytes[r].copy_from_slice(data);
        Ok(())
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
}
