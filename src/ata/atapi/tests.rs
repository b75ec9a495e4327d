//! The drive through the `SataDevice` trait, over a RAM disc ([`MemEngine`]) and `VecMemory`.

use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::cdb::op;
use super::*;
use crate::ata::registers::status;
use crate::block::testing::{MemEngine, MemEngineHandle};
use crate::mem::{GuestMemory, VecMemory};
use crate::sata::Fis;
use crate::sata::PrdEntry;

const BLOCKS: u64 = 64;
const BUF: u64 = 0x10000;

struct Rig {
    drive: AtapiDrive,
    control: MediaControl,
    mem: Arc<VecMemory>,
    disc: MemEngineHandle,
}

fn byte_at(offset: usize) -> u8 {
    (offset as u32).wrapping_mul(2_654_435_761).rotate_right(11) as u8
}

fn rig() -> Rig {
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let (engine, disc) = MemEngine::new((BLOCKS * 2048) as usize, notifier.clone());
    let bytes: Vec<u8> = (0..(BLOCKS * 2048) as usize).map(byte_at).collect();
    disc.set_disk(0, &bytes);
    let medium = Medium::with_engine("test.iso".into(), BLOCKS, Box::new(engine));
    let config = CdromConfig {
        path: None,
        model: None,
        serial: Some("CD1".into()),
        engine: EngineChoice::Auto,
        lock: false,
    };
    let (drive, control) = AtapiDrive::with_medium(&config, Some(medium), notifier);
    Rig {
        drive,
        control,
        mem: Arc::new(VecMemory::new(4 << 20)),
        disc,
    }
}

fn packet_fis(dma: bool, limit: u16) -> RegisterH2d {
    RegisterH2d {
        c: true,
        command: opcode::PACKET,
        features: u16::from(dma),
        lba: u64::from(limit) << 8,
        ..Default::default()
    }
}

fn cdb(bytes: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..bytes.len()].copy_from_slice(bytes);
    c
}

impl Rig {
    fn data(&self, len: u32) -> DataPath {
        let prdt = if len == 0 {
            vec![]
        } else {
            vec![PrdEntry { addr: BUF, len }]
        };
        DataPath::new(self.mem.clone(), prdt)
    }

    /// Run a PACKET command to its end.
    fn run(&mut self, dma: bool, limit: u16, c: &[u8], len: u32) -> Completion {
        let data = self.data(len);
        match self
            .drive
            .submit_packet(0, &packet_fis(dma, limit), &cdb(c), data)
        {
            Submission::Complete(c) => c,
            Submission::Pending { .. } => loop {
                if let Some(c) = self.drive.poll_completions().pop() {
                    return c;
                }
            },
        }
    }

    fn read_buf(&self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(BUF, &mut v).unwrap();
        v
    }

    /// The sense the next REQUEST SENSE returns: (key, asc, ascq).
    fn request_sense(&mut self) -> (u8, u8, u8) {
        let c = self.run(true, 0, &[op::REQUEST_SENSE, 0, 0, 0, 18, 0], 18);
        assert_eq!(c.bytes_transferred, 18);
        let s = self.read_buf(18);
        (s[2] & 0xf, s[12], s[13])
    }
}

fn end(c: &Completion) -> RegisterD2h {
    match c.fises.last() {
        Some(Fis::RegisterD2h(d)) => *d,
        other => panic!("ends with {other:?}"),
    }
}

fn sense_key(c: &Completion) -> Option<u8> {
    let d = end(c);
    (d.status & status::ERR != 0).then_some(d.error >> 4)
}

#[test]
fn signature_and_identify() {
    let mut r = rig();
    let sig = r.drive.comreset();
    assert_eq!((sig.count, sig.lba, sig.status), (1, 0xeb1401, 0));
    let data = r.data(512);
    let Submission::Complete(c) = r.drive.submit(
        0,
        &RegisterH2d {
            c: true,
            command: opcode::IDENTIFY_PACKET_DEVICE,
            ..Default::default()
        },
        data,
    ) else {
        panic!()
    };
    assert_eq!(c.bytes_transferred, 512);
    let id = r.read_buf(512);
    assert_eq!(id[1] >> 6, 0b10, "ATAPI");
    let data = r.data(512);
    let Submission::Complete(c) = r.drive.submit(
        0,
        &RegisterH2d {
            c: true,
            command: opcode::IDENTIFY_DEVICE,
            ..Default::default()
        },
        data,
    ) else {
        panic!()
    };
    let d = end(&c);
    assert_eq!(
        (d.status & 1, d.error, d.lba, d.count),
        (1, 0x04, 0xeb1401, 1)
    );
}

