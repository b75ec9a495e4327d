//! [`TracedDevice`]: a [`SataDevice`] wrapper that reports the SATA and ATA layers of the
//! conversation: every FIS crossing the port/device boundary, and every ATA command with its
//! end. The port wraps its device in one only when tracing is on, so a port without tracing
//! talks to its device directly.

use crate::ata::command::{protocol, Protocol};
use crate::ata::names::{opcode_name, protocol_name};
use crate::ata::registers::status;
use crate::ata::taskfile::{FpdmaCommand, Taskfile};
use crate::sata::{
    Completion, DataPath, Fis, LinkEvent, RegisterD2h, RegisterH2d, SataDevice, Submission,
};

use super::{Event, Layer, Tracer};

/// The Register H2D FIS of a command, decoded for the `fis` event.
fn h2d_event(f: &RegisterH2d) -> Event {
    Event::new(Layer::Sata, "fis")
        .str("dir", "h2d")
        .str("type", "RegH2D")
        .flag("c", f.c)
        .hex8("command", f.command)
        .hex32("features", f.features.into())
        .u("lba", f.lba)
        .hex8("device", f.device)
        .hex32("count", f.count.into())
        .hex8("control", f.control)
}

/// A FIS from the device, decoded for the `fis` event.
pub fn d2h_event(fis: &Fis) -> Event {
    let e = Event::new(Layer::Sata, "fis").str("dir", "d2h");
    match fis {
        Fis::RegisterD2h(f) => e
            .str("type", "RegD2H")
            .flag("i", f.interrupt)
            .hex8("status", f.status)
            .hex8("error", f.error)
            .u("lba", f.lba)
            .hex8("device", f.device)
            .hex32("count", f.count.into()),
        Fis::PioSetup(f) => e
            .str("type", "PIOSetup")
            .flag("i", f.interrupt)
            .flag("d", f.device_to_host)
            .hex8("status", f.status)
            .hex8("error", f.error)
            .hex8("e_status", f.e_status)
            .u("transfer_count", f.transfer_count),
        Fis::DmaSetup(f) => e
            .str("type", "DMASetup")
            .flag("i", f.interrupt)
            .flag("d", f.device_to_host)
            .flag("a", f.auto_activate)
            .u("buffer_id", f.buffer_id)
            .u("buffer_offset", f.buffer_offset)
            .u("transfer_count", f.transfer_count),
        Fis::SetDeviceBits(f) => e
            .str("type", "SDB")
            .flag("i", f.interrupt)
            .flag("n", f.notification)
            .hex8("status", f.status)
            .hex8("error", f.error)
            .hex32("sactive", f.sactive),
        Fis::Data(f) => e.str("type", "Data").u("bytes", f.payload.len() as u64),
        Fis::Bist(f) => e.str("type", "BIST").hex8("pattern", f.pattern),
        Fis::RegisterH2d(f) => h2d_event(f).str("dir", "d2h"),
    }
}

/// Status and error at the end of a command, from the last FIS that carries them.
fn final_status(fises: &[Fis]) -> (u8, u8) {
    let mut st = (0u8, 0u8);
    for f in fises {
        match f {
            Fis::RegisterD2h(d) => st = (d.status, d.error),
            Fis::SetDeviceBits(s) => st = (s.status, s.error),
            Fis::PioSetup(p) => st = (p.e_status, p.error),
            _ => {}
        }
    }
    st
}

/// The ATA-layer decoding of a command: opcode name, protocol, LBA, sectors, NCQ tag.
pub fn command_event(slot: u8, fis: &RegisterH2d) -> Event {
    let tf = Taskfile::decode(fis);
    let proto = protocol(tf.command, tf.features);
    let mut e = Event::new(Layer::Ata, "cmd")
        .slot(slot)
        .str("op", opcode_name(tf.command))
        .hex8("opcode", tf.command)
        .str("protocol", protocol_name(proto));
    if matches!(proto, Some(Protocol::Fpdma(_))) {
        let f = FpdmaCommand::decode(&tf);
        e = e
            .u("lba", f.lba)
            .u("sectors", f.sectors)
            .u("tag", f.tag)
            .flag("fua", f.fua);
    } else {
        e = e.u("lba", tf.lba).u("count", tf.sector_count());
        if !tf.lba48 {
            e = e.flag("lba28", true);
        }
        if tf.features != 0 {
            e = e.hex32("features", tf.features.into());
        }
    }
    e
}

/// The ATA-layer decoding of a PACKET command: the ATAPI command (CDB) by its MMC/SPC name,
/// its fields (see [`crate::ata::atapi::cdb::fields`]), and how its data moves.
pub fn packet_event(slot: u8, fis: &RegisterH2d, acmd: &[u8; 16]) -> Event {
    let p = crate::ata::atapi::packet::PacketCommand::decode(fis);
    let mut e = Event::new(Layer::Ata, "cmd")
        .slot(slot)
        .str("op", opcode_name(fis.command))
        .hex8("opcode", fis.command)
        .str("protocol", if p.dma { "packet-dma" } else { "packet-pio" })
        .str("cdb_op", crate::ata::atapi::cdb::name(acmd[0]))
        .hex8("cdb_opcode", acmd[0])
        .str("cdb", crate::ata::atapi::cdb::hex(acmd));
    for (k, v) in crate::ata::atapi::cdb::fields(acmd) {
        e = e.u(k, v);
    }
    if !p.dma {
        e = e.u("byte_count_limit", u64::from(p.byte_count_limit));
    }
    e
}

