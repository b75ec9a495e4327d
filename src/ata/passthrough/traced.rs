//! The SG_IO trace hook: an [`SgTransport`] wrapper that reports each host command (the CDB
//! sent, what came back: SCSI status, host/driver status, the sense bytes and what they say)
//! to a [`Tracer`] (layer `sg_io`). [`PassthroughDrive::open_traced`] puts it in front of the
//! real SG device when tracing is on; without tracing the drive talks to the device directly.
//!
//! [`PassthroughDrive::open_traced`]: super::PassthroughDrive::open_traced

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::sense::Sense;
use super::sg_io::{DataDirection, SgRequest, SgResult, SgTransport};
use crate::trace::{Event, Layer, Tracer};

/// Bytes as lowercase hex without separators.
fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reports every SG_IO of a pass-through drive; see the module documentation.
pub struct TracedTransport {
    inner: Arc<dyn SgTransport>,
    tracer: Tracer,
    port: u8,
}

impl TracedTransport {
    pub fn new(inner: Arc<dyn SgTransport>, tracer: Tracer, port: u8) -> Self {
        TracedTransport {
            inner,
            tracer,
            port,
        }
    }
}

impl SgTransport for TracedTransport {
    fn execute(&self, req: SgRequest<'_>) -> io::Result<SgResult> {
        let cdb = hex_bytes(req.cdb);
        let dir = match req.direction {
            DataDirection::None => "none",
            DataDirection::ToDevice => "to-device",
            DataDirection::FromDevice => "from-device",
        };
        let len = req.data.len() as u64;
        let t0 = Instant::now();
        let r = self.inner.execute(req);
        self.tracer.emit(|| {
            let e = Event::new(Layer::SgIo, "sg_io")
                .port(self.port)
                .str("cdb", cdb)
                .str("dir", dir)
                .u("len", len)
                .u("us", t0.elapsed().as_micros() as u64);
            match &r {
                Err(err) => e.str("errno", err.to_string()),
                Ok(res) => {
                    let mut e = e
                        .hex8("status", res.status)
                        .hex32("host_status", res.host_status.into())
                        .hex32("driver_status", res.driver_status.into())
                        .u("resid", res.resid.max(0) as u64)
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
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Format, SharedBuffer, Sink};
    use std::time::Duration;

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
        let t = TracedTransport::new(Arc::new(Fixed), tracer, 2);
        let mut data = [0u8; 512];
        let r = t
            .execute(SgRequest {
                cdb: &[0x85, 0x0d],
                direction: DataDirection::FromDevice,
                data: &mut data,
                timeout: Duration::from_secs(1),
            })
            .unwrap();
        assert_eq!(r.status, 2);
        let l = buf.lines();
        assert_eq!(l.len(), 1);
        let e: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
        assert_eq!(
            e,
            serde_json::json!({
                "t_us": e["t_us"], "port": 2, "layer": "sg_io", "kind": "sg_io",
                "cdb": "850d", "dir": "from-device", "len": 512, "us": e["us"],
                "status": 2, "host_status": 0, "driver_status": 0, "resid": 0,
                "sense": "720311040000000e090c004000000010000000004051",
                "key": 3, "asc": 0x11, "ascq": 4, "ata_status": 0x51, "ata_error": 0x40, "ata_lba": 0x10
            }),
            "{}",
            l[0]
        );
        assert!(e["t_us"].is_u64() && e["us"].is_u64());
    }
}