#[test]
fn dma_and_pio_reads_return_the_disc() {
    let mut r = rig();
    let c = r.run(true, 0, &[op::READ_10, 0, 0, 0, 0, 3, 0, 0, 2, 0], 4096);
    assert_eq!(sense_key(&c), None);
    assert_eq!(c.bytes_transferred, 4096);
    let want: Vec<u8> = (3 * 2048..5 * 2048).map(byte_at).collect();
    assert_eq!(r.read_buf(4096), want);
    // PIO, byte count limit 3000: blocks of 3000, 3000, 144... for 3 blocks of 2048.
    let c = r.run(
        false,
        3000,
        &[op::READ_12, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0],
        6144,
    );
    let counts: Vec<u16> = c
        .fises
        .iter()
        .filter_map(|f| match f {
            Fis::PioSetup(p) if p.device_to_host => Some(p.transfer_count),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![3000, 3000, 144]);
    let want: Vec<u8> = (2048..4 * 2048).map(byte_at).collect();
    assert_eq!(r.read_buf(6144), want);
    assert_eq!(end(&c).count, 3, "interrupt reason: I/O and C/D");
}

#[test]
fn bad_reads_are_check_conditions() {
    let mut r = rig();
    let c = r.run(true, 0, &[op::READ_10, 0, 0, 0, 0, 63, 0, 0, 2, 0], 4096);
    assert_eq!(sense_key(&c), Some(sense::key::ILLEGAL_REQUEST));
    assert_eq!(r.request_sense(), (5, 0x21, 0));
    assert_eq!(r.request_sense(), (0, 0, 0), "reported once");
    // A PRDT too short for the data.
    let c = r.run(true, 0, &[op::READ_10, 0, 0, 0, 0, 0, 0, 0, 2, 0], 2048);
    assert_eq!(sense_key(&c), Some(sense::key::ABORTED_COMMAND));
    // A host read error.
    r.disc.fail_at(5 * 2048);
    let c = r.run(true, 0, &[op::READ_10, 0, 0, 0, 0, 5, 0, 0, 1, 0], 2048);
    assert_eq!(sense_key(&c), Some(sense::key::MEDIUM_ERROR));
    // Unknown and write commands.
    let c = r.run(true, 0, &[0xe7], 0);
    assert_eq!(end(&c).error, 0x54);
    let c = r.run(true, 0, &[op::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0], 0);
    assert_eq!(sense_key(&c), Some(sense::key::DATA_PROTECT));
}

#[test]
fn garbage_cdbs_never_panic() {
    let mut r = rig();
    let mut x = 0x1234_5678u32;
    for code in 0..=255u8 {
        for limit in [0u16, 1, 7, 0xffff] {
            let mut c = [0u8; 16];
            c[0] = code;
            for b in &mut c[1..] {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            if code == op::READ_10 || code == op::READ_12 {
                c[2] = 0;
            }
            for len in [0u32, 2, 4096] {
                let _ = r.run(limit % 2 == 0, limit, &c, len);
            }
        }
    }
    // Still works.
    r.drive.comreset();
    let c = r.run(true, 0, &[op::INQUIRY, 0, 0, 0, 36, 0], 36);
    assert_eq!(c.bytes_transferred, 36);
}

#[test]
fn eject_load_and_prevent() {
    let mut r = rig();
    let prevent = [op::PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1, 0];
    assert_eq!(sense_key(&r.run(true, 0, &prevent, 0)), None);
    let eject = [op::START_STOP_UNIT, 0, 0, 0, 0x02, 0];
    assert_eq!(sense_key(&r.run(true, 0, &eject, 0)), Some(5));
    assert_eq!(r.request_sense(), (5, 0x53, 0x02));
    assert!(matches!(r.control.eject(), Err(MediaError::Locked)));
    // The host's eject request shows as an event.
    let gesn = [
        op::GET_EVENT_STATUS_NOTIFICATION,
        1,
        0,
        0,
        0x10,
        0,
        0,
        0,
        8,
        0,
    ];
    r.run(true, 0, &gesn, 8);
    assert_eq!(r.read_buf(8)[4], media_event::EJECT_REQUEST);
    let allow = [op::PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0, 0];
    r.run(true, 0, &allow, 0);
    assert_eq!(sense_key(&r.run(true, 0, &eject, 0)), None);
    let tur = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), Some(2));
    assert_eq!(r.request_sense(), (2, 0x3a, 0x02));
    r.run(true, 0, &gesn, 8);
    assert_eq!(&r.read_buf(8)[4..6], &[media_event::MEDIA_REMOVAL, 0x01]);
    // Load: unit attention once, then ready.
    let load = [op::START_STOP_UNIT, 0, 0, 0, 0x03, 0];
    assert_eq!(sense_key(&r.run(true, 0, &load, 0)), None);
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), Some(6));
    assert_eq!(r.request_sense(), (6, 0x28, 0));
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), None);
    r.run(true, 0, &gesn, 8);
    assert_eq!(&r.read_buf(8)[4..6], &[media_event::NEW_MEDIA, 0x02]);
}