/// The end of a command at the ATA layer.
fn done_event(slot: u8, opcode: Option<u8>, c: &Completion) -> Event {
    let (st, err) = final_status(&c.fises);
    let mut e = Event::new(Layer::Ata, "done").slot(slot);
    if let Some(op) = opcode {
        e = e.str("op", opcode_name(op));
    }
    e.hex8("status", st)
        .hex8("error", err)
        .flag("ok", st & status::ERR == 0)
        .u("bytes", c.bytes_transferred)
}

/// Reports a port's conversation with its device to a [`Tracer`]; see the module docs.
pub struct TracedDevice {
    inner: Box<dyn SataDevice>,
    port: u8,
    tracer: Tracer,
    /// Opcode of the command in each slot, to name it when it ends.
    opcodes: [Option<u8>; 32],
}

impl TracedDevice {
    pub fn new(inner: Box<dyn SataDevice>, port: u8, tracer: Tracer) -> Self {
        TracedDevice {
            inner,
            port,
            tracer,
            opcodes: [None; 32],
        }
    }

    fn fis_up(&self, slot: Option<u8>, fis: &Fis) {
        self.tracer.emit(|| {
            let e = d2h_event(fis).port(self.port);
            match slot {
                Some(s) => e.slot(s),
                None => e,
            }
        });
    }

    fn finished(&mut self, c: &Completion) {
        for f in &c.fises {
            self.fis_up(Some(c.slot), f);
        }
        let op = self
            .opcodes
            .get_mut(usize::from(c.slot & 31))
            .and_then(Option::take);
        self.tracer
            .emit(|| done_event(c.slot, op, c).port(self.port));
    }
}

impl SataDevice for TracedDevice {
    fn comreset(&mut self) -> RegisterD2h {
        self.tracer
            .emit(|| Event::new(Layer::Sata, "comreset").port(self.port));
        self.opcodes = [None; 32];
        let sig = self.inner.comreset();
        self.fis_up(None, &Fis::RegisterD2h(sig));
        sig
    }

    fn device_control(&mut self, fis: &RegisterH2d) -> Option<RegisterD2h> {
        self.tracer.emit(|| h2d_event(fis).port(self.port));
        let answer = self.inner.device_control(fis);
        if let Some(d) = &answer {
            self.fis_up(None, &Fis::RegisterD2h(*d));
        }
        answer
    }

    fn submit(&mut self, slot: u8, fis: &RegisterH2d, data: DataPath) -> Submission {
        self.tracer
            .emit(|| h2d_event(fis).port(self.port).slot(slot));
        self.tracer.emit(|| {
            command_event(slot, fis)
                .port(self.port)
                .u("prd_bytes", data.len())
        });
        if let Some(o) = self.opcodes.get_mut(usize::from(slot & 31)) {
            *o = Some(fis.command);
        }
        let s = self.inner.submit(slot, fis, data);
        match &s {
            Submission::Complete(c) => self.finished(c),
            Submission::Pending { accepted: Some(d) } => {
                self.fis_up(Some(slot), &Fis::RegisterD2h(*d));
                if d.status & status::ERR != 0 {
                    if let Some(o) = self.opcodes.get_mut(usize::from(slot & 31)) {
                        *o = None;
                    }
                }
            }
            Submission::Pending { accepted: None } => {}
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
        self.tracer
            .emit(|| h2d_event(fis).port(self.port).slot(slot));
        self.tracer.emit(|| {
            packet_event(slot, fis, acmd)
                .port(self.port)
                .u("prd_bytes", data.len())
        });
        if let Some(o) = self.opcodes.get_mut(usize::from(slot & 31)) {
            *o = Some(fis.command);
        }
        let s = self.inner.submit_packet(slot, fis, acmd, data);
        match &s {
            Submission::Complete(c) => self.finished(c),
            Submission::Pending { accepted: Some(d) } => {
                self.fis_up(Some(slot), &Fis::RegisterD2h(*d));
            }
            Submission::Pending { accepted: None } => {}
        }
        s
    }

    fn poll_completions(&mut self) -> Vec<Completion> {
        let done = self.inner.poll_completions();
        for c in &done {
            self.finished(c);
        }
        done
    }

    fn abort_all(&mut self) {
        self.tracer
            .emit(|| Event::new(Layer::Ata, "abort_all").port(self.port));
        self.opcodes = [None; 32];
        self.inner.abort_all();
    }

    fn max_link_gen(&self) -> u8 {
        self.inner.max_link_gen()
    }

    fn link_negotiated(&mut self, gen: u8) {
        self.inner.link_negotiated(gen)
    }

    fn poll_link(&mut self) -> Option<LinkEvent> {
        self.inner.poll_link()
    }

    fn draining(&self) -> bool {
        self.inner.draining()
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        self.inner.next_deadline()
    }

    fn engine_stats(&self) -> Option<(&'static str, crate::block::EngineStats)> {
        self.inner.engine_stats()
    }

    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.ready_fd()
    }
}
