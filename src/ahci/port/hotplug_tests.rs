//! Unit tests of hot plug (see [`super::hotplug`]) against the mock device.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::hotplug::HotPlugError;
use super::tests::{port, queued_reads, started, ALL};
use super::*;
use crate::ahci::mock::{layout::*, mock, pattern};
use crate::ata::command::opcode;
use crate::mem::VecMemory;

/// A device whose aborted host I/O drains only when the test says so.
struct Draining {
    inner: Box<dyn SataDevice>,
    draining: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

impl Drop for Draining {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl SataDevice for Draining {
    fn comreset(&mut self) -> RegisterD2h {
        self.inner.comreset()
    }
    fn device_control(&mut self, fis: &crate::sata::RegisterH2d) -> Option<RegisterD2h> {
        self.inner.device_control(fis)
    }
    fn submit(&mut self, slot: u8, fis: &crate::sata::RegisterH2d, data: DataPath) -> Submission {
        self.inner.submit(slot, fis, data)
    }
    fn poll_completions(&mut self) -> Vec<Completion> {
        self.inner.poll_completions()
    }
    fn abort_all(&mut self) {
        self.inner.abort_all();
        self.draining.store(true, Ordering::SeqCst);
    }
    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

fn events(p: &mut Port) -> Arc<Mutex<Vec<AhciEvent>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    p.set_event_hook(EventHook::new(move |e| s.lock().unwrap().push(e)));
    seen
}

/// Software's bring-up after a hot-plug interrupt, as libahci's hard reset does it: clear
/// PxSERR, COMRESET (PxSCTL.DET 1 then 0), wait for DET 3, read PxSIG.
fn linux_comreset(p: &mut Port) {
    p.write(reg::SERR, ALL, ALL);
    p.write(reg::IS, ALL, ALL);
    p.write(reg::SCTL, 0x301, ALL);
    assert_eq!(
        p.read(reg::SSTS) & scr::DET_MASK,
        0,
        "DET 0 during COMRESET"
    );
    p.write(reg::SCTL, 0x300, ALL);
}

/// An empty hot-pluggable port, brought up as software does it.
fn empty_started() -> (Port, Arc<VecMemory>) {
    let (mut p, _h, mem) = port();
    p.make_empty();
    p.set_hot_plug();
    p.write(reg::CLB, CLB as u32, ALL);
    p.write(reg::FB, FB as u32, ALL);
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.write(reg::IE, pxis::ALL, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    (p, mem)
}

fn read_one(p: &mut Port, mem: &VecMemory, lba: u64) -> [u8; 512] {
    put_command(
        mem,
        0,
        &h2d(opcode::READ_DMA_EXT, lba, 1),
        &[(DATA, 512, false)],
        0,
    );
    p.write(reg::CI, 1, ALL);
    assert_eq!(p.read(reg::CI), 0);
    let mut b = [0u8; 512];
    mem.read(DATA, &mut b).unwrap();
    b
}

#[test]
fn empty_port_reads_no_device_and_a_comreset_does_not_bring_it_up() {
    let (mut p, _mem) = empty_started();
    assert!(!p.present());
    assert_eq!(p.read(reg::SSTS), 0);
    assert_eq!(p.read(reg::SIG), 0xffff_ffff);
    assert_eq!(p.read(reg::TFD), 0x7f);
    assert_eq!(p.read(reg::SERR), 0);
    assert_eq!(p.read(reg::IS), 0);
    let cmd = p.read(reg::CMD);
    assert_ne!(cmd & pxcmd::HPCP, 0, "declared hot-pluggable");
    assert_ne!(cmd & pxcmd::SUD, 0);
    linux_comreset(&mut p);
    assert_eq!(p.read(reg::SSTS), 0);
    assert_eq!(p.read(reg::SIG), 0xffff_ffff);
    assert_eq!(p.read(reg::TFD), 0x7f);
    p.hba_reset();
    assert_eq!(p.read(reg::SSTS), 0, "an HBA reset finds no device either");
    assert_eq!(p.read(reg::SIG), 0xffff_ffff);
}

#[test]
fn hpcp_only_on_hot_pluggable_ports() {
    let (p, _h, _mem) = port();
    assert_eq!(p.read(reg::CMD) & pxcmd::HPCP, 0);
}

#[test]
fn removal_with_ncq_in_flight_loses_the_commands_and_a_new_drive_answers() {
    let (mut p, h, mem) = started();
    let seen = events(&mut p);
    queued_reads(&mem, 3);
    p.write(reg::SACT, 0b111, ALL);
    p.write(reg::CI, 0b111, ALL);
    assert_eq!(h.state().held.len(), 3);
    let _ = p.take_new_events();

    p.detach(None).unwrap();
    assert!(!p.present());
    assert_eq!(p.read(reg::SSTS), 0);
    let serr = p.read(reg::SERR);
    assert_eq!(
        serr,
        pxserr::DIAG_N | pxserr::DIAG_X | pxserr::ERR_C,
        "PhyRdy change, presence change, and a transfer cut short"
    );
    assert_eq!(p.read(reg::IS), pxis::PCS | pxis::PRCS);
    assert_eq!(p.take_new_events(), pxis::PCS | pxis::PRCS);
    assert!(p.interrupt_pending());
    assert_eq!(p.read(reg::TFD), 0x7f);
    assert_eq!(h.state().aborts, 1);
    assert_eq!(p.read(reg::SACT), 0b111, "no completion after removal");

    // The old drive's completion arriving late reaches nobody.
    {
        let mut s = h.state();
        let held: Vec<u8> = (0..3).collect();
        drop(s.held.drain(..));
        for slot in held {
            s.ready.push(Completion {
                slot,
                fises: vec![Fis::SetDeviceBits(crate::sata::SetDeviceBits {
                    interrupt: true,
                    sactive: 1 << slot,
                    ..Default::default()
                })],
                bytes_transferred: 4096,
            });
        }
    }
    p.process_completions();
    assert_eq!(p.read(reg::SACT), 0b111);
    assert_eq!(p.take_new_events(), 0);
    // New commands go nowhere while the port is empty.
    p.write(reg::CI, 0b1000, ALL);
    assert!(h.state().submitted.len() == 3);

    // Software's error handling: stop the engine (PxCI/PxSACT clear), clear the errors.
    p.write(reg::CMD, pxcmd::FRE, ALL);
    assert_eq!(p.read(reg::CMD) & pxcmd::CR, 0);
    assert_eq!(p.read(reg::SACT), 0);
    assert_eq!(p.read(reg::CI), 0);
    linux_comreset(&mut p);
    assert_eq!(p.read(reg::SSTS), 0, "still nothing there");

    // Reinsert: COMINIT, the link up, the signature.
    let (dev2, h2) = mock();
    p.attach(dev2).unwrap();
    assert!(p.present());
    assert_eq!(p.read(reg::SSTS), 0x133);
    assert_eq!(p.read(reg::SERR), pxserr::DIAG_X | pxserr::DIAG_N);
    assert_eq!(p.take_new_events(), pxis::PCS | pxis::PRCS);
    assert_eq!(p.read(reg::SIG), 0x101);
    assert_eq!(p.read(reg::TFD), 0x150);
    linux_comreset(&mut p);
    assert_eq!(p.read(reg::SSTS), 0x133);
    assert_eq!(p.read(reg::SIG), 0x101);
    assert_eq!(h2.state().comresets, 2);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    let b = read_one(&mut p, &mem, 9);
    assert_eq!(b[7], pattern(9, 7));
    assert_eq!(h2.state().submitted.len(), 1);
    assert_eq!(
        h.state().submitted.len(),
        3,
        "the old drive got nothing more"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            AhciEvent::DeviceRemoved { port: 0 },
            AhciEvent::PortReset { port: 0 },
            AhciEvent::DeviceAdded { port: 0 },
            AhciEvent::LinkRestored { port: 0 },
            AhciEvent::PortReset { port: 0 },
        ]
    );
}

#[test]
fn removal_while_stopped_sets_no_err_c() {
    let (mut p, h, _mem) = port();
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.detach(None).unwrap();
    assert_eq!(p.read(reg::SSTS), 0);
    assert_eq!(p.read(reg::SERR), pxserr::DIAG_N | pxserr::DIAG_X);
    assert_eq!(p.read(reg::IS), pxis::PCS | pxis::PRCS);
    assert_eq!(p.read(reg::CMD) & (pxcmd::CR | pxcmd::ST), 0);
    assert!(!p.draining());
    assert_eq!(h.state().aborts, 1);
    // Starting the engine on an empty port issues nothing.
    p.write(reg::CLB, CLB as u32, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    p.write(reg::CI, 1, ALL);
    assert!(h.state().submitted.is_empty());
}

#[test]
fn a_removed_drive_is_kept_until_drained_and_cr_stays_set_meanwhile() {
    let mem = Arc::new(VecMemory::new(MEM_SIZE));
    let (inner, h) = mock();
    let draining = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let dev = Draining {
        inner,
        draining: draining.clone(),
        dropped: dropped.clone(),
    };
    let mut p = Port::new(0, Box::new(dev), mem.clone());
    p.write(reg::CLB, CLB as u32, ALL);
    p.write(reg::FB, FB as u32, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    queued_reads(&mem, 2);
    p.write(reg::SACT, 0b11, ALL);
    p.write(reg::CI, 0b11, ALL);
    assert_eq!(h.state().held.len(), 2);
    let synced = Arc::new(AtomicBool::new(false));
    let s = synced.clone();
    p.detach(Some(Box::new(move || s.store(true, Ordering::SeqCst))))
        .unwrap();
    assert!(!dropped.load(Ordering::SeqCst), "host I/O still in flight");
    assert!(p.draining());
    p.write(reg::CMD, pxcmd::FRE, ALL);
    assert_ne!(
        p.read(reg::CMD) & pxcmd::CR,
        0,
        "CR held for the drain (10.3.2)"
    );
    p.process_completions();
    assert!(!dropped.load(Ordering::SeqCst));
    assert!(!synced.load(Ordering::SeqCst));
    draining.store(false, Ordering::SeqCst);
    p.process_completions();
    assert!(dropped.load(Ordering::SeqCst), "released once drained");
    assert!(synced.load(Ordering::SeqCst), "then the flush hook ran");
    assert_eq!(p.read(reg::CMD) & pxcmd::CR, 0);
    assert!(!p.draining());
}

#[test]
fn insertion_while_software_holds_comreset_comes_up_when_it_lets_go() {
    let (mut p, _mem) = empty_started();
    p.write(reg::SCTL, 0x301, ALL);
    let (dev, _h) = mock();
    p.attach(dev).unwrap();
    assert_eq!(p.read(reg::SSTS) & scr::DET_MASK, 0);
    assert_eq!(p.read(reg::SIG), 0xffff_ffff);
    p.write(reg::SCTL, 0x300, ALL);
    assert_eq!(p.read(reg::SSTS), 0x133);
    assert_eq!(p.read(reg::SIG), 0x101);
    assert_ne!(p.read(reg::IS) & pxis::PCS, 0);
}

#[test]
fn add_to_an_empty_port_then_linux_comreset_gives_the_signature() {
    let (mut p, mem) = empty_started();
    let seen = events(&mut p);
    let (dev, h) = mock();
    p.attach(dev).unwrap();
    assert_eq!(
        p.take_new_events() & (pxis::PCS | pxis::PRCS),
        pxis::PCS | pxis::PRCS
    );
    assert_ne!(p.read(reg::SERR) & pxserr::DIAG_X, 0);
    // libahci's hot-plug EH: stop the engine, hard reset, classify by PxSIG, restart.
    p.write(reg::CMD, pxcmd::FRE, ALL);
    linux_comreset(&mut p);
    assert_eq!(p.read(reg::SSTS), 0x133);
    assert_eq!(p.read(reg::SIG), 0x101, "an ATA device");
    assert_eq!(p.read(reg::TFD) & 0xff, 0x50);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    let b = read_one(&mut p, &mem, 3);
    assert_eq!(b[100], pattern(3, 100));
    assert_eq!(
        h.state().comresets,
        2,
        "COMINIT's reset and software's COMRESET"
    );
    assert_eq!(seen.lock().unwrap()[0], AhciEvent::DeviceAdded { port: 0 });
}

#[test]
fn refusals() {
    let (mut p, _mem) = empty_started();
    assert_eq!(p.detach(None), Err(HotPlugError::Empty(0)));
    let (dev, _h) = mock();
    p.attach(dev).unwrap();
    let (dev, _h2) = mock();
    assert_eq!(p.attach(dev), Err(HotPlugError::Occupied(0)));
    p.detach(None).unwrap();
    assert_eq!(p.detach(None), Err(HotPlugError::Empty(0)));
}
