//! The server in a real event manager, with real Unix sockets and a handler that records
//! what it ran. Every wait is for a reply line, bounded by a number of loop turns.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use serde_json::{json, Map, Value};
use vmm_sys_util::eventfd::EventFd;

use super::*;

/// Returns the command and its arguments; `fail` fails.
struct Echo(Arc<AtomicUsize>);

impl Handler for Echo {
    fn execute(&mut self, command: &str, args: &Map<String, Value>) -> Result<Value, ApiError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        match command {
            "fail" => Err(ApiError::generic("asked to")),
            _ => Ok(json!({ "command": command, "arguments": args })),
        }
    }
}

/// Another subscriber of the same loop: counts its wakeups (the "rest of the VMM").
struct Neighbour {
    evt: EventFd,
    seen: Arc<AtomicUsize>,
}

impl MutEventSubscriber for Neighbour {
    fn init(&mut self, ops: &mut EventOps) {
        ops.add(Events::new(&self.evt, EventSet::IN)).unwrap();
    }
    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.evt.read();
        self.seen.fetch_add(1, Ordering::SeqCst);
    }
}

struct Rig {
    em: EventManager<Box<dyn MutEventSubscriber + Send>>,
    path: PathBuf,
    calls: Arc<AtomicUsize>,
    queue: EventQueue,
    neighbour: Arc<AtomicUsize>,
    kick: EventFd,
}

struct Client {
    s: UnixStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("satavm-srv-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let queue = EventQueue::new().unwrap();
        let mut em = EventManager::new().unwrap();
        em.add_subscriber(Box::new(
            ApiServer::new(listener, Echo(calls.clone()), queue.clone()).unwrap(),
        ) as Box<dyn MutEventSubscriber + Send>);
        let neighbour = Arc::new(AtomicUsize::new(0));
        let kick = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        em.add_subscriber(Box::new(Neighbour {
            evt: kick.try_clone().unwrap(),
            seen: neighbour.clone(),
        }));
        Rig {
            em,
            path,
            calls,
            queue,
            neighbour,
            kick,
        }
    }

    fn turn(&mut self) {
        self.em.run_with_timeout(20).unwrap();
    }

