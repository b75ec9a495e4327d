//! The control socket's wire format: one JSON object per line each way, in QMP's shape.
//!
//! - In: `{"execute": "CMD", "arguments": {...}, "id": ANY}` (`arguments` and `id` optional).
//! - Out: `{"return": VALUE, "id": ID}` or `{"error": {"class": "...", "desc": "..."}, "id":
//!   ID}` (`id` echoed when the request had one), and events
//!   `{"event": "NAME", "data": {...}, "timestamp": {"seconds": S, "microseconds": US}}`.
//!
//! Lines end with `\n`; a line longer than [`MAX_LINE`] bytes is refused (the client is then
//! disconnected: its stream cannot be resynchronised cheaply and a sane client never sends one).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Longest request line, in bytes (without its newline).
pub const MAX_LINE: usize = 64 * 1024;

/// Error classes (QMP's `GenericError` and `CommandNotFound`, and satavm's own).
pub mod class {
    /// The command ran and failed, or its arguments are wrong.
    pub const GENERIC: &str = "GenericError";
    /// No such command.
    pub const COMMAND_NOT_FOUND: &str = "CommandNotFound";
    /// The line is not a JSON object of the request's shape.
    pub const PARSE: &str = "ParseError";
    /// The line is longer than [`super::MAX_LINE`] (the connection is closed).
    pub const LINE_TOO_LONG: &str = "LineTooLong";
    /// Every client slot is taken (the connection is closed).
    pub const TOO_MANY_CLIENTS: &str = "TooManyClients";
}

/// A failed request, as the `error` member reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {desc}")]
pub struct ApiError {
    pub class: &'static str,
    pub desc: String,
}

impl ApiError {
    pub fn new(class: &'static str, desc: impl Into<String>) -> Self {
        ApiError {
            class,
            desc: desc.into(),
        }
    }

    /// A `GenericError`.
    pub fn generic(desc: impl Into<String>) -> Self {
        Self::new(class::GENERIC, desc)
    }
}

/// One request line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub execute: String,
    pub arguments: Map<String, Value>,
    pub id: Option<Value>,
}

/// Parse a request line; on failure, the error and the request's `id` if one could be read.
pub fn parse_request(line: &[u8]) -> Result<Request, (ApiError, Option<Value>)> {
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        (
            ApiError::new(class::PARSE, format!("invalid JSON: {e}")),
            None,
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err((
            ApiError::new(class::PARSE, "a request is a JSON object"),
            None,
        ));
    };
    let id = obj.remove("id");
    let bad = |why: &str| Err((ApiError::new(class::PARSE, why), id.clone()));
    let execute = match obj.remove("execute") {
        Some(Value::String(s)) => s,
        Some(_) => return bad("\"execute\" must be a string"),
        None => return bad("a request needs \"execute\": \"COMMAND\""),
    };
    let arguments = match obj.remove("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return bad("\"arguments\" must be an object"),
    };
    if let Some(k) = obj.keys().next() {
        return bad(&format!(
            "unknown member {k:?} (want execute, arguments, id)"
        ));
    }
    Ok(Request {
        execute,
        arguments,
        id,
    })
}

fn with_id(mut obj: Map<String, Value>, id: Option<Value>) -> String {
    if let Some(id) = id {
        obj.insert("id".into(), id);
    }
    let mut line = Value::Object(obj).to_string();
    line.push('\n');
    line
}

/// `{"return": value, "id": id}` and a newline.
pub fn reply_ok(value: Value, id: Option<Value>) -> String {
    let mut m = Map::new();
    m.insert("return".into(), value);
    with_id(m, id)
}

/// `{"error": {"class": ..., "desc": ...}, "id": id}` and a newline.
pub fn reply_err(err: &ApiError, id: Option<Value>) -> String {
    let mut m = Map::new();
    m.insert(
        "error".into(),
        json!({"class": err.class, "desc": err.desc}),
    );
    with_id(m, id)
}

/// `{"event": name, "data": data, "timestamp": {...}}` and a newline, stamped with `at`.
pub fn event_line(name: &str, data: Value, at: SystemTime) -> String {
    let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut line = json!({
        "event": name,
        "data": data,
        "timestamp": {"seconds": t.as_secs(), "microseconds": t.subsec_micros()},
    })
    .to_string();
    line.push('\n');
    line
}

/// What [`LineBuffer::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline (and without a `\r` before it).
    Complete(Vec<u8>),
    /// More than [`MAX_LINE`] bytes without a newline.
    TooLong,
}

