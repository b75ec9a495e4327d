//! AHCI conformance suite: the checks of QEMU's tests/qtest/ahci-test.c (see
//! /work/shared/notes/references.md) run in-process against `AhciFunction` and the real
//! emulated drive, through PCI configuration space and BAR5 MMIO only.

mod common;

use common::*;
use satavm::ahci::regs::{cap, ghc, hba, port as px, pxcmd, pxis, pxserr, pxtfd};
use satavm::ahci::rfis::offset as rfis;
use satavm::ata::command::opcode;
use satavm::irq::MsiMessage;
use satavm::mem::GuestMemory;
use satavm::pci::config::{command, offset};
use satavm::pci::PciFunction;
use satavm::sata::{Fis, RegisterH2d};

const LAST: u64 = IMAGE_SECTORS;

fn msis(t: &TestHba) -> Vec<MsiMessage> {
    t.sink.msis.lock().unwrap().clone()
}

#[test]
fn pci_configuration_space() {
    let mut t = TestHba::new_raw(1);
    assert_eq!(t.cfg_read(offset::VENDOR_ID, 4), 0x2922_8086);
    let class_rev = t.cfg_read(offset::REVISION_ID, 4);
    assert_eq!(class_rev >> 8, 0x01_06_01, "mass storage / SATA / AHCI 1.0");
    assert_eq!(t.cfg_read(offset::HEADER_TYPE, 1) & 0x7f, 0);
    let cmd = t.cfg_read(offset::COMMAND, 2) as u16;
    assert_eq!(
        cmd & (command::MEMORY_SPACE | command::BUS_MASTER | command::INTX_DISABLE),
        0
    );
    // ABAR: BAR5, 32-bit non-prefetchable memory, sized by writing ones.
    let bar5 = offset::BAR0 + 20;
    assert_eq!(t.cfg_read(bar5, 4), ABAR_ADDR);
    t.cfg_write(bar5, u32::MAX, 4);
    let sized = t.cfg_read(bar5, 4);
    assert_eq!(sized & 0xf, 0, "memory, 32-bit, non-prefetchable");
    assert_eq!(!(sized & !0xf) + 1, 0x2000, "ABAR size");
    for bar in 0..5 {
        assert_eq!(
            t.cfg_read(offset::BAR0 + 4 * bar, 4),
            0,
            "BAR{bar} is absent"
        );
    }
    // Capability list: MSI first (as on ICH9), MSI off at reset with a zero address/data.
    assert_ne!(t.cfg_read(offset::STATUS, 2) & 0x10, 0);
    let cap_ptr = t.cfg_read(offset::CAPABILITIES_POINTER, 1) as usize;
    assert_ne!(cap_ptr, 0);
    assert_eq!(t.cfg_read(cap_ptr, 1), 0x05);
    let ctl = t.cfg_read(cap_ptr + 2, 2);
    assert_eq!(ctl & 1, 0, "MSI disabled");
    assert_eq!(ctl & 0x70, 0, "no vectors allocated");
    assert_ne!(ctl & 0x80, 0, "64-bit address capable");
    assert_eq!(t.cfg_read(cap_ptr + 4, 4), 0);
    assert_eq!(t.cfg_read(offset::INTERRUPT_PIN, 1), 1, "INTA#");
    assert_eq!(t.cfg_read(offset::INTERRUPT_LINE, 1), u32::from(IRQ_LINE));
    // BAR5 moves, and MMIO stays off until memory decoding is enabled.
    t.cfg_write(bar5, 0xe000_0000, 4);
    assert_eq!(t.f.config().bar_range(5), None);
    t.cfg_write(offset::COMMAND, u32::from(command::MEMORY_SPACE), 2);
    assert_eq!(t.f.config().bar_range(5), Some((0xe000_0000, 0x2000)));
}

