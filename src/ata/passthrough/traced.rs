//! The SG_IO trace hook: an [`Engine`] wrapper that reports each host command of a
//! pass-through drive (the CDB sent, what came back: SCSI status, host/driver status, the sense
//! bytes and what they say) to a [`Tracer`] (layer `sg_io`), when it ends.
//! [`PassthroughDrive::open_traced`] puts it in front of the real engine when tracing is on;
//! without tracing the drive talks to the engine directly.
//!
//! [`PassthroughDrive::open_traced`]: super::PassthroughDrive::open_traced

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Instant;

use super::sense::Sense;
use crate::block::{Completed, DataDirection, Engine, EngineStats, Reply, Request, SubmitError};
use crate::trace::{Event, Layer, Tracer};

/// Bytes as lowercase hex without separators.
fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What was sent, kept until the command ends.
struct Sent {
    cdb: String,
    dir: &'static str,
    len: u64,
    at: Instant,
}

/// Reports every SG_IO of a pass-through drive; see the module documentation.
pub struct TracedEngine {
    inner: Box<dyn Engine>,
    tracer: Tracer,
    port: u8,
    sent: HashMap<u64, Sent>,
}

impl TracedEngine {
    pub fn new(inner: Box<dyn Engine>, tracer: Tracer, port: u8) -> Self {
        TracedEngine {
            inner,
            tracer,
            port,
            sent: HashMap::new(),
        }
    }

    fn trace(&self, sent: &Sent, c: &Completed) {
        self.tracer.emit(|| {
            let e = Event::new(Layer::SgIo, "sg_io")
                .port(self.port)
                .str("cdb", sent.cdb.clone())
                .str("dir", sent.dir)
                .u("len", sent.len)
                .u("us", sent.at.elapsed().as_micros() as u64);
            match &c.result {
                Err(err) => e.str("errno", err.to_string()),
                Ok(Reply::Done) => e,
                Ok(Reply::Scsi(res)) => {
                    let mut e = e
                        .hex8("status", res.status)
                        .hex32("host_status", res.host_status.into())
                        .hex32("driver_status", res.driver_status.into())
                        .u("resid", res.resid.max(0) as u64)
                        .flag("direct_io", res.direct_io)
                        .str("sense", hex_bytes(&res.sense));
                    if let Some(s) = Sense::parse(&res.sense) {
                        e = e.hex8("key", s.key).hex8("asc", s.asc).hex8("ascq", s.ascq);
                        if let Some(a) = s.ata {
                            e = e
                                .hex8("ata_status", a.status)
                                .hex8("ata_error", a.error)
                                .u("ata_lba", a.lba);
                        }
                    }
                    e
                }
            }
        });
    }
}

impl Engine for TracedEngine {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn submit(&mut self, tag: u64, request: Request) -> Result<(), SubmitError> {
        if let Request::Scsi(cmd) = &request {
            let dir = match cmd.direction {
                DataDirection::None => "none",
                DataDirection::ToDevice => "to-device",
                DataDirection::FromDevice => "from-device",
            };
            self.sent.insert(
                tag,
                Sent {
                    cdb: hex_bytes(&cmd.cdb),
                    dir,
                    len: cmd.buf.as_ref().map_or(0, |b| b.len()),
                    at: Instant::now(),
                },
            );
        }
        self.inner.submit(tag, request)
    }

    fn reap(&mut self, out: &mut Vec<Completed>) {
        let from = out.len();
        self.inner.reap(out);
        for c in &out[from..] {
            if let Some(sent) = self.sent.remove(&c.tag) {
                self.trace(&sent, c);
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    fn ready_fd(&self) -> Option<RawFd> {
        self.inner.ready_fd()
    }

    fn stats(&self) -> EngineStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;
    use std::time::Duration;

    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use super::*;
    use crate::block::sg::{SgRequest, SgResult, SgTransport};
    use crate::block::testing::MemEngine;
    use crate::block::{GuestBuf, ScsiCommand};
    use crate::mem::VecMemory;
    use crate::trace::{Format, SharedBuffer, Sink};

    struct Fixed;
    impl SgTransport for Fixed {
        fn execute(&self, _req: SgRequest<'_>) -> io::Result<SgResult> {
            // CHECK CONDITION, descriptor sense: MEDIUM ERROR, ATA Return descriptor with
            // status 51h, error 40h, LBA 0x10.
            let mut sense = vec![0x72, 0x03, 0x11, 0x04, 0, 0, 0, 14];
            sense.extend_from_slice(&[
                0x09, 0x0c, 0x00, 0x40, 0, 0, 0, 0x10, 0, 0, 0, 0, 0x40, 0x51,
            ]);
            Ok(SgResult {
                status: 0x02,
                sense,
                ..Default::default()
            })
        }
    }

    #[test]
    fn reports_cdb_and_sense() {
        let buf = SharedBuffer::default();
        let tracer = Tracer::new(vec![Sink::new(Format::Json, Box::new(buf.clone()))]);
        let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let (inner, _) = MemEngine::scsi(Arc::new(Fixed), n);
        let mut t = TracedEngine::new(Box::new(inner), tracer, 2);
        let mem = Arc::new(VecMemory::new(1 << 16));
        t.submit(
            9,
            Request::Scsi(ScsiCommand {
                cdb: vec![0x85, 0x0d],
                direction: DataDirection::FromDevice,
                buf: Some(GuestBuf::new(mem, [(0x1000, 512)])),
                timeout: Duration::from_secs(1),
            }),
        )
        .unwrap();
        let mut out = Vec::new();
        t.reap(&mut out);
        assert!(
            matches!(&out[..], [Completed { tag: 9, result: Ok(Reply::Scsi(r)) }] if r.status == 2)
        );
        let l = buf.lines();
        assert_eq!(l.len(), 1);
        let e: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
        assert_eq!(
            e,
            serde_json::json!({
                "t_us": e["t_us"], "port": 2, "layer": "sg_io", "kind": "sg_io",
                "cdb": "850d", "dir": "from-device", "len": 512, "us": e["us"],
                "status": 2, "host_status": 0, "driver_status": 0, "resid": 0, "direct_io": false,
                "sense": "720311040000000e090c004000000010000000004051",
                "key": 3, "asc": 0x11, "ascq": 4, "ata_status": 0x51, "ata_error": 0x40, "ata_lba": 0x10
            }),
            "{}",
            l[0]
        );
        assert!(e["t_us"].is_u64() && e["us"].is_u64());
    }
}
