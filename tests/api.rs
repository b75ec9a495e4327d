//! The control socket (`--api-socket`): the HBA's events as the socket reports them
//! (in-process, over real drives), the commands without a VM, and the satavm binary end to
//! end with tests/fixtures/testfw.S (which the build machines' software KVM can run): every
//! command, the events, `satavm ctl`, the socket's permissions and what happens to a path
//! that is already taken, and clients that misbehave while the VM runs.

mod common;
#[path = "common/testfw.rs"]
mod testfw;
use testfw::testfw;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{h2d, TestHba, IMAGE_SECTORS};
use satavm::ahci::regs::{port as px, pxis};
use satavm::ata::command::opcode;
use satavm::ata::inject::{InjectControl, InjectingDevice, LinkRequest};
use satavm::ata::{DriveConfig, EmulatedDrive};
use satavm::sata::SataDevice;
use satavm::trace::Tracer;
use satavm::vmm::api::{self, EventQueue, Handler, VmCommands};
use satavm::vmm::{ExitSignal, VmExit};
use serde_json::{json, Map, Value};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const SATAVM: &str = env!("CARGO_BIN_EXE_satavm");
const DEADLINE: Duration = Duration::from_secs(60);

// ---- in-process: the HBA's events ----

/// One port over a real emulated drive that takes its injection from `control`, reporting
/// to `queue`.
fn hba_with_control(control: &InjectControl, queue: &EventQueue) -> (TestHba, common::Image) {
    let img = common::Image::new(IMAGE_SECTORS);
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let cfg = DriveConfig {
        path: img.0.clone(),
        model: None,
        serial: None,
        read_only: false,
        wwn: None,
        engine: Default::default(),
    };
    let drive = Box::new(EmulatedDrive::open(&cfg, notifier.clone()).unwrap());
    control.bind_notifier(notifier.clone());
    let dev: Box<dyn SataDevice> = Box::new(
        InjectingDevice::new(drive, 0, &[], notifier.clone(), Tracer::off())
            .with_control(control.clone()),
    );
    let mut t = TestHba::with_devices(vec![dev], notifier);
    t.f.set_event_hook(api::event_hook(queue.clone()));
    (t, img)
}

fn drained(queue: &EventQueue) -> Vec<(String, Value)> {
    let (events, lost) = queue.drain();
    assert_eq!(lost, 0);
    events
        .into_iter()
        .map(|e| (e.name.to_string(), e.data))
        .collect()
}

#[test]
fn hba_reset_comreset_drive_error_and_link_changes_become_events() {
    let control = InjectControl::default();
    let queue = EventQueue::new().unwrap();
    let (mut t, _img) = hba_with_control(&control, &queue);
    t.start_port(0);
    assert!(drained(&queue).is_empty(), "bring-up reports nothing");

    // A rule added at run time fails the next read: DRIVE_ERROR with PxTFD's status/error.
    let id = control.add("port=0,op=read,error=unc".parse().unwrap());
    let buf = TestHba::buf(0, 0);
    t.issue(0, 0, &h2d(opcode::READ_DMA_EXT, 8, 1), &[(buf, 512)], false);
    t.wait_until(|t| t.px_read(0, px::IS) & pxis::TFES != 0);
    assert_eq!(
        drained(&queue),
        [(
            "DRIVE_ERROR".into(),
            json!({"port": 0, "slot": 0, "status": 0x51, "error": 0x40, "pxis": pxis::TFES})
        )]
    );
    assert!(control.remove(id).is_some());

    // COMRESET through PxSCTL.DET, then GHC.HR.
    t.stop_port(0);
    t.px_write(0, px::SCTL, 1);
    t.px_write(0, px::SCTL, 0);
    assert_eq!(drained(&queue), [("PORT_RESET".into(), json!({"port": 0}))]);
    t.write(satavm::ahci::regs::hba::GHC, satavm::ahci::regs::ghc::HR);
    assert_eq!(drained(&queue), [("HBA_RESET".into(), json!({}))]);

    // `link`: down until up.
    t.start_port(0);
    control.request_link(0, LinkRequest::Down(None));
    t.wait_until(|t| t.px_read(0, px::SSTS) == 0);
    assert_eq!(
        drained(&queue),
        [("LINK_CHANGE".into(), json!({"port": 0, "state": "down"}))]
    );
    control.request_link(0, LinkRequest::Up);
    t.wait_until(|t| t.px_read(0, px::SSTS) == 0x133);
    assert_eq!(
        drained(&queue),
        [("LINK_CHANGE".into(), json!({"port": 0, "state": "up"}))]
    );
    // Down for a while: it comes back by itself.
    control.request_link(0, LinkRequest::Down(Some(Duration::from_millis(50))));
    t.wait_until(|t| t.f.port_stats()[0].link_drops == 2);
    t.wait_until(|t| t.px_read(0, px::SSTS) == 0x133);
    let names: Vec<Value> = drained(&queue).into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        names,
        [
            json!({"port": 0, "state": "down"}),
            json!({"port": 0, "state": "up"})
        ]
    );
}