fn check_reset_values(t: &mut TestHba, ports: usize) {
    let c = t.read(hba::CAP);
    assert_eq!((c & cap::NP_MASK) as usize + 1, ports);
    assert_eq!(
        c & cap::SSNTF,
        0,
        "no SNotification: no PxSNTF exits per SDB interrupt"
    );
    assert_ne!(c & cap::SNCQ, 0);
    assert_ne!(c & cap::S64A, 0);
    assert_eq!((c >> cap::NCS_SHIFT) & 0x1f, 31);
    let g = t.read(hba::GHC);
    assert_eq!(g & (ghc::HR | ghc::IE | ghc::MRSM), 0);
    assert_ne!(g & ghc::AE, 0, "CAP.SAM: AE reads 1");
    assert_eq!(t.read(hba::IS), 0);
    assert_eq!(t.read(hba::PI), (1u32 << ports) - 1);
    assert_eq!(t.read(hba::VS), 0x0001_0301);
    for r in [
        hba::CCC_CTL,
        hba::CCC_PORTS,
        hba::EM_LOC,
        hba::EM_CTL,
        hba::CAP2,
        hba::BOHC,
    ] {
        assert_eq!(t.read(r), 0, "{r:#x}");
    }
    for r in (0x2c..0x100).step_by(4) {
        assert_eq!(t.read(r), 0, "reserved/vendor {r:#x}");
    }
    for p in 0..32 {
        if p >= ports {
            for r in (0..0x80).step_by(4) {
                assert_eq!(t.px_read(p, r), 0, "unimplemented port {p} reg {r:#x}");
            }
            continue;
        }
        assert_eq!(t.px_read(p, px::IS), 0);
        assert_eq!(t.px_read(p, px::IE), 0);
        let cmd = t.px_read(p, px::CMD);
        let engine = pxcmd::ST | pxcmd::FRE | pxcmd::FR | pxcmd::CR | pxcmd::CCS_MASK;
        assert_eq!(cmd & engine, 0, "PxCMD {cmd:#x}");
        assert_eq!(t.px_read(p, px::TFD), 0x7f);
        for r in [px::SCTL, px::SERR, px::SACT, px::CI, px::SNTF] {
            assert_eq!(t.px_read(p, r), 0, "port {p} reg {r:#x}");
        }
        assert_eq!(
            t.px_read(p, px::SSTS),
            0x133,
            "device present, link up at Gen3"
        );
        for r in (0x40..0x80).step_by(4) {
            assert_eq!(t.px_read(p, r), 0, "port {p} reserved {r:#x}");
        }
    }
}

#[test]
fn hba_and_port_reset_values() {
    let mut t = TestHba::new(2);
    check_reset_values(&mut t, 2);
}

#[test]
fn bring_up_posts_signature_and_identify_returns_model_and_serial() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    assert_eq!(t.px_read(0, px::SIG), 0x101, "ATA device signature");
    assert_eq!(t.px_read(0, px::TFD) & 0xff, 0x50);
    let buf = TestHba::buf(0, 0);
    t.run(
        0,
        0,
        &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
        &[(buf, 512)],
        false,
    );
    let id = t.mem_read(buf, 512);
    assert_eq!(identify_string(&id, 27, 20), MODEL);
    assert_eq!(identify_string(&id, 10, 10), serial(0));
    let capacity = u64::from(u16::from_le_bytes([id[200], id[201]]))
        | u64::from(u16::from_le_bytes([id[202], id[203]])) << 16;
    assert_eq!(capacity, IMAGE_SECTORS, "words 100-103");
    assert_eq!(t.prdbc(0, 0), 512);
    assert_ne!(t.px_read(0, px::IS) & pxis::PSS, 0, "PIO Setup FIS with I");
    match t.rfis(0, rfis::PSFIS, 20) {
        Fis::PioSetup(p) => {
            assert!(p.device_to_host);
            assert_eq!(p.transfer_count, 512);
            assert_eq!(p.e_status & 0x89, 0);
        }
        f => panic!("{f:?}"),
    }
}

/// Write `len` bytes at `lba` with `write`, read them back with `read`, compare; PRDBC must
/// equal the bytes moved.
fn write_read(t: &mut TestHba, (write, read): (u8, u8), lba: u64, len: usize, seed: u32) {
    let sectors = (len / 512) as u16;
    // A 28-bit command's count of 0 means 256 sectors.
    let count = if sectors == 256 && !satavm::ata::command::is_lba48(write) {
        0
    } else {
        sectors
    };
    let buf = TestHba::buf(0, 1);
    let data = pattern(len, seed);
    t.mem_write(buf, &data);
    t.run(0, 1, &h2d(write, lba, count), &[(buf, len as u32)], true);
    assert_eq!(t.prdbc(0, 1), len as u32, "PRDBC after write");
    t.mem_write(buf, &vec![0; len]);
    t.run(0, 2, &h2d(read, lba, count), &[(buf, len as u32)], false);
    assert_eq!(t.prdbc(0, 2), len as u32, "PRDBC after read");
    assert!(
        t.mem_read(buf, len) == data,
        "{write:#x}/{read:#x} lba {lba} len {len}"
    );
}

#[test]
fn io_matrix_pio_dma_lba28_lba48_sizes_and_positions() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    use opcode::*;
    let pairs = [
        ("PIO LBA28", (WRITE_SECTORS, READ_SECTORS), false),
        ("PIO LBA48", (WRITE_SECTORS_EXT, READ_SECTORS_EXT), true),
        ("DMA LBA28", (WRITE_DMA, READ_DMA), false),
        ("DMA LBA48", (WRITE_DMA_EXT, READ_DMA_EXT), true),
    ];
    let mut seed = 1;
    for (name, cmds, lba48) in pairs {
        // LBA28 commands move at most 256 sectors (128 KiB).
        let big = if lba48 { 256 << 10 } else { 128 << 10 };
        for len in [512, 4096, 8192, big] {
            let sectors = (len / 512) as u64;
            for lba in [0, 17, LAST - sectors] {
                eprintln!("{name}: {len} bytes at LBA {lba}");
                write_read(&mut t, cmds, lba, len, seed);
                seed += 1;
            }
        }
    }
    let stats = t.f.port_stats();
    assert_eq!(stats[0].errors, 0);
    assert!(stats[0].commands >= 96);
}