#[test]
fn host_insert_and_eject() {
    let mut r = rig();
    let path = std::env::temp_dir().join(format!("satavm-atapi-unit-{}.iso", std::process::id()));
    std::fs::write(&path, vec![0xabu8; 4 * 2048]).unwrap();
    r.control.insert(&path).unwrap();
    let tur = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];
    // INQUIRY passes a unit attention.
    let c = r.run(true, 0, &[op::INQUIRY, 0, 0, 0, 36, 0], 36);
    assert_eq!(sense_key(&c), None);
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), Some(6));
    let c = r.run(true, 0, &[op::READ_CAPACITY, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(sense_key(&c), None);
    assert_eq!(r.read_buf(8), vec![0, 0, 0, 3, 0, 0, 8, 0]);
    let c = r.run(true, 0, &[op::READ_10, 0, 0, 0, 0, 1, 0, 0, 1, 0], 2048);
    assert_eq!(sense_key(&c), None);
    assert_eq!(r.read_buf(2048), vec![0xab; 2048]);
    r.control.eject().unwrap();
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), Some(2));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(r.control.reload(), Err(MediaError::NoPath)));
}

#[test]
fn abort_orphans_the_read() {
    let mut r = rig();
    r.disc.set_hold(true);
    let data = r.data(2048);
    let s = r.drive.submit_packet(
        0,
        &packet_fis(true, 0),
        &cdb(&[op::READ_10, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        data,
    );
    assert_eq!(s, Submission::Pending { accepted: None });
    r.drive.abort_all();
    assert!(r.drive.draining());
    r.disc.release_all();
    assert!(r.drive.poll_completions().is_empty());
    assert!(!r.drive.draining());
}

#[test]
fn empty_tray() {
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let config = CdromConfig {
        path: None,
        model: Some("X".into()),
        serial: None,
        engine: EngineChoice::Auto,
        lock: false,
    };
    let (drive, control) = AtapiDrive::with_medium(&config, None, notifier);
    let mut r = Rig {
        drive,
        control,
        mem: Arc::new(VecMemory::new(1 << 20)),
        disc: MemEngine::new(0, Arc::new(EventFd::new(EFD_NONBLOCK).unwrap())).1,
    };
    let tur = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), Some(2));
    assert_eq!(r.request_sense(), (2, 0x3a, 0x01));
    let c = r.run(
        true,
        0,
        &[op::GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 0, 255, 0],
        255,
    );
    assert_eq!(sense_key(&c), None);
    assert_eq!(&r.read_buf(8)[6..8], &[0, 0], "no current profile");
    assert_eq!(r.drive.engine_stats(), None);
}

#[test]
fn reload_rereads_the_configured_path() {
    let path = std::env::temp_dir().join(format!("satavm-atapi-reload-{}.iso", std::process::id()));
    std::fs::write(&path, vec![1u8; 2 * 2048]).unwrap();
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let config = CdromConfig {
        path: Some(path.clone()),
        model: None,
        serial: None,
        engine: EngineChoice::Threads,
        lock: true,
    };
    let (drive, control) = AtapiDrive::open(&config, notifier).unwrap();
    let mut r = Rig {
        drive,
        control,
        mem: Arc::new(VecMemory::new(1 << 20)),
        disc: MemEngine::new(0, Arc::new(EventFd::new(EFD_NONBLOCK).unwrap())).1,
    };
    let tur = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0];
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), None);
    // A new disc under the same name: swapped (the old one stays open until the drive takes
    // the change, so write a new file and rename it over the path).
    let next = path.with_extension("next");
    std::fs::write(&next, vec![2u8; 3 * 2048]).unwrap();
    std::fs::rename(&next, &path).unwrap();
    r.control.reload().unwrap();
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), Some(6));
    r.run(true, 0, &[op::READ_CAPACITY, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(&r.read_buf(4), &[0, 0, 0, 2]);
    // No file there: ejected.
    std::fs::remove_file(&path).unwrap();
    r.control.reload().unwrap();
    assert_eq!(sense_key(&r.run(true, 0, &tur, 0)), Some(2));
    assert_eq!(r.request_sense(), (2, 0x3a, 0x02));
}