#[test]
fn a_rule_removed_at_run_time_stops_firing() {
    let control = InjectControl::default();
    let queue = EventQueue::new().unwrap();
    let (mut t, _img) = hba_with_control(&control, &queue);
    t.start_port(0);
    let id = control.add("op=read,error=abrt".parse().unwrap());
    assert_eq!(control.list().len(), 1);
    control.remove(id);
    let buf = TestHba::buf(0, 0);
    t.run(0, 0, &h2d(opcode::READ_DMA_EXT, 8, 1), &[(buf, 512)], false);
    assert!(drained(&queue).is_empty());
}

// ---- the commands without a VM ----

fn commands(exit: &Arc<ExitSignal>) -> VmCommands {
    VmCommands {
        storage: None,
        control: InjectControl::new(&["delay=5".parse().unwrap()]),
        exit: exit.clone(),
        started: Instant::now(),
        cpus: 2,
        tracer: Tracer::switchable(Vec::new()),
        own_files: Vec::new(),
    }
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn commands_check_their_arguments_and_quit_stops_the_vm() {
    let exit = Arc::new(ExitSignal::new().unwrap());
    let mut c = commands(&exit);
    let s = c.execute("query-status", &Map::new()).unwrap();
    assert_eq!(
        (s["running"].clone(), s["vcpus"].clone()),
        (json!(true), json!(2))
    );
    assert_eq!(
        c.execute("inject-list", &Map::new()).unwrap(),
        json!([{"id": 1, "rule": "delay=5"}])
    );
    assert_eq!(
        c.execute("inject-add", &args(json!({"rule": "op=write,drop"})))
            .unwrap(),
        json!({"id": 2})
    );
    let e = c
        .execute("inject-add", &args(json!({"rule": "op=write"})))
        .unwrap_err();
    assert!(
        e.desc.contains("action") || e.desc.contains("op=write"),
        "{e}"
    );
    let e = c
        .execute("inject-add", &args(json!({"rule": "port=3,drop"})))
        .unwrap_err();
    assert!(e.desc.contains("port 3"), "{e}");
    assert!(c.execute("inject-del", &args(json!({"id": 9}))).is_err());
    assert!(c.execute("inject-del", &args(json!({"id": "1"}))).is_err());
    assert_eq!(
        c.execute("inject-del", &args(json!({"id": 1}))).unwrap(),
        json!({"id": 1, "rule": "delay=5"})
    );
    let e = c
        .execute("query-status", &args(json!({"verbose": true})))
        .unwrap_err();
    assert!(e.desc.contains("verbose"), "{e}");
    assert!(c
        .execute("link", &args(json!({"port": 0, "state": "down"})))
        .is_err());
    assert_eq!(
        c.execute("nonsense", &Map::new()).unwrap_err().class,
        "CommandNotFound"
    );
    assert!(exit.reason().is_none());
    assert_eq!(c.execute("quit", &Map::new()).unwrap(), json!({}));
    assert_eq!(exit.reason(), Some(VmExit::ApiQuit));
    let s = c.execute("query-status", &Map::new()).unwrap();
    assert_eq!(s["running"], false);
    assert_eq!(s["exit_reason"], "ApiQuit");
}

#[test]
fn trace_on_writes_a_file_and_off_stops() {
    let exit = Arc::new(ExitSignal::new().unwrap());
    let mut c = commands(&exit);
    let dir = scratch_dir("trace-cmd");
    let f = dir.join("t.jsonl");
    let on = args(json!({"state": "on", "file": f.display().to_string()}));
    assert_eq!(c.execute("trace", &on).unwrap(), json!({"tracing": true}));
    c.tracer
        .emit(|| satavm::trace::Event::new(satavm::trace::Layer::Ahci, "probe"));
    assert_eq!(
        c.execute("trace", &args(json!({"state": "off"}))).unwrap(),
        json!({"tracing": false})
    );
    c.tracer
        .emit(|| satavm::trace::Event::new(satavm::trace::Layer::Ahci, "after"));
    let text = std::fs::read_to_string(&f).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["kind"], "probe");
    let dirarg = args(json!({"state": "on", "file": dir.display().to_string()}));
    assert!(
        c.execute("trace", &dirarg).is_err(),
        "a directory is refused"
    );
    assert!(c
        .execute("trace", &args(json!({"state": "maybe"})))
        .is_err());
}