    /// Connect and let the server accept.
    fn connect(&mut self) -> Client {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_nonblocking(true).unwrap();
        self.turn();
        Client {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// The next line `c` receives, turning the loop until it comes (None: EOF first).
    fn line(&mut self, c: &mut Client) -> Option<Value> {
        for _ in 0..500 {
            if let Some(at) = c.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = c.buf.drain(..=at).collect();
                return Some(serde_json::from_slice(&l).unwrap());
            }
            if c.eof {
                return None;
            }
            let mut b = [0u8; 65536];
            match c.s.read(&mut b) {
                Ok(0) => c.eof = true,
                Ok(n) => c.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.turn(),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => c.eof = true,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no line and no EOF after 500 turns of the loop");
    }
}

fn send(c: &mut Client, text: &str) {
    c.s.set_nonblocking(false).unwrap();
    c.s.write_all(text.as_bytes()).unwrap();
    c.s.set_nonblocking(true).unwrap();
}

#[test]
fn a_request_gets_its_reply_with_its_id() {
    let mut r = Rig::new("roundtrip");
    let mut c = r.connect();
    send(
        &mut c,
        "{\"execute\":\"x\",\"arguments\":{\"a\":[1]},\"id\":\"one\"}\n",
    );
    assert_eq!(
        r.line(&mut c),
        Some(json!({"return": {"command": "x", "arguments": {"a": [1]}}, "id": "one"}))
    );
    send(&mut c, "{\"execute\":\"fail\",\"id\":2}\n");
    assert_eq!(
        r.line(&mut c),
        Some(json!({"error": {"class": "GenericError", "desc": "asked to"}, "id": 2}))
    );
}

#[test]
fn malformed_json_is_answered_and_the_connection_stays_usable() {
    let mut r = Rig::new("malformed");
    let mut c = r.connect();
    send(
        &mut c,
        "{\"execute\": \n[]\n\u{7f}\u{0}garbage\n{\"id\":9}\n",
    );
    for _ in 0..3 {
        assert_eq!(r.line(&mut c).unwrap()["error"]["class"], "ParseError");
    }
    assert_eq!(
        r.line(&mut c),
        Some(json!({"error": {"class": "ParseError",
            "desc": "a request needs \"execute\": \"COMMAND\""}, "id": 9}))
    );
    send(&mut c, "{\"execute\":\"ok\"}\n");
    assert_eq!(r.line(&mut c).unwrap()["return"]["command"], "ok");
    assert_eq!(
        r.calls.load(Ordering::SeqCst),
        1,
        "only the valid request ran"
    );
}

#[test]
fn an_oversized_line_is_refused_and_the_client_closed_others_unaffected() {
    let mut r = Rig::new("oversized");
    let mut big = r.connect();
    let mut other = r.connect();
    // Written from a thread: the server stops reading once it has refused the line.
    // (The clone shares the non-blocking flag with the reading side: retry when full.)
    let mut w = big.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut left = 4 * MAX_LINE;
        let chunk = vec![b'x'; 16 * 1024];
        while left > 0 {
            match w.write(&chunk) {
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(_) => break,
            }
        }
    });
    assert_eq!(r.line(&mut big).unwrap()["error"]["class"], "LineTooLong");
    assert_eq!(r.line(&mut big), None, "closed after the refusal");
    writer.join().unwrap();
    send(&mut other, "{\"execute\":\"still\"}\n");
    assert_eq!(r.line(&mut other).unwrap()["return"]["command"], "still");
}

#[test]
fn a_client_over_the_limit_is_told_and_closed() {
    let mut r = Rig::new("limit");
    let mut clients: Vec<Client> = (0..MAX_CLIENTS).map(|_| r.connect()).collect();
    let mut extra = r.connect();
    assert_eq!(
        r.line(&mut extra).unwrap()["error"]["class"],
        "TooManyClients"
    );
    assert_eq!(r.line(&mut extra), None);
    for c in &mut clients {
        send(c, "{\"execute\":\"x\"}\n");
        assert!(r.line(c).unwrap().get("return").is_some());
    }
    // A slot freed is a slot taken again.
    drop(clients.pop());
    r.turn();
    let mut again = r.connect();
    send(&mut again, "{\"execute\":\"x\"}\n");
    assert!(r.line(&mut again).unwrap().get("return").is_some());
}

#[test]
fn a_flood_is_served_a_budget_per_turn_and_the_loop_keeps_turning() {
    let mut r = Rig::new("flood");
    let mut c = r.connect();
    let n = 10 * COMMANDS_PER_WAKEUP;
    let flood: String = (0..n)
        .map(|i| format!("{{\"execute\":\"x\",\"id\":{i}}}\n"))
        .collect();
    send(&mut c, &flood);
    r.kick.write(1).unwrap();
    r.turn();
    let served = r.calls.load(Ordering::SeqCst);
    assert!(
        served > 0 && served <= COMMANDS_PER_WAKEUP,
        "{served} requests in one turn"
    );
    assert_eq!(
        r.neighbour.load(Ordering::SeqCst),
        1,
        "the other subscriber ran in the same turn"
    );
    for i in 0..n {
        assert_eq!(r.line(&mut c).unwrap()["id"], i, "in order");
    }
    assert_eq!(r.calls.load(Ordering::SeqCst), n);
}

#[test]
fn events_go_to_every_client_and_losses_are_counted() {
    let mut r = Rig::new("events");
    let mut a = r.connect();
    let mut b = r.connect();
    r.queue
        .push("LINK_CHANGE", json!({"port": 0, "state": "down"}));
    for c in [&mut a, &mut b] {
        let e = r.line(c).unwrap();
        assert_eq!(e["event"], "LINK_CHANGE");
        assert_eq!(e["data"], json!({"port": 0, "state": "down"}));
        assert!(e["timestamp"]["seconds"].as_u64().unwrap() > 0);
    }
    for i in 0..MAX_QUEUED_EVENTS + 3 {
        r.queue.push("HBA_RESET", json!({ "n": i }));
    }
    let first = r.line(&mut a).unwrap();
    assert_eq!(first["event"], "EVENTS_LOST");
    assert_eq!(first["data"]["count"], 3);
    assert_eq!(r.line(&mut a).unwrap()["data"]["n"], 3, "the oldest went");
}

#[test]
fn a_client_that_never_reads_is_dropped_once_its_output_is_too_big() {
    let mut r = Rig::new("slow");
    let slow = r.connect();
    let mut fine = r.connect();
    let data = json!({ "pad": "p".repeat(4000) });
    // 8 MiB in all: far more than the socket buffer and MAX_OUTPUT together, in steps the
    // reading client keeps up with.
    let mut sink = vec![0u8; 1 << 20];
    for _ in 0..64 {
        for _ in 0..32 {
            r.queue.push("X", data.clone());
        }
        r.turn();
        while fine.s.read(&mut sink).is_ok_and(|n| n > 0) {}
        r.turn();
        while fine.s.read(&mut sink).is_ok_and(|n| n > 0) {}
    }
    let mut buf = [0u8; 1 << 16];
    let mut total = 0;
    let mut s = slow.s;
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the slow client was not closed ({total} bytes read): {e}"),
        }
    }
    assert!(
        total <= MAX_OUTPUT + (4 << 20),
        "read {total} bytes, then EOF"
    );
    send(&mut fine, "{\"execute\":\"alive\"}\n");
    loop {
        let l = r.line(&mut fine).unwrap();
        if l.get("return").is_some() {
            break;
        }
    }
}
