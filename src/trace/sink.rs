//! Where trace events go: JSON lines or compact text, to any writer.
//!
//! JSON line layout (one object per event, keys in this order):
//! `{"t_us":N,"port":N,"slot":N,"layer":"ahci|sata|ata|sg_io|check|inject","kind":"...",
//! <fields>}`; `port` and `slot` are left out when they do not apply. Every number is a JSON
//! number, register-like values too (`"status":81` for 0x51, what `jq 'select(.status ==
//! 81)'` wants); the text form shows those in hex (`status=0x51`). docs/trace-schema.md lists every
//! event and field.
//!
//! Text layout: `   1234.567 p0 s3  ata   cmd op="READ FPDMA QUEUED" lba=2048 ...`
//! (milliseconds, port, slot, layer, kind, fields).

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::event::{Event, Value};

/// A line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Human,
}

/// A writer and the format it gets.
pub struct Sink {
    format: Format,
    out: Box<dyn Write + Send>,
    /// A write failed; stop trying (and say so once).
    failed: bool,
}

impl Sink {
    pub fn new(format: Format, out: Box<dyn Write + Send>) -> Self {
        Sink {
            format,
            out,
            failed: false,
        }
    }

    pub(super) fn write(&mut self, t_us: u64, e: &Event) {
        if self.failed {
            return;
        }
        let line = match self.format {
            Format::Json => json_line(t_us, e),
            Format::Human => human_line(t_us, e),
        };
        if let Err(err) = self.out.write_all(line.as_bytes()) {
            log::error!("trace: cannot write: {err}; tracing to this sink stops");
            self.failed = true;
        }
    }

    pub(super) fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

/// `s` as a JSON string literal.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(value: u64, digits: u8) -> String {
    format!("0x{value:0width$x}", width = usize::from(digits))
}

/// One JSON line (with its newline).
pub fn json_line(t_us: u64, e: &Event) -> String {
    let mut s = format!("{{\"t_us\":{t_us}");
    if let Some(p) = e.port {
        s += &format!(",\"port\":{p}");
    }
    if let Some(slot) = e.slot {
        s += &format!(",\"slot\":{slot}");
    }
    s += &format!(",\"layer\":\"{}\",\"kind\":\"{}\"", e.layer.name(), e.kind);
    for (name, v) in &e.fields {
        s.push(',');
        json_str(&mut s, name);
        s.push(':');
        match v {
            Value::U(n) | Value::Hex { value: n, .. } => s += &n.to_string(),
            Value::Str(t) => json_str(&mut s, t),
            Value::Bool(b) => s += if *b { "true" } else { "false" },
        }
    }
    s += "}\n";
    s
}

/// One text line (with its newline).
pub fn human_line(t_us: u64, e: &Event) -> String {
    let port = e.port.map_or(String::new(), |p| format!("p{p}"));
    let slot = e.slot.map_or(String::new(), |s| format!("s{s}"));
    let mut s = format!(
        "{:>8}.{:03} {port:<2} {slot:<3} {:<5} {}",
        t_us / 1000,
        t_us % 1000,
        e.layer.name(),
        e.kind
    );
    for (name, v) in &e.fields {
        s += &format!(" {name}=");
        match v {
            Value::U(n) => s += &n.to_string(),
            Value::Hex { value, digits } => s += &hex(*value, *digits),
            Value::Str(t) if t.contains(' ') || t.is_empty() => s += &format!("{t:?}"),
            Value::Str(t) => s += t,
            Value::Bool(b) => s += if *b { "true" } else { "false" },
        }
    }
    s.push('\n');
    s
}

/// An in-memory writer whose clones share one buffer (for tests and tools).
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// The text written so far, split into lines.
    pub fn lines(&self) -> Vec<String> {
        let b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&b)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Forget what was written.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
