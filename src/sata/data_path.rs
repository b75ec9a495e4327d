//! The data path of one command: the PRDT scatter-gather list in guest memory
//! (AHCI 1.3.1 section 4.2.3.3), seen by the device as one contiguous byte stream.

use std::sync::{Arc, OnceLock};

use thiserror::Error;

use crate::mem::{GuestBuf, GuestMemory, MemError};

/// One Physical Region Descriptor: a guest buffer of `len` bytes at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrdEntry {
    /// DBA/DBAU: data base address.
    pub addr: u64,
    /// DBC + 1: byte count (AHCI allows up to 4 MiB per entry).
    pub len: u32,
}

/// Why a data transfer could not be done.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DataPathError {
    /// The transfer runs past the end of the PRDT (AHCI 1.3.1 6.1.9: overflow).
    #[error("transfer of {needed} bytes at offset {offset} overflows a PRDT of {available} bytes")]
    Overflow {
        offset: u64,
        needed: u64,
        available: u64,
    },
    /// A PRD entry points outside guest RAM.
    #[error(transparent)]
    Memory(#[from] MemError),
}

/// A command's PRDT over guest memory.
#[derive(Clone)]
pub struct DataPath {
    mem: Arc<dyn GuestMemory>,
    prdt: Vec<PrdEntry>,
    len: u64,
    /// The first transfer error, shared by every clone, so the HBA that built the path can
    /// tell an overflow (AHCI PxIS.OFS) or a host bus error (PxIS.HBFS) from a device error.
    fault: Arc<OnceLock<DataPathError>>,
}

impl std::fmt::Debug for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPath")
            .field("prdt", &self.prdt)
            .field("len", &self.len)
            .finish()
    }
}

impl PartialEq for DataPath {
    fn eq(&self, other: &Self) -> bool {
        self.prdt == other.prdt
    }
}
impl Eq for DataPath {}

impl DataPath {
    /// A data path over `prdt` in `mem`.
    pub fn new(mem: Arc<dyn GuestMemory>, prdt: Vec<PrdEntry>) -> Self {
        let len = prdt.iter().map(|e| u64::from(e.len)).sum();
        DataPath {
            mem,
            prdt,
            len,
            fault: Arc::new(OnceLock::new()),
        }
    }

    /// A data path with no PRD entries (non-data commands).
    pub fn empty(mem: Arc<dyn GuestMemory>) -> Self {
        Self::new(mem, Vec::new())
    }

    /// Total bytes the PRDT describes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the PRDT describes no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The PRD entries.
    pub fn entries(&self) -> &[PrdEntry] {
        &self.prdt
    }

    /// The first error any transfer through this path (or a clone of it) ran into.
    pub fn first_error(&self) -> Option<DataPathError> {
        self.fault.get().copied()
    }

    fn record<T>(&self, r: Result<T, DataPathError>) -> Result<T, DataPathError> {
        if let Err(e) = &r {
            let _ = self.fault.set(*e);
        }
        r
    }

    /// The guest buffers behind bytes `[offset, offset + len)` of the stream, for an I/O
    /// engine to move data into or out of without a copy. A transfer past the PRDT, or a PRD
    /// entry outside guest RAM, is recorded (see [`DataPath::first_error`]) and returned.
    pub fn guest_buf(&self, offset: u64, len: u64) -> Result<GuestBuf, DataPathError> {
        let mut ranges = Vec::new();
        let mut scratch = Vec::new();
        let r = self.walk(offset, len, |addr, _, n| {
            scratch.clear();
            match self.mem.host_ranges(addr, n as u64, &mut scratch) {
                // Memory without host mappings is checked when the engine copies.
                Ok(()) | Err(MemError::NoHostMapping) => {}
                Err(e) => return Err(e),
            }
            ranges.push((addr, n as u64));
            Ok(())
        });
        self.record(r)?;
        Ok(GuestBuf::new(self.mem.clone(), ranges))
    }

