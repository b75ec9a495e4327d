//! ATAPI conformance: an emulated CD/DVD drive behind the AHCI function, driven through BAR5
//! MMIO only, as libahci and libata drive an ATAPI device (the command header's A bit, ACMD,
//! PxSIG, PACKET by DMA and PIO, CHECK CONDITION and REQUEST SENSE, media changes).

mod common;

use common::atapi::*;
use common::*;
use satavm::ahci::regs::{port as px, pxcmd, pxis};
use satavm::ahci::rfis::offset as rfis;
use satavm::sata::{Fis, RegisterH2d};

const ISO_BLOCKS: usize = 300;

fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    vec![0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0, 0, 0]
}

const TUR: [u8; 12] = [0; 12];

#[test]
fn signature_after_power_on_comreset_and_srst() {
    let iso = Iso::new(ISO_BLOCKS, 1);
    let mut h = AtapiHba::new(Some(&iso));
    assert_eq!(h.t.px_read(0, px::SIG), 0xeb14_0101);
    // COMRESET: PxSCTL.DET = 1, then 0; the signature comes again.
    h.t.stop_port(0);
    h.t.px_write(0, px::SIG, 0);
    h.t.px_write(0, px::SCTL, 1);
    h.t.px_write(0, px::SCTL, 0);
    assert_eq!(h.t.px_read(0, px::SIG), 0xeb14_0101);
    // Software reset: SRST set, then cleared (two Register H2D FISes with C = 0).
    h.t.px_set(0, px::CMD, pxcmd::ST);
    let srst = RegisterH2d {
        control: 0x04,
        ..Default::default()
    };
    h.t.prepare(0, 0, &srst, &[], HDR_RESET | HDR_CLEAR_BUSY);
    h.t.px_write(0, px::CI, 1);
    h.t.prepare(0, 1, &RegisterH2d::default(), &[], 0);
    h.t.px_write(0, px::CI, 2);
    assert_eq!(h.t.px_read(0, px::SIG), 0xeb14_0101);
    assert_eq!(h.t.px_read(0, px::TFD) & 0x89, 0, "no BSY, DRQ or ERR");
    assert_eq!(h.rules_broken(), 0);
}

#[test]
fn identify_packet_device_and_identify_device_aborted() {
    let iso = Iso::new(ISO_BLOCKS, 1);
    let mut h = AtapiHba::new(Some(&iso));
    // libata sets PxCMD.ATAPI for an ATAPI device; the port keeps it.
    h.t.px_set(0, px::CMD, pxcmd::ATAPI);
    assert_ne!(h.t.px_read(0, px::CMD) & pxcmd::ATAPI, 0);
    let buf = TestHba::buf(0, 0);
    h.t.run(0, 0, &h2d(0xa1, 0, 0), &[(buf, 512)], false);
    assert_ne!(h.t.px_read(0, px::IS) & pxis::PSS, 0);
    assert_eq!(h.t.prdbc(0, 0), 512);
    let id = h.t.mem_read(buf, 512);
    let w0 = u16::from_le_bytes([id[0], id[1]]);
    assert_eq!(w0 >> 14, 0b10, "ATAPI");
    assert_eq!((w0 >> 8) & 0x1f, 5, "CD/DVD");
    assert_eq!(identify_string(&id, 27, 20), CD_MODEL);
    assert_eq!(identify_string(&id, 10, 10), "CDSERIAL1");
    // IDENTIFY DEVICE: aborted, the PACKET signature in the registers.
    h.t.px_write(0, px::IS, u32::MAX);
    h.t.issue(0, 0, &h2d(0xec, 0, 0), &[(buf, 512)], false);
    h.t.wait_idle(0);
    assert_ne!(h.t.px_read(0, px::IS) & pxis::TFES, 0);
    let tfd = h.t.px_read(0, px::TFD);
    assert_eq!((tfd & 0xff) & 0x01, 1);
    assert_eq!((tfd >> 8) & 0xff, 0x04, "ABRT");
    let Fis::RegisterD2h(d) = h.t.rfis(0, rfis::RFIS, 20) else {
        panic!()
    };
    assert_eq!((d.lba & 0xff_ffff, d.count), (0xeb_1401, 1));
    h.recover();
    assert_eq!(h.good(&TUR, 0), 0);
    assert_eq!(h.rules_broken(), 0);
}

