//! Unit tests of one port against the mock device.

use std::sync::Arc;

use super::*;
use crate::ahci::mock::{layout::*, mock, pattern, MockHandle, CAPACITY};
use crate::ata::command::opcode;
use crate::mem::VecMemory;
use crate::sata::{Fis, RegisterH2d};

pub(super) const ALL: u32 = u32::MAX;

pub(super) fn port() -> (Port, MockHandle, Arc<VecMemory>) {
    let mem = Arc::new(VecMemory::new(MEM_SIZE));
    let (dev, h) = mock();
    (Port::new(0, dev, mem.clone()), h, mem)
}

/// A port brought up as software does it (10.1.2): CLB/FB, FRE, clear SERR/IS, ST.
pub(super) fn started() -> (Port, MockHandle, Arc<VecMemory>) {
    let (mut p, h, mem) = port();
    p.write(reg::CLB, CLB as u32, ALL);
    p.write(reg::FB, FB as u32, ALL);
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.write(reg::SERR, ALL, ALL);
    p.write(reg::IS, ALL, ALL);
    p.write(reg::IE, pxis::ALL, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    let _ = p.take_new_events();
    (p, h, mem)
}

pub(super) fn rfis(mem: &VecMemory, off: u64, len: usize) -> Fis {
    let mut b = vec![0u8; len];
    mem.read(FB + off, &mut b).unwrap();
    Fis::decode(&b).unwrap()
}

#[test]
fn reset_values_then_signature_on_fis_receive_enable() {
    let (mut p, h, mem) = port();
    assert_eq!(p.read(reg::TFD), 0x7f);
    assert_eq!(p.read(reg::SIG), 0xffff_ffff);
    // IPM active, Gen3 (the HBA's and the mock device's best), DET 3.
    assert_eq!(p.read(reg::SSTS), 0x133);
    assert_eq!(p.read(reg::CMD), pxcmd::SUD | pxcmd::POD);
    for r in [
        reg::IS,
        reg::IE,
        reg::SCTL,
        reg::SERR,
        reg::SACT,
        reg::CI,
        reg::SNTF,
    ] {
        assert_eq!(p.read(r), 0, "register {r:#x}");
    }
    assert_eq!(h.state().comresets, 1);
    p.write(reg::FB, FB as u32 | 0xff, ALL);
    assert_eq!(p.read(reg::FB), FB as u32, "FB bits 7:0 are reserved");
    p.write(reg::CMD, pxcmd::FRE, ALL);
    assert_ne!(p.read(reg::CMD) & pxcmd::FR, 0);
    assert_eq!(p.read(reg::TFD), 0x150);
    assert_eq!(p.read(reg::SIG), 0x101);
    assert_eq!(
        rfis(&mem, rfis::offset::RFIS, 20),
        Fis::RegisterD2h(super::super::mock::signature())
    );
}

#[test]
fn command_issue_is_ignored_while_stopped() {
    let (mut p, h, mem) = port();
    p.write(reg::CLB, CLB as u32, ALL);
    put_command(
        &*mem,
        0,
        &h2d(opcode::READ_DMA_EXT, 0, 1),
        &[(DATA, 512, false)],
        0,
    );
    p.write(reg::CI, 1, ALL);
    assert_eq!(p.read(reg::CI), 0);
    assert!(h.state().submitted.is_empty());
}

#[test]
fn non_queued_read_completes_with_prdbc_and_dhrs() {
    let (mut p, h, mem) = started();
    // Two PRDs, the second with I set.
    put_command(
        &*mem,
        3,
        &h2d(opcode::READ_DMA_EXT, 7, 2),
        &[(DATA, 512, false), (DATA + 0x1000, 512, true)],
        0,
    );
    p.write(reg::CI, 1 << 3, ALL);
    assert_eq!(p.read(reg::CI), 0);
    assert_eq!(h.state().submitted[0].0, 3);
    let mut b = [0u8; 512];
    mem.read(DATA + 0x1000, &mut b).unwrap();
    assert_eq!(b[5], pattern(8, 5));
    let header = command::CommandHeader::read(&*mem, CLB, 3).unwrap();
    assert_eq!(header.prdbc, 1024);
    assert_eq!(p.read(reg::IS), pxis::DHRS | pxis::DPS);
    assert_eq!(p.take_new_events(), pxis::DHRS | pxis::DPS);
    assert_eq!(p.read(reg::TFD), 0x50);
    assert_eq!(p.stats.commands, 1);
    // PxIS is write-one-to-clear.
    p.write(reg::IS, pxis::DHRS, ALL);
    assert_eq!(p.read(reg::IS), pxis::DPS);
}

/// READ FPDMA QUEUED of 8 sectors in slots (and tags) 0..n, at LBA 8 * tag, 4 KiB each at
/// DATA + 4 KiB * tag.
pub(super) fn queued_reads(mem: &VecMemory, n: u8) {
    for tag in 0..n {
        let fis = fpdma(opcode::READ_FPDMA_QUEUED, tag, u64::from(tag) * 8, 8);
        put_command(
            mem,
            tag,
            &fis,
            &[(DATA + u64::from(tag) * 0x1000, 4096, false)],
            0,
        );
    }
}

#[test]
fn deferred_issue_sends_at_once_when_idle_and_at_the_next_pass_when_busy() {
    let (mut p, h, mem) = started();
    p.set_deferred_issue(true);
    queued_reads(&mem, 2);
    // Idle port: tag 0 goes to the device during the PxCI write itself.
    p.write(reg::SACT, 1, ALL);
    p.write(reg::CI, 1, ALL);
    assert_eq!(h.state().held.len(), 1);
    assert!(!p.take_deferred_issue());
    // Busy: tag 1 is issued (PxSACT/PxCI read it at once) but waits for the completion pass.
    p.write(reg::SACT, 2, ALL);
    p.write(reg::CI, 2, ALL);
    assert_eq!(p.read(reg::SACT), 0b11);
    assert_eq!(p.read(reg::CI), 0b10);
    assert_eq!(h.state().held.len(), 1, "not sent yet");
    assert!(p.take_deferred_issue());
    assert!(!p.take_deferred_issue(), "reported once");
    p.process_completions();
    assert_eq!(h.state().held.len(), 2);
    assert_eq!(p.read(reg::CI), 0, "the D2H FIS released slot 1");
    h.finish(&[0, 1]);
    p.process_completions();
    assert_eq!(p.read(reg::SACT), 0);
}

#[test]
fn queued_commands_complete_with_one_coalesced_sdb() {
    let (mut p, h, mem) = started();
    queued_reads(&mem, 3);
    p.write(reg::SACT, 0b111, ALL);
    p.write(reg::CI, 0b111, ALL);
    assert_eq!(
        p.read(reg::CI),
        0,
        "the device's D2H FIS releases each slot"
    );
    assert_eq!(p.read(reg::SACT), 0b111);
    assert_eq!(p.stats.ncq_peak_depth, 3);
    assert_eq!(p.take_new_events(), 0, "accepting D2H FISes have I = 0");
    h.finish(&[2, 0]);
    p.process_completions();
    assert_eq!(p.read(reg::SACT), 0b010);
    assert_eq!(p.take_new_events(), pxis::SDBS);
    match rfis(&mem, rfis::offset::SDBFIS, 8) {
        Fis::SetDeviceBits(s) => assert_eq!(s.sactive, 0b101, "one SDB FIS for both"),
        f => panic!("{f:?}"),
    }
    let mut b = [0u8; 1];
    mem.read(DATA + 0x2000 + 513, &mut b).unwrap();
    assert_eq!(b[0], pattern(17, 1));
    h.finish(&[1]);
    p.process_completions();
    assert_eq!(p.read(reg::SACT), 0);
    let header = command::CommandHeader::read(&*mem, CLB, 1).unwrap();
    assert_eq!(header.prdbc, 0, "PRDBC is not written for queued commands");
}

#[test]
fn task_file_error_halts_the_port_until_st_clears() {
    let (mut p, h, mem) = started();
    put_command(
        &*mem,
        0,
        &h2d(opcode::READ_DMA_EXT, CAPACITY, 1),
        &[(DATA, 512, false)],
        0,
    );
    put_command(
        &*mem,
        1,
        &h2d(opcode::READ_DMA_EXT, 0, 1),
        &[(DATA, 512, false)],
        0,
    );
    p.write(reg::CI, 0b1, ALL);
    assert_eq!(p.read(reg::CI), 1, "the failed command keeps its PxCI bit");
    assert_ne!(p.read(reg::IS) & pxis::TFES, 0);
    assert_eq!(p.read(reg::SERR), 0);
    assert_eq!(p.read(reg::TFD), 0x1051, "IDNF, DRDY|DSC|ERR");
    assert_eq!((p.read(reg::CMD) & pxcmd::CCS_MASK) >> pxcmd::CCS_SHIFT, 0);
    p.write(reg::CI, 0b10, ALL);
    assert_eq!(
        h.state().submitted.len(),
        1,
        "nothing is issued after a fatal error"
    );
    assert_eq!(p.stats.errors, 1);
    // Recovery (6.2.2.1): clear ST, CR drops, PxCI clears; clear PxIS; start again.
    p.write(reg::CMD, pxcmd::FRE, ALL);
    assert_eq!(p.read(reg::CMD) & (pxcmd::CR | pxcmd::ST), 0);
    assert_eq!(p.read(reg::CI), 0);
    assert_eq!(h.state().aborts, 1);
    p.write(reg::IS, ALL, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    p.write(reg::CI, 0b10, ALL);
    assert_eq!(p.read(reg::CI), 0);
    assert_eq!(p.read(reg::TFD), 0x50);
}

#[test]
fn failed_queued_command_keeps_its_sactive_bit() {
    let (mut p, h, mem) = started();
    put_command(
        &*mem,
        0,
        &fpdma(opcode::READ_FPDMA_QUEUED, 0, 0, 1),
        &[(DATA, 512, false)],
        0,
    );
    let bad = fpdma(opcode::READ_FPDMA_QUEUED, 1, CAPACITY, 1);
    put_command(&*mem, 1, &bad, &[(DATA, 512, false)], 0);
    p.write(reg::SACT, 0b11, ALL);
    p.write(reg::CI, 0b11, ALL);
    h.finish(&[0, 1]);
    p.process_completions();
    assert_eq!(p.read(reg::SACT), 0b10);
    assert_ne!(p.read(reg::IS) & pxis::TFES, 0);
    assert_ne!(p.read(reg::TFD) & pxtfd::ERR, 0);
    p.write(reg::CMD, pxcmd::FRE, ALL);
    assert_eq!(p.read(reg::SACT), 0, "ST 1 -> 0 clears PxSACT");
}

#[test]
fn short_prdt_is_an_overflow() {
    let (mut p, _h, mem) = started();
    put_command(
        &*mem,
        0,
        &h2d(opcode::READ_DMA_EXT, 0, 2),
        &[(DATA, 512, false)],
        0,
    );
    p.write(reg::CI, 1, ALL);
    let is = p.read(reg::IS);
    assert_ne!(is & pxis::OFS, 0);
    assert_ne!(is & pxis::TFES, 0);
    assert_eq!(p.read(reg::CI), 1);
}

#[test]
fn bad_pointers_are_host_bus_fatal_errors() {
    let (mut p, h, mem) = started();
    // A command table outside RAM.
    let hdr = CLB;
    mem.write_u32(hdr, 5 | 1 << 16).unwrap();
    mem.write_u32(hdr + 8, 0xffff_ff80).unwrap();
    p.write(reg::CI, 1, ALL);
    assert_ne!(p.read(reg::IS) & pxis::HBFS, 0);
    assert_eq!(p.read(reg::CI), 1);
    assert!(h.state().submitted.is_empty());
    // A PRD outside RAM: the device's transfer fails, the port reports HBFS.
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.write(reg::IS, ALL, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    put_command(
        &*mem,
        0,
        &h2d(opcode::READ_DMA, 0, 1),
        &[(0x7fff_0000, 512, false)],
        0,
    );
    p.write(reg::CI, 1, ALL);
    assert_ne!(p.read(reg::IS) & pxis::HBFS, 0);
    // A command list outside RAM.
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.write(reg::IS, ALL, ALL);
    p.write(reg::CLBU, 0xffff_ffff, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    p.write(reg::CI, 1, ALL);
    assert_ne!(p.read(reg::IS) & pxis::HBFS, 0);
    // A malformed CFIS length.
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.write(reg::IS, ALL, ALL);
    p.write(reg::CLBU, 0, ALL);
    mem.write_u32(hdr, 17).unwrap();
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    p.write(reg::CI, 1, ALL);
    assert_ne!(p.read(reg::IS) & pxis::IFS, 0);
}

#[test]
fn comreset_through_sctl_posts_the_signature() {
    let (mut p, h, mem) = started();
    p.write(reg::CMD, pxcmd::FRE, ALL);
    mem.write(FB + rfis::offset::RFIS, &[0x34, 0, 0x80])
        .unwrap();
    p.write(reg::SCTL, 0x301, ALL);
    assert_eq!(
        p.read(reg::SSTS) & scr::DET_MASK,
        0,
        "link down during COMRESET"
    );
    assert_eq!(p.read(reg::TFD), 0x7f);
    p.write(reg::SCTL, 0x300, ALL);
    assert_eq!(p.read(reg::SSTS), 0x133);
    assert_eq!(p.read(reg::SIG), 0x101);
    assert_eq!(p.read(reg::TFD) & 0xff, 0x50);
    assert_eq!(
        rfis(&mem, rfis::offset::RFIS, 20),
        Fis::RegisterD2h(super::super::mock::signature())
    );
    assert_ne!(p.read(reg::SERR) & pxserr::DIAG_X, 0);
    assert_ne!(p.read(reg::IS) & pxis::PCS, 0);
    // PCS mirrors DIAG.X: writing PxIS does not clear it, clearing PxSERR does.
    p.write(reg::IS, pxis::PCS, ALL);
    assert_ne!(p.read(reg::IS) & pxis::PCS, 0);
    p.write(reg::SERR, pxserr::DIAG_X, ALL);
    assert_eq!(p.read(reg::IS) & pxis::PCS, 0);
    assert_eq!(h.state().comresets, 2);
    assert_eq!(p.stats.resets, 1);
}

#[test]
fn software_reset_sequence() {
    let (mut p, h, mem) = started();
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::ST, ALL);
    let mut fis = RegisterH2d {
        control: crate::ata::registers::control::SRST,
        ..Default::default()
    };
    // First FIS: SRST set, header R and C bits (libahci ahci_do_softreset).
    put_command(&*mem, 0, &fis, &[], 1 << 8 | 1 << 10);
    p.write(reg::CI, 1, ALL);
    assert_eq!(p.read(reg::CI), 0);
    assert_eq!(p.read(reg::TFD) & pxtfd::BSY, 0);
    fis.control = 0;
    put_command(&*mem, 0, &fis, &[], 0);
    p.write(reg::CI, 1, ALL);
    assert_eq!(p.read(reg::CI), 0);
    assert_eq!(p.read(reg::TFD) & 0xff, 0x50);
    assert_eq!(p.read(reg::SIG), 0x101);
    assert_eq!(h.state().device_controls.len(), 2);
    assert!(h.state().submitted.is_empty());
}

#[test]
fn clo_clears_bsy_and_drq() {
    let (mut p, _h, mem) = started();
    // FLUSH is held by the mock: BSY stays set while it runs.
    put_command(&*mem, 0, &h2d(opcode::FLUSH_CACHE_EXT, 0, 0), &[], 0);
    p.write(reg::CI, 1, ALL);
    assert_ne!(p.read(reg::TFD) & pxtfd::BSY, 0);
    p.write(reg::CMD, pxcmd::FRE, ALL);
    p.write(reg::CMD, pxcmd::FRE | pxcmd::CLO, ALL);
    assert_eq!(p.read(reg::TFD) & (pxtfd::BSY | pxtfd::DRQ), 0);
    assert_eq!(p.read(reg::CMD) & pxcmd::CLO, 0, "CLO clears itself");
}

#[test]
fn pending_flush_keeps_ci_until_completion_and_blocks_the_next_command() {
    let (mut p, h, mem) = started();
    put_command(&*mem, 0, &h2d(opcode::FLUSH_CACHE_EXT, 0, 0), &[], 0);
    put_command(
        &*mem,
        1,
        &h2d(opcode::READ_DMA, 0, 1),
        &[(DATA, 512, false)],
        0,
    );
    p.write(reg::CI, 0b11, ALL);
    assert_eq!(p.read(reg::CI), 0b11);
    assert_eq!(
        h.state().submitted.len(),
        1,
        "one non-queued command at a time"
    );
    h.finish(&[0]);
    p.process_completions();
    assert_eq!(p.read(reg::CI), 0);
    assert_eq!(h.state().submitted.len(), 2);
}

#[test]
fn sub_dword_writes_touch_only_their_bytes() {
    let (mut p, _h, _mem) = started();
    p.raise(pxis::DHRS | pxis::TFES);
    // Clearing byte 3 (TFES) must not clear byte 0 (DHRS).
    p.write(reg::IS, 0x4000_0000, 0xff00_0000);
    assert_eq!(p.read(reg::IS), pxis::DHRS);
    p.write(reg::CLB, 0x0000_5400, 0x0000_ff00);
    assert_eq!(p.read(reg::CLB), 0x5400);
}

/// PxSCTL.SPD = `spd`, COMRESET, then the link up again.
fn comreset_with_spd(p: &mut Port, spd: u32) {
    p.write(reg::SCTL, 0x301 | spd << 4, ALL);
    p.write(reg::SCTL, 0x300 | spd << 4, ALL);
}

#[test]
fn link_speed_is_negotiated_at_comreset_from_sctl_spd_and_the_device() {
    let (mut p, h, _mem) = started();
    assert_eq!(h.state().negotiated, vec![3], "power-on: Gen3");
    // The guest limits the link (libata.force=1.5G writes SControl 310h).
    comreset_with_spd(&mut p, 1);
    assert_eq!(p.read(reg::SSTS), 0x113);
    comreset_with_spd(&mut p, 2);
    assert_eq!(p.read(reg::SSTS), 0x123);
    // A limit above what the HBA (CAP.ISS = 3) offers does not raise it; 0 lifts the limit.
    comreset_with_spd(&mut p, 0xf);
    assert_eq!(p.read(reg::SSTS), 0x133);
    comreset_with_spd(&mut p, 0);
    assert_eq!(p.read(reg::SSTS), 0x133);
    // A device that only does Gen2 (a pass-through drive behind a 3 Gb/s host link).
    h.state().max_gen = 2;
    comreset_with_spd(&mut p, 0);
    assert_eq!(p.read(reg::SSTS), 0x123);
    comreset_with_spd(&mut p, 1);
    assert_eq!(p.read(reg::SSTS), 0x113);
    assert_eq!(h.state().negotiated, vec![3, 1, 2, 3, 3, 2, 1]);
    // SPD only changes at COMRESET: written alone it leaves the link as it is.
    p.write(reg::SCTL, 0x320, ALL);
    assert_eq!(p.read(reg::SSTS), 0x113);
    assert_eq!(p.read(reg::SCTL), 0x320);
}