    /// Record `error`, found while an engine moved data through this path (e.g. a copy into
    /// memory without host mappings that left guest RAM), as this path's fault.
    pub fn report(&self, error: DataPathError) {
        let _ = self.fault.set(error);
    }

    /// Copy `data` into guest memory at byte `offset` of the stream (device to host).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), DataPathError> {
        let r = self.walk(offset, data.len() as u64, |addr, start, n| {
            self.mem.write(addr, &data[start..start + n])
        });
        self.record(r)
    }

    /// Fill `buf` from guest memory at byte `offset` of the stream (host to device).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DataPathError> {
        let r = self.gather(offset, buf);
        self.record(r)
    }

    fn gather(&self, offset: u64, buf: &mut [u8]) -> Result<(), DataPathError> {
        let len = buf.len() as u64;
        let mut pieces = Vec::new();
        self.walk(offset, len, |addr, start, n| {
            pieces.push((addr, start, n));
            Ok(())
        })?;
        for (addr, start, n) in pieces {
            self.mem.read(addr, &mut buf[start..start + n])?;
        }
        Ok(())
    }

    /// Call `f(guest_addr, offset_in_buffer, len)` for each piece of `[offset, offset+len)`.
    fn walk(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), DataPathError> {
        let end = offset.saturating_add(len);
        if end > self.len {
            return Err(DataPathError::Overflow {
                offset,
                needed: len,
                available: self.len,
            });
        }
        let mut entry_start = 0u64;
        let mut done = 0u64;
        for e in &self.prdt {
            let entry_end = entry_start + u64::from(e.len);
            let lo = offset.max(entry_start);
            let hi = end.min(entry_end);
            if lo < hi {
                let n = (hi - lo) as usize;
                let addr = e
                    .addr
                    .checked_add(lo - entry_start)
                    .ok_or(MemError::OutOfRange {
                        addr: e.addr,
                        len: u64::from(e.len),
                    })?;
                f(addr, done as usize, n)?;
                done += n as u64;
            }
            if entry_end >= end {
                break;
            }
            entry_start = entry_end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecMemory;

    #[test]
    fn scatter_and_gather_across_entries() {
        let mem = Arc::new(VecMemory::new(0x10000));
        let prdt = vec![
            PrdEntry {
                addr: 0x1000,
                len: 3,
            },
            PrdEntry {
                addr: 0x2000,
                len: 5,
            },
            PrdEntry {
                addr: 0x3000,
                len: 8,
            },
        ];
        let dp = DataPath::new(mem.clone(), prdt);
        assert_eq!(dp.len(), 16);
        let data: Vec<u8> = (1..=16).collect();
        dp.write_at(0, &data).unwrap();
        let mut b = [0u8; 5];
        mem.read(0x2000, &mut b).unwrap();
        assert_eq!(b, [4, 5, 6, 7, 8]);
        let mut back = [0u8; 10];
        dp.read_at(2, &mut back).unwrap();
        assert_eq!(back, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn overflow_and_bad_addresses_are_errors() {
        let mem = Arc::new(VecMemory::new(0x1000));
        let dp = DataPath::new(
            mem.clone(),
            vec![PrdEntry {
                addr: 0x800,
                len: 16,
            }],
        );
        assert!(matches!(
            dp.write_at(8, &[0; 16]),
            Err(DataPathError::Overflow { .. })
        ));
        let bad = DataPath::new(
            mem,
            vec![PrdEntry {
                addr: 0xff0,
                len: 0x100,
            }],
        );
        assert!(matches!(
            bad.write_at(0, &[0; 0x100]),
            Err(DataPathError::Memory(_))
        ));
        assert!(matches!(bad.first_error(), Some(DataPathError::Memory(_))));
        assert!(
            matches!(
                dp.clone().first_error(),
                Some(DataPathError::Overflow { .. })
            ),
            "clones share the recorded fault"
        );
    }
}