#[test]
fn fragmented_prds_of_32_bytes() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let len = 8192usize;
    let data = pattern(len, 77);
    // 256 PRDs of 32 bytes, each 64 bytes apart in guest memory.
    let base = TestHba::buf(0, 0);
    let prdt: Vec<(u64, u32)> = (0..len / 32).map(|i| (base + i as u64 * 64, 32)).collect();
    for (i, chunk) in data.chunks(32).enumerate() {
        t.mem_write(base + i as u64 * 64, chunk);
    }
    t.run(0, 0, &h2d(opcode::WRITE_DMA_EXT, 100, 16), &prdt, true);
    // Read back contiguously, then fragmented into the other half of each 64-byte cell.
    let flat = TestHba::buf(0, 1);
    t.run(
        0,
        1,
        &h2d(opcode::READ_DMA_EXT, 100, 16),
        &[(flat, len as u32)],
        false,
    );
    assert!(t.mem_read(flat, len) == data);
    let prdt2: Vec<(u64, u32)> = prdt.iter().map(|&(a, l)| (a + 32, l)).collect();
    t.run(0, 2, &h2d(opcode::READ_SECTORS_EXT, 100, 16), &prdt2, false);
    assert_eq!(t.prdbc(0, 2), len as u32);
    for (i, chunk) in data.chunks(32).enumerate() {
        assert_eq!(
            t.mem_read(base + i as u64 * 64 + 32, 32),
            chunk,
            "fragment {i}"
        );
    }
}

#[test]
fn ncq_writes_and_reads_with_many_outstanding() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let tags = 8u8;
    let len = 16 * 512;
    let buf = |tag: u8| DATA + u64::from(tag) * 0x1_0000;
    for tag in 0..tags {
        t.mem_write(buf(tag), &pattern(len, 1000 + u32::from(tag)));
        let fis = fpdma(opcode::WRITE_FPDMA_QUEUED, tag, 64 * u64::from(tag), 16);
        t.prepare(0, tag, &fis, &[(buf(tag), len as u32)], HDR_WRITE);
    }
    let all = (1u32 << tags) - 1;
    t.px_write(0, px::SACT, all);
    t.px_write(0, px::CI, all);
    assert_eq!(
        t.px_read(0, px::CI),
        0,
        "each queued command is accepted at once"
    );
    assert_eq!(t.f.port_stats()[0].ncq_peak_depth, u32::from(tags));
    t.wait_idle(0);
    assert_eq!(t.px_read(0, px::SACT), 0);
    assert_eq!(t.px_read(0, px::IS) & pxis::FATAL, 0);
    assert_ne!(t.px_read(0, px::IS) & pxis::SDBS, 0);
    match t.rfis(0, rfis::SDBFIS, 8) {
        Fis::SetDeviceBits(s) => {
            assert_ne!(s.sactive, 0);
            assert_eq!(s.sactive & !all, 0);
            assert_eq!(s.status & 0x01, 0);
        }
        f => panic!("{f:?}"),
    }
    // Read back in reverse tag order into cleared buffers.
    for tag in 0..tags {
        t.mem_write(buf(tag), &vec![0; len]);
        let fis = fpdma(
            opcode::READ_FPDMA_QUEUED,
            tag,
            64 * u64::from(tags - 1 - tag),
            16,
        );
        t.prepare(0, tag, &fis, &[(buf(tag), len as u32)], 0);
    }
    t.px_write(0, px::SACT, all);
    t.px_write(0, px::CI, all);
    t.wait_idle(0);
    assert_eq!(t.px_read(0, px::IS) & pxis::FATAL, 0);
    for tag in 0..tags {
        assert!(t.mem_read(buf(tag), len) == pattern(len, 1000 + u32::from(tags - 1 - tag)));
    }
}

#[test]
fn flush_and_read_native_max() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    t.run(0, 0, &h2d(opcode::FLUSH_CACHE_EXT, 0, 0), &[], false);
    t.run(0, 0, &h2d(opcode::FLUSH_CACHE, 0, 0), &[], false);
    assert_eq!(t.px_read(0, px::TFD) & 0xff, 0x50);
    assert_ne!(t.px_read(0, px::IS) & pxis::DHRS, 0);
    for cmd in [
        opcode::READ_NATIVE_MAX_ADDRESS_EXT,
        opcode::READ_NATIVE_MAX_ADDRESS,
    ] {
        t.mem_write(TestHba::fb(0) + rfis::RFIS, &[0; 20]);
        t.run(0, 3, &h2d(cmd, 0, 0), &[], false);
        match t.rfis(0, rfis::RFIS, 20) {
            Fis::RegisterD2h(d) => assert_eq!(d.lba & 0x0fff_ffff, LAST - 1, "{cmd:#x}"),
            f => panic!("{f:?}"),
        }
    }
}

