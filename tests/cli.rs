//! The satavm binary as a user meets it: exit statuses, option checks, disk checks and
//! locks, trace files, signals and the console escape.
//!
//! Tests that need a running guest use tests/fixtures/testfw.S, a tiny bare-metal guest built
//! here with gcc and run with --firmware: the build machines' software KVM runs its simple
//! instructions (see the fixture). Waits are for lines the guest or satavm prints, with a
//! deadline, never a fixed sleep.

mod common;
#[path = "common/testfw.rs"]
mod testfw;
use testfw::testfw;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

const SATAVM: &str = env!("CARGO_BIN_EXE_satavm");
/// Longest a run may take to reach a line (the software KVM is slow, CI machines are busy).
const DEADLINE: Duration = Duration::from_secs(60);

/// A fresh directory for one test (also the TMPDIR of the satavm it runs).
fn scratch_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn satavm(dir: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(SATAVM);
    c.current_dir(dir).env("TMPDIR", dir).env_remove("RUST_LOG");
    // satavm keeps a signal it was started with ignored (as `nohup` or a background job of a
    // non-interactive shell start it), so a test run from such a shell would see SIGHUP or
    // SIGINT do nothing. Start it with the default dispositions a terminal gives.
    // SAFETY: between fork and exec only async-signal-safe calls are allowed; signal() is one.
    unsafe {
        c.pre_exec(|| {
            for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    c
}

/// Run to the end with stdin closed.
fn run(dir: &Path, args: &[&str]) -> Output {
    satavm(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run satavm")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn image(dir: &Path, name: &str, bytes: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(bytes).unwrap();
    p
}

/// A satavm running in the background, its output read by threads.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_done: mpsc::Receiver<()>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn satavm");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        let (buf, mut err) = (stderr.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut chunk) {
                buf.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
            let _ = done_tx.send(());
        });
        Running {
            child,
            stdout,
            stderr,
            stderr_done,
        }
    }

    /// Wait for a stdout line containing `text`.
    fn wait_stdout(&mut self, text: &str) {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(l) if l.contains(text) => return,
                Ok(_) => {}
                Err(e) => panic!(
                    "no {text:?} on stdout ({e}); stderr: {}",
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Wait for stderr to contain `text`.
    fn wait_stderr(&mut self, text: &str) {
        let until = Instant::now() + DEADLINE;
        while !self.stderr.lock().unwrap().contains(text) {
            assert!(
                Instant::now() < until,
                "no {text:?} on stderr: {}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Wait for the process to end (and its stderr to be read to the end).
    fn wait(&mut self) -> (ExitStatus, String) {
        let until = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "satavm did not end; stderr: {}",
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = self.stderr_done.recv_timeout(DEADLINE);
        (status, self.stderr.lock().unwrap().clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn firmware_cmd(dir: &Path, mode: &str, extra: &[&str]) -> Command {
    let mut c = satavm(dir);
    c.arg("--firmware")
        .arg(testfw())
        .args(["--firmware-args", mode])
        .args(extra)
        .stdin(Stdio::null());
    c
}

/// Files in `dir` whose name starts with `prefix`.
fn files_like(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

// ---- exit statuses and messages ----

#[test]
fn usage_errors_exit_64_with_a_clear_message() {
    let dir = scratch_dir("usage");
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-option"], "unexpected argument"),
        (&["--cpus", "33"], "must be 1 to 32, got 33"),
        (&["--cpus", "256"], "must be 1 to 32, got 256"),
        (&["--cpus", "0"], "must be 1 to 32, got 0"),
        (&["--memory", "1X"], "suffix K, M, G or T"),
        (&["--memory", "17592186044480"], "is too large"),
        (&["--memory", "32M"], "at least 64 MiB"),
        (&["--memory", "1000000G"], "more than this host's RAM"),
        (&["--disk", "path="], "path= needs a file name"),
        (
            &["--disk", "passthrough="],
            "passthrough= needs a file name",
        ),
        (
            &["--disk", "path=a,colour=red"],
            "unknown option \"colour\"",
        ),
        (&["--kernel", "k", "--firmware", "f"], "cannot be used with"),
        (&["--doorbells", "maybe"], "expected on or off"),
        (&["--inject", "op=read,error=bogus"], "injection rule"),
        (
            &["--trace-human", "t.txt"],
            "hint: --trace-human takes its file after `=`: --trace-human=t.txt",
        ),
        (
            &["--disk", "path=x.img", "--inject", "port=3,op=read,drop"],
            "only 1 disks",
        ),
    ];
    image(&dir, "x.img", 1 << 20);
    for (args, message) in cases {
        let o = run(&dir, args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn mapped_registers_answer_reads_without_an_exit_and_trap_mode_with_one() {
    let dir = scratch_dir("registers");
    let mut caps = Vec::new();
    for (mode, reads) in [("mapped", 0), ("trap", 1)] {
        let o = firmware_cmd(&dir, "c", &["--registers", mode])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{mode}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let cap = out
            .lines()
            .find_map(|l| l.strip_prefix("cap "))
            .unwrap_or_else(|| panic!("{mode}: no CAP printed: {out}"))
            .to_string();
        caps.push(cap);
        assert!(
            stderr(&o).contains(&format!("(MMIO {reads} reads,")),
            "{mode}: {}",
            stderr(&o)
        );
        assert_eq!(
            stderr(&o).contains("registers: mapped"),
            mode == "mapped",
            "{}",
            stderr(&o)
        );
    }
    // The page holds what a trapped read returns: 1 port (CAP.NP 0), 32 slots (NCS 31),
    // NCQ and 64-bit addressing.
    assert_eq!(caps[0], caps[1]);
    let cap = u32::from_str_radix(&caps[0], 16).unwrap();
    assert_eq!((cap & 0x1f, (cap >> 8) & 0x1f), (0, 31), "{cap:#x}");
    assert_ne!(cap & 1 << 30, 0, "CAP.SNCQ");
    assert_ne!(cap & 1 << 31, 0, "CAP.S64A");
}

#[test]
fn a_guest_failure_code_is_not_a_usage_error() {
    let dir = scratch_dir("guest-code");
    let o = firmware_cmd(&dir, "x2", &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("guest reported failure code 2"));
    assert!(files_like(&dir, "satavm-selftest").is_empty());
}

#[test]
fn help_documents_exit_statuses_environment_disks_and_console_keys() {
    let dir = scratch_dir("help");
    let o = run(&dir, &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for text in [
        "Exit status:",
        "  64       usage error",
        "  69       KVM",
        "  70       the guest or KVM failed",
        "  71       set-up failed",
        "  128+N    stopped by signal N",
        "RUST_LOG",
        "passthrough=/dev/sgN|/dev/sdX",
        "lock=off",
        "Ctrl-A x",
        "Ctrl-A h",
        "Ctrl-A Ctrl-A",
        "--check",
        "SIGTERM, SIGINT and SIGHUP",
    ] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
    assert_eq!(run(&dir, &["--version"]).status.code(), Some(0));
}

#[test]
fn memory_sizes_take_suffixes() {
    let dir = scratch_dir("memory");
    for (arg, mib) in [("1G", 1024), ("512M", 512), ("768", 768), ("1.5G", 1536)] {
        let o = run(&dir, &["--check", "--memory", arg]);
        assert_eq!(o.status.code(), Some(0), "{arg}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(&format!("{mib} MiB of RAM")), "{arg}: {out}");
    }
}

// ---- validation before KVM, --check ----

#[test]
fn check_validates_without_kvm_and_creates_nothing() {
    let dir = scratch_dir("check");
    let img = image(&dir, "d.img", 4 << 20);
    let o = satavm(&dir)
        .args(["--check", "--firmware"])
        .arg(testfw())
        .args(["--disk", "path=d.img,readonly=on", "--trace", "t.json"])
        .args(["--trace-human=t.txt", "--inject", "op=read,delay=5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for text in [
        "/dev/kvm not opened",
        "firmware",
        "port 0: d.img (image file, 8192 sectors, read-only, locked)",
        "trace file t.json",
        "1 fault injection rule",
    ] {
        assert!(out.contains(text), "{text:?} in {out}");
    }
    assert!(!dir.join("t.json").exists() && !dir.join("t.txt").exists());
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 << 20);
}

/// As root, satavm runs in a mount namespace where /dev/kvm is /dev/null: whatever is
/// checked before KVM gives its own status, --check passes, and only then does KVM fail.
#[test]
fn every_check_comes_before_kvm_is_opened() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot hide /dev/kvm in a mount namespace; test skipped");
        return;
    }
    let dir = scratch_dir("before-kvm");
    image(&dir, "d.img", 1 << 20);
    image(&dir, "odd.img", 1000);
    let script = format!(
        "mount --bind /dev/null /dev/kvm || exit 99; S={SATAVM}; F={fw}
         $S --check --firmware $F; echo check=$?
         $S --firmware $F; echo run=$?
         $S --firmware $F --disk path=missing.img; echo missing=$?
         $S --firmware $F --disk path=odd.img --disk path=d.img --trace d.img; echo trace=$?
         $S --kernel /no/such/kernel; echo kernel=$?
         $S --firmware $F --inject-file /no/such/rules; echo inject=$?",
        fw = testfw().display()
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .current_dir(&dir)
        .env("TMPDIR", &dir)
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    let out = String::from_utf8_lossy(&o.stdout);
    for want in [
        "check=0",
        "run=69",
        "missing=71",
        "trace=64",
        "kernel=71",
        "inject=71",
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "{want} in {out}; {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_failed_set_up_leaves_trace_files_alone() {
    let dir = scratch_dir("trace-late");
    std::fs::write(dir.join("old.json"), "keep me\n").unwrap();
    let o = run(
        &dir,
        &[
            "--kernel",
            "/no/such/kernel",
            "--trace",
            "old.json",
            "--trace-human=new.txt",
        ],
    );
    assert_eq!(o.status.code(), Some(71), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("old.json")).unwrap(),
        "keep me\n"
    );
    assert!(!dir.join("new.txt").exists());
}

#[test]
fn trace_paths_that_would_destroy_something_are_refused() {
    let dir = scratch_dir("trace-refused");
    let img = image(&dir, "victim.img", 64 << 20);
    std::os::unix::fs::symlink(&img, dir.join("alias")).unwrap();
    nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::create_dir(dir.join("subdir")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--trace", "victim.img", "--disk", "path=victim.img"],
            "the disk of port 0",
        ),
        (
            &["--trace-human=alias", "--disk", "path=victim.img"],
            "the disk of port 0",
        ),
        (&["--trace", "fifo"], "a FIFO"),
        (&["--trace", "/dev/null"], "a character device"),
        (&["--trace", "subdir"], "a directory"),
        (
            &["--trace", "a.json", "--trace-human=a.json"],
            "name one file",
        ),
    ];
    for (args, message) in cases {
        let o = satavm(&dir)
            .args(["--firmware"])
            .arg(testfw())
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        64 << 20,
        "victim.img intact"
    );
    // A block device given as trace file, where the host has one to name.
    if let Some(dev) = ["/dev/loop0", "/dev/sda", "/dev/vda", "/dev/nvme0n1"]
        .iter()
        .find(|d| {
            std::fs::metadata(d)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()))
        })
    {
        let o = run(&dir, &["--trace", dev]);
        assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
        assert!(stderr(&o).contains("a block device"), "{}", stderr(&o));
    }
}

// ---- disks ----

#[test]
fn disks_that_are_not_images_are_refused_without_hanging() {
    let dir = scratch_dir("disks");
    std::fs::create_dir(dir.join("d")).unwrap();
    nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    image(&dir, "tiny.img", 100);
    let cases: &[(&str, &str)] = &[
        ("path=d,readonly=on", "is a directory"),
        ("path=d", "is a directory"),
        ("path=fifo,readonly=on", "is a FIFO"),
        ("path=fifo", "is a FIFO"),
        ("path=/dev/null", "is a character device"),
        ("path=tiny.img", "smaller than one 512-byte sector"),
        ("path=nothing.img", "no such file"),
    ];
    for (spec, message) in cases {
        let t0 = Instant::now();
        let o = run(&dir, &["--check", "--disk", spec]);
        assert_eq!(o.status.code(), Some(71), "{spec}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{spec}: {}", stderr(&o));
        assert!(t0.elapsed() < DEADLINE);
    }
}

#[test]
fn a_partial_last_sector_is_reported_and_commas_can_be_escaped() {
    let dir = scratch_dir("partial");
    image(&dir, "a,b.img", 1_000_000);
    let o = run(&dir, &["--check", "--disk", "path=a,,b.img"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("its last 64 bytes are past the last whole sector"),
        "{}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("a,b.img (image file, 1953 sectors"));
}

#[test]
fn one_image_on_two_ports_is_refused_unless_both_read_only() {
    let dir = scratch_dir("two-ports");
    image(&dir, "d.img", 1 << 20);
    std::os::unix::fs::symlink("d.img", dir.join("link.img")).unwrap();
    let o = run(
        &dir,
        &["--check", "--disk", "path=d.img", "--disk", "path=link.img"],
    );
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("(port 1) is the same file as port 0's (d.img)"),
        "{}",
        stderr(&o)
    );
    let o = run(
        &dir,
        &[
            "--check",
            "--disk",
            "path=d.img,readonly=on",
            "--disk",
            "path=d.img,readonly=on",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn an_image_in_use_by_another_satavm_is_refused_naming_it() {
    let dir = scratch_dir("locked");
    image(&dir, "d.img", 1 << 20);
    image(&dir, "ro.img", 1 << 20);
    let mut first = Running::start(firmware_cmd(
        &dir,
        "s",
        &["--disk", "path=d.img", "--disk", "path=ro.img,readonly=on"],
    ));
    first.wait_stdout("testfw: ready");
    let pid = first.child.id();
    for (spec, what) in [
        ("path=d.img", "has it open and lets no one else write it"),
        ("path=d.img,readonly=on", "has it open for writing"),
        ("path=ro.img", "has it open and lets no one else write it"),
    ] {
        let o = run(&dir, &["--check", "--disk", spec]);
        assert_eq!(o.status.code(), Some(71), "{spec}: {}", stderr(&o));
        let holder = format!("is in use: pid {pid} (satavm) {what}");
        assert!(stderr(&o).contains(&holder), "{spec}: {}", stderr(&o));
    }
    // Readers share; lock=off opts out.
    for spec in ["path=ro.img,readonly=on", "path=d.img,lock=off"] {
        let o = run(&dir, &["--check", "--disk", spec]);
        assert_eq!(o.status.code(), Some(0), "{spec}: {}", stderr(&o));
    }
    first.signal(Signal::SIGTERM);
    let (st, _) = first.wait();
    assert_eq!(st.code(), Some(143));
    // Released with the process.
    assert_eq!(
        run(&dir, &["--check", "--disk", "path=d.img"])
            .status
            .code(),
        Some(0)
    );
}

/// QEMU, where the test command installed it (scripts/rig prepare), and satavm see each
/// other's locks: satavm speaks QEMU's lock protocol (src/hostfile/lock.rs).
#[test]
fn satavm_and_qemu_refuse_each_other_on_one_image() {
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        eprintln!("no {qemu} (scripts/test installs it): test skipped");
        return;
    }
    let dir = scratch_dir("qemu-lock");
    image(&dir, "q.img", 1 << 20);
    // A (stopped: -S) QEMU with the image as a virtio disk (QEMU takes a drive's permissions
    // when a device uses it); its monitor prompt comes once the device is set up.
    let qemu_args = |readonly: bool| {
        let ro = if readonly { ",readonly=on" } else { "" };
        [
            "-machine".to_string(),
            "q35".into(),
            "-S".into(),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-drive".into(),
            format!("file=q.img,format=raw,if=none,id=d0{ro}"),
            "-device".into(),
            "virtio-blk-pci,drive=d0".into(),
        ]
    };
    /// Kills QEMU however the test ends.
    struct Qemu(Child);
    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("q.img")).unwrap());
    let start_qemu = |readonly: bool| {
        let mut c = Command::new(qemu);
        c.current_dir(&dir)
            .args(qemu_args(readonly))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut q = Qemu(c.spawn().unwrap());
        // Its device holds the drive once QEMU locks byte 201 ("write not shared").
        let until = Instant::now() + DEADLINE;
        while !std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| l.contains(&format!(":{ino} 201 201")))
        {
            assert!(q.0.try_wait().unwrap().is_none(), "QEMU ended");
            assert!(Instant::now() < until, "QEMU took no lock on q.img");
            std::thread::sleep(Duration::from_millis(20));
        }
        q
    };
    let check = |spec: &str| run(&dir, &["--check", "--disk", spec]);
    let q = start_qemu(false);
    for spec in ["path=q.img", "path=q.img,readonly=on"] {
        let o = check(spec);
        assert_eq!(o.status.code(), Some(71), "{spec}: {}", stderr(&o));
        let holder = format!("pid {} (qemu-system-x86)", q.0.id());
        assert!(stderr(&o).contains(&holder), "{spec}: {}", stderr(&o));
    }
    drop(q);
    // A read-only QEMU shares with a read-only satavm, not with a writer.
    let q = start_qemu(true);
    assert_eq!(check("path=q.img,readonly=on").status.code(), Some(0));
    assert_eq!(check("path=q.img").status.code(), Some(71));
    drop(q);
    // And the other way round: QEMU refuses an image satavm writes.
    let mut s = Running::start(firmware_cmd(&dir, "s", &["--disk", "path=q.img"]));
    s.wait_stdout("testfw: ready");
    let o = Command::new(qemu)
        .current_dir(&dir)
        .args(qemu_args(true))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lock"), "{}", stderr(&o));
}

// ---- signals ----

#[test]
fn sigterm_sigint_and_sighup_stop_the_vm_through_the_exit_path() {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        let dir = scratch_dir(&format!("signal-{}", sig.as_str()));
        let mut r = Running::start(firmware_cmd(
            &dir,
            "m",
            // Trapped registers: the trace shows each read.
            &["--trace", "t.json", "--registers", "trap"],
        ));
        r.wait_stdout("testfw: ready");
        assert_eq!(
            files_like(&dir, "satavm-selftest-").len(),
            1,
            "scratch image"
        );
        r.signal(sig);
        let (status, err) = r.wait();
        assert_eq!(status.code(), Some(128 + sig as i32), "{sig}: {err}");
        let me = std::process::id();
        assert!(
            err.contains(&format!("stopped by {} from pid {me}", sig.as_str())),
            "{err}"
        );
        assert!(err.contains("satavm: vCPU exits:"), "statistics: {err}");
        assert!(err.contains("satavm: port 0:"), "statistics: {err}");
        assert!(
            files_like(&dir, "satavm-selftest-").is_empty(),
            "scratch image left"
        );
        // The whole trace was written: every CAP read the guest did before it was ready.
        let text = std::fs::read_to_string(dir.join("t.json")).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let events = common::trace::parse(&lines);
        let caps = common::trace::find(
            &events,
            &json!({"layer": "ahci", "kind": "reg_read", "reg": "CAP", "offset": 0}),
        );
        assert_eq!(caps.len(), 25, "{sig}: {text}");
        assert!(caps.iter().all(|e| e["value"].is_u64()));
    }
}

#[test]
fn a_second_signal_ends_satavm_at_once() {
    let dir = scratch_dir("second-signal");
    // The guest reads CAP forever with the text trace on stderr, which this test does not
    // read until the end: once the pipe is full, the vCPU blocks in the tracer and the exit
    // path after a first signal cannot finish. A second signal must end satavm anyway.
    let mut cmd = firmware_cmd(&dir, "M", &["--trace", "-", "--registers", "trap"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("testfw: ready"), "{line}");
    assert_eq!(files_like(&dir, "satavm-selftest-").len(), 1);
    // Wait for the stderr pipe to fill up: from then on the vCPU blocks in the tracer's
    // write.
    let err_fd = std::os::fd::AsRawFd::as_raw_fd(child.stderr.as_ref().unwrap());
    let size = nix::fcntl::fcntl(err_fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ).unwrap();
    let until = Instant::now() + DEADLINE;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, a live local.
        assert_eq!(
            unsafe { libc::ioctl(err_fd, libc::FIONREAD, &mut queued) },
            0
        );
        if queued >= size - 4096 {
            break;
        }
        assert!(
            Instant::now() < until,
            "stderr never filled ({queued} of {size} bytes)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    kill(pid, Signal::SIGINT).unwrap();
    // Drain stderr so nothing else blocks it, then the verdict.
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "still running after two signals");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    // Killed by the signal read second (signalfd hands pending signals over lowest number
    // first), not a normal exit: the exit path could not have finished.
    assert!(
        [Signal::SIGTERM as i32, Signal::SIGINT as i32].contains(&status.signal().unwrap_or(0)),
        "{status:?}"
    );
    assert!(
        files_like(&dir, "satavm-selftest-").is_empty(),
        "scratch image left"
    );
}

// ---- the console ----

#[test]
fn the_console_escape_quits_helps_and_sends_a_literal_ctrl_a() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let dir = scratch_dir("console");
    let pty = nix::pty::openpty(None, None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON));
    let mut cmd = satavm(&dir);
    cmd.arg("--firmware")
        .arg(testfw())
        .args(["--firmware-args", "e"])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()));
    let mut r = Running::start(cmd);
    r.wait_stdout("testfw: ready");
    let mut master = std::fs::File::from(pty.master);
    // Raw mode: Ctrl-C is a byte for the guest.
    master.write_all(b"a\x03").unwrap();
    r.wait_stdout("rx 61");
    r.wait_stdout("rx 03");
    master.write_all(b"\x01\x01").unwrap();
    r.wait_stdout("rx 01");
    master.write_all(b"\x01h").unwrap();
    r.wait_stderr("Ctrl-A x");
    master.write_all(b"\x01x").unwrap();
    let (status, err) = r.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("quit from the console (Ctrl-A x)"), "{err}");
    assert!(err.contains("satavm: vCPU exits:"), "{err}");
    assert!(files_like(&dir, "satavm-selftest-").is_empty());
    // The terminal is as it was.
    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
}

#[test]
fn cdrom_disks_are_checked_and_described() {
    let dir = scratch_dir("cdrom");
    image(&dir, "disc.iso", 10 * 2048);
    image(&dir, "small.iso", 1000);
    let o = run(
        &dir,
        &[
            "--check",
            "--disk",
            "cdrom=disc.iso",
            "--disk",
            "media=cdrom",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("port 0: disc.iso (CD/DVD image, 10 blocks of 2048 bytes, read-only, locked)"),
        "{out}"
    );
    assert!(out.contains("port 1: CD/DVD drive, empty tray"), "{out}");
    let o = run(&dir, &["--check", "--disk", "cdrom=small.iso"]);
    assert_eq!(o.status.code(), Some(71), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("smaller than one 2048-byte block"),
        "{}",
        stderr(&o)
    );
    let o = run(&dir, &["--check", "--disk", "cdrom=nothing.iso"]);
    assert_eq!(o.status.code(), Some(71), "{}", stderr(&o));
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    // The disc is read-only: a second read-only user shares it, a writer is refused.
    let o = run(
        &dir,
        &[
            "--check",
            "--disk",
            "cdrom=disc.iso",
            "--disk",
            "path=disc.iso,readonly=on",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(
        &dir,
        &[
            "--check",
            "--disk",
            "cdrom=disc.iso",
            "--disk",
            "path=disc.iso",
        ],
    );
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    let o = run(&dir, &["--check", "--disk", "cdrom=disc.iso,timeout=3"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
}

#[test]
fn ports_gives_empty_hot_pluggable_ports_and_refuses_too_few_or_too_many() {
    let dir = scratch_dir("ports");
    image(&dir, "a.img", 1 << 20);
    image(&dir, "b.img", 1 << 20);
    let o = run(&dir, &["--check", "--ports", "4", "--disk", "path=a.img"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("4 AHCI ports, hot-pluggable, 3 of them empty"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(&dir, &["--check", "--ports", "2"]);
    assert_eq!(o.status.code(), Some(0), "no --disk at all: {}", stderr(&o));
    let o = run(
        &dir,
        &[
            "--check",
            "--ports",
            "1",
            "--disk",
            "path=a.img",
            "--disk",
            "path=b.img",
        ],
    );
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fewer ports than --disk"),
        "{}",
        stderr(&o)
    );
    for bad in ["0", "33", "x"] {
        let o = run(&dir, &["--check", "--ports", bad]);
        assert_eq!(o.status.code(), Some(64), "--ports {bad}: {}", stderr(&o));
    }
}
