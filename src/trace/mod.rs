//! Tracing the SATA conversation, layer by layer.
//!
//! A [`Tracer`] is a cheap, clonable handle. Off (the default) it is `None`: every event site
//! is one branch on that `Option`, and the closure that would build the event never runs, so
//! nothing is formatted or allocated. On, it timestamps each [`Event`] (µs since the tracer was
//! made, from a monotonic clock) and writes it to its [`sink::Sink`]s: JSON lines for programs,
//! a compact text line for a terminal.
//!
//! Who emits what:
//! - the AHCI layer ([`crate::ahci`]): guest register accesses (`reg_read`, `reg_write`, with
//!   the register's spec name from [`crate::ahci::regs::register_name`]; `reg_write_posted`
//!   for PxSACT/PxCI writes the VMM took without an exit, when the HBA applies them,
//!   see [`crate::ahci::posted_writes`]), command fetches,
//!   interrupts, link changes, and spec-check warnings (layer `check`);
//! - the SATA layer: [`TracedDevice`], wrapped around each port's device, reports every FIS
//!   crossing the port/device boundary (`fis`, direction `h2d` or `d2h`, decoded fields);
//! - the ATA layer: the same wrapper decodes each command (`cmd`: opcode name, protocol, LBA,
//!   count, NCQ tag) and its end (`done`: status, error, bytes);
//! - fault injection ([`crate::ata::inject`]) reports what it did (layer `inject`);
//! - SG_IO pass-through reports the CDB sent and the sense that came back (layer `sg_io`).

pub mod device;
pub mod event;
pub mod file;
pub mod sink;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use device::TracedDevice;
pub use event::{Event, Layer, Value};
pub use sink::{Format, SharedBuffer, Sink};

/// A handle events are emitted through; see the module documentation.
#[derive(Clone, Default)]
pub struct Tracer(Option<Arc<Inner>>);

