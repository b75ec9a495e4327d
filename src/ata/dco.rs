//! The DEVICE CONFIGURATION OVERLAY IDENTIFY data structure (ACS-2 7.9.4, table 39; DCO as
//! ACS-3 keeps it): what the overlay could still make the device report. The emulated drive
//! has no overlay, so this is what it reports already; it answers DCO IDENTIFY with it and
//! refuses DCO SET, RESTORE and FREEZE LOCK.

use super::registers::SECTOR_SIZE;

/// What the DCO IDENTIFY structure offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DcoParams {
    /// User-addressable sectors (words 3-6 hold the highest LBA, capacity - 1).
    pub capacity: u64,
    /// DATA SET MANAGEMENT TRIM offered (word 21 bit 13).
    pub trim: bool,
}

/// The 256 words, with the integrity word (255: A5h and a checksum) filled in.
pub fn dco_identify(p: &DcoParams) -> [u8; SECTOR_SIZE] {
    let mut w = [0u16; 256];
    // Word 0: data structure revision 0002h.
    w[0] = 0x0002;
    // Word 1: Multiword DMA modes 2:0; word 2: Ultra DMA modes 6:0 (as IDENTIFY words 63/88).
    w[1] = 0x0007;
    w[2] = 0x007f;
    // Words 3-6: maximum LBA.
    let max = p.capacity.saturating_sub(1);
    for (i, word) in w[3..7].iter_mut().enumerate() {
        *word = (max >> (16 * i)) as u16;
    }
    // Word 7: feature sets part 1: bit 13 FUA, bit 8 48-bit addressing, bit 2 SMART error
    // logging, bit 1 SMART self-test, bit 0 SMART feature set.
    w[7] = 1 << 13 | 1 << 8 | 0x0007;
    // Word 8: Serial ATA features: bit 0 NCQ.
    w[8] = 0x0001;
    // Word 21: feature sets part 3: bit 13 DSM TRIM (when offered).
    if p.trim {
        w[21] = 1 << 13;
    }
    w[255] = 0x00a5;
    let mut b = [0u8; SECTOR_SIZE];
    for (chunk, x) in b.chunks_exact_mut(2).zip(w.iter()) {
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let sum = b[..SECTOR_SIZE - 1]
        .iter()
        .fold(0u8, |s, x| s.wrapping_add(*x));
    b[SECTOR_SIZE - 1] = sum.wrapping_neg();
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_max_lba_features_and_checksum() {
        let b = dco_identify(&DcoParams {
            capacity: 0x1_0000_0000,
            trim: true,
        });
        let w = |i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
        assert_eq!(w(0), 2);
        assert_eq!((w(3), w(4), w(5), w(6)), (0xffff, 0xffff, 0, 0));
        assert_eq!(w(7) & 0x0107, 0x0107);
        assert_eq!(w(21), 1 << 13);
        assert_eq!(b[510], 0xa5);
        assert_eq!(b.iter().fold(0u8, |s, x| s.wrapping_add(*x)), 0);
        let ro = dco_identify(&DcoParams {
            capacity: 1,
            trim: false,
        });
        assert_eq!(u16::from_le_bytes([ro[42], ro[43]]), 0);
        assert_eq!(&ro[6..14], &[0; 8], "highest LBA 0");
    }
}