/// Bytes read from a client, cut into lines; never holds more than a line's limit and one
/// read's worth of bytes.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes at the start of `buf` already searched for a newline.
    scanned: usize,
}

impl LineBuffer {
    /// Append what a read returned.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next line, if a whole one (or too long a one) is there.
    pub fn next_line(&mut self) -> Option<Line> {
        let found = self.buf[self.scanned..].iter().position(|&b| b == b'\n');
        match found {
            Some(at) => {
                let end = self.scanned + at;
                self.scanned = 0;
                if end > MAX_LINE {
                    return Some(Line::TooLong);
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(Line::Complete(line))
            }
            None if self.buf.len() > MAX_LINE => Some(Line::TooLong),
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// True if a complete line is waiting (without taking it).
    pub fn has_line(&self) -> bool {
        self.buf.contains(&b'\n') || self.buf.len() > MAX_LINE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s.trim_end()).unwrap()
    }

    #[test]
    fn a_request_with_arguments_and_id() {
        let r =
            parse_request(br#"{"execute":"link","arguments":{"port":1},"id":{"n":7}}"#).unwrap();
        assert_eq!(r.execute, "link");
        assert_eq!(r.arguments["port"], 1);
        assert_eq!(r.id, Some(json!({"n": 7})));
        let r = parse_request(br#"{"execute":"quit"}"#).unwrap();
        assert!(r.arguments.is_empty() && r.id.is_none());
    }

    #[test]
    fn malformed_requests_are_errors_that_keep_the_id_when_there_is_one() {
        for bad in [
            &b"{"[..],
            b"[1,2]",
            b"\"execute\"",
            b"\xff\xfe",
            b"",
            b"{\"execute\": 5}",
        ] {
            let (e, _) = parse_request(bad).unwrap_err();
            assert_eq!(e.class, class::PARSE, "{bad:?}");
        }
        let (e, id) = parse_request(br#"{"execute":"x","arguments":[],"id":3}"#).unwrap_err();
        assert_eq!((e.class, id), (class::PARSE, Some(json!(3))));
        let (e, _) = parse_request(br#"{"execute":"x","argument":{}}"#).unwrap_err();
        assert!(e.desc.contains("argument"), "{e}");
    }

    #[test]
    fn replies_and_events_are_single_json_lines() {
        let ok = reply_ok(json!({"a": 1}), Some(json!("x")));
        assert!(ok.ends_with('\n') && !ok[..ok.len() - 1].contains('\n'));
        assert_eq!(parse(&ok), json!({"return": {"a": 1}, "id": "x"}));
        let err = reply_err(&ApiError::generic("no\nnewline"), None);
        assert_eq!(
            parse(&err),
            json!({"error": {"class": "GenericError", "desc": "no\nnewline"}})
        );
        let at = UNIX_EPOCH + std::time::Duration::from_micros(1_500_000);
        let ev = parse(&event_line("LINK", json!({"port": 0}), at));
        assert_eq!(
            ev,
            json!({"event": "LINK", "data": {"port": 0},
                   "timestamp": {"seconds": 1, "microseconds": 500000}})
        );
    }

    #[test]
    fn lines_are_cut_at_newlines_in_any_chunking() {
        let mut b = LineBuffer::default();
        b.push(b"{\"a\":1}\r\n{\"b\"");
        assert_eq!(b.next_line(), Some(Line::Complete(b"{\"a\":1}".to_vec())));
        assert_eq!(b.next_line(), None);
        assert!(!b.has_line());
        b.push(b":2}\n\n");
        assert!(b.has_line());
        assert_eq!(b.next_line(), Some(Line::Complete(b"{\"b\":2}".to_vec())));
        assert_eq!(b.next_line(), Some(Line::Complete(Vec::new())));
        assert_eq!(b.next_line(), None);
        assert!(b.is_empty());
    }

    #[test]
    fn a_line_over_the_limit_is_too_long_with_or_without_its_newline() {
        let mut b = LineBuffer::default();
        b.push(&vec![b'x'; MAX_LINE]);
        assert_eq!(b.next_line(), None, "exactly the limit is fine so far");
        b.push(b"y");
        assert_eq!(b.next_line(), Some(Line::TooLong));
        let mut b = LineBuffer::default();
        b.push(&vec![b' '; MAX_LINE + 1]);
        b.push(b"\n");
        assert_eq!(b.next_line(), Some(Line::TooLong));
        let mut b = LineBuffer::default();
        b.push(&vec![b' '; MAX_LINE]);
        b.push(b"\n");
        assert!(matches!(b.next_line(), Some(Line::Complete(l)) if l.len() == MAX_LINE));
    }
}