struct Inner {
    start: Instant,
    sinks: Mutex<Vec<Sink>>,
    /// Events are built and written (false: a [`Tracer::switchable`] one with no sinks now).
    active: AtomicBool,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.enabled() {
            "Tracer(on)"
        } else {
            "Tracer(off)"
        })
    }
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn off() -> Self {
        Tracer(None)
    }

    /// A tracer writing to `sinks` (off if there are none).
    pub fn new(sinks: Vec<Sink>) -> Self {
        if sinks.is_empty() {
            return Tracer(None);
        }
        Tracer(Some(Arc::new(Inner {
            start: Instant::now(),
            sinks: Mutex::new(sinks),
            active: AtomicBool::new(true),
        })))
    }

    /// A tracer whose sinks [`Tracer::set_sinks`] replaces while it runs (the control
    /// socket's `trace`), writing to `sinks` until then. Every event site costs one relaxed
    /// atomic load more while it has none, and the devices are built for tracing (wrapped in
    /// a [`TracedDevice`]), since it may be turned on later.
    pub fn switchable(sinks: Vec<Sink>) -> Self {
        Tracer(Some(Arc::new(Inner {
            start: Instant::now(),
            active: AtomicBool::new(!sinks.is_empty()),
            sinks: Mutex::new(sinks),
        })))
    }

    /// Write to `sinks` from now on (none: stop tracing), after flushing the old ones. False
    /// (and nothing changes) for a tracer that is off: it was not made switchable.
    pub fn set_sinks(&self, sinks: Vec<Sink>) -> bool {
        let Some(inner) = &self.0 else {
            return false;
        };
        let mut current = inner.lock();
        for s in current.iter_mut() {
            s.flush();
        }
        inner.active.store(!sinks.is_empty(), Ordering::Relaxed);
        *current = sinks;
        true
    }

    /// True while events are written somewhere.
    pub fn active(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|i| i.active.load(Ordering::Relaxed))
    }

    /// True when events are recorded.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Record the event `make` builds; `make` runs only when the tracer is on.
    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if let Some(inner) = &self.0 {
            if inner.active.load(Ordering::Relaxed) {
                inner.record(make());
            }
        }
    }

    /// Push buffered lines out to the files.
    pub fn flush(&self) {
        if let Some(inner) = &self.0 {
            for s in inner.lock().iter_mut() {
                s.flush();
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sink>> {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, event: Event) {
        let t_us = self.start.elapsed().as_micros() as u64;
        for s in self.lock().iter_mut() {
            s.write(t_us, &event);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for s in self.lock().iter_mut() {
            s.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_builds_events() {
        let t = Tracer::off();
        let mut built = false;
        t.emit(|| {
            built = true;
            Event::new(Layer::Ahci, "x")
        });
        assert!(!built && !t.enabled());
        assert!(!Tracer::new(Vec::new()).enabled());
    }

    #[test]
    fn a_switchable_tracer_writes_only_while_it_has_sinks() {
        let t = Tracer::switchable(Vec::new());
        let mut built = false;
        t.emit(|| {
            built = true;
            Event::new(Layer::Ahci, "x")
        });
        assert!(!built && !t.active() && t.enabled());
        let out = SharedBuffer::default();
        assert!(t.set_sinks(vec![Sink::new(Format::Json, Box::new(out.clone()))]));
        t.emit(|| Event::new(Layer::Ahci, "on"));
        assert!(t.set_sinks(Vec::new()), "off flushes");
        t.emit(|| Event::new(Layer::Ahci, "off"));
        let lines = out.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("\"kind\":\"on\""), "{}", lines[0]);
        assert!(!Tracer::off().set_sinks(Vec::new()));
    }

    #[test]
    fn on_writes_json_and_human_lines_with_increasing_timestamps() {
        let json = SharedBuffer::default();
        let human = SharedBuffer::default();
        let t = Tracer::new(vec![
            Sink::new(Format::Json, Box::new(json.clone())),
            Sink::new(Format::Human, Box::new(human.clone())),
        ]);
        t.emit(|| {
            Event::new(Layer::Ahci, "reg_write")
                .port(0)
                .str("reg", "P0CI")
                .hex32("value", 8)
        });
        t.emit(|| {
            Event::new(Layer::Ata, "cmd")
                .port(1)
                .slot(3)
                .str("op", "READ FPDMA QUEUED")
                .u("lba", 2048u64)
                .flag("ncq", true)
        });
        t.flush();
        let lines = json.lines();
        assert_eq!(lines.len(), 2);
        let e: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // Keys in order: t_us, port, slot, layer, kind, then the fields.
        assert!(lines[0].starts_with("{\"t_us\":"), "{}", lines[0]);
        assert!(
            lines[1].contains(",\"port\":1,\"slot\":3,\"layer\":\"ata\",\"kind\":\"cmd\","),
            "{}",
            lines[1]
        );
        assert_eq!(
            e[0],
            serde_json::json!({
                "t_us": e[0]["t_us"], "port": 0, "layer": "ahci", "kind": "reg_write",
                "reg": "P0CI", "value": 8
            })
        );
        assert_eq!(
            e[1],
            serde_json::json!({
                "t_us": e[1]["t_us"], "port": 1, "slot": 3, "layer": "ata", "kind": "cmd",
                "op": "READ FPDMA QUEUED", "lba": 2048, "ncq": true
            })
        );
        let (t0, t1) = (
            e[0]["t_us"].as_u64().unwrap(),
            e[1]["t_us"].as_u64().unwrap(),
        );
        assert!(t1 >= t0);
        let h = human.lines();
        assert!(
            h[0].ends_with("p0     ahci  reg_write reg=P0CI value=0x00000008"),
            "{}",
            h[0]
        );
        assert!(
            h[1].ends_with("p1 s3  ata   cmd op=\"READ FPDMA QUEUED\" lba=2048 ncq=true"),
            "{}",
            h[1]
        );
    }
}