#[test]
fn packet_dma_read_returns_the_image() {
    let iso = Iso::new(ISO_BLOCKS, 7);
    let mut h = AtapiHba::new(Some(&iso));
    // 8 blocks over two PRDs.
    let (a, b) = (TestHba::buf(0, 0), TestHba::buf(0, 1));
    let is = h.packet(
        0,
        &packet_fis(true, 0),
        &read10(100, 8),
        &[(a, 4 * 2048), (b, 4 * 2048)],
    );
    assert_eq!(is & pxis::FATAL, 0, "PxIS {is:#x}");
    assert_ne!(is & pxis::DHRS, 0);
    assert_eq!(h.t.prdbc(0, 0), 8 * 2048);
    let mut got = h.t.mem_read(a, 4 * 2048);
    got.extend(h.t.mem_read(b, 4 * 2048));
    assert_eq!(got, iso.bytes(100 * 2048, 8 * 2048));
    let Fis::RegisterD2h(d) = h.t.rfis(0, rfis::RFIS, 20) else {
        panic!()
    };
    assert_eq!((d.status, d.count), (0x50, 3), "good status, I/O and C/D");
    // READ(12) of the last block.
    let l = (ISO_BLOCKS as u32 - 1).to_be_bytes();
    let cdb = [0xa8, 0, l[0], l[1], l[2], l[3], 0, 0, 0, 1, 0, 0];
    assert_eq!(h.good(&cdb, 2048), 2048);
    assert_eq!(h.data(2048), iso.bytes((ISO_BLOCKS - 1) * 2048, 2048));
    assert_eq!(h.rules_broken(), 0);
}

#[test]
fn packet_pio_read_honours_the_byte_count_limit() {
    let iso = Iso::new(ISO_BLOCKS, 3);
    let mut h = AtapiHba::new(Some(&iso));
    let buf = TestHba::buf(0, 0);
    // 3 blocks (6144 bytes) with a limit of 4000: blocks of 4000 and 2144.
    let is = h.packet(0, &packet_fis(false, 4000), &read10(5, 3), &[(buf, 6144)]);
    assert_eq!(is & pxis::FATAL, 0, "PxIS {is:#x}");
    assert_ne!(is & pxis::PSS, 0, "PIO Setup FISes with I set");
    assert_eq!(h.t.prdbc(0, 0), 6144);
    assert_eq!(h.t.mem_read(buf, 6144), iso.bytes(5 * 2048, 6144));
    let Fis::PioSetup(p) = h.t.rfis(0, rfis::PSFIS, 20) else {
        panic!()
    };
    assert!(p.device_to_host);
    assert_eq!(p.transfer_count, 2144, "the last DRQ block");
    assert_eq!((p.lba >> 8) & 0xffff, 2144, "byte count in LBA mid/high");
    assert_eq!(p.count & 3, 2, "interrupt reason I/O");
    // INQUIRY by PIO with a limit smaller than the data: the data arrives whole.
    let is = h.packet(
        0,
        &packet_fis(false, 16),
        &[0x12, 0, 0, 0, 36, 0],
        &[(buf, 36)],
    );
    assert_eq!(is & pxis::FATAL, 0);
    assert_eq!(h.t.prdbc(0, 0), 36);
    let inq = h.t.mem_read(buf, 36);
    assert_eq!(inq[0], 5);
    assert_eq!(&inq[16..31], CD_MODEL.as_bytes());
    // Byte count limit 0 and an allocation length past the PRDT: no panic, a short transfer.
    let is = h.packet(
        0,
        &packet_fis(false, 0),
        &[0x12, 0, 0, 0, 255, 0],
        &[(buf, 8)],
    );
    assert_eq!(is & pxis::FATAL, 0);
    assert_eq!(h.t.prdbc(0, 0), 8);
    assert_eq!(h.rules_broken(), 0);
}

#[test]
fn check_condition_then_request_sense() {
    let iso = Iso::new(ISO_BLOCKS, 1);
    let mut h = AtapiHba::new(Some(&iso));
    // Past the end: ILLEGAL REQUEST, LBA OUT OF RANGE.
    assert_eq!(h.check_condition(&read10(ISO_BLOCKS as u32, 1), 2048), 5);
    assert_eq!(h.request_sense(), (5, 0x21, 0));
    // An unknown operation code and a write to the disc.
    assert_eq!(h.check_condition(&[0xf0], 0), 5);
    assert_eq!(h.request_sense(), (5, 0x20, 0));
    assert_eq!(h.check_condition(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], 0), 7);
    assert_eq!(h.request_sense(), (7, 0x27, 0));
    // A good command clears the sense.
    h.good(&TUR, 0);
    assert_eq!(h.request_sense(), (0, 0, 0));
    // The disc description libata's sr and cdrom_id read.
    assert_eq!(h.good(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8), 8);
    let cap = h.data(8);
    assert_eq!(
        cap,
        [&(ISO_BLOCKS as u32 - 1).to_be_bytes()[..], &[0, 0, 8, 0]].concat()
    );
    let n = h.good(&[0x46, 0, 0, 0, 0, 0, 0, 0x01, 0, 0], 256);
    let cfg = h.data(n as usize);
    assert_eq!(u16::from_be_bytes([cfg[6], cfg[7]]), 0x0008, "CD-ROM");
    let n = h.good(&[0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0], 0x324);
    assert_eq!(n, 20, "TOC: header, track 1, lead-out");
    assert_eq!(h.rules_broken(), 0);
}

