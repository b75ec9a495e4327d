//! Write the seed corpus of the fuzz targets (fuzz/corpus/<target>/seed-*).
//!
//! The `ahci_mmio` seeds are the register and memory sequences of the conformance suite
//! (tests/ahci_conformance.rs, tests/common/mod.rs) and of tests/regressions.rs, recorded as
//! programs: bring-up + IDENTIFY, PIO and DMA I/O, 8-deep NCQ, error and recovery, COMRESET,
//! software reset, HBA reset with a write in flight, a reused NCQ tag, a short PRDT, two ports
//! and MSI. `sense_parse` and `fis_decode` get real sense buffers and FISes.
//!
//! Run: cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds

use std::path::Path;

use satavm::ahci::regs::{hba, port as px, pxcmd, pxis};
use satavm::sata::{DmaSetup, Fis, PioSetup, RegisterD2h, RegisterH2d, SetDeviceBits};
use satavm_fuzz::harness::DATA;
use satavm_fuzz::program::{flags, Op, Prd, Program};

const IDENTIFY: u8 = 0xec;
const READ_SECTORS_EXT: u8 = 0x24;
const WRITE_SECTORS_EXT: u8 = 0x34;
const READ_DMA_EXT: u8 = 0x25;
const WRITE_DMA_EXT: u8 = 0x35;
const READ_FPDMA: u8 = 0x60;
const WRITE_FPDMA: u8 = 0x61;
const READ_LOG_EXT: u8 = 0x2f;
const FLUSH_CACHE_EXT: u8 = 0xea;
/// Capacity of the harness's images in sectors.
const SECTORS: u32 = 2048;

fn px_reg(port: u8, reg: u64) -> u16 {
    (hba::PORTS_BASE + u64::from(port) * hba::PORT_SIZE + reg) as u16
}

fn w32(port: u8, reg: u64, value: u32) -> Op {
    Op::MmioWrite {
        offset: px_reg(port, reg),
        width_log2: 2,
        value: u64::from(value),
    }
}

fn r32(port: u8, reg: u64) -> Op {
    Op::MmioRead {
        offset: px_reg(port, reg),
        width_log2: 2,
    }
}

/// A non-queued command in `slot` with one PRD per (address, bytes).
fn cmd(port: u8, slot: u8, command: u8, lba: u32, count: u16, prds: &[(u32, u32)], fl: u8) -> Op {
    Op::Command {
        port,
        slot,
        flags: fl,
        command,
        features: 0,
        lba,
        count,
        control: 0,
        prdtl: 0,
        prds: prds.iter().map(|&(a, n)| Prd::new(a, n)).collect(),
    }
}

/// READ/WRITE FPDMA QUEUED in `slot` with tag `tag`.
fn fpdma(port: u8, slot: u8, tag: u8, write: bool, lba: u32, sectors: u16, buf: u32) -> Op {
    Op::Command {
        port,
        slot,
        flags: if write { flags::WRITE } else { 0 },
        command: if write { WRITE_FPDMA } else { READ_FPDMA },
        features: sectors,
        lba,
        count: u16::from(tag) << 3,
        control: 0,
        prdtl: 0,
        prds: vec![Prd::new(buf, u32::from(sectors) * 512)],
    }
}

fn issue(port: u8, slots: u32) -> Op {
    Op::Issue {
        port,
        slots,
        ncq: false,
    }
}

fn issue_ncq(port: u8, slots: u32) -> Op {
    Op::Issue {
        port,
        slots,
        ncq: true,
    }
}

fn wait() -> Op {
    Op::Wait { ms: 20 }
}