#[test]
fn hba_reset_twice_then_io_works() {
    let mut t = TestHba::new(1);
    for _ in 0..2 {
        t.start_port(0);
        t.write(hba::GHC, ghc::HR);
        assert_eq!(t.read(hba::GHC) & ghc::HR, 0, "HR self-clears");
        check_reset_values(&mut t, 1);
    }
    t.start_port(0);
    write_read(
        &mut t,
        (opcode::WRITE_DMA_EXT, opcode::READ_DMA_EXT),
        5,
        4096,
        9,
    );
    assert_eq!(t.f.port_stats()[0].resets, 2);
}

#[test]
fn hba_reset_with_a_write_in_flight_leaves_later_io_intact() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let len = 256 << 10;
    let buf = TestHba::buf(0, 0);
    t.mem_write(buf, &pattern(len, 5));
    t.issue(
        0,
        0,
        &h2d(opcode::WRITE_DMA_EXT, 1000, 512),
        &[(buf, len as u32)],
        true,
    );
    t.write(hba::GHC, ghc::HR);
    // Whatever the device finished is not reported: the aborted command is gone.
    for _ in 0..20 {
        t.f.process_completions();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(t.px_read(0, px::CI), 0);
    assert_eq!(t.px_read(0, px::IS), 0);
    t.start_port(0);
    write_read(
        &mut t,
        (opcode::WRITE_DMA_EXT, opcode::READ_DMA_EXT),
        1000,
        len,
        6,
    );
    write_read(
        &mut t,
        (opcode::WRITE_DMA_EXT, opcode::READ_DMA_EXT),
        0,
        4096,
        7,
    );
}

/// AHCI 6.2.2.1 recovery: clear ST, wait for CR = 0, clear PxIS, check BSY/DRQ, set ST.
fn recover(t: &mut TestHba, port: usize) {
    t.stop_port(port);
    assert_eq!(t.px_read(port, px::CI), 0);
    assert_eq!(t.px_read(port, px::SACT), 0);
    t.px_write(port, px::IS, u32::MAX);
    t.write(hba::IS, 1 << port);
    assert_eq!(t.px_read(port, px::TFD) & (pxtfd::BSY | pxtfd::DRQ), 0);
    t.px_set(port, px::CMD, pxcmd::ST);
}

#[test]
fn failed_non_queued_command_and_recovery() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    t.issue(
        0,
        4,
        &h2d(opcode::READ_DMA_EXT, LAST, 1),
        &[(buf, 512)],
        false,
    );
    t.wait_idle(0);
    let is = t.px_read(0, px::IS);
    assert_ne!(is & pxis::TFES, 0, "PxIS {is:#x}");
    assert_eq!(
        t.px_read(0, px::SERR),
        0,
        "a device error is not a link error"
    );
    assert_eq!(
        t.px_read(0, px::CI),
        1 << 4,
        "the failed command keeps its PxCI bit"
    );
    let tfd = t.px_read(0, px::TFD);
    assert_ne!(tfd & pxtfd::ERR, 0);
    assert_eq!((tfd >> 8) & 0x10, 0x10, "IDNF");
    assert_eq!(
        (t.px_read(0, px::CMD) & pxcmd::CCS_MASK) >> pxcmd::CCS_SHIFT,
        4
    );
    // Nothing else is issued while the port is halted.
    t.issue(0, 5, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    assert_ne!(t.px_read(0, px::CI) & (1 << 5), 0);
    recover(&mut t, 0);
    write_read(
        &mut t,
        (opcode::WRITE_DMA_EXT, opcode::READ_DMA_EXT),
        3,
        1024,
        11,
    );
    assert_eq!(t.f.port_stats()[0].errors, 1);
}

#[test]
fn failed_queued_command_and_recovery() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    t.issue(
        0,
        6,
        &fpdma(opcode::READ_FPDMA_QUEUED, 6, LAST - 1, 8),
        &[(buf, 4096)],
        false,
    );
    t.wait_idle(0);
    assert_ne!(t.px_read(0, px::IS) & pxis::TFES, 0);
    assert_eq!(t.px_read(0, px::SERR), 0);
    assert_eq!(
        t.px_read(0, px::SACT),
        1 << 6,
        "the failed command keeps its PxSACT bit"
    );
    assert_ne!(t.px_read(0, px::TFD) & pxtfd::ERR, 0);
    match t.rfis(0, rfis::SDBFIS, 8) {
        Fis::SetDeviceBits(s) => {
            assert_ne!(s.status & 1, 0);
            assert_eq!(s.sactive, 0);
        }
        f => panic!("{f:?}"),
    }
    recover(&mut t, 0);
    // libata reads NCQ command error log page 10h; it names the failed tag.
    let log = TestHba::buf(0, 1);
    let mut rle = h2d(opcode::READ_LOG_EXT, 0x10, 1);
    rle.device = 0;
    t.run(0, 0, &rle, &[(log, 512)], false);
    let page = t.mem_read(log, 512);
    assert_eq!(page[0] & 0x1f, 6, "NCQ error log names tag 6");
    // Queued I/O works again.
    t.mem_write(buf, &pattern(4096, 3));
    t.run(
        0,
        1,
        &fpdma(opcode::WRITE_FPDMA_QUEUED, 1, 8, 8),
        &[(buf, 4096)],
        true,
    );
    t.mem_write(buf, &[0; 4096]);
    t.run(
        0,
        2,
        &fpdma(opcode::READ_FPDMA_QUEUED, 2, 8, 8),
        &[(buf, 4096)],
        false,
    );
    assert!(t.mem_read(buf, 4096) == pattern(4096, 3));
}

