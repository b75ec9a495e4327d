//! ATAPI pass-through: a host CD/DVD drive (an sg node whose INQUIRY says peripheral device
//! type 05h, as libata presents an ATAPI device) shown to the guest as an ATAPI device. Each
//! PACKET command's CDB goes to the host drive as a SCSI command over SG_IO (which is what
//! the host's libata turns it into again), the data straight between the drive and guest RAM
//! through the pass-through engine (the sg driver's asynchronous interface, or SG_IO on
//! worker threads for a block node such as /dev/sr0).
//!
//! - CHECK CONDITION: the host's sense (fixed or descriptor format) becomes the ATAPI Error
//!   register (sense key in bits 7:4) and is kept for the guest's REQUEST SENSE (the host
//!   kernel took it with the command, so the drive has none left to give).
//! - A command the host could not run (a timeout, a reset, a transport error) ends with
//!   ABORTED COMMAND; a drive that vanished (ENODEV, ENXIO) with NOT READY, MEDIUM NOT PRESENT.
//! - Media changes are the drive's own: its UNIT ATTENTION and events pass through.
//! - Policy ([`refused`]): commands that write or change the medium, the drive's firmware or
//!   its settings for good (WRITE*, BLANK, FORMAT UNIT, SEND OPC INFORMATION, WRITE BUFFER
//!   (firmware download), SEND KEY (the region), MODE SELECT saving pages, SECURITY PROTOCOL
//!   OUT, vendor-specific C0h-FFh) end with CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND
//!   OPERATION CODE without reaching the host, unless `allow=all`.
//! - Direction: ATAPI does not carry it, so it is the command's ([`data_out`]); the transfer
//!   length is what the PRDT holds (the drive's residual count tells what moved).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::ata;
use super::cdb::{self, op};
use super::identify::PacketIdentity;
use super::packet::{self, PacketCommand};
use super::sense::{key, Sense};
use crate::ata::command::opcode;
use crate::ata::identify::TransferMode;
use crate::ata::passthrough::HostLocks;
use crate::ata::taskfile::d2h_abort;
use crate::block::sg::{host_status, scsi_status, DataDirection, SgRequest, SgResult, SgTransport};
use crate::block::{Completed, Engine, EngineStats, Reply, Request, ScsiCommand};
use crate::sata::{Completion, DataPath, RegisterD2h, RegisterH2d, SataDevice, Submission};

/// The largest transfer of one command (each sg descriptor's reserved buffer).
pub const MAX_TRANSFER: usize = 1 << 20;
/// ABORTED COMMAND: the host could not carry the command out.
const HOST_FAILED: Sense = Sense {
    key: key::ABORTED_COMMAND,
    asc: 0x00,
    ascq: 0x00,
};
/// NOT READY, MEDIUM NOT PRESENT: the drive is gone.
const VANISHED: Sense = Sense {
    key: key::NOT_READY,
    asc: 0x3a,
    ascq: 0x00,
};

/// What the host drive's INQUIRY (and unit serial number page) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInquiry {
    pub vendor: String,
    pub product: String,
    pub revision: String,
    pub serial: Option<String>,
}

fn ascii(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                ' '
            }
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// INQUIRY the device behind `t`: `Some` for a CD/DVD device (peripheral device type 05h).
pub fn probe(t: &dyn SgTransport, timeout: Duration) -> io::Result<Option<HostInquiry>> {
    let mut d = [0u8; 96];
    let r = t.execute(SgRequest {
        cdb: &[op::INQUIRY, 0, 0, 0, 96, 0],
        direction: DataDirection::FromDevice,
        data: &mut d,
        timeout,
    })?;
    if r.status != scsi_status::GOOD || r.host_status != host_status::DID_OK || d[0] & 0x1f != 5 {
        return Ok(None);
    }
    let mut page = [0u8; 64];
    let serial = t
        .execute(SgRequest {
            cdb: &[op::INQUIRY, 1, 0x80, 0, 64, 0],
            direction: DataDirection::FromDevice,
            data: &mut page,
            timeout,
        })
        .ok()
        .filter(|r| r.status == scsi_status::GOOD && page[1] == 0x80)
        .map(|_| ascii(&page[4..4 + usize::from(page[3]).min(60)]))
        .filter(|s| !s.is_empty());
    Ok(Some(HostInquiry {
        vendor: ascii(&d[8..16]),
        product: ascii(&d[16..32]),
        revision: ascii(&d[32..36]),
        serial,
    }))
}