// ---- the binary ----

fn scratch_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("api-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running satavm with the test firmware, one disk and a control socket.
struct Vm {
    child: Child,
    sock: PathBuf,
    dir: PathBuf,
}

impl Vm {
    fn start(name: &str) -> Vm {
        Self::start_with(name, &[])
    }

    /// With more arguments (files they name go in the test's directory, created before).
    fn start_with(name: &str, extra: &[&str]) -> Vm {
        let dir = scratch_dir(name);
        let disc = dir.join("disc.iso");
        std::fs::File::create(&disc)
            .unwrap()
            .set_len(16 * 2048)
            .unwrap();
        let img = dir.join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let sock = dir.join("api.sock");
        let mut child = Command::new(SATAVM)
            .current_dir(&dir)
            .env("TMPDIR", &dir)
            .env_remove("RUST_LOG")
            .arg("--firmware")
            .arg(testfw())
            .args(["--disk", "path=disk.img,model=API TEST"])
            .args(extra)
            .arg("--api-socket")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains("testfw: ready"), "{line:?}");
        Vm { child, sock, dir }
    }

    fn connect(&self) -> Conn {
        let s = UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        Conn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Wait for the exit: status and stderr.
    fn wait(mut self) -> (i32, String) {
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let st = self.child.wait().unwrap();
        (st.code().unwrap_or(-1), err)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn line(&mut self) -> Value {
        let mut l = String::new();
        assert!(self.r.read_line(&mut l).unwrap() > 0, "EOF");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l:?}: {e}"))
    }

    fn eof(&mut self) -> bool {
        let mut l = String::new();
        matches!(self.r.read_line(&mut l), Ok(0)) || l.is_empty()
    }

    /// Run `cmd` and return its reply (events before it are skipped).
    fn call(&mut self, cmd: &str, arguments: Value) -> Value {
        let req = json!({"execute": cmd, "arguments": arguments, "id": cmd});
        writeln!(self.w, "{req}").unwrap();
        loop {
            let v = self.line();
            if v.get("event").is_none() {
                assert_eq!(v["id"], cmd, "{v}");
                return v;
            }
        }
    }

    fn ok(&mut self, cmd: &str, arguments: Value) -> Value {
        let v = self.call(cmd, arguments.clone());
        v.get("return")
            .unwrap_or_else(|| panic!("{cmd} {arguments}: {v}"))
            .clone()
    }

    fn event(&mut self) -> Value {
        let v = self.line();
        assert!(v.get("event").is_some(), "{v}");
        v
    }
}

#[test]
fn every_command_over_the_socket_and_quit_exits_0() {
    let vm = Vm::start("commands");
    let mode = std::fs::symlink_metadata(&vm.sock)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut c = vm.connect();
    let mut events = vm.connect();

    let s = c.ok("query-status", json!({}));
    assert_eq!(
        (s["running"].clone(), s["vcpus"].clone()),
        (json!(true), json!(1))
    );
    let p = c.ok("query-ports", json!({}));
    assert_eq!(p[0]["drive"]["model"], "API TEST");
    assert_eq!(p[0]["drive"]["kind"], "image");
    assert_eq!(
        p[0]["link"],
        json!({"det": 3, "spd": 3, "ipm": 1, "up": true})
    );
    assert_eq!(
        (p[0]["st"].clone(), p[0]["pxci"].clone()),
        (json!(false), json!(0))
    );
    let st = c.ok("query-stats", json!({}));
    assert_eq!(st["ports"][0]["commands"], 0);
    assert_eq!(st["ports"][0]["engine"]["submitted"], 0);

    assert_eq!(
        c.ok("inject-add", json!({"rule": "port=0,op=read,error=unc"})),
        json!({"id": 1})
    );
    assert_eq!(
        c.ok("inject-list", json!({})),
        json!([{"id": 1, "rule": "port=0,op=read,error=unc"}])
    );
    let bad = c.call("inject-add", json!({"rule": "port=0,explode"}));
    assert_eq!(bad["error"]["class"], "GenericError");
    c.ok("inject-del", json!({"id": 1}));
    assert_eq!(c.ok("inject-list", json!({})), json!([]));

    // Cable pulled: PhyRdy lost (DET 0, DIAG.N | ERR.C), the event to every client.
    c.ok("link", json!({"port": 0, "state": "down"}));
    let e = events.event();
    assert_eq!(e["event"], "LINK_CHANGE");
    assert_eq!(e["data"], json!({"port": 0, "state": "down"}));
    let p = c.ok("query-ports", json!({}));
    assert_eq!(p[0]["link"]["det"], 0);
    assert_eq!(p[0]["pxserr"], 0x0001_0200);
    c.ok("link", json!({"port": 0, "state": "up"}));
    assert_eq!(events.event()["data"]["state"], "up");
    c.ok(
        "link",
        json!({"port": 0, "state": "down", "duration_ms": 100}),
    );
    assert_eq!(events.event()["data"]["state"], "down");
    assert_eq!(events.event()["data"]["state"], "up", "back by itself");
    let p = c.ok("query-ports", json!({}));
    assert_eq!(p[0]["link"]["det"], 3);
    assert_eq!(c.ok("query-stats", json!({}))["ports"][0]["link_drops"], 2);
    assert!(
        c.call("link", json!({"port": 1, "state": "down"}))["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("no port 1")
    );

    let trace = vm.dir.join("trace.jsonl");
    c.ok(
        "trace",
        json!({"state": "on", "file": trace.display().to_string()}),
    );
    c.ok("trace", json!({"state": "off"}));
    assert!(trace.exists());
    let disk = vm.dir.join("disk.img").display().to_string();
    let refused = c.call("trace", json!({"state": "on", "file": disk}));
    assert!(refused["error"].is_object(), "never over a disk: {refused}");
    let not_cd = c.call("media-change", json!({"port": 0}));
    assert!(
        not_cd["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("not a CD/DVD"),
        "{not_cd}"
    );

    c.ok("quit", json!({}));
    assert!(events.eof(), "clients see EOF when satavm exits");
    let sock = vm.sock.clone();
    let (code, err) = vm.wait();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("quit through the control socket"), "{err}");
    assert!(
        err.contains("2 link drops"),
        "the exit statistics agree: {err}"
    );
    assert!(!sock.exists(), "the socket is removed at exit");
}

#[test]
fn misbehaving_clients_do_not_disturb_the_vm() {
    let vm = Vm::start("misbehave");
    // Garbage, then a line far over the limit.
    let mut junk = vm.connect();
    writeln!(junk.w, "{{not json").unwrap();
    assert_eq!(junk.line()["error"]["class"], "ParseError");
    let long = vec![b'a'; 200 * 1024];
    let _ = junk.w.write_all(&long);
    assert_eq!(junk.line()["error"]["class"], "LineTooLong");
    assert!(junk.eof());
    // A flood from a client that does not read its replies.
    let flood = UnixStream::connect(&vm.sock).unwrap();
    flood.set_nonblocking(true).unwrap();
    let req = "{\"execute\":\"query-stats\"}\n".repeat(4096);
    let _ = (&flood).write(req.as_bytes());
    // More clients than allowed.
    let extra: Vec<UnixStream> = (0..10)
        .filter_map(|_| UnixStream::connect(&vm.sock).ok())
        .collect();
    drop(extra);
    // The VM still answers, and quits as usual.
    let mut c = loop {
        let mut c = vm.connect();
        writeln!(c.w, "{{\"execute\":\"query-status\",\"id\":1}}").unwrap();
        let v = c.line();
        if v.get("return").is_some() {
            assert_eq!(v["return"]["running"], true);
            break c;
        }
        assert_eq!(v["error"]["class"], "TooManyClients");
    };
    c.ok("quit", json!({}));
    drop(flood);
    let (code, err) = vm.wait();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn satavm_ctl_prints_replies_and_events_with_its_exit_status() {
    let vm = Vm::start("ctl");
    let sock = vm.sock.display().to_string();
    let ctl = |args: &[&str]| {
        let o = Command::new(SATAVM)
            .arg("ctl")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        (o.status.code(), v)
    };
    let mut events = Command::new(SATAVM)
        .args(["ctl", &sock, "--events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, v) = ctl(&["query-status"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["return"]["running"], true);
    let (code, v) = ctl(&["no-such-command"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["error"]["class"], "CommandNotFound");
    let (code, _) = ctl(&["link", "not json"]);
    assert_eq!(code, Some(64));
    // Wait until the events client is connected: it sees the link change.
    let mut out = BufReader::new(events.stdout.take().unwrap());
    let start = Instant::now();
    let mut line = String::new();
    while line.is_empty() {
        assert!(start.elapsed() < DEADLINE);
        let (code, _) = ctl(&["link", r#"{"port": 0, "state": "down", "duration_ms": 10}"#]);
        assert_eq!(code, Some(0));
        out.read_line(&mut line).unwrap();
    }
    let e: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(e["event"], "LINK_CHANGE");
    assert_eq!(ctl(&["quit"]).0, Some(0));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(events.wait().unwrap().code(), Some(0), "EOF ends --events");
    assert_eq!(vm.wait().0, 0);
    let (code, _) = ctl(&["query-status"]);
    assert_eq!(code, Some(69), "nobody listens any more");
}

#[test]
fn a_taken_path_is_refused_and_a_stale_socket_replaced() {
    let dir = scratch_dir("taken");
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    let o = Command::new(SATAVM)
        .current_dir(&dir)
        .env("TMPDIR", &dir)
        .arg("--firmware")
        .arg(testfw())
        .arg("--api-socket")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(71));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");

    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let o = Command::new(SATAVM)
        .current_dir(&dir)
        .env("TMPDIR", &dir)
        .args(["--firmware", &testfw().display().to_string(), "--check"])
        .arg("--api-socket")
        .arg(&stale)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("control socket"));
}

#[test]
fn media_change_swaps_the_disc_of_a_cd_drive() {
    let vm = Vm::start_with("media", &["--disk", "media=cdrom"]);
    let mut c = vm.connect();
    let p = c.ok("query-ports", json!({}));
    assert_eq!(p[1]["drive"]["kind"], "cdrom");
    assert_eq!(p[1]["drive"]["path"], Value::Null, "an empty tray");
    let disc = vm.dir.join("disc.iso").display().to_string();
    assert_eq!(
        c.ok("media-change", json!({"port": 1, "file": disc})),
        json!({})
    );
    assert_eq!(c.ok("media-change", json!({"port": 1})), json!({}));
    let missing = vm.dir.join("missing.iso").display().to_string();
    let e = c.call("media-change", json!({"port": 1, "file": missing}));
    assert!(e["error"].is_object(), "{e}");
    c.ok("quit", json!({}));
    assert_eq!(vm.wait().0, 0);
}

// ---- hot plug (drive-add / drive-del) ----

/// An emulated drive over `img` whose bytes are `pattern(.., seed)`, named `model`.
fn patterned_drive(
    img: &common::Image,
    seed: u32,
    model: &str,
    notifier: &Arc<EventFd>,
) -> Box<dyn SataDevice> {
    std::fs::write(
        &img.0,
        common::pattern((IMAGE_SECTORS * 512) as usize, seed),
    )
    .unwrap();
    let cfg = DriveConfig {
        path: img.0.clone(),
        model: Some(model.into()),
        serial: None,
        read_only: false,
        engine: Default::default(),
        wwn: None,
    };
    Box::new(EmulatedDrive::open(&cfg, notifier.clone()).unwrap())
}

/// libahci's hard reset after a hot-plug interrupt: clear PxSERR, COMRESET (PxSCTL.DET 1,
/// then 0), the link up and the signature in PxSIG.
fn linux_comreset(t: &mut TestHba, port: usize) {
    t.px_write(port, px::SERR, u32::MAX);
    t.px_write(port, px::SCTL, 0x301);
    assert_eq!(t.px_read(port, px::SSTS) & 0xf, 0);
    t.px_write(port, px::SCTL, 0x300);
}

/// IDENTIFY DEVICE's model and sector 9's bytes, read from the drive on `port`.
fn identify_and_read(t: &mut TestHba, port: usize) -> (String, Vec<u8>) {
    let buf = TestHba::buf(port, 0);
    t.run(
        port,
        0,
        &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
        &[(buf, 512)],
        false,
    );
    let model = common::identify_string(&t.mem_read(buf, 512), 27, 20);
    t.run(
        port,
        0,
        &h2d(opcode::READ_DMA_EXT, 9, 1),
        &[(buf, 512)],
        false,
    );
    (model, t.mem_read(buf, 512))
}

#[test]
fn surprise_removal_with_ncq_in_flight_then_reinsert_and_an_empty_port_filled() {
    use satavm::ahci::regs::{pxcmd, pxserr};
    let queue = EventQueue::new().unwrap();
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let (img0, img1, img2) = (
        common::Image::new(IMAGE_SECTORS),
        common::Image::new(IMAGE_SECTORS),
        common::Image::new(IMAGE_SECTORS),
    );
    let first = patterned_drive(&img0, 1, "FIRST", &notifier);
    let empty: Box<dyn SataDevice> = Box::new(satavm::ahci::port::hotplug::NoDevice);
    let mut t = TestHba::with_devices(vec![first, empty], notifier.clone());
    t.f.set_hot_plug(&[true, false]);
    t.f.set_event_hook(api::event_hook(queue.clone()));
    // The empty port: no device, no signature, hot-pluggable.
    assert_eq!(t.px_read(1, px::SSTS), 0);
    assert_eq!(t.px_read(1, px::SIG), 0xffff_ffff);
    assert_eq!(t.px_read(1, px::TFD), 0x7f);
    assert_ne!(t.px_read(1, px::CMD) & pxcmd::HPCP, 0);
    assert_ne!(t.px_read(0, px::CMD) & pxcmd::HPCP, 0);
    t.start_port(0);
    assert_eq!(identify_and_read(&mut t, 0).0, "FIRST");

    // Eight queued reads go to the host, then the cable is pulled.
    for tag in 0..8u8 {
        let fis = common::fpdma(opcode::READ_FPDMA_QUEUED, tag, u64::from(tag) * 8, 8);
        let buf = TestHba::buf(0, tag);
        t.issue(0, tag, &fis, &[(buf, 4096)], false);
    }
    assert_eq!(t.px_read(0, px::SACT), 0xff);
    t.f.detach_device(0, None).unwrap();
    assert_eq!(t.px_read(0, px::SSTS), 0);
    assert_eq!(
        t.px_read(0, px::SERR),
        pxserr::DIAG_N | pxserr::DIAG_X | pxserr::ERR_C
    );
    assert_eq!(
        t.px_read(0, px::IS) & (pxis::PCS | pxis::PRCS),
        pxis::PCS | pxis::PRCS
    );
    assert_ne!(
        t.read(satavm::ahci::regs::hba::IS) & 1,
        0,
        "the port interrupts"
    );
    // The host I/O drains; none of the commands completes.
    t.wait_until(|t| !t.f.port_draining(0));
    t.f.process_completions();
    assert_eq!(t.px_read(0, px::SACT), 0xff, "no completion after removal");
    assert_eq!(t.px_read(0, px::IS) & pxis::SDBS, 0);
    assert_eq!(
        drained(&queue),
        [("DRIVE_REMOVED".into(), json!({"port": 0}))]
    );
    // The guest's error handling: stop the engine, COMRESET an empty port.
    t.stop_port(0);
    assert_eq!(t.px_read(0, px::SACT), 0);
    linux_comreset(&mut t, 0);
    assert_eq!(t.px_read(0, px::SSTS), 0);
    let _ = drained(&queue);
    assert!(t.f.detach_device(0, None).is_err(), "already empty");

    // Reinsert a new drive: COMINIT, then the guest's COMRESET gives the signature.
    let second = patterned_drive(&img1, 2, "SECOND", &notifier);
    t.f.attach_device(0, second).unwrap();
    assert_eq!(t.px_read(0, px::SSTS), 0x133);
    assert_ne!(t.px_read(0, px::IS) & pxis::PCS, 0);
    assert_ne!(t.px_read(0, px::SERR) & pxserr::DIAG_X, 0);
    linux_comreset(&mut t, 0);
    assert_eq!(t.px_read(0, px::SSTS), 0x133);
    assert_eq!(t.px_read(0, px::SIG), 0x101);
    t.start_port(0);
    let (model, data) = identify_and_read(&mut t, 0);
    assert_eq!(model, "SECOND");
    assert_eq!(
        data,
        common::pattern((IMAGE_SECTORS * 512) as usize, 2)[9 * 512..10 * 512]
    );
    assert_eq!(
        drained(&queue),
        [
            ("DRIVE_ADDED".into(), json!({"port": 0})),
            ("LINK_CHANGE".into(), json!({"port": 0, "state": "up"})),
            ("PORT_RESET".into(), json!({"port": 0})),
        ]
    );

    // The empty port gets a drive too.
    let third = patterned_drive(&img2, 3, "THIRD", &notifier);
    t.f.attach_device(1, third).unwrap();
    let again: Box<dyn SataDevice> = Box::new(satavm::ahci::port::hotplug::NoDevice);
    assert!(t.f.attach_device(1, again).is_err(), "occupied");
    assert!(t
        .f
        .attach_device(5, Box::new(satavm::ahci::port::hotplug::NoDevice))
        .is_err());
    linux_comreset(&mut t, 1);
    assert_eq!(t.px_read(1, px::SIG), 0x101);
    t.start_port(1);
    let (model, data) = identify_and_read(&mut t, 1);
    assert_eq!(model, "THIRD");
    assert_eq!(
        data,
        common::pattern((IMAGE_SECTORS * 512) as usize, 3)[9 * 512..10 * 512]
    );
}

#[test]
fn removal_while_the_engine_is_stopped() {
    use satavm::ahci::regs::pxserr;
    let queue = EventQueue::new().unwrap();
    let notifier = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let img = common::Image::new(IMAGE_SECTORS);
    let drive = patterned_drive(&img, 4, "STOPPED", &notifier);
    let mut t = TestHba::with_devices(vec![drive], notifier.clone());
    t.f.set_event_hook(api::event_hook(queue.clone()));
    t.start_port(0);
    t.stop_port(0);
    t.f.detach_device(0, None).unwrap();
    assert_eq!(t.px_read(0, px::SSTS), 0);
    assert_eq!(t.px_read(0, px::SERR), pxserr::DIAG_N | pxserr::DIAG_X);
    assert!(!t.f.port_draining(0));
    assert_eq!(
        drained(&queue),
        [("DRIVE_REMOVED".into(), json!({"port": 0}))]
    );
    let back = patterned_drive(&img, 4, "BACK", &notifier);
    t.f.attach_device(0, back).unwrap();
    linux_comreset(&mut t, 0);
    t.start_port(0);
    assert_eq!(identify_and_read(&mut t, 0).0, "BACK");
}

#[test]
fn drive_add_and_drive_del_over_the_socket() {
    let vm = Vm::start_with("hotplug", &["--ports", "3"]);
    let new_img = vm.dir.join("new.img");
    std::fs::File::create(&new_img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let mut c = vm.connect();
    let mut events = vm.connect();
    let p = c.ok("query-ports", json!({}));
    assert_eq!(p.as_array().unwrap().len(), 3);
    assert_eq!(p[1]["drive"], Value::Null);
    assert_eq!(p[1]["link"]["det"], 0);

    let err = |c: &mut Conn, cmd: &str, a: Value| -> String {
        let v = c.call(cmd, a.clone());
        assert_eq!(v["error"]["class"], "GenericError", "{cmd} {a}: {v}");
        v["error"]["desc"].as_str().unwrap().to_string()
    };
    assert!(err(
        &mut c,
        "drive-add",
        json!({"port": 0, "disk": "path=new.img"})
    )
    .contains("already has a drive"));
    assert!(err(
        &mut c,
        "drive-add",
        json!({"port": 7, "disk": "path=new.img"})
    )
    .contains("no port 7"));
    assert!(err(&mut c, "drive-add", json!({"port": 1, "disk": "bogus=1"})).contains("disk"));
    assert!(err(&mut c, "drive-add", json!({"port": 1})).contains("missing argument"));
    assert!(err(
        &mut c,
        "drive-add",
        json!({"port": 1, "disk": "path=nonexistent.img"})
    )
    .contains("nonexistent.img"));
    assert!(
        err(
            &mut c,
            "drive-add",
            json!({"port": 1, "disk": "path=disk.img"})
        )
        .contains("same file"),
        "port 0's image cannot be written by a second drive"
    );
    assert!(err(&mut c, "drive-del", json!({"port": 1})).contains("no drive"));
    assert!(err(&mut c, "drive-del", json!({"port": 0, "graceful": 1})).contains("true or false"));
    assert!(err(&mut c, "drive-del", json!({"port": 9})).contains("no port 9"));

    let path = new_img.display().to_string();
    assert_eq!(
        c.ok(
            "drive-add",
            json!({"port": 1, "disk": format!("path={path},model=HOT ADDED")})
        ),
        json!({})
    );
    assert_eq!(
        events.event()["event"],
        "DRIVE_ADDED",
        "then the link comes up"
    );
    assert_eq!(events.event()["data"], json!({"port": 1, "state": "up"}));
    let p = c.ok("query-ports", json!({}));
    assert_eq!(p[1]["drive"]["model"], "HOT ADDED");
    assert_eq!(p[1]["drive"]["path"], path);
    assert_eq!(p[1]["link"]["det"], 3);

    assert_eq!(
        c.ok("drive-del", json!({"port": 1, "graceful": true})),
        json!({"draining": false})
    );
    let e = events.event();
    assert_eq!(
        (e["event"].clone(), e["data"].clone()),
        (json!("DRIVE_REMOVED"), json!({"port": 1}))
    );
    let p = c.ok("query-ports", json!({}));
    assert_eq!(p[1]["drive"], Value::Null);
    assert_eq!(p[1]["link"]["det"], 0);
    assert_eq!(p[1]["pxserr"], 0x0401_0000, "DIAG.X and DIAG.N");
    // The file is free again: another drive may open (and lock) it.
    c.ok(
        "drive-add",
        json!({"port": 2, "disk": format!("path={path}")}),
    );
    c.ok("drive-del", json!({"port": 0}));
    assert_eq!(c.ok("query-ports", json!({}))[0]["drive"], Value::Null);
    c.ok("quit", json!({}));
    let (code, err) = vm.wait();
    assert_eq!(code, 0, "{err}");
}
