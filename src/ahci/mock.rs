//! A small scripted [`SataDevice`] for the AHCI unit tests.
//!
//! Non-queued READ DMA (EXT) fill the data path with a pattern and complete at once; WRITE DMA
//! (EXT) read it; READ/WRITE FPDMA QUEUED are accepted with a Register D2H FIS and complete
//! when the test calls [`MockHandle::finish`]; FLUSH CACHE is held until finished too.
//! A command whose LBA is at or past [`CAPACITY`] fails with IDNF.

use std::sync::{Arc, Mutex};

use crate::ata::command::opcode;
use crate::ata::registers::{control, error, status};
use crate::sata::{
    Completion, DataPath, Fis, RegisterD2h, RegisterH2d, SataDevice, SetDeviceBits, Submission,
};

/// Sectors on the mock drive.
pub const CAPACITY: u64 = 1000;

#[derive(Debug, Default)]
pub struct MockState {
    pub submitted: Vec<(u8, RegisterH2d, DataPath)>,
    pub device_controls: Vec<RegisterH2d>,
    pub comresets: u32,
    pub aborts: u32,
    /// Commands held until `finish`.
    pub held: Vec<(u8, RegisterH2d, DataPath)>,
    pub ready: Vec<Completion>,
    /// Bytes written by WRITE commands, in order.
    pub written: Vec<Vec<u8>>,
    /// The device's highest SATA generation; 0 reads as 3.
    pub max_gen: u8,
    /// The generations the port told the device it negotiated, in order.
    pub negotiated: Vec<u8>,
    srst: bool,
}

/// The test's handle on a mock device's state.
#[derive(Debug, Clone, Default)]
pub struct MockHandle(pub Arc<Mutex<MockState>>);

impl MockHandle {
    pub fn state(&self) -> std::sync::MutexGuard<'_, MockState> {
        self.0.lock().unwrap()
    }

    /// Complete the held commands of `slots` (in that order) and queue their completions.
    pub fn finish(&self, slots: &[u8]) {
        let mut s = self.state();
        for &slot in slots {
            let i = s.held.iter().position(|h| h.0 == slot).unwrap();
            let (slot, fis, data) = s.held.remove(i);
            let c = run(&mut s, slot, &fis, &data);
            s.ready.push(c);
        }
    }
}

/// The mock drive.
pub struct MockDevice(pub MockHandle);

pub fn mock() -> (Box<dyn SataDevice>, MockHandle) {
    let h = MockHandle::default();
    (Box::new(MockDevice(h.clone())), h)
}

pub fn signature() -> RegisterD2h {
    RegisterD2h {
        status: status::DRDY | status::DSC,
        error: 1,
        lba: 1,
        count: 1,
        ..Default::default()
    }
}

/// The byte pattern READ commands return at byte `i` of LBA `lba`.
pub fn pattern(lba: u64, i: usize) -> u8 {
    (lba as u8).wrapping_mul(31).wrapping_add(i as u8)
}

fn sectors(fis: &RegisterH2d) -> u64 {
    let queued = matches!(
        fis.command,
        opcode::READ_FPDMA_QUEUED | opcode::WRITE_FPDMA_QUEUED
    );
    let n = if queued { fis.features } else { fis.count };
    u64::from(n.max(1))
}

fn run(s: &mut MockState, slot: u8, fis: &RegisterH2d, data: &DataPath) -> Completion {
    let queued = matches!(
        fis.command,
        opcode::READ_FPDMA_QUEUED | opcode::WRITE_FPDMA_QUEUED
    );
    let n = sectors(fis);
    let bytes = (n * 512) as usize;
    let mut st = status::DRDY | status::DSC;
    let mut err = 0;
    let mut moved = 0;
    let is_read = matches!(
        fis.command,
        opcode::READ_DMA | opcode::READ_DMA_EXT | opcode::READ_FPDMA_QUEUED
    );
    let is_write = matches!(
        fis.command,
        opcode::WRITE_DMA | opcode::WRITE_DMA_EXT | opcode::WRITE_FPDMA_QUEUED
    );
    if (is_read || is_write) && fis.lba + n > CAPACITY {
        st |= status::ERR;
        err = error::IDNF;
    } else if is_read {
        let buf: Vec<u8> = (0..bytes)
            .map(|i| pattern(fis.lba + (i / 512) as u64, i % 512))
            .collect();
        match data.write_at(0, &buf) {
            Ok(()) => moved = bytes as u32,
            Err(_) => {
                st |= status::ERR;
                err = error::ABRT;
            }
        }
    } else if is_write {
        let mut buf = vec![0; bytes];
        match data.read_at(0, &mut buf) {
            Ok(()) => {
                moved = bytes as u32;
                s.written.push(buf);
            }
            Err(_) => {
                st |= status::ERR;
                err = error::ABRT;
            }
        }
    }
    let fises = if queued {
        let ok = st & status::ERR == 0;
        vec![Fis::SetDeviceBits(SetDeviceBits {
            interrupt: true,
            status: st,
            error: err,
            sactive: if ok { 1 << slot } else { 0 },
            ..Default::default()
        })]
    } else {
        vec![Fis::RegisterD2h(RegisterD2h {
            interrupt: true,
            status: st,
            error: err,
            ..Default::default()
        })]
    };
    Completion {
        slot,
        fises,
        bytes_transferred: moved,
    }
}

