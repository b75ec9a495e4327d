//! Seeing and breaking the SATA conversation, in-process through BAR5 MMIO with the real
//! emulated drive: the trace of each layer, the AHCI spec checks, and each fault injection
//! kind with the guest-visible registers and FISes it produces.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::trace::{expect, find, position, text};
use common::*;
use satavm::ahci::checks::{Rule as Check, SpecChecks, Violation, ViolationHook};
use satavm::ahci::regs::{ghc, hba, port as px, pxcmd, pxis, pxserr, pxtfd};
use satavm::ahci::rfis::offset as rfis;
use satavm::ahci::Observers;
use satavm::ata::command::opcode;
use satavm::ata::inject::Rule;
use satavm::pci::config::{command, offset};
use satavm::pci::PciFunction;
use satavm::sata::{Fis, RegisterD2h, SetDeviceBits};
use satavm::trace::{Format, SharedBuffer, Sink, Tracer};
use serde_json::{json, Value};

/// An HBA with `ports` drives, tracing JSON into the returned buffer, spec checks in strict
/// mode collecting violations, and `rules` injected.
struct Rig {
    t: TestHba,
    json: SharedBuffer,
    violations: Arc<Mutex<Vec<Violation>>>,
}

fn rig(ports: usize, rules: &[&str]) -> Rig {
    let json = SharedBuffer::default();
    let tracer = Tracer::new(vec![Sink::new(Format::Json, Box::new(json.clone()))]);
    let violations = Arc::new(Mutex::new(Vec::new()));
    let v = violations.clone();
    let hook: ViolationHook = Arc::new(move |x: &Violation| v.lock().unwrap().push(x.clone()));
    let observers = Observers {
        tracer: tracer.clone(),
        checks: Arc::new(SpecChecks::new(tracer, Some(hook))),
    };
    let rules: Vec<Rule> = rules.iter().map(|r| r.parse().unwrap()).collect();
    let mut t = TestHba::new_observed(ports, observers, &rules);
    let cmd = command::MEMORY_SPACE | command::BUS_MASTER;
    t.f.config_write(offset::COMMAND, &cmd.to_le_bytes());
    Rig {
        t,
        json,
        violations,
    }
}

impl Rig {
    fn rules_broken(&self) -> Vec<Check> {
        self.violations
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.rule)
            .collect()
    }

    /// The trace so far, each line parsed as JSON.
    fn events(&self) -> Vec<Value> {
        common::trace::parse(&self.json.lines())
    }

    /// The first event with every field of `pattern`; panics with the trace if none.
    fn expect(&self, pattern: Value) -> Value {
        expect(&self.events(), &pattern).clone()
    }
}

fn rfis_d2h(t: &TestHba) -> RegisterD2h {
    match t.rfis(0, rfis::RFIS, 20) {
        Fis::RegisterD2h(d) => d,
        f => panic!("{f:?}"),
    }
}

fn rfis_sdb(t: &TestHba) -> SetDeviceBits {
    match t.rfis(0, rfis::SDBFIS, 8) {
        Fis::SetDeviceBits(s) => s,
        f => panic!("{f:?}"),
    }
}

/// Stop the engine, clear errors, start again (AHCI 6.2.2.2 recovery).
fn recover(t: &mut TestHba) {
    t.stop_port(0);
    t.px_write(0, px::SERR, u32::MAX);
    t.px_write(0, px::IS, u32::MAX);
    t.write(hba::IS, 1);
    t.px_set(0, px::CMD, pxcmd::ST);
}

// ---- tracing ----