/// Commands the policy refuses unless `allow=all`; see the module documentation.
pub fn refused(cdb: &[u8]) -> bool {
    let code = cdb.first().copied().unwrap_or(0);
    let saves_pages = cdb.get(1).is_some_and(|b| b & 1 != 0);
    cdb::writes_medium(code)
        || matches!(
            code,
            op::SEND_OPC_INFORMATION
                | op::WRITE_BUFFER
                | op::SEND_KEY
                | op::SECURITY_PROTOCOL_OUT
                | 0xc0..=0xff
        )
        || (matches!(code, op::MODE_SELECT_6 | op::MODE_SELECT_10) && saves_pages)
}

/// Commands whose data moves host to device (MMC-6, SPC-4).
pub fn data_out(code: u8) -> bool {
    matches!(
        code,
        op::WRITE_10
            | op::WRITE_12
            | op::WRITE_AND_VERIFY_10
            | op::WRITE_BUFFER
            | op::MODE_SELECT_6
            | op::MODE_SELECT_10
            | op::SEND_CUE_SHEET
            | op::SEND_OPC_INFORMATION
            | op::SEND_KEY
            | op::SEND_DVD_STRUCTURE
            | op::SET_STREAMING
            | op::FORMAT_UNIT
            | op::SECURITY_PROTOCOL_OUT
    )
}

/// Sense data (fixed or descriptor format) as key, ASC and ASCQ.
pub fn parse_sense(b: &[u8]) -> Option<Sense> {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    match at(0) & 0x7f {
        0x70 | 0x71 => Some(Sense {
            key: at(2) & 0x0f,
            asc: at(12),
            ascq: at(13),
        }),
        0x72 | 0x73 => Some(Sense {
            key: at(1) & 0x0f,
            asc: at(2),
            ascq: at(3),
        }),
        _ => None,
    }
}

/// How to pass a host drive through.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub path: PathBuf,
    pub timeout: Duration,
    pub allow_all: bool,
}

/// A command on the host.
#[derive(Debug)]
struct HostCommand {
    id: u64,
    slot: u8,
    packet: PacketCommand,
    len: u32,
}

/// The pass-through ATAPI device; see the module documentation.
pub struct AtapiHostDrive {
    engine: Box<dyn Engine>,
    model: String,
    serial: String,
    firmware: String,
    timeout: Duration,
    allow_all: bool,
    /// The sense of the last CHECK CONDITION, for REQUEST SENSE.
    sense: Option<Sense>,
    current: Option<HostCommand>,
    next_id: u64,
    reaped: Vec<Completed>,
    transfer_mode: TransferMode,
    srst: bool,
    _locks: HostLocks,
}

