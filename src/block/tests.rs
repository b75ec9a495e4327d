//! The file engines (io_uring and threads) against a real file and mmap-backed guest memory.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::mem::{GuestMemory, HostRange, MemError, VecMemory};

/// Guest memory that counts every copy through the trait, to prove engines do not copy.
struct Counting {
    inner: VecMemory,
    copies: AtomicU64,
    /// Hand out host ranges (else engines must bounce).
    mapped: bool,
}

impl GuestMemory for Counting {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        self.inner.write(addr, data)
    }
    fn host_ranges(&self, addr: u64, len: u64, out: &mut Vec<HostRange>) -> Result<(), MemError> {
        if !self.mapped {
            return Err(MemError::NoHostMapping);
        }
        self.inner.host_ranges(addr, len, out)
    }
}

struct TempFile(std::path::PathBuf, Arc<File>);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn temp_file(bytes: u64) -> TempFile {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "satavm-engine-{}-{}.img",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.set_len(bytes).unwrap();
    TempFile(path, Arc::new(f))
}

/// Wait (on the notifier, at most 10 s) until `n` completions came back.
fn wait(engine: &mut dyn Engine, notifier: &EventFd, n: usize) -> Vec<Completed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    loop {
        engine.reap(&mut got);
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out with {got:?}");
        let mut pfd = libc::pollfd {
            fd: engine.ready_fd().unwrap_or(notifier.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        let _ = notifier.read();
    }
}

fn engines(file: &TempFile) -> Vec<(Box<dyn Engine>, Arc<EventFd>)> {
    let mut v: Vec<(Box<dyn Engine>, Arc<EventFd>)> = Vec::new();
    let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    v.push((
        Box::new(uring::UringEngine::new(file.1.clone(), n.clone()).expect("io_uring")),
        n,
    ));
    let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    v.push((
        Box::new(threads::ThreadEngine::new(file.1.clone(), n.clone(), 2).unwrap()),
        n,
    ));
    v
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

fn ok(c: &Completed) {
    assert!(c.result.is_ok(), "tag {}: {:?}", c.tag, c.result);
}

#[test]
fn scattered_guest_buffers_move_without_a_copy_in_satavm() {
    for mapped in [true, false] {
        let file = temp_file(1 << 20);
        for (mut e, n) in engines(&file) {
            let mem = Arc::new(Counting {
                inner: VecMemory::new(4 << 20),
                copies: AtomicU64::new(0),
                mapped,
            });
            let data = pattern(12288, e.name().len() as u8);
            mem.inner.write(0x10_0000, &data[..4096]).unwrap();
            mem.inner.write(0x30_0000, &data[4096..]).unwrap();
            let src: Arc<dyn GuestMemory> = mem.clone();
            let buf = GuestBuf::new(src.clone(), [(0x10_0000, 4096), (0x30_0000, 8192)]);
            e.submit(
                1,
                Request::Write {
                    offset: 8192,
                    buf,
                    fua: true,
                },
            )
            .unwrap();
            let c = wait(e.as_mut(), &n, 1);
            ok(&c[0]);
            let on_disk = std::fs::read(&file.0).unwrap();
            assert_eq!(&on_disk[8192..8192 + 12288], &data[..], "{}", e.name());
            // Read it back into three other pieces, one crossing into the next.
            let dst = GuestBuf::new(
                src,
                [(0x20_0000, 100), (0x20_0064, 3996), (0x28_0000, 8192)],
            );
            assert_eq!(dst.ranges().len(), 2, "adjacent ranges merged");
            e.submit(
                2,
                Request::Read {
                    offset: 8192,
                    buf: dst,
                },
            )
            .unwrap();
            let c = wait(e.as_mut(), &n, 1);
            assert_eq!(c[0].tag, 2);
            ok(&c[0]);
            let mut got = vec![0u8; 4096];
            mem.inner.read(0x20_0000, &mut got).unwrap();
            assert_eq!(got, data[..4096]);
            let mut got = vec![0u8; 8192];
            mem.inner.read(0x28_0000, &mut got).unwrap();
            assert_eq!(got, data[4096..]);
            let copies = mem.copies.load(Ordering::SeqCst);
            let stats = e.stats();
            if mapped {
                assert_eq!(copies, 0, "{}: data went through satavm", e.name());
                assert_eq!(stats.bounced_bytes, 0);
            } else {
                assert!(copies > 0);
                assert_eq!(stats.bounced_bytes, 2 * 12288, "{}", e.name());
            }
            assert_eq!(stats.submitted, 2);
            assert_eq!(e.in_flight(), 0);
        }
    }
}

#[test]
fn flush_discard_and_zeroes() {
    let file = temp_file(4 << 20);
    std::fs::write(&file.0, vec![0xa5u8; 4 << 20]).unwrap();
    let before = std::fs::metadata(&file.0).unwrap().blocks();
    for (mut e, n) in engines(&file) {
        e.submit(1, Request::Flush).unwrap();
        e.submit(
            2,
            Request::Discard {
                offset: 1 << 20,
                len: 1 << 20,
            },
        )
        .unwrap();
        e.submit(
            3,
            Request::WriteZeroes {
                offset: 3 << 20,
                len: 600 << 10,
            },
        )
        .unwrap();
        let mut c = wait(e.as_mut(), &n, 3);
        c.sort_by_key(|c| c.tag);
        c.iter().for_each(ok);
        let disk = std::fs::read(&file.0).unwrap();
        assert!(
            disk[1 << 20..2 << 20].iter().all(|b| *b == 0),
            "{}",
            e.name()
        );
        assert!(disk[3 << 20..(3 << 20) + (600 << 10)]
            .iter()
            .all(|b| *b == 0));
        assert!(disk[..1 << 20].iter().all(|b| *b == 0xa5));
        assert_eq!(disk[(3 << 20) + (600 << 10)], 0xa5);
    }
    let after = std::fs::metadata(&file.0).unwrap().blocks();
    assert!(
        after < before,
        "the discard punched a hole ({before} -> {after} blocks)"
    );
}

#[test]
fn a_buffer_outside_guest_ram_fails_the_request_not_the_engine() {
    let file = temp_file(1 << 20);
    for (mut e, n) in engines(&file) {
        let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(1 << 20));
        let buf = GuestBuf::new(mem.clone(), [(0xff000, 0x2000)]);
        e.submit(7, Request::Read { offset: 0, buf }).unwrap();
        let c = wait(e.as_mut(), &n, 1);
        assert_eq!(c[0].tag, 7);
        let err = c[0].result.as_ref().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFAULT), "{}", e.name());
        assert_eq!(e.in_flight(), 0);
        // It still works.
        let buf = GuestBuf::new(mem, [(0x1000, 512)]);
        e.submit(8, Request::Read { offset: 0, buf }).unwrap();
        ok(&wait(e.as_mut(), &n, 1)[0]);
    }
}