#[test]
fn media_change_is_a_unit_attention_then_an_event() {
    let first = Iso::new(ISO_BLOCKS, 1);
    let second = Iso::new(ISO_BLOCKS / 2, 9);
    let mut h = AtapiHba::new(Some(&first));
    h.good(&TUR, 0);
    h.control.insert(&second.0).unwrap();
    // INQUIRY and GET EVENT STATUS NOTIFICATION pass the unit attention; TUR reports it once.
    h.good(&[0x12, 0, 0, 0, 36, 0], 36);
    assert_eq!(h.check_condition(&TUR, 0), 6);
    assert_eq!(
        h.request_sense(),
        (6, 0x28, 0),
        "the sense of the CHECK CONDITION"
    );
    assert_eq!(h.request_sense(), (0, 0, 0), "once");
    h.good(&TUR, 0);
    let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
    assert_eq!(h.good(&gesn, 8), 8);
    assert_eq!(
        h.data(8),
        vec![0, 6, 4, 0x10, 2, 0x02, 0, 0],
        "new media, present"
    );
    h.good(&gesn, 8);
    assert_eq!(h.data(8)[4], 0, "reported once");
    // The new disc is the one read.
    assert_eq!(h.good(&read10(10, 1), 2048), 2048);
    assert_eq!(h.data(2048), second.bytes(10 * 2048, 2048));
    assert_eq!(
        h.check_condition(&read10(ISO_BLOCKS as u32 / 2, 1), 2048),
        5
    );
    // A unit attention, then REQUEST SENSE before anything else reports it.
    h.control.insert(&first.0).unwrap();
    assert_eq!(h.request_sense(), (6, 0x28, 0));
    h.good(&TUR, 0);
    // The host takes the disc out: NOT READY, medium not present, tray open.
    h.control.eject().unwrap();
    assert_eq!(h.check_condition(&TUR, 0), 2);
    assert_eq!(h.request_sense(), (2, 0x3a, 0x02));
    h.good(&gesn, 8);
    assert_eq!(&h.data(8)[4..6], &[3, 0x01], "media removal, tray open");
    assert_eq!(h.rules_broken(), 0);
}

#[test]
fn eject_under_prevent_is_refused() {
    let iso = Iso::new(ISO_BLOCKS, 1);
    let mut h = AtapiHba::new(Some(&iso));
    let prevent = [0x1e, 0, 0, 0, 1, 0];
    let allow = [0x1e, 0, 0, 0, 0, 0];
    let eject = [0x1b, 0, 0, 0, 0x02, 0];
    let load = [0x1b, 0, 0, 0, 0x03, 0];
    h.good(&prevent, 0);
    assert_eq!(h.check_condition(&eject, 0), 5);
    assert_eq!(h.request_sense(), (5, 0x53, 0x02));
    assert!(h.control.eject().is_err(), "the host is refused too");
    h.good(&TUR, 0);
    h.good(&allow, 0);
    h.good(&eject, 0);
    assert_eq!(h.check_condition(&TUR, 0), 2);
    assert_eq!(h.request_sense(), (2, 0x3a, 0x02));
    // MECHANISM STATUS shows the open tray.
    h.good(&[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], 8);
    assert_eq!(h.data(8)[1] & 0x10, 0x10);
    h.good(&load, 0);
    assert_eq!(h.check_condition(&TUR, 0), 6);
    h.good(&TUR, 0);
    assert_eq!(h.rules_broken(), 0);
}

#[test]
fn empty_tray_then_host_insert() {
    let iso = Iso::new(ISO_BLOCKS, 5);
    let mut h = AtapiHba::new(None);
    assert_eq!(h.t.px_read(0, px::SIG), 0xeb14_0101);
    assert_eq!(h.check_condition(&TUR, 0), 2);
    assert_eq!(h.request_sense(), (2, 0x3a, 0x01));
    h.control.insert(&iso.0).unwrap();
    assert_eq!(h.check_condition(&TUR, 0), 6);
    assert_eq!(h.good(&read10(0, 2), 4096), 4096);
    assert_eq!(h.data(4096), iso.bytes(0, 4096));
}

#[test]
fn trace_names_the_cdb_at_the_ata_layer() {
    let iso = Iso::new(ISO_BLOCKS, 1);
    let mut h = AtapiHba::new(Some(&iso));
    h.good(&read10(3, 2), 4096);
    let events = trace::parse(&h.json.lines());
    let e = trace::expect(
        &events,
        &serde_json::json!({"layer": "ata", "kind": "cmd", "op": "PACKET", "cdb_op": "READ(10)"}),
    );
    assert_eq!(e["cdb_lba"], 3);
    assert_eq!(e["cdb_blocks"], 2);
    assert_eq!(trace::text(e, "protocol"), "packet-dma");
}