impl std::fmt::Debug for AtapiHostDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtapiHostDrive")
            .field("model", &self.model)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl AtapiHostDrive {
    /// The drive over `engine` (SCSI requests to the host drive), which said `inquiry`.
    pub fn new(
        engine: Box<dyn Engine>,
        inquiry: &HostInquiry,
        config: &HostConfig,
        locks: HostLocks,
    ) -> Self {
        let model = format!("{} {}", inquiry.vendor, inquiry.product)
            .trim()
            .to_string();
        let serial = inquiry.serial.clone().unwrap_or_else(|| {
            let name = config.path.file_name().unwrap_or_default();
            format!("SVMPT{}", name.to_string_lossy().to_uppercase())
        });
        AtapiHostDrive {
            engine,
            model,
            serial,
            firmware: inquiry.revision.clone(),
            timeout: config.timeout,
            allow_all: config.allow_all,
            sense: None,
            current: None,
            next_id: 0,
            reaped: Vec::new(),
            transfer_mode: TransferMode::UltraDma(5),
            srst: false,
            _locks: locks,
        }
    }

    /// The model the guest sees (IDENTIFY PACKET DEVICE): the host's vendor and product.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn reset(&mut self) {
        // Requests in the host cannot be recalled: their answers are dropped.
        self.current = None;
        self.sense = None;
        self.transfer_mode = TransferMode::UltraDma(5);
    }

    fn check(&mut self, slot: u8, packet: &PacketCommand, s: Sense) -> Completion {
        self.sense = Some(s);
        packet::finish(slot, packet, 0, Some(s))
    }

    fn packet(
        &mut self,
        slot: u8,
        fis: &RegisterH2d,
        acmd: &[u8; 16],
        data: DataPath,
    ) -> Submission {
        let packet = PacketCommand::decode(fis);
        if self.current.is_some() {
            return ata::done(slot, d2h_abort(fis.device));
        }
        let cdb = &acmd[..usize::from(packet::PACKET_BYTES)];
        if cdb[0] == op::REQUEST_SENSE {
            if let Some(s) = self.sense.take() {
                let n = (cdb::be(cdb, 4, 1) as usize)
                    .min(data.len() as usize)
                    .min(18);
                let bytes = match data.write_at(0, &s.fixed()[..n]) {
                    Ok(()) => n as u32,
                    Err(_) => 0,
                };
                return Submission::Complete(packet::finish(slot, &packet, bytes, None));
            }
        }
        self.sense = None;
        if !self.allow_all && refused(cdb) {
            log::debug!("cdrom pass-through: refused {}", cdb::name(cdb[0]));
            return Submission::Complete(self.check(slot, &packet, Sense::INVALID_OPCODE));
        }
        // No more than the command asks for: a CDB's allocation length caps its data-in
        // (SPC-4 4.2.5.6), so a guest buffer larger than it (Linux maps whole pages) does
        // not become a longer host transfer, and the byte count the HBA reports (PRDBC) is
        // what the drive can have sent even where the host reports no residue.
        let asked = cdb::allocation_length(cdb).map_or(u64::MAX, u64::from);
        let len = data.len().min(MAX_TRANSFER as u64).min(asked) as u32;
        let direction = match (len, data_out(cdb[0])) {
            (0, _) => DataDirection::None,
            (_, true) => DataDirection::ToDevice,
            (_, false) => DataDirection::FromDevice,
        };
        let buf = if len == 0 {
            None
        } else {
            match data.guest_buf(0, u64::from(len)) {
                Ok(b) => Some(b),
                Err(_) => {
                    return Submission::Complete(self.check(slot, &packet, Sense::DATA_PHASE_ERROR))
                }
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let request = Request::Scsi(ScsiCommand {
            cdb: cdb.to_vec(),
            direction,
            buf,
            timeout: self.timeout,
        });
        if let Err(e) = self.engine.submit(id, request) {
            log::error!("cdrom pass-through: {e}");
            return Submission::Complete(self.check(slot, &packet, HOST_FAILED));
        }
        self.current = Some(HostCommand {
            id,
            slot,
            packet,
            len,
        });
        Submission::Pending { accepted: None }
    }

    /// How a host command ended: the bytes moved, or the sense to report.
    fn outcome(len: u32, result: io::Result<Reply>) -> Result<u32, Sense> {
        let r: SgResult = match result {
            Ok(Reply::Scsi(r)) => r,
            Ok(Reply::Done) => return Err(HOST_FAILED),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENXIO)) => {
                log::warn!("cdrom pass-through: the host drive is gone ({e})");
                return Err(VANISHED);
            }
            Err(e) => {
                log::warn!("cdrom pass-through: host command failed: {e}");
                return Err(HOST_FAILED);
            }
        };
        if r.host_status != host_status::DID_OK {
            log::warn!(
                "cdrom pass-through: host status {:#04x} (a timeout or a reset)",
                r.host_status
            );
            return Err(HOST_FAILED);
        }
        match r.status {
            scsi_status::GOOD => Ok(len.saturating_sub(r.resid.max(0) as u32)),
            scsi_status::CHECK_CONDITION => Err(parse_sense(&r.sense).unwrap_or(HOST_FAILED)),
            _ => Err(HOST_FAILED),
        }
    }
}