#[test]
fn short_prdt_is_an_overflow_error() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    t.issue(
        0,
        0,
        &h2d(opcode::READ_DMA_EXT, 0, 8),
        &[(buf, 2048)],
        false,
    );
    t.wait_idle(0);
    let is = t.px_read(0, px::IS);
    assert_ne!(is & pxis::OFS, 0, "PxIS {is:#x}");
    assert_ne!(is & pxis::TFES, 0);
    assert_eq!(t.px_read(0, px::CI), 1);
    recover(&mut t, 0);
    write_read(
        &mut t,
        (opcode::WRITE_DMA_EXT, opcode::READ_DMA_EXT),
        0,
        512,
        1,
    );
}

#[test]
fn prd_outside_guest_ram_is_a_host_bus_fatal_error() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    t.issue(
        0,
        0,
        &h2d(opcode::READ_DMA_EXT, 0, 1),
        &[(MEM_SIZE as u64 - 256, 512)],
        false,
    );
    t.wait_idle(0);
    assert_ne!(t.px_read(0, px::IS) & pxis::HBFS, 0);
    recover(&mut t, 0);
    // A command table outside RAM.
    t.prepare(0, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[], 0);
    t.mem.write_u32(TestHba::clb(0) + 8, 0xffff_0000).unwrap();
    t.px_write(0, px::CI, 1);
    assert_ne!(t.px_read(0, px::IS) & pxis::HBFS, 0);
    recover(&mut t, 0);
    write_read(
        &mut t,
        (opcode::WRITE_DMA_EXT, opcode::READ_DMA_EXT),
        0,
        512,
        1,
    );
}

#[test]
fn comreset_through_sctl_posts_the_signature() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    // libahci hard reset: stop the engine, BSY into the RX FIS area, DET 1 -> 0, poll TFD.
    t.stop_port(0);
    assert_ne!(t.px_read(0, px::CMD) & pxcmd::FRE, 0);
    t.mem_write(TestHba::fb(0) + rfis::RFIS, &[0x34, 0, 0x80, 0]);
    t.px_write(0, px::SCTL, 0x301);
    assert_eq!(t.px_read(0, px::SSTS) & 0xf, 0, "link down during COMRESET");
    t.px_write(0, px::SCTL, 0x300);
    assert_eq!(t.px_read(0, px::SSTS) & 0xf, 3);
    t.wait_until(|t| t.px_read(0, px::TFD) & pxtfd::BSY == 0);
    assert_eq!(t.px_read(0, px::TFD) & 0xff, 0x50);
    assert_eq!(t.px_read(0, px::SIG), 0x101);
    match t.rfis(0, rfis::RFIS, 20) {
        Fis::RegisterD2h(d) => assert_eq!((d.status, d.count, d.lba), (0x50, 1, 1)),
        f => panic!("{f:?}"),
    }
    assert_ne!(t.px_read(0, px::SERR) & pxserr::DIAG_X, 0);
    t.px_write(0, px::SERR, u32::MAX);
    t.px_write(0, px::IS, u32::MAX);
    t.px_set(0, px::CMD, pxcmd::ST);
    write_read(&mut t, (opcode::WRITE_DMA, opcode::READ_DMA), 9, 512, 2);
    assert_eq!(t.f.port_stats()[0].resets, 1);
}

#[test]
fn software_reset_as_libahci_does_it() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let mut fis = RegisterH2d {
        control: 0x04,
        ..Default::default()
    };
    t.prepare(0, 0, &fis, &[], HDR_RESET | HDR_CLEAR_BUSY);
    t.px_write(0, px::CI, 1);
    assert_eq!(
        t.px_read(0, px::CI),
        0,
        "C bit: PxCI clears once the FIS is sent"
    );
    fis.control = 0;
    t.prepare(0, 0, &fis, &[], 0);
    t.px_write(0, px::CI, 1);
    t.wait_until(|t| t.px_read(0, px::TFD) & pxtfd::BSY == 0);
    assert_eq!(t.px_read(0, px::TFD) & 0xff, 0x50);
    assert_eq!(t.px_read(0, px::SIG), 0x101);
    assert_eq!(t.px_read(0, px::CI), 0);
    write_read(
        &mut t,
        (opcode::WRITE_DMA_EXT, opcode::READ_DMA_EXT),
        2,
        512,
        3,
    );
}