impl SataDevice for MockDevice {
    fn comreset(&mut self) -> RegisterD2h {
        let mut s = self.0.state();
        s.comresets += 1;
        s.held.clear();
        s.ready.clear();
        signature()
    }

    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        let mut s = self.0.state();
        s.device_controls.push(*fis);
        let srst = fis.control & control::SRST != 0;
        let was = std::mem::replace(&mut s.srst, srst);
        (was && !srst).then(signature)
    }

    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        let mut s = self.0.state();
        s.submitted.push((slot, *fis, data.clone()));
        match fis.command {
            opcode::READ_FPDMA_QUEUED | opcode::WRITE_FPDMA_QUEUED => {
                s.held.push((slot, *fis, data));
                Submission::Pending {
                    accepted: Some(RegisterD2h {
                        status: status::DRDY | status::DSC,
                        ..Default::default()
                    }),
                }
            }
            opcode::FLUSH_CACHE | opcode::FLUSH_CACHE_EXT => {
                s.held.push((slot, *fis, data));
                Submission::Pending { accepted: None }
            }
            _ => Submission::Complete(run(&mut s, slot, fis, &data)),
        }
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.0.state().ready)
    }

    fn max_link_gen(&self) -> u8 {
        match self.0.state().max_gen {
            0 => 3,
            g => g,
        }
    }

    fn link_negotiated(&mut self, gen: u8) {
        self.0.state().negotiated.push(gen);
    }

    fn abort_all(&mut self) {
        let mut s = self.0.state();
        s.aborts += 1;
        s.held.clear();
        s.ready.clear();
    }
}

/// Guest memory layout the unit tests use.
pub mod layout {
    use crate::ahci::command::{HEADER_SIZE, PRDT_OFFSET, PRD_SIZE};
    use crate::mem::GuestMemory;
    use crate::sata::{Fis, RegisterH2d};

    pub const MEM_SIZE: usize = 0x40000;
    pub const CLB: u64 = 0x1000;
    pub const FB: u64 = 0x2000;
    pub const DATA: u64 = 0x20000;

    pub fn ctba(slot: u8) -> u64 {
        0x4000 + u64::from(slot) * 0x200
    }

    /// Write the command table and header of `slot`: CFIS `fis`, PRDT `prdt` as
    /// (address, bytes, I bit), and header DW0 flags `flags` (W, C, R... bits).
    pub fn put_command(
        mem: &dyn GuestMemory,
        slot: u8,
        fis: &RegisterH2d,
        prdt: &[(u64, u32, bool)],
        flags: u32,
    ) {
        let ct = ctba(slot);
        mem.write(ct, &Fis::RegisterH2d(*fis).encode()).unwrap();
        for (i, &(addr, len, irq)) in prdt.iter().enumerate() {
            let at = ct + PRDT_OFFSET + i as u64 * PRD_SIZE;
            mem.write_u32(at, addr as u32).unwrap();
            mem.write_u32(at + 4, (addr >> 32) as u32).unwrap();
            mem.write_u32(at + 12, (len - 1) | u32::from(irq) << 31)
                .unwrap();
        }
        let h = CLB + u64::from(slot) * HEADER_SIZE;
        mem.write_u32(h, 5 | flags | (prdt.len() as u32) << 16)
            .unwrap();
        mem.write_u32(h + 4, 0).unwrap();
        mem.write_u32(h + 8, ct as u32).unwrap();
        mem.write_u32(h + 12, 0).unwrap();
    }

    /// A command FIS.
    pub fn h2d(command: u8, lba: u64, count: u16) -> RegisterH2d {
        RegisterH2d {
            c: true,
            command,
            lba,
            count,
            device: 0x40,
            ..Default::default()
        }
    }

    /// An NCQ command FIS: the sector count is in Features, the tag in Count 7:3.
    pub fn fpdma(command: u8, tag: u8, lba: u64, sectors: u16) -> RegisterH2d {
        RegisterH2d {
            c: true,
            command,
            lba,
            features: sectors,
            count: u16::from(tag) << 3,
            device: 0x40,
            ..Default::default()
        }
    }
}