impl SataDevice for AtapiHostDrive {
    fn comreset(&mut self) -> RegisterD2h {
        self.reset();
        self.srst = false;
        ata::signature(false)
    }

    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        match ata::soft_reset(&mut self.srst, fis) {
            ata::SoftReset::Asserted => {
                self.reset();
                None
            }
            ata::SoftReset::Released => Some(ata::signature(false)),
            ata::SoftReset::Unchanged => None,
        }
    }

    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        if self.current.is_some() {
            return ata::done(slot, d2h_abort(fis.device));
        }
        let id = PacketIdentity {
            serial: &self.serial,
            firmware: &self.firmware,
            model: &self.model,
            transfer_mode: self.transfer_mode,
        };
        let (s, effect) = ata::command(slot, fis, &data, &id);
        match effect {
            ata::Effect::None => {}
            ata::Effect::Reset => self.reset(),
            ata::Effect::TransferMode(m) => self.transfer_mode = m,
        }
        s
    }

    fn submit_packet(
        &mut self,
        slot: u8,
        fis: &RegisterH2d,
        acmd: &[u8; 16],
        data: DataPath,
    ) -> Submission {
        if fis.command != opcode::PACKET {
            return self.submit(slot, fis, data);
        }
        self.packet(slot, fis, acmd, data)
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        self.engine.reap(&mut self.reaped);
        let mut out = Vec::new();
        for c in std::mem::take(&mut self.reaped) {
            let Some(cmd) = self.current.take_if(|cmd| cmd.id == c.tag) else {
                // The answer of an aborted command.
                continue;
            };
            out.push(match Self::outcome(cmd.len, c.result) {
                Ok(bytes) => packet::finish(cmd.slot, &cmd.packet, bytes, None),
                Err(s) => self.check(cmd.slot, &cmd.packet, s),
            });
        }
        out
    }

    fn abort_all(&mut self) {
        self.current = None;
    }

    fn draining(&self) -> bool {
        self.current.is_none() && self.engine.in_flight() > 0
    }

    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        self.engine.ready_fd()
    }

    fn engine_stats(&self) -> Option<(&'static str, EngineStats)> {
        Some((self.engine.name(), self.engine.stats()))
    }
}