/// AHCI 6.2.2.1 recovery: clear ST, clear PxIS and PxSERR, set ST.
fn recover(port: u8) -> Vec<Op> {
    vec![
        Op::Engine {
            port,
            st: false,
            fre: true,
        },
        w32(port, px::IS, u32::MAX),
        w32(port, px::SERR, u32::MAX),
        Op::Engine {
            port,
            st: true,
            fre: true,
        },
    ]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn identify(port: u8, slot: u8) -> Vec<Op> {
    vec![
        cmd(port, slot, IDENTIFY, 0, 0, &[(DATA, 512)], 0),
        issue(port, 1 << slot),
        Op::Wait { ms: 2 },
        r32(port, px::IS),
        r32(port, px::TFD),
    ]
}

fn seeds() -> Vec<(&'static str, Program)> {
    let mut out = Vec::new();
    let mut add = |name, two_ports, ops: Vec<Op>| out.push((name, Program { two_ports, ops }));

    let mut ops = vec![Op::BringUp { port: 0 }, r32(0, px::SIG)];
    ops.extend(identify(0, 0));
    add("bringup-identify", false, ops);

    // Register bring-up as the conformance suite writes it, one register at a time.
    let mut ops = vec![
        Op::MmioWrite {
            offset: hba::GHC as u16,
            width_log2: 2,
            value: 1 << 31,
        },
        w32(0, px::CLB, 0x1_0000),
        w32(0, px::FB, 0x1_0400),
        w32(0, px::SERR, u32::MAX),
        w32(0, px::IS, u32::MAX),
        w32(0, px::CMD, pxcmd::FRE),
        r32(0, px::TFD),
        w32(0, px::CMD, pxcmd::FRE | pxcmd::ST),
        w32(0, px::IE, pxis::ALL),
        Op::MmioWrite {
            offset: hba::GHC as u16,
            width_log2: 2,
            value: 1 << 31 | 2,
        },
    ];
    ops.extend(identify(0, 0));
    add("bringup-registers-identify", false, ops);

    let data = pattern(4096, 7);
    add(
        "pio-and-dma-write-read",
        false,
        vec![
            Op::BringUp { port: 0 },
            Op::MemWrite {
                addr: DATA,
                bytes: data.clone(),
            },
            cmd(
                0,
                1,
                WRITE_SECTORS_EXT,
                17,
                2,
                &[(DATA, 1024)],
                flags::WRITE,
            ),
            issue(0, 2),
            wait(),
            cmd(0, 2, READ_SECTORS_EXT, 17, 2, &[(DATA + 0x1000, 1024)], 0),
            issue(0, 4),
            wait(),
            cmd(0, 1, WRITE_DMA_EXT, 100, 8, &[(DATA, 4096)], flags::WRITE),
            issue(0, 2),
            wait(),
            cmd(0, 2, READ_DMA_EXT, 100, 8, &[(DATA + 0x2000, 4096)], 0),
            issue(0, 4),
            wait(),
            cmd(0, 3, FLUSH_CACHE_EXT, 0, 0, &[], 0),
            issue(0, 8),
            wait(),
        ],
    );

    // Fragmented PRDs of 32 bytes.
    let prds: Vec<(u32, u32)> = (0..8).map(|i| (DATA + i * 0x100, 32)).collect();
    let mut ops = vec![Op::BringUp { port: 0 }];
    ops.push(cmd(0, 1, READ_DMA_EXT, 0, 1, &prds, 0));
    ops.extend([issue(0, 2), wait()]);
    add("fragmented-prds", false, ops);

    let mut ops = vec![Op::BringUp { port: 0 }];
    for t in 0..8u8 {
        ops.push(fpdma(
            0,
            t,
            t,
            true,
            u32::from(t) * 16,
            8,
            DATA + u32::from(t) * 0x1000,
        ));
    }
    ops.extend([issue_ncq(0, 0xff), wait(), wait(), wait()]);
    for t in 0..8u8 {
        ops.push(fpdma(
            0,
            t,
            t,
            false,
            u32::from(t) * 16,
            8,
            DATA + 0x1_0000 + u32::from(t) * 0x1000,
        ));
    }
    ops.extend([issue_ncq(0, 0xff), wait(), wait(), r32(0, px::SACT)]);
    add("ncq-8-deep", false, ops);

    // A failed non-queued command (IDNF), recovery, then a command that works.
    let mut ops = vec![
        Op::BringUp { port: 0 },
        cmd(0, 0, READ_DMA_EXT, SECTORS, 8, &[(DATA, 4096)], 0),
        issue(0, 1),
        wait(),
        r32(0, px::TFD),
    ];
    ops.extend(recover(0));
    ops.extend(identify(0, 1));
    add("error-recovery", false, ops);

    // A failed queued command among others, recovery, NCQ error log page 10h.
    let mut ops = vec![
        Op::BringUp { port: 0 },
        fpdma(0, 0, 0, false, 0, 8, DATA),
        fpdma(0, 1, 1, false, SECTORS - 4, 8, DATA + 0x1000),
        fpdma(0, 2, 2, false, 64, 8, DATA + 0x2000),
        issue_ncq(0, 7),
        wait(),
        wait(),
    ];
    ops.extend(recover(0));
    ops.extend([
        cmd(0, 0, READ_LOG_EXT, 0x10, 1, &[(DATA + 0x8000, 512)], 0),
        issue(0, 1),
        wait(),
    ]);
    add("ncq-error-log", false, ops);

    let mut ops = vec![
        Op::BringUp { port: 0 },
        Op::Engine {
            port: 0,
            st: false,
            fre: true,
        },
        Op::Comreset {
            port: 0,
            release: true,
        },
        r32(0, px::SSTS),
        r32(0, px::SIG),
        w32(0, px::SERR, u32::MAX),
        Op::BringUp { port: 0 },
    ];
    ops.extend(identify(0, 0));
    add("comreset", false, ops);

    // libahci's software reset: SRST set (R and C in the header), then cleared.
    let srst = |slot, control, fl| Op::Command {
        port: 0,
        slot,
        flags: flags::CONTROL | fl,
        command: 0,
        features: 0,
        lba: 0,
        count: 0,
        control,
        prdtl: 0,
        prds: vec![],
    };
    let mut ops = vec![
        Op::BringUp { port: 0 },
        fpdma(0, 0, 0, true, 0, 256, DATA),
        issue_ncq(0, 1),
        srst(1, 0x04, flags::RESET | flags::CLEAR_BUSY),
        issue(0, 2),
        srst(2, 0x00, 0),
        issue(0, 4),
        r32(0, px::SIG),
        wait(),
    ];
    ops.extend(identify(0, 3));
    add("software-reset-with-ncq-in-flight", false, ops);

    let mut ops = vec![
        Op::BringUp { port: 0 },
        cmd(
            0,
            0,
            WRITE_DMA_EXT,
            0,
            256,
            &[(DATA, 0x2_0000)],
            flags::WRITE,
        ),
        issue(0, 1),
        Op::HbaReset,
        Op::BringUp { port: 0 },
        cmd(0, 1, READ_DMA_EXT, 0, 8, &[(DATA + 0x4_0000, 4096)], 0),
        issue(0, 2),
        wait(),
    ];
    ops.push(Op::HbaReset);
    ops.push(Op::BringUp { port: 0 });
    ops.extend(identify(0, 0));
    add("hba-reset-with-write-in-flight", false, ops);

    add(
        "engine-stop-with-dma-in-flight",
        false,
        vec![
            Op::BringUp { port: 0 },
            cmd(0, 0, READ_DMA_EXT, 0, 512, &[(DATA, 0x4_0000)], 0),
            issue(0, 1),
            Op::Engine {
                port: 0,
                st: false,
                fre: true,
            },
            Op::MemWrite {
                addr: DATA,
                bytes: vec![0xaa; 64],
            },
            Op::Wait { ms: 10 },
        ],
    );

    add(
        "ncq-tag-reuse",
        false,
        vec![
            Op::BringUp { port: 0 },
            fpdma(0, 0, 0, false, 0, 512, DATA),
            issue_ncq(0, 1),
            fpdma(0, 0, 0, false, 8, 8, DATA + 0x8_0000),
            issue_ncq(0, 1),
            fpdma(0, 1, 0, false, 16, 8, DATA + 0x9_0000),
            issue_ncq(0, 2),
            wait(),
            wait(),
            r32(0, px::IS),
        ],
    );

    add(
        "short-prdt",
        false,
        vec![
            Op::BringUp { port: 0 },
            cmd(0, 0, READ_DMA_EXT, 0, 8, &[(DATA, 512)], 0),
            issue(0, 1),
            wait(),
            cmd(0, 1, IDENTIFY, 0, 0, &[(DATA, 100)], 0),
            issue(0, 2),
            wait(),
        ],
    );

    add(
        "prd-outside-ram",
        false,
        vec![
            Op::BringUp { port: 0 },
            cmd(0, 0, READ_DMA_EXT, 0, 8, &[(0x7fff_f000, 4096)], 0),
            issue(0, 1),
            wait(),
            Op::Command {
                port: 0,
                slot: 1,
                flags: flags::RAW_PRDTL,
                command: READ_DMA_EXT,
                features: 0,
                lba: 0,
                count: 1,
                control: 0,
                prdtl: 0xffff,
                prds: vec![Prd::new(DATA, 512)],
            },
            issue(0, 2),
            wait(),
        ],
    );

    let mut ops = vec![Op::BringUp { port: 0 }, Op::BringUp { port: 1 }];
    ops.push(fpdma(0, 0, 0, true, 0, 8, DATA));
    ops.push(fpdma(1, 0, 0, true, 0, 8, DATA + 0x1000));
    ops.extend([issue_ncq(0, 1), issue_ncq(1, 1), wait(), wait()]);
    ops.extend(identify(1, 1));
    add("two-ports", true, ops);

    // MSI on (capability at 40h): address FEE00000h, data 4021h, 2 vectors.
    let mut ops = vec![
        Op::ConfigWrite {
            offset: 0x44,
            len: 3,
            value: 0xfee0_0000,
        },
        Op::ConfigWrite {
            offset: 0x4c,
            len: 1,
            value: 0x4021,
        },
        Op::ConfigWrite {
            offset: 0x42,
            len: 1,
            value: 1 | 1 << 4,
        },
        Op::BringUp { port: 0 },
        Op::BringUp { port: 1 },
    ];
    ops.extend(identify(0, 0));
    ops.extend(identify(1, 0));
    add("msi-two-ports", true, ops);
    out
}

fn write_seeds(dir: &Path, seeds: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).expect("create corpus directory");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let ahci: Vec<(&str, Vec<u8>)> = seeds().into_iter().map(|(n, p)| (n, p.encode())).collect();
    write_seeds(&root.join("ahci_mmio"), &ahci);

    // Sense data as Linux returns it for ATA PASS-THROUGH with CK_COND.
    let mut desc = vec![0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 14];
    desc.extend([
        0x09, 0x0c, 0x01, 0x00, 0x00, 0x01, 0x00, 0x12, 0x00, 0x34, 0x00, 0x56, 0x40, 0x50,
    ]);
    let mut desc_err = desc.clone();
    desc_err[1] = 0x03;
    desc_err[8 + 3] = 0x40;
    desc_err[8 + 13] = 0x51;
    let fixed = vec![
        0xf0, 0, 0x01, 0x00, 0x50, 0x40, 0x01, 10, 0xa0, 0x12, 0x34, 0x56, 0x00, 0x1d, 0, 0, 0, 0,
    ];
    let unit_attention = vec![
        0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0,
    ];
    // Linux's legacy fixed layout (registers in bytes 8-11, LBA in 17-19), as Linux 6.1
    // answers an aborted IDENTIFY: cut short after byte 17, and whole.
    let legacy = vec![
        0x70, 0, 0x0b, 0, 0, 0, 0, 0x0a, 0x04, 0x51, 0xa0, 0x01, 0, 0, 0, 0, 0x00, 0x00,
    ];
    let mut legacy_lba = legacy.clone();
    legacy_lba[7] = 12;
    legacy_lba[17] = 0x56;
    legacy_lba.extend_from_slice(&[0x34, 0x12]);
    write_seeds(
        &root.join("sense_parse"),
        &[
            ("descriptor-good", desc),
            ("descriptor-error", desc_err),
            ("fixed-good", fixed),
            ("fixed-unit-attention", unit_attention),
            ("fixed-linux-legacy", legacy),
            ("fixed-linux-legacy-lba", legacy_lba),
        ],
    );

    let fises = [
        (
            "register-h2d",
            Fis::RegisterH2d(RegisterH2d {
                c: true,
                command: READ_FPDMA,
                features: 8,
                lba: 0x1234,
                device: 0x40,
                count: 5 << 3,
                ..Default::default()
            }),
        ),
        (
            "register-d2h",
            Fis::RegisterD2h(RegisterD2h {
                interrupt: true,
                status: 0x50,
                count: 1,
                lba: 1,
                ..Default::default()
            }),
        ),
        (
            "pio-setup",
            Fis::PioSetup(PioSetup {
                interrupt: true,
                device_to_host: true,
                status: 0x58,
                e_status: 0x50,
                transfer_count: 512,
                ..Default::default()
            }),
        ),
        (
            "dma-setup",
            Fis::DmaSetup(DmaSetup {
                device_to_host: true,
                buffer_id: 3,
                transfer_count: 4096,
                ..Default::default()
            }),
        ),
        (
            "set-device-bits",
            Fis::SetDeviceBits(SetDeviceBits {
                interrupt: true,
                status: 0x40,
                sactive: 0x8000_0001,
                ..Default::default()
            }),
        ),
    ];
    let mut fis_seeds: Vec<(&str, Vec<u8>)> = fises.iter().map(|(n, f)| (*n, f.encode())).collect();
    fis_seeds.push(("data", vec![0x46, 0, 0, 0, 1, 2, 3, 4]));
    // Reserved header bytes set (they are not carried: encode writes them as 0).
    let mut reserved = vec![0x46, 0x00];
    reserved.extend([0x70; 14]);
    reserved.extend([0, 0, 1, 2, 3, 4]);
    fis_seeds.push(("data-reserved-bytes", reserved));
    fis_seeds.push(("bist", vec![0x58, 0, 0x10, 0, 1, 0, 0, 0, 2, 0, 0, 0]));
    write_seeds(&root.join("fis_decode"), &fis_seeds);
    println!("seeds written under {}", root.display());
}