#[test]
fn more_requests_than_the_ring_holds_all_complete() {
    let file = temp_file(4 << 20);
    for (mut e, n) in engines(&file) {
        let mem: Arc<dyn GuestMemory> = Arc::new(VecMemory::new(4 << 20));
        for i in 0..300u64 {
            let buf = GuestBuf::new(mem.clone(), [(i * 4096, 4096)]);
            e.submit(
                i,
                Request::Read {
                    offset: i * 4096,
                    buf,
                },
            )
            .unwrap();
        }
        let mut c = wait(e.as_mut(), &n, 300);
        c.iter().for_each(ok);
        c.sort_by_key(|c| c.tag);
        assert!(c.iter().map(|c| c.tag).eq(0..300), "{}", e.name());
        assert_eq!(e.in_flight(), 0);
    }
}

#[test]
fn scsi_requests_are_refused_by_file_engines() {
    let file = temp_file(4096);
    for (mut e, _) in engines(&file) {
        let r = e.submit(
            1,
            Request::Scsi(ScsiCommand {
                cdb: vec![0; 16],
                direction: DataDirection::None,
                buf: None,
                timeout: Duration::from_secs(1),
            }),
        );
        assert!(matches!(r, Err(SubmitError::Unsupported { .. })));
        assert_eq!(e.in_flight(), 0);
    }
}

#[test]
fn auto_falls_back_to_threads_only_when_io_uring_fails() {
    let file = temp_file(4096);
    let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    let e = file_engine(file.1.clone(), EngineChoice::Auto, n.clone()).unwrap();
    assert_eq!(e.name(), "io_uring", "this host has io_uring");
    let e = file_engine(file.1.clone(), EngineChoice::Threads, n).unwrap();
    assert_eq!(e.name(), "threads");
}

/// Make io_uring_setup fail with ENOSYS in this thread (and threads it starts), as a host
/// without io_uring (old kernel, a seccomp policy) answers.
fn deny_io_uring_in_this_thread() {
    // struct sock_filter: (code, jt, jf, k). Allow everything but io_uring_setup.
    const LD_NR: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS, offset 0: seccomp_data.nr
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let filter = [
        libc::sock_filter {
            code: LD_NR,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JEQ,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: RET,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: RET,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers; the seccomp filter program is a valid
    // sock_fprog over `filter`, alive for the call (the kernel copies it). Both only restrict
    // the calling thread.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                std::ptr::from_ref(&prog)
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn without_io_uring_auto_picks_threads_and_forcing_io_uring_fails() {
    let file = temp_file(1 << 16);
    let f = file.1.clone();
    let names = std::thread::spawn(move || {
        deny_io_uring_in_this_thread();
        let n = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let auto = file_engine(f.clone(), EngineChoice::Auto, n.clone()).map(|e| e.name());
        let forced = file_engine(f, EngineChoice::IoUring, n).map(|e| e.name());
        (auto.unwrap(), forced.map_err(|e| e.raw_os_error()))
    })
    .join()
    .unwrap();
    assert_eq!(names, ("threads", Err(Some(libc::ENOSYS))));
}
