//! [`GuestBuf`]: the guest buffers of one I/O request — guest-physical ranges in order (a
//! command's PRDT, or a byte range of it), adjacent ones merged — with the memory they live
//! in, so that an engine can turn them into host iovecs and the memory stays mapped for as
//! long as the request holds them.

use std::sync::Arc;

use super::{GuestMemory, HostRange, MemError};

/// The most iovecs one host request carries (Linux's UIO_MAXIOV / IOV_MAX).
pub const MAX_IOVECS: usize = 1024;

/// Guest buffers of one request; see the module documentation.
#[derive(Clone)]
pub struct GuestBuf {
    mem: Arc<dyn GuestMemory>,
    /// (guest address, length), none empty, no two adjacent.
    ranges: Vec<(u64, u64)>,
    len: u64,
}

impl std::fmt::Debug for GuestBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestBuf")
            .field("ranges", &self.ranges.len())
            .field("len", &self.len)
            .finish()
    }
}

impl GuestBuf {
    /// The ranges `(guest address, length)` of `mem`, in order; adjacent ones are merged and
    /// empty ones dropped. Addresses are checked when the buffer is used.
    pub fn new(mem: Arc<dyn GuestMemory>, ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut merged: Vec<(u64, u64)> = Vec::new();
        let mut len = 0u64;
        for (addr, n) in ranges {
            if n == 0 {
                continue;
            }
            len = len.saturating_add(n);
            match merged.last_mut() {
                Some((a, l)) if a.checked_add(*l) == Some(addr) => *l += n,
                _ => merged.push((addr, n)),
            }
        }
        GuestBuf {
            mem,
            ranges: merged,
            len,
        }
    }

    /// Bytes in all.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The guest ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The memory the ranges are in.
    pub fn memory(&self) -> &Arc<dyn GuestMemory> {
        &self.mem
    }

    /// Bytes `[offset, offset + len)` of this buffer (clamped to its end).
    pub fn slice(&self, offset: u64, len: u64) -> GuestBuf {
        let end = offset.saturating_add(len).min(self.len);
        let mut out = Vec::new();
        let mut at = 0u64;
        for &(addr, n) in &self.ranges {
            let (lo, hi) = (offset.max(at), end.min(at + n));
            if lo < hi {
                out.push((addr + (lo - at), hi - lo));
            }
            at += n;
            if at >= end {
                break;
            }
        }
        GuestBuf::new(self.mem.clone(), out)
    }

    /// The buffer cut into consecutive pieces of at most `max_bytes` bytes and at most
    /// `max_ranges` guest ranges each (so each fits one host request), with each piece's
    /// byte offset in this buffer.
    pub fn chunks(&self, max_bytes: u64, max_ranges: usize) -> Vec<(u64, GuestBuf)> {
        let (max_bytes, max_ranges) = (max_bytes.max(1), max_ranges.max(1));
        let mut out = Vec::new();
        let mut piece: Vec<(u64, u64)> = Vec::new();
        let (mut piece_at, mut piece_len, mut at) = (0u64, 0u64, 0u64);
        for &(addr, n) in &self.ranges {
            let mut done = 0;
            while done < n {
                if piece_len == max_bytes || piece.len() == max_ranges {
                    let ranges = std::mem::take(&mut piece);
                    out.push((piece_at, GuestBuf::new(self.mem.clone(), ranges)));
                    piece_at = at;
                    piece_len = 0;
                }
                let take = (n - done).min(max_bytes - piece_len);
                piece.push((addr + done, take));
                piece_len += take;
                done += take;
                at += take;
            }
        }
        if !piece.is_empty() {
            out.push((piece_at, GuestBuf::new(self.mem.clone(), piece)));
        }
        out
    }

    /// Host ranges over the whole buffer (see [`GuestMemory::host_ranges`]): valid while this
    /// buffer (which holds the memory) lives.
    pub fn host_ranges(&self) -> Result<Vec<HostRange>, MemError> {
        let mut out = Vec::with_capacity(self.ranges.len());
        for &(addr, n) in &self.ranges {
            self.mem.host_ranges(addr, n, &mut out)?;
        }
        Ok(out)
    }

    /// Copy the buffer's bytes out of guest memory into `dst` (`dst.len()` of them, from the
    /// start).
    pub fn read_into(&self, dst: &mut [u8]) -> Result<(), MemError> {
        let mut at = 0usize;
        for &(addr, n) in &self.ranges {
            if at >= dst.len() {
                break;
            }
            let n = (n as usize).min(dst.len() - at);
            self.mem.read(addr, &mut dst[at..at + n])?;
            at += n;
        }
        Ok(())
    }

    /// Copy `src` into the buffer's guest memory, from the start.
    pub fn write_from(&self, src: &[u8]) -> Result<(), MemError> {
        let mut at = 0usize;
        for &(addr, n) in &self.ranges {
            if at >= src.len() {
                break;
            }
            let n = (n as usize).min(src.len() - at);
            self.mem.write(addr, &src[at..at + n])?;
            at += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecMemory;

    fn buf(ranges: &[(u64, u64)]) -> GuestBuf {
        GuestBuf::new(Arc::new(VecMemory::new(1 << 20)), ranges.iter().copied())
    }

    #[test]
    fn adjacent_ranges_merge_and_empty_ones_vanish() {
        let b = buf(&[(0x1000, 0x200), (0x1200, 0x200), (0x0, 0), (0x3000, 16)]);
        assert_eq!(b.ranges(), &[(0x1000, 0x400), (0x3000, 16)]);
        assert_eq!(b.len(), 0x410);
        assert_eq!(b.host_ranges().unwrap().len(), 2);
    }

    #[test]
    fn slices_and_chunks_cover_the_bytes_in_order() {
        let b = buf(&[(0x1000, 100), (0x5000, 300), (0x9000, 50)]);
        let s = b.slice(90, 20);
        assert_eq!(s.ranges(), &[(0x1000 + 90, 10), (0x5000, 10)]);
        assert_eq!(b.slice(440, 100).ranges(), &[(0x9000 + 40, 10)]);
        let c = b.chunks(128, 2);
        let offsets: Vec<u64> = c.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [0, 128, 256, 384]);
        assert_eq!(c[0].1.ranges(), &[(0x1000, 100), (0x5000, 28)]);
        assert_eq!(c[3].1.ranges(), &[(0x5000 + 284, 16), (0x9000, 50)]);
        assert_eq!(c.iter().map(|(_, p)| p.len()).sum::<u64>(), b.len());
        // At most 1 range per piece.
        let c = b.chunks(1 << 20, 1);
        assert_eq!(c.len(), 3);
        assert_eq!(c[2].0, 400);
    }

    #[test]
    fn copies_go_through_the_ranges() {
        let mem = Arc::new(VecMemory::new(1 << 16));
        let b = GuestBuf::new(mem.clone(), [(0x100, 3), (0x900, 5)]);
        b.write_from(b"abcdefgh").unwrap();
        let mut got = [0u8; 5];
        mem.read(0x900, &mut got).unwrap();
        assert_eq!(&got, b"defgh");
        let mut back = [0u8; 8];
        b.read_into(&mut back).unwrap();
        assert_eq!(&back, b"abcdefgh");
        let outside = GuestBuf::new(mem, [(0xfff0, 0x100)]);
        assert!(outside.write_from(&[0; 0x100]).is_err());
        assert!(outside.host_ranges().is_err());
    }
}
