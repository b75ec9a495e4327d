//! A small QMP client (QEMU's machine protocol: JSON objects, one per line): the greeting,
//! `qmp_capabilities`, commands and their replies, events. The rig uses it for one thing, a
//! scenario's "@@RIG UNPLUG ID": `device_del ID`, then waiting for ID's DEVICE_DELETED.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::Error;

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Every message, as received, with the seconds since connecting.
    pub transcript: Transcript,
    t0: Instant,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, Error> {
        let stream = UnixStream::connect(socket).map_err(|e| Error::io(socket, e))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| Error::io(socket, e))?;
        let writer = stream.try_clone().map_err(|e| Error::io(socket, e))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            transcript: Vec::new(),
            t0: Instant::now(),
        };
        let greeting = qmp.message()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Qmp(format!("no QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// The next message from QEMU.
    pub fn message(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| Error::Qmp(format!("reading: {e}")))?;
        if n == 0 {
            return Err(Error::Qmp("QEMU closed the monitor".into()));
        }
        self.transcript
            .push((self.t0.elapsed().as_secs_f64(), line.trim_end().to_string()));
        serde_json::from_str(&line).map_err(|e| Error::Qmp(format!("not JSON ({e}): {line}")))
    }

    /// Runs a command; its `return` value, or its `error` as an error. Events that come
    /// before the reply are kept in the transcript.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, Error> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}").map_err(|e| Error::Qmp(format!("writing: {e}")))?;
        loop {
            let m = self.message()?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(Error::Qmp(format!("{command}: {e}")));
            }
        }
    }

    /// Waits for the event `name` whose data satisfies `matches`.
    pub fn wait_event(
        &mut self,
        name: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, Error> {
        loop {
            let m = self.message()?;
            if m.get("event").and_then(Value::as_str) == Some(name)
                && matches(m.get("data").unwrap_or(&Value::Null))
            {
                return Ok(m);
            }
        }
    }
}

/// Messages received, each with the seconds since connecting.
pub type Transcript = Vec<(f64, String)>;

/// `device_del ID` and the wait for its DEVICE_DELETED (the guest ejects it in its own
/// time); returns the transcript, for qmp.log.
pub fn device_del(socket: &Path, id: &str) -> (Result<(), Error>, Transcript) {
    let mut qmp = match Qmp::connect(socket, Duration::from_secs(60)) {
        Ok(q) => q,
        Err(e) => return (Err(e), Vec::new()),
    };
    let result = qmp
        .execute("device_del", json!({ "id": id }))
        .and_then(|_| {
            qmp.wait_event("DEVICE_DELETED", |data| {
                data.get("device").and_then(Value::as_str) == Some(id)
            })
        })
        .map(|_| ());
    (result, qmp.transcript)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::thread::JoinHandle;

    /// A fake QEMU monitor on a fresh socket: it greets, then answers each request it reads
    /// with the next of `replies` (lines written as given), then writes `after`. Its thread
    /// returns the requests it read.
    fn fake_monitor(
        name: &str,
        replies: &'static [&'static str],
        after: &'static str,
    ) -> (PathBuf, JoinHandle<Vec<Value>>) {
        let dir = std::env::temp_dir().join(format!("satavm-rig-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let sock = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).expect("bind");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut out = stream.try_clone().expect("clone");
            let mut input = BufReader::new(stream);
            writeln!(out, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut requests = Vec::new();
            for reply in replies {
                let mut line = String::new();
                input.read_line(&mut line).unwrap();
                requests.push(serde_json::from_str::<Value>(&line).unwrap());
                writeln!(out, "{reply}").unwrap();
            }
            writeln!(out, "{after}").unwrap();
            requests
        });
        (sock, server)
    }

    /// Capabilities and device_del answered, then an unrelated device's DEVICE_DELETED
    /// before the right one.
    #[test]
    fn device_del_waits_for_its_event() {
        let (sock, server) = fake_monitor(
            "qmp",
            &[
                r#"{"return": {}}"#,
                "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"other\"}}\n{\"return\": {}}",
            ],
            r#"{"event": "DEVICE_DELETED", "data": {"device": "ahci-vanish"}}"#,
        );
        let (result, transcript) = device_del(&sock, "ahci-vanish");
        let requests = server.join().unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(requests[0]["execute"], "qmp_capabilities");
        assert_eq!(requests[1]["execute"], "device_del");
        assert_eq!(requests[1]["arguments"]["id"], "ahci-vanish");
        // greeting, capabilities' return, the other device's event, device_del's return, ours
        assert_eq!(transcript.len(), 5);
        assert!(transcript[4].1.contains("ahci-vanish"));
        let _ = std::fs::remove_dir_all(sock.parent().unwrap_or(&sock));
    }

    #[test]
    fn an_error_reply_is_an_error() {
        let (sock, server) = fake_monitor(
            "qmp-err",
            &[
                r#"{"return": {}}"#,
                r#"{"error": {"class": "DeviceNotFound", "desc": "no such device"}}"#,
            ],
            "",
        );
        let (result, _) = device_del(&sock, "nothing");
        server.join().unwrap();
        assert!(matches!(result, Err(Error::Qmp(m)) if m.contains("DeviceNotFound")));
        let _ = std::fs::remove_dir_all(sock.parent().unwrap_or(&sock));
    }
}