/// Open `config.path` as an ATAPI pass-through drive if INQUIRY says it is a CD/DVD device.
/// `Ok(Err(locks))` gives the node's locks back when it is not one, or cannot be probed (the
/// ATA pass-through drive then opens it, or says why it cannot); `Err`: the engine failed.
/// With `tracer` on, every SG_IO is traced as the drive on AHCI port `port`, as for disks.
pub fn open_if_atapi(
    config: &HostConfig,
    locks: HostLocks,
    notifier: crate::sata::CompletionNotifier,
    tracer: &crate::trace::Tracer,
    port: u8,
) -> io::Result<Result<AtapiHostDrive, HostLocks>> {
    use crate::block::sg::engine::{sg_allows_direct_io, SgEngine, SgEngineConfig};
    use crate::block::sg::threads::SgThreadEngine;
    use crate::block::sg::SgDevice;
    use std::os::unix::fs::FileTypeExt;

    let Ok(dev) = SgDevice::open(&config.path) else {
        return Ok(Err(locks));
    };
    let Ok(Some(inquiry)) = probe(&dev, config.timeout) else {
        return Ok(Err(locks));
    };
    let is_char = std::fs::metadata(&config.path)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false);
    let engine: Box<dyn Engine> = if is_char {
        Box::new(SgEngine::new(SgEngineConfig {
            path: config.path.clone(),
            max_in_flight: 1,
            max_transfer: MAX_TRANSFER,
            direct_io: sg_allows_direct_io(),
        })?)
    } else {
        Box::new(SgThreadEngine::new(dev, notifier, 1)?)
    };
    let engine: Box<dyn Engine> = if tracer.enabled() {
        Box::new(crate::ata::passthrough::traced::TracedEngine::new(
            engine,
            tracer.clone(),
            port,
        ))
    } else {
        engine
    };
    log::info!(
        "{}: ATAPI CD/DVD drive \"{} {}\" ({}), passed through",
        config.path.display(),
        inquiry.vendor,
        inquiry.product,
        inquiry.revision
    );
    Ok(Ok(AtapiHostDrive::new(engine, &inquiry, config, locks)))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use super::*;
    use crate::block::testing::MemEngine;
    use crate::mem::{GuestMemory, VecMemory};
    use crate::sata::{Fis, PrdEntry};

    /// A host CD drive: INQUIRY, READ(10) of a pattern, everything else CHECK CONDITION
    /// (or, once `gone`, ENODEV). It logs every CDB it gets.
    #[derive(Default)]
    struct FakeCd {
        log: Mutex<Vec<u8>>,
        gone: Mutex<bool>,
        /// The data length of every INQUIRY it got.
        lens: Mutex<Vec<usize>>,
    }

    impl SgTransport for FakeCd {
        fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult> {
            self.log.lock().unwrap().push(req.cdb[0]);
            if *self.gone.lock().unwrap() {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
            let good = SgResult::default();
            match req.cdb[0] {
                op::INQUIRY if req.cdb[1] & 1 == 0 => {
                    let mut page = [0u8; 36];
                    page[0] = 5;
                    page[8..16].copy_from_slice(b"HOSTVEND");
                    page[16..32].copy_from_slice(b"HOST DVD-RW     ");
                    page[32..36].copy_from_slice(b"1.02");
                    self.lens.lock().unwrap().push(req.data.len());
                    let n = req.data.len().min(page.len());
                    req.data[..n].copy_from_slice(&page[..n]);
                    Ok(good)
                }
                op::READ_10 => {
                    let n = (cdb::be(req.cdb, 7, 2) * 2048) as usize;
                    for (i, b) in req.data.iter_mut().take(n).enumerate() {
                        *b = i as u8 ^ 0x5a;
                    }
                    Ok(SgResult {
                        resid: (req.data.len() - n.min(req.data.len())) as i32,
                        ..good
                    })
                }
                _ => Ok(SgResult {
                    status: scsi_status::CHECK_CONDITION,
                    sense: vec![0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0],
                    ..good
                }),
            }
        }
    }

    fn drive(allow_all: bool) -> (AtapiHostDrive, Arc<FakeCd>, Arc<VecMemory>) {
        let cd = Arc::new(FakeCd::default());
        let inquiry = probe(&*cd, Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(inquiry.product, "HOST DVD-RW");
        let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let (engine, _h) = MemEngine::scsi(cd.clone(), notifier);
        let config = HostConfig {
            path: "/dev/sg9".into(),
            timeout: Duration::from_secs(1),
            allow_all,
        };
        let d = AtapiHostDrive::new(Box::new(engine), &inquiry, &config, HostLocks::default());
        (d, cd, Arc::new(VecMemory::new(1 << 20)))
    }

    fn run(d: &mut AtapiHostDrive, mem: &Arc<VecMemory>, c: &[u8], len: u32) -> Completion {
        let mut acmd = [0u8; 16];
        acmd[..c.len()].copy_from_slice(c);
        let prdt = if len == 0 {
            vec![]
        } else {
            vec![PrdEntry { addr: 0x1000, len }]
        };
        let fis = RegisterH2d {
            c: true,
            command: opcode::PACKET,
            features: 1,
            ..Default::default()
        };
        match d.submit_packet(0, &fis, &acmd, DataPath::new(mem.clone(), prdt)) {
            Submission::Complete(c) => c,
            Submission::Pending { .. } => d.poll_completions().pop().unwrap(),
        }
    }

    fn error(c: &Completion) -> Option<u8> {
        match c.fises.last() {
            Some(Fis::RegisterD2h(d)) if d.status & 1 != 0 => Some(d.error),
            _ => None,
        }
    }

    #[test]
    fn reads_sense_and_request_sense() {
        let (mut d, cd, mem) = drive(false);
        assert_eq!(d.model(), "HOSTVEND HOST DVD-RW");
        let c = run(
            &mut d,
            &mem,
            &[op::READ_10, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            2048,
        );
        assert_eq!((error(&c), c.bytes_transferred), (None, 2048));
        let mut b = [0u8; 4];
        mem.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [0x5a, 0x5b, 0x58, 0x59]);
        // A host CHECK CONDITION (descriptor sense): the key in the Error register, the sense
        // kept for REQUEST SENSE, which the host does not see.
        let c = run(&mut d, &mem, &[op::GET_PERFORMANCE], 8);
        assert_eq!(error(&c), Some(0x54));
        let before = cd.log.lock().unwrap().len();
        let c = run(&mut d, &mem, &[op::REQUEST_SENSE, 0, 0, 0, 18, 0], 18);
        assert_eq!((error(&c), c.bytes_transferred), (None, 18));
        let mut s = [0u8; 18];
        mem.read(0x1000, &mut s).unwrap();
        assert_eq!((s[0], s[2], s[12]), (0x70, 5, 0x24));
        assert_eq!(cd.log.lock().unwrap().len(), before);
    }

    #[test]
    fn the_allocation_length_caps_the_host_transfer() {
        let (mut d, cd, mem) = drive(false);
        // INQUIRY for 4 bytes into a 16 KiB buffer (as Linux's sr maps it): the host is
        // asked for 4, and 4 are reported moved.
        let c = run(&mut d, &mem, &[op::INQUIRY, 0, 0, 0, 4, 0], 16384);
        assert_eq!((error(&c), c.bytes_transferred), (None, 4));
        // A buffer smaller than the allocation length: the buffer's length.
        let c = run(&mut d, &mem, &[op::INQUIRY, 0, 0, 0, 96, 0], 36);
        assert_eq!((error(&c), c.bytes_transferred), (None, 36));
        assert_eq!(*cd.lens.lock().unwrap().last().unwrap(), 36);
        let lens = cd.lens.lock().unwrap().clone();
        assert_eq!(
            lens[lens.len() - 2],
            4,
            "INQUIRY lengths the host saw: {lens:?}"
        );
    }

    #[test]
    fn refused_commands_never_reach_the_host() {
        let (mut d, cd, mem) = drive(false);
        let before = cd.log.lock().unwrap().clone();
        for c in [
            vec![op::WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            vec![op::BLANK],
            vec![op::FORMAT_UNIT],
            vec![op::WRITE_BUFFER],
            vec![op::SEND_OPC_INFORMATION],
            vec![op::SEND_KEY],
            vec![op::MODE_SELECT_10, 1],
            vec![0xd8],
        ] {
            assert_eq!(error(&run(&mut d, &mem, &c, 2048)), Some(0x54), "{c:02x?}");
        }
        assert_eq!(*cd.log.lock().unwrap(), before);
        // allow=all lets them through.
        let (mut d, cd, mem) = drive(true);
        run(&mut d, &mem, &[op::BLANK], 0);
        assert_eq!(cd.log.lock().unwrap().last(), Some(&op::BLANK));
    }

    #[test]
    fn a_vanished_drive_is_not_ready() {
        let (mut d, cd, mem) = drive(false);
        *cd.gone.lock().unwrap() = true;
        let c = run(&mut d, &mem, &[op::TEST_UNIT_READY], 0);
        assert_eq!(error(&c).map(|e| e >> 4), Some(key::NOT_READY));
        // IDENTIFY PACKET DEVICE still answers (from what INQUIRY said).
        let fis = RegisterH2d {
            c: true,
            command: opcode::IDENTIFY_PACKET_DEVICE,
            ..Default::default()
        };
        let data = DataPath::new(mem.clone(), vec![PrdEntry { addr: 0, len: 512 }]);
        let Submission::Complete(c) = d.submit(0, &fis, data) else {
            panic!()
        };
        assert_eq!(c.bytes_transferred, 512);
    }

    #[test]
    fn sense_formats() {
        let fixed = [0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x28, 0x00];
        assert_eq!(parse_sense(&fixed), Some(Sense::MEDIUM_MAY_HAVE_CHANGED));
        assert_eq!(
            parse_sense(&[0x72, 2, 0x3a, 1]),
            Some(Sense::NO_MEDIUM_TRAY_CLOSED)
        );
        assert_eq!(parse_sense(&[]), None);
        assert!(data_out(op::MODE_SELECT_10) && !data_out(op::READ_10));
        assert!(!refused(&[op::MODE_SELECT_10, 0]) && refused(&[op::MODE_SELECT_10, 1]));
    }
}