#[test]
fn intx_follows_is_when_msi_is_off() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    t.run(0, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    assert!(t.sink.intx.load(std::sync::atomic::Ordering::SeqCst));
    assert!(msis(&t).is_empty());
    assert_ne!(
        t.cfg_read(offset::STATUS, 2) & 0x08,
        0,
        "PCI status: interrupt"
    );
    // INTx Disable drops the line.
    t.cfg_write(
        offset::COMMAND,
        u32::from(command::MEMORY_SPACE | command::INTX_DISABLE),
        2,
    );
    assert!(!t.sink.intx.load(std::sync::atomic::Ordering::SeqCst));
    t.cfg_write(
        offset::COMMAND,
        u32::from(command::MEMORY_SPACE | command::BUS_MASTER),
        2,
    );
    assert!(t.sink.intx.load(std::sync::atomic::Ordering::SeqCst));
    // The driver clears PxIS, then IS: the line drops.
    t.px_write(0, px::IS, u32::MAX);
    t.write(hba::IS, 1);
    assert!(!t.sink.intx.load(std::sync::atomic::Ordering::SeqCst));
}

fn enable_msi(t: &mut TestHba, mme: u32) -> usize {
    let at = t.cfg_read(offset::CAPABILITIES_POINTER, 1) as usize;
    t.cfg_write(at + 4, 0xfee0_0000, 4);
    t.cfg_write(at + 8, 0, 4);
    t.cfg_write(at + 12, 0x4040, 2);
    t.cfg_write(at + 2, 1 | mme << 4, 2);
    at
}

