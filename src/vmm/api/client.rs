//! `satavm ctl PATH CMD [JSON-ARGS]` and `satavm ctl PATH --events`: a client of the control
//! socket that sends one command and returns its reply, or copies the event stream.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Map, Value};
use thiserror::Error;

/// Why a `ctl` call failed (not counting an `error` reply, which is a reply).
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{}: {source}", .path.display())]
    Connect {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("arguments must be a JSON object: {0}")]
    Arguments(String),
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the VM closed the connection without a reply")]
    NoReply,
    #[error("not a JSON reply: {0}")]
    BadReply(String),
}

/// Parse `JSON-ARGS` (an object; absent: none).
pub fn parse_arguments(text: Option<&str>) -> Result<Map<String, Value>, ClientError> {
    match text {
        None => Ok(Map::new()),
        Some(t) => match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(ClientError::Arguments(format!("got {other}"))),
            Err(e) => Err(ClientError::Arguments(e.to_string())),
        },
    }
}

fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.into(),
        source,
    })
}

/// Send `command` and return the reply object (`return` or `error`); events that arrive
/// before it are skipped.
pub fn execute(
    path: &Path,
    command: &str,
    arguments: Map<String, Value>,
) -> Result<Value, ClientError> {
    let mut stream = connect(path)?;
    let mut line = json!({"execute": command, "arguments": arguments, "id": 1}).to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    for l in BufReader::new(stream).lines() {
        let l = l?;
        let v: Value = serde_json::from_str(&l).map_err(|_| ClientError::BadReply(l.clone()))?;
        if v.get("return").is_some() || v.get("error").is_some() {
            return Ok(v);
        }
    }
    Err(ClientError::NoReply)
}

/// Copy every event line to `out` until the VM closes the socket.
pub fn events(path: &Path, out: &mut impl Write) -> Result<(), ClientError> {
    let stream = connect(path)?;
    for l in BufReader::new(stream).lines() {
        let l = l?;
        writeln!(out, "{l}")?;
        out.flush()?;
    }
    Ok(())
}