#[test]
fn an_ncq_read_traced_layer_by_layer() {
    let mut r = rig(1, &[]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 3);
    r.t.run(
        0,
        3,
        &fpdma(opcode::READ_FPDMA_QUEUED, 3, 2048, 8),
        &[(buf, 4096)],
        false,
    );
    // AHCI: register accesses by spec name, the fetch, the interrupt, the completion.
    // Register values are JSON numbers.
    r.expect(json!({"port": 0, "layer": "ahci", "kind": "reg_write", "reg": "P0SACT", "value": 8}));
    r.expect(json!({"kind": "reg_write", "reg": "P0CI", "value": 8, "offset": 0x138}));
    r.expect(json!({"kind": "reg_write", "reg": "GHC"}));
    r.expect(json!({"kind": "reg_read", "reg": "P0TFD"}));
    r.expect(json!({
        "slot": 3, "layer": "ahci", "kind": "fetch", "cfl": 5, "prd_bytes": 4096, "ncq": true
    }));
    // SATA: the CFIS down, the FISes up.
    r.expect(json!({
        "slot": 3, "layer": "sata", "kind": "fis", "dir": "h2d", "type": "RegH2D",
        "command": 0x60, "lba": 2048
    }));
    r.expect(json!({"dir": "d2h", "type": "RegD2H", "i": false, "status": 0x40}));
    r.expect(json!({"dir": "d2h", "type": "DMASetup", "buffer_id": 3, "transfer_count": 4096}));
    r.expect(json!({"type": "SDB", "i": true, "sactive": 8}));
    // ATA: the command decoded and its end.
    r.expect(json!({
        "slot": 3, "layer": "ata", "kind": "cmd", "op": "READ FPDMA QUEUED", "opcode": 0x60,
        "protocol": "fpdma-in", "lba": 2048, "sectors": 8, "tag": 3
    }));
    r.expect(json!({
        "layer": "ata", "kind": "done", "op": "READ FPDMA QUEUED", "ok": true, "bytes": 4096
    }));
    r.expect(json!({"layer": "ahci", "kind": "pxis", "set": 8}));
    r.expect(json!({"slot": 3, "layer": "ahci", "kind": "complete", "ok": true}));
    // Every field is a number, a string or a flag, and every event has its time, layer, kind.
    let events = r.events();
    for e in &events {
        assert!(
            e["t_us"].is_u64() && e["layer"].is_string() && e["kind"].is_string(),
            "{e}"
        );
        for (k, v) in e.as_object().unwrap() {
            assert!(v.is_u64() || v.is_string() || v.is_boolean(), "{k} in {e}");
        }
    }
    // Order: SACT, CI, fetch, H2D, cmd, SDB, done.
    let pos = |p: Value| position(&events, &p).unwrap();
    let order = [
        pos(json!({"reg": "P0SACT"})),
        pos(json!({"reg": "P0CI", "kind": "reg_write"})),
        pos(json!({"kind": "fetch"})),
        pos(json!({"dir": "h2d"})),
        pos(json!({"kind": "cmd"})),
        pos(json!({"type": "SDB"})),
        pos(json!({"kind": "done"})),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(r.rules_broken().is_empty(), "{:?}", r.rules_broken());
    // Statistics.
    let s = &r.t.f.port_stats()[0];
    assert_eq!(s.by_opcode.get(&opcode::READ_FPDMA_QUEUED), Some(&1));
    assert_eq!(
        (s.bytes_read, s.bytes_written, s.ncq_peak_depth),
        (4096, 0, 1)
    );
}

#[test]
fn tracing_off_builds_no_tracer_and_changes_nothing() {
    let mut t = TestHba::new(1);
    assert!(!t.f.tracer().enabled());
    t.start_port(0);
    let buf = TestHba::buf(0, 0);
    t.run(0, 0, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    assert!(t.f.spec_checks().broken().is_empty());
}

// ---- spec checks ----

#[test]
fn a_correct_driver_breaks_no_rule_and_hba_reset_while_running_is_fine() {
    let mut r = rig(1, &[]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 0);
    r.t.run(
        0,
        0,
        &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
        &[(buf, 512)],
        false,
    );
    for tag in 0..4u8 {
        r.t.issue(
            0,
            tag,
            &fpdma(opcode::WRITE_FPDMA_QUEUED, tag, 8 * u64::from(tag), 8),
            &[(buf, 4096)],
            true,
        );
    }
    r.t.wait_idle(0);
    r.t.write(hba::GHC, ghc::HR);
    r.t.start_port(0);
    assert!(
        r.rules_broken().is_empty(),
        "{:?}",
        r.violations.lock().unwrap()
    );
    assert!(find(&r.events(), &json!({"layer": "check"})).is_empty());
}

#[test]
fn engine_start_rules_10_3_1() {
    let mut r = rig(1, &[]);
    // ST with FRE clear, straight after reset (PxTFD 7Fh: DRQ set too).
    r.t.px_write(0, px::CLB, TestHba::clb(0) as u32);
    r.t.px_write(0, px::CMD, pxcmd::ST);
    assert_eq!(
        r.rules_broken(),
        vec![Check::StWithoutFre, Check::StWhileBusy]
    );
    let v = r.violations.lock().unwrap()[0].to_string();
    assert!(
        v.starts_with("AHCI 1.3.1 section 10.3.1: port 0: PxCMD.ST set while PxCMD.FRE is clear"),
        "{v}"
    );
    r.expect(json!({
        "layer": "check", "kind": "violation", "rule": "st-without-fre", "section": "10.3.1"
    }));
    // The HBA still did what it was told.
    assert_ne!(r.t.px_read(0, px::CMD) & pxcmd::CR, 0);
    // CLO in the same write clears BSY/DRQ first: only the FRE rule again.
    r.violations.lock().unwrap().clear();
    r.t.px_write(0, px::CMD, 0);
    r.t.px_write(0, px::CMD, pxcmd::ST | pxcmd::CLO);
    assert_eq!(r.rules_broken(), vec![Check::StWithoutFre]);
}

#[test]
fn base_address_rules_3_3_1_and_3_3_3() {
    let mut r = rig(1, &[]);
    r.t.start_port(0);
    // Same value: no change, no warning.
    r.t.px_write(0, px::CLB, TestHba::clb(0) as u32);
    r.t.px_write(0, px::FB, TestHba::fb(0) as u32);
    assert!(r.rules_broken().is_empty());
    r.t.px_write(0, px::CLB, 0x8_0000);
    r.t.px_write(0, px::FBU, 1);
    assert_eq!(
        r.rules_broken(),
        vec![Check::ClbWhileRunning, Check::FbWhileReceiving]
    );
    let v = r.expect(json!({"rule": "clb-while-running", "section": "3.3.1"}));
    assert!(
        text(&v, "detail").contains("0x80000 written over 0x10000"),
        "{v}"
    );
    r.expect(json!({"rule": "fb-while-receiving", "section": "3.3.3"}));
}

#[test]
fn command_header_and_prd_rules_4_2_2_and_4_2_3_3() {
    let mut r = rig(1, &[]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 0);
    // An odd PRD byte count (DBC bit 0 clear): reported, the command still runs.
    r.t.issue(
        0,
        0,
        &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
        &[(buf, 511), (buf + 512, 1)],
        false,
    );
    r.t.wait_idle(0);
    assert_eq!(r.rules_broken(), vec![Check::PrdOddByteCount]);
    let v = r.expect(json!({"rule": "prd-odd-byte-count", "section": "4.2.3.3"}));
    assert!(
        text(&v, "detail").contains("slot 0 PRD 0: 511 bytes"),
        "{v}"
    );
    // CFL 1: reported, and the HBA answers with an interface fatal error.
    r.t.prepare(0, 1, &h2d(opcode::IDENTIFY_DEVICE, 0, 0), &[(buf, 512)], 0);
    let h = TestHba::clb(0) + 32;
    let dw0 = r.t.mem_read(h, 4);
    let dw0 = u32::from_le_bytes(dw0.try_into().unwrap());
    r.t.mem_write(h, &((dw0 & !0x1f) | 1).to_le_bytes());
    r.t.px_write(0, px::CI, 1 << 1);
    assert_eq!(
        r.rules_broken(),
        vec![Check::PrdOddByteCount, Check::CflOutOfRange]
    );
    assert_ne!(r.t.px_read(0, px::IS) & pxis::IFS, 0);
    assert_eq!(r.t.px_read(0, px::CI), 1 << 1);
    let v = r.expect(json!({"rule": "cfl-out-of-range", "section": "4.2.2"}));
    assert!(text(&v, "detail").contains("slot 1: CFL 1"), "{v}");
}

#[test]
fn command_issue_rules_3_3_13_and_3_3_14() {
    let mut r = rig(1, &["op=read,delay=300"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 0);
    // PxCI while ST is clear.
    r.t.stop_port(0);
    r.t.prepare(0, 0, &h2d(opcode::IDENTIFY_DEVICE, 0, 0), &[(buf, 512)], 0);
    r.t.px_write(0, px::CI, 1);
    assert_eq!(r.rules_broken(), vec![Check::CiWhileStopped]);
    assert_eq!(r.t.px_read(0, px::CI), 0, "ignored, as before");
    r.t.px_set(0, px::CMD, pxcmd::ST);
    // Writing a PxCI bit that is still set (the delayed read holds slot 2).
    r.t.issue(0, 2, &h2d(opcode::READ_DMA_EXT, 0, 1), &[(buf, 512)], false);
    r.t.px_write(0, px::CI, 1 << 2);
    assert_eq!(r.rules_broken()[1], Check::CiAlreadySet);
    r.t.wait_idle(0);
    // PxSACT bits without their PxCI bit, and an NCQ command without its PxSACT bit.
    r.t.prepare(
        0,
        4,
        &fpdma(opcode::WRITE_FPDMA_QUEUED, 4, 0, 1),
        &[(buf, 512)],
        HDR_WRITE,
    );
    r.t.px_write(0, px::SACT, (1 << 4) | (1 << 5));
    r.t.px_write(0, px::CI, 1 << 4);
    assert_eq!(r.rules_broken()[2], Check::SactWithoutCi);
    let v = r.expect(json!({"rule": "sact-without-ci", "section": "3.3.13"}));
    assert!(
        text(&v, "detail").contains("PxSACT bits 0x20, PxCI write 0x10"),
        "{v}"
    );
    r.t.wait_until(|t| t.px_read(0, px::SACT) & (1 << 4) == 0);
    r.t.prepare(
        0,
        6,
        &fpdma(opcode::WRITE_FPDMA_QUEUED, 6, 0, 1),
        &[(buf, 512)],
        HDR_WRITE,
    );
    r.t.px_write(0, px::CI, 1 << 6);
    assert_eq!(r.rules_broken()[3], Check::NcqWithoutSact);
    assert_eq!(r.rules_broken().len(), 4);
    let text: Vec<String> = r
        .violations
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert!(
        text[0].contains("section 3.3.14") && text[1].contains("section 3.3.14"),
        "{text:?}"
    );
    assert!(text[3].contains("section 3.3.13"), "{text:?}");
}

#[test]
fn a_busy_device_when_st_is_set() {
    // A dropped IDENTIFY leaves PxTFD.STS.BSY set; restarting the engine over it is undefined.
    let mut r = rig(1, &["op=0xec,drop"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 0);
    r.t.issue(
        0,
        0,
        &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
        &[(buf, 512)],
        false,
    );
    assert_ne!(r.t.px_read(0, px::TFD) & pxtfd::BSY, 0);
    r.t.stop_port(0);
    r.t.px_set(0, px::CMD, pxcmd::ST);
    assert_eq!(r.rules_broken(), vec![Check::StWhileBusy]);
    let v = r.expect(json!({"rule": "st-while-busy"}));
    assert!(text(&v, "detail").contains("PxTFD 0x1d0"), "{v}");
    // With the Phy offline there is no device status to respect: no warning.
    r.t.stop_port(0);
    r.t.px_write(0, px::SCTL, 4);
    assert_eq!(r.t.px_read(0, px::SSTS), 4);
    r.t.px_set(0, px::CMD, pxcmd::ST);
    assert_eq!(r.rules_broken(), vec![Check::StWhileBusy]);
}

// ---- fault injection ----

#[test]
fn unc_on_a_non_queued_read_reports_the_first_bad_lba() {
    let mut r = rig(1, &["port=0,op=read,lba=1002-1003,error=unc"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    // Reads elsewhere and writes over the bad range work.
    r.t.run(
        0,
        0,
        &h2d(opcode::WRITE_DMA_EXT, 1000, 8),
        &[(buf, 4096)],
        true,
    );
    r.t.run(
        0,
        0,
        &h2d(opcode::READ_DMA_EXT, 1004, 8),
        &[(buf, 4096)],
        false,
    );
    r.t.px_write(0, px::IS, u32::MAX);
    r.t.issue(
        0,
        1,
        &h2d(opcode::READ_DMA_EXT, 1000, 8),
        &[(buf, 4096)],
        false,
    );
    r.t.wait_idle(0);
    assert_eq!(r.t.px_read(0, px::IS), pxis::DHRS | pxis::TFES);
    assert_eq!(r.t.px_read(0, px::TFD), 0x4051, "ERR with UNC");
    assert_eq!(
        r.t.px_read(0, px::CI),
        1 << 1,
        "the failed slot stays issued"
    );
    assert_eq!(
        (r.t.px_read(0, px::CMD) & pxcmd::CCS_MASK) >> pxcmd::CCS_SHIFT,
        1
    );
    let d = rfis_d2h(&r.t);
    assert_eq!(
        (d.status, d.error, d.lba, d.device),
        (0x51, 0x40, 1002, 0x40)
    );
    assert_eq!(r.t.prdbc(0, 1), 0);
    r.expect(json!({
        "slot": 1, "layer": "inject", "kind": "fire", "rule": "port=0,op=read,lba=1002-1003,error=unc"
    }));
    r.expect(json!({
        "slot": 1, "layer": "ata", "kind": "done", "op": "READ DMA EXT", "status": 0x51,
        "error": 0x40, "ok": false
    }));
    assert_eq!(r.t.f.port_stats()[0].errors, 1);
}

#[test]
fn unc_on_an_ncq_read_sets_sdb_err_and_the_ncq_error_log_names_it() {
    let mut r = rig(1, &["op=read,lba=2004,error=unc"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    r.t.px_write(0, px::IS, u32::MAX);
    r.t.issue(
        0,
        3,
        &fpdma(opcode::READ_FPDMA_QUEUED, 3, 2000, 8),
        &[(buf, 4096)],
        false,
    );
    r.t.wait_until(|t| t.px_read(0, px::IS) & pxis::TFES != 0);
    assert_eq!(r.t.px_read(0, px::IS), pxis::SDBS | pxis::TFES);
    assert_eq!(r.t.px_read(0, px::TFD), 0x4051);
    assert_eq!(
        r.t.px_read(0, px::CI),
        0,
        "accepted: the D2H FIS released the slot"
    );
    assert_eq!(
        r.t.px_read(0, px::SACT),
        1 << 3,
        "SActive not cleared for the failed tag"
    );
    let s = rfis_sdb(&r.t);
    assert_eq!(
        (s.status, s.error, s.sactive, s.interrupt),
        (0x51, 0x40, 0, true)
    );
    // libata's recovery: restart the engine, READ LOG EXT page 10h.
    recover(&mut r.t);
    assert_eq!(r.t.px_read(0, px::SACT), 0);
    // Queued commands are refused until the log is read.
    r.t.issue(
        0,
        5,
        &fpdma(opcode::READ_FPDMA_QUEUED, 5, 0, 1),
        &[(buf, 512)],
        false,
    );
    r.t.wait_idle(0);
    assert_eq!(
        r.t.px_read(0, px::TFD),
        0x0441,
        "ABRT: DRDY|ERR as a drive answers"
    );
    recover(&mut r.t);
    let mut log = h2d(opcode::READ_LOG_EXT, 0x10, 1);
    log.device = 0;
    r.t.run(0, 0, &log, &[(buf, 512)], false);
    let page = r.t.mem_read(buf, 512);
    assert_eq!(page[0], 3, "NQ clear, tag 3");
    assert_eq!(
        &page[2..11],
        &[0x51, 0x40, 0xd4, 0x07, 0, 0x40, 0, 0, 0],
        "status, error, LBA 2004"
    );
    assert_eq!(
        page.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
        0,
        "checksum"
    );
    let v = r.expect(json!({"layer": "inject", "kind": "ncq_log_read"}));
    assert!(v.get("rule").is_none(), "no empty rule field: {v}");
    // Queued commands work again.
    r.t.run(
        0,
        7,
        &fpdma(opcode::READ_FPDMA_QUEUED, 7, 0, 8),
        &[(buf, 4096)],
        false,
    );
    r.t.run(0, 0, &log, &[(buf, 512)], false);
    assert_eq!(
        r.t.mem_read(buf, 1)[0],
        0x80,
        "the real drive has no NCQ error: NQ set"
    );
}

#[test]
fn abrt_on_the_nth_queued_write() {
    let mut r = rig(1, &["op=0x61,nth=2,error=abrt"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    r.t.run(
        0,
        0,
        &fpdma(opcode::WRITE_FPDMA_QUEUED, 0, 0, 1),
        &[(buf, 512)],
        true,
    );
    r.t.issue(
        0,
        1,
        &fpdma(opcode::WRITE_FPDMA_QUEUED, 1, 8, 1),
        &[(buf, 512)],
        true,
    );
    r.t.wait_until(|t| t.px_read(0, px::IS) & pxis::TFES != 0);
    assert_eq!(r.t.px_read(0, px::TFD), 0x0451);
    assert_eq!(r.t.px_read(0, px::SACT), 1 << 1);
    let s = rfis_sdb(&r.t);
    assert_eq!((s.status, s.error), (0x51, 0x04));
    recover(&mut r.t);
    let mut log = h2d(opcode::READ_LOG_DMA_EXT, 0x10, 1);
    log.device = 0;
    r.t.run(0, 0, &log, &[(buf, 512)], false);
    assert_eq!(&r.t.mem_read(buf, 4), &[1, 0, 0x51, 0x04]);
    // The third one is fine.
    r.t.run(
        0,
        2,
        &fpdma(opcode::WRITE_FPDMA_QUEUED, 2, 16, 1),
        &[(buf, 512)],
        true,
    );
}

#[test]
fn idnf_and_icrc_errors() {
    let mut r = rig(1, &["op=0xc8,error=idnf", "op=0x35,error=icrc"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    // READ DMA (28-bit): IDNF with the LBA, bits 27:24 in Device.
    let mut read = h2d(opcode::READ_DMA, 0x23_4567, 1);
    read.device = 0x41;
    r.t.issue(0, 0, &read, &[(buf, 512)], false);
    r.t.wait_idle(0);
    assert_eq!(r.t.px_read(0, px::TFD), 0x1051);
    let d = rfis_d2h(&r.t);
    assert_eq!((d.error, d.lba, d.device), (0x10, 0x23_4567, 0x41));
    recover(&mut r.t);
    r.t.issue(0, 0, &h2d(opcode::WRITE_DMA_EXT, 5, 1), &[(buf, 512)], true);
    r.t.wait_idle(0);
    assert_eq!(r.t.px_read(0, px::TFD), 0x8451, "ICRC with ABRT");
}

#[test]
fn delay_holds_a_completion_back() {
    let mut r = rig(1, &["op=read,delay=250"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    let t0 = Instant::now();
    r.t.issue(
        0,
        0,
        &h2d(opcode::READ_DMA_EXT, 0, 8),
        &[(buf, 4096)],
        false,
    );
    r.t.wait_until(|_| t0.elapsed() >= Duration::from_millis(150));
    assert_eq!(r.t.px_read(0, px::CI), 1, "still running at 150 ms");
    r.t.wait_idle(0);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert_eq!(r.t.px_read(0, px::IS) & pxis::FATAL, 0);
    assert_eq!(r.t.prdbc(0, 0), 4096);
    // NCQ: accepted at once (PxCI clears), PxSACT only after the delay.
    let t0 = Instant::now();
    r.t.issue(
        0,
        2,
        &fpdma(opcode::READ_FPDMA_QUEUED, 2, 0, 8),
        &[(buf, 4096)],
        false,
    );
    assert_eq!(
        (r.t.px_read(0, px::CI), r.t.px_read(0, px::SACT)),
        (0, 1 << 2)
    );
    r.t.wait_idle(0);
    assert!(t0.elapsed() >= Duration::from_millis(250));
    let v = r.expect(json!({"slot": 2, "layer": "inject", "kind": "delayed"}));
    assert!(v.get("rule").is_none(), "no empty rule field: {v}");
}

#[test]
fn drop_never_completes_until_the_engine_stops() {
    let mut r = rig(1, &["op=write,nth=2,drop"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    r.t.run(0, 0, &h2d(opcode::WRITE_DMA_EXT, 0, 1), &[(buf, 512)], true);
    r.t.issue(0, 1, &h2d(opcode::WRITE_DMA_EXT, 8, 1), &[(buf, 512)], true);
    let t0 = Instant::now();
    r.t.wait_until(|_| t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.t.px_read(0, px::CI), 1 << 1);
    assert_eq!(
        r.t.px_read(0, px::TFD) & 0xff,
        0xd0,
        "BSY: the device never answered"
    );
    let v = r.expect(json!({"slot": 1, "layer": "inject", "kind": "dropped"}));
    assert!(v.get("rule").is_none(), "no empty rule field: {v}");
    // The guest's timeout handling: stop the engine (PxCI clears), COMRESET, start again.
    r.t.stop_port(0);
    assert_eq!(r.t.px_read(0, px::CI), 0);
    r.t.px_write(0, px::SCTL, 1);
    r.t.px_write(0, px::SCTL, 0);
    recover(&mut r.t);
    r.t.run(
        0,
        2,
        &h2d(opcode::WRITE_DMA_EXT, 16, 1),
        &[(buf, 512)],
        true,
    );
}

#[test]
fn link_down_on_a_command_and_back() {
    let mut r = rig(1, &["op=read,lba=100,nth=1,link-down,for:300"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    r.t.px_write(0, px::IS, u32::MAX);
    let msis_before = r.t.sink.msis.lock().unwrap().len();
    let t0 = Instant::now();
    r.t.issue(
        0,
        0,
        &h2d(opcode::READ_DMA_EXT, 96, 8),
        &[(buf, 4096)],
        false,
    );
    r.t.wait_until(|t| t.px_read(0, px::IS) & pxis::PRCS != 0);
    assert_eq!(r.t.px_read(0, px::SSTS), 0, "DET 3 -> 0");
    assert_eq!(r.t.px_read(0, px::SERR), pxserr::DIAG_N | pxserr::ERR_C);
    assert_eq!(r.t.px_read(0, px::IS), pxis::PRCS);
    assert_eq!(
        r.t.px_read(0, px::CI),
        1,
        "the command is lost, not completed"
    );
    assert_eq!(r.t.read(hba::IS), 1);
    // A COMRESET does not bring back a device that is gone.
    r.t.stop_port(0);
    r.t.px_write(0, px::SCTL, 1);
    r.t.px_write(0, px::SCTL, 0);
    assert_eq!(r.t.px_read(0, px::SSTS), 0);
    r.t.wait_until(|t| t.px_read(0, px::SSTS) == 0x133);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        r.t.px_read(0, px::SERR),
        pxserr::DIAG_N | pxserr::ERR_C | pxserr::DIAG_X
    );
    assert_eq!(r.t.px_read(0, px::IS), pxis::PRCS | pxis::PCS);
    assert_eq!(r.t.px_read(0, px::SIG), 0x101);
    assert_eq!(
        r.t.px_read(0, px::TFD),
        0x150,
        "the signature's status and error"
    );
    let d = rfis_d2h(&r.t);
    assert_eq!((d.status, d.error, d.count, d.lba), (0x50, 0x01, 1, 1));
    assert!(
        r.t.sink.msis.lock().unwrap().len() > msis_before
            || r.t.sink.intx.load(std::sync::atomic::Ordering::SeqCst)
    );
    r.expect(json!({"layer": "inject", "kind": "link_down"}));
    r.expect(json!({"layer": "ahci", "kind": "link", "state": "lost", "pxserr": 0x0001_0200}));
    r.expect(json!({"layer": "ahci", "kind": "link", "state": "restored"}));
    // Recovery: the read works now (nth=1).
    recover(&mut r.t);
    r.t.run(
        0,
        0,
        &h2d(opcode::READ_DMA_EXT, 96, 8),
        &[(buf, 4096)],
        false,
    );
    assert_eq!(r.t.f.port_stats()[0].link_drops, 1);
}

#[test]
fn link_down_after_a_time() {
    let mut r = rig(1, &["link-down=after:100,for:200"]);
    r.t.start_port(0);
    let buf = TestHba::buf(0, 1);
    let t0 = Instant::now();
    r.t.run(
        0,
        0,
        &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
        &[(buf, 512)],
        false,
    );
    assert_eq!(r.t.px_read(0, px::SSTS), 0x133);
    r.t.wait_until(|t| t.px_read(0, px::SSTS) == 0);
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert_ne!(r.t.px_read(0, px::IS) & pxis::PRCS, 0);
    r.t.wait_until(|t| t.px_read(0, px::SSTS) == 0x133);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    recover(&mut r.t);
    r.t.run(
        0,
        0,
        &h2d(opcode::IDENTIFY_DEVICE, 0, 0),
        &[(buf, 512)],
        false,
    );
}