#[test]
fn msi_is_sent_per_event_when_enabled() {
    let mut t = TestHba::new(1);
    let at = enable_msi(&mut t, 0);
    assert_eq!(
        (t.cfg_read(at + 2, 2) >> 1) & 7,
        0,
        "one port: one vector requested"
    );
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    t.run(0, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    let m = msis(&t);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        m[0],
        MsiMessage {
            address: 0xfee0_0000,
            data: 0x4040
        }
    );
    assert!(!t.sink.intx.load(std::sync::atomic::Ordering::SeqCst));
    // Without clearing PxIS.DHRS, a second completion sets no new bit: no second MSI ...
    t.run(0, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    assert_eq!(msis(&t).len(), 1);
    // ... once the driver clears it, the next completion signals again.
    t.px_write(0, px::IS, u32::MAX);
    t.run(0, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    assert_eq!(msis(&t).len(), 2);
}

#[test]
fn multi_message_msi_one_vector_per_port_and_mrsm_fallback() {
    let mut t = TestHba::new(2);
    let at = enable_msi(&mut t, 1);
    assert_eq!(
        (t.cfg_read(at + 2, 2) >> 1) & 7,
        1,
        "two ports: two vectors requested"
    );
    assert_eq!(t.read(hba::GHC) & ghc::MRSM, 0);
    t.start_port(0);
    t.start_port(1);
    for p in [1, 0] {
        let buf = TestHba::buf(p, 0);
        t.run(p, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    }
    let data: Vec<u32> = msis(&t).iter().map(|m| m.data).collect();
    assert_eq!(data, vec![0x4041, 0x4040], "vector = port");
    // One vector only: MRSM, and every port uses vector 0.
    t.cfg_write(at + 2, 1, 2);
    assert_ne!(t.read(hba::GHC) & ghc::MRSM, 0);
    t.px_write(1, px::IS, u32::MAX);
    t.run(
        1,
        0,
        &h2d(opcode::READ_DMA_EXT, 0, 1),
        &[(TestHba::buf(1, 0), 512)],
        false,
    );
    assert_eq!(msis(&t).last().map(|m| m.data), Some(0x4040));
}

#[test]
fn two_ports_work_at_once() {
    let mut t = TestHba::new(2);
    t.start_port(0);
    t.start_port(1);
    let len = 64 << 10;
    for p in 0..2 {
        for tag in 0..4u8 {
            let buf = TestHba::buf(p, tag);
            t.mem_write(buf, &pattern(len, (p * 100) as u32 + u32::from(tag)));
            let fis = fpdma(opcode::WRITE_FPDMA_QUEUED, tag, 128 * u64::from(tag), 128);
            t.prepare(p, tag, &fis, &[(buf, len as u32)], HDR_WRITE);
        }
    }
    for p in 0..2 {
        t.px_write(p, px::SACT, 0xf);
        t.px_write(p, px::CI, 0xf);
    }
    t.wait_until(|t| t.px_read(0, px::SACT) | t.px_read(1, px::SACT) == 0);
    for p in 0..2 {
        assert_eq!(t.px_read(p, px::IS) & pxis::FATAL, 0);
        for tag in 0..4u8 {
            let buf = TestHba::buf(p, tag);
            t.mem_write(buf, &vec![0; len]);
            t.run(
                p,
                tag,
                &h2d(opcode::READ_DMA_EXT, 128 * u64::from(tag), 128),
                &[(buf, len as u32)],
                false,
            );
            assert!(
                t.mem_read(buf, len) == pattern(len, (p * 100) as u32 + u32::from(tag)),
                "port {p} tag {tag}"
            );
        }
    }
    let stats = t.f.port_stats();
    assert!(
        stats.iter().all(|s| s.ncq_peak_depth == 4 && s.errors == 0),
        "{stats:?}"
    );
}

#[test]
fn register_access_widths() {
    let mut t = TestHba::new(1);
    // Byte and word reads of VS.
    let mut b = [0u8; 2];
    t.f.bar_read(5, hba::VS + 1, &mut b[..1]);
    assert_eq!(b[0], 0x03);
    t.f.bar_read(5, hba::VS + 2, &mut b);
    assert_eq!(u16::from_le_bytes(b), 0x0001);
    // An 8-byte write to PxCLB/PxCLBU and an 8-byte read back.
    let clb = hba::PORTS_BASE + px::CLB;
    t.f.bar_write(5, clb, &0x0000_0001_0000_0400u64.to_le_bytes());
    let mut q = [0u8; 8];
    t.f.bar_read(5, clb, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0x0000_0001_0000_0400);
    // A byte write into PxCLB's second byte keeps the others.
    t.f.bar_write(5, clb + 1, &[0x18]);
    assert_eq!(t.px_read(0, px::CLB), 0x1800);
    // Outside the ABAR and in other BARs: reads 0, writes ignored, no panic.
    t.f.bar_write(5, 0x1ffe, &[1, 2, 3, 4]);
    t.f.bar_write(5, u64::MAX - 2, &[1, 2, 3, 4]);
    t.f.bar_read(5, u64::MAX - 2, &mut q);
    t.f.bar_read(0, 0, &mut q);
    assert_eq!(q, [0; 8]);
}

/// A guest whose register accesses are `gap` apart (the ports learn their aggregation window,
/// 8 gaps, from it). Writes (of 0 to IS, which clears nothing), because under mapped
/// registers satavm never sees a read.
fn pace(t: &mut TestHba, gap: std::time::Duration) {
    for _ in 0..40 {
        t.write(hba::IS, 0);
        std::thread::sleep(gap);
    }
}

/// Issue eight NCQ reads at once and let the drive finish them (process_completions, which
/// is not a register access, collects them) for `settle`.
fn eight_queued_reads(t: &mut TestHba, settle: std::time::Duration) -> u32 {
    for tag in 0..8u8 {
        let fis = fpdma(opcode::READ_FPDMA_QUEUED, tag, 8 * u64::from(tag), 8);
        t.prepare(0, tag, &fis, &[(DATA + u64::from(tag) * 0x1000, 4096)], 0);
    }
    let all = 0xff;
    t.px_write(0, px::SACT, all);
    t.px_write(0, px::CI, all);
    // Collected together once all are done (a port never holds completions while more than
    // two other queued commands are still in the device).
    std::thread::sleep(settle);
    t.f.process_completions();
    all
}

#[test]
fn ncq_aggregation_reports_held_completions_in_one_sdb_fis() {
    use satavm::ahci::sdb_aggregation::AggregationMode;
    use std::time::{Duration, Instant};
    let mut t = TestHba::new(1);
    enable_msi(&mut t, 0);
    t.f.set_aggregation(AggregationMode::Auto {
        max_window: Duration::from_millis(200),
    });
    t.start_port(0);
    // 3 ms between accesses: a 24 ms window, time enough for the drive to finish all eight.
    pace(&mut t, Duration::from_millis(3));
    let before = msis(&t).len();
    let all = eight_queued_reads(&mut t, Duration::from_millis(8));
    let deadline = t.f.next_deadline().expect("completions are held");
    assert!(
        Instant::now() < deadline,
        "the test was too slow to see the hold"
    );
    assert_eq!(
        t.px_read(0, px::SACT),
        all,
        "held commands stay outstanding"
    );
    assert_eq!(t.px_read(0, px::IS) & pxis::SDBS, 0, "no SDB FIS yet");
    assert_eq!(msis(&t).len(), before, "no interrupt yet");
    // (The window follows the guest's pace: this loop's quick reads shorten it.)
    t.wait_until(|t| t.px_read(0, px::SACT) == 0);
    match t.rfis(0, rfis::SDBFIS, 8) {
        Fis::SetDeviceBits(s) => assert_eq!(s.sactive, all, "one SDB FIS for all eight"),
        f => panic!("{f:?}"),
    }
    assert_eq!(msis(&t).len(), before + 1, "one interrupt for all eight");
    let stats = &t.f.port_stats()[0];
    assert_eq!(
        (stats.aggregated_sdbs, stats.aggregated_completions),
        (1, 8)
    );
    assert_eq!(t.f.next_deadline(), None);
    assert_eq!(t.px_read(0, px::IS) & pxis::FATAL, 0);
}

#[test]
fn ncq_aggregation_drops_held_completions_when_the_engine_stops() {
    use satavm::ahci::sdb_aggregation::AggregationMode;
    use std::time::Duration;
    let mut t = TestHba::new(1);
    t.f.set_aggregation(AggregationMode::Auto {
        max_window: Duration::from_millis(200),
    });
    t.start_port(0);
    pace(&mut t, Duration::from_millis(3));
    eight_queued_reads(&mut t, Duration::from_millis(8));
    assert!(t.f.next_deadline().is_some(), "completions are held");
    t.px_clear(0, px::CMD, pxcmd::ST);
    assert_eq!(t.px_read(0, px::SACT), 0);
    assert_eq!(t.f.next_deadline(), None, "dropped with the commands");
    t.px_write(0, px::IS, u32::MAX);
    std::thread::sleep(Duration::from_millis(30));
    t.f.process_completions();
    assert_eq!(t.px_read(0, px::IS), 0, "nothing reported after the stop");
    // The port works again, and an error completion is never held.
    t.start_port(0);
    t.run(
        0,
        0,
        &h2d(opcode::READ_DMA_EXT, 0, 8),
        &[(DATA, 4096)],
        false,
    );
    t.issue(
        0,
        1,
        &fpdma(opcode::READ_FPDMA_QUEUED, 1, LAST, 8),
        &[(DATA, 4096)],
        false,
    );
    t.wait_until(|t| t.px_read(0, px::IS) & pxis::TFES != 0);
    assert_eq!(t.f.next_deadline(), None);
}

/// IDENTIFY word `w` from a 512-byte block.
fn word(id: &[u8], w: usize) -> u16 {
    u16::from_le_bytes([id[2 * w], id[2 * w + 1]])
}

#[test]
fn sctl_spd_limits_the_link_at_comreset_and_identify_word_77_follows() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    let identify = |t: &mut TestHba| {
        t.run(
            0,
            0,
            &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
            &[(buf, 512)],
            false,
        );
        t.mem_read(buf, 512)
    };
    let id = identify(&mut t);
    assert_eq!(t.px_read(0, px::SSTS), 0x133);
    assert_eq!((word(&id, 76) & 0xe, (word(&id, 77) >> 1) & 7), (0xe, 3));
    // What libata does for libata.force=1.5G / sata_down_spd_limit: SControl 310h.
    for (spd, ssts, gen) in [(1u32, 0x113u32, 1u16), (2, 0x123, 2), (0, 0x133, 3)] {
        t.stop_port(0);
        t.px_write(0, px::SCTL, 0x301 | spd << 4);
        t.px_write(0, px::SCTL, 0x300 | spd << 4);
        t.wait_until(|t| t.px_read(0, px::TFD) & pxtfd::BSY == 0);
        assert_eq!(t.px_read(0, px::SSTS), ssts, "SPD {spd}");
        t.px_write(0, px::SERR, u32::MAX);
        t.px_write(0, px::IS, u32::MAX);
        t.px_set(0, px::CMD, pxcmd::ST);
        let id = identify(&mut t);
        assert_eq!((word(&id, 77) >> 1) & 7, gen, "word 77 after SPD {spd}");
    }
}

#[test]
fn a_sleeping_drive_answers_nothing_until_comreset_then_reports_standby() {
    let mut t = TestHba::new(1);
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    t.run(0, 0, &h2d(opcode::SLEEP, 0, 0), &[], false);
    // The emulated drive answers non-data commands while they are issued; asleep, it does
    // not: the command stays issued with nothing in PxIS.
    t.px_write(0, px::IS, u32::MAX);
    t.issue(0, 1, &h2d(opcode::CHECK_POWER_MODE, 0, 0), &[], false);
    assert_eq!(t.px_read(0, px::CI), 1 << 1);
    assert_eq!(t.px_read(0, px::IS) & (pxis::DHRS | pxis::TFES), 0);
    // libata's wake-up: stop the engine, COMRESET, restart.
    t.stop_port(0);
    assert_eq!(t.px_read(0, px::CI), 0);
    t.px_write(0, px::SCTL, 0x301);
    t.px_write(0, px::SCTL, 0x300);
    t.wait_until(|t| t.px_read(0, px::TFD) & pxtfd::BSY == 0);
    t.px_write(0, px::SERR, u32::MAX);
    t.px_write(0, px::IS, u32::MAX);
    t.px_set(0, px::CMD, pxcmd::ST);
    t.run(0, 0, &h2d(opcode::CHECK_POWER_MODE, 0, 0), &[], false);
    match t.rfis(0, rfis::RFIS, 20) {
        Fis::RegisterD2h(d) => assert_eq!((d.status, d.count), (0x50, 0x00), "standby"),
        f => panic!("{f:?}"),
    }
    t.run(0, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    t.run(0, 0, &h2d(opcode::CHECK_POWER_MODE, 0, 0), &[], false);
    match t.rfis(0, rfis::RFIS, 20) {
        Fis::RegisterD2h(d) => assert_eq!(d.count, 0xff, "active after the read"),
        f => panic!("{f:?}"),
    }
}
