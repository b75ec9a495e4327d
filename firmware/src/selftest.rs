//! The self-test: one report line per check, then the verdict.

use crate::ahci::{
    px, CmdError, Hba, Msg, Port, COMMAND_MS, FIS_D2H, FIS_SDB, RFIS_D2H, RFIS_SDB, SIG_ATA,
};
use crate::drive::{self, fpdma_fis, trimmed, Identity, Sg, ERR_IDNF, SECTOR};
use crate::mem::{phys_slice, Arena};
use crate::pci;
use crate::{println, text};

/// Where each check puts its data (all within the first 8 MiB of the disk).
const PIO_LBA: u64 = 64;
const PIO_SECTORS: u16 = 8;
const DMA_LBA: u64 = 1024;
const DMA_BYTES: u32 = 64 * 1024;
const NCQ_LBA: u64 = 4096;
const NCQ_STRIDE: u64 = 64;
const NCQ_SECTORS: u16 = 8;
const MIN_SECTORS: u64 = 16384;
/// Salts that make each check's data distinct from the others'.
const SALT_PIO: u64 = 0x5049_4f00;
const SALT_DMA: u64 = 0x444d_4100;
const SALT_NCQ: u64 = 0x4e43_5100;

/// Counts checks and prints their lines.
pub struct Report {
    pub checks: u32,
    pub failed: u32,
}

impl Report {
    pub fn record(&mut self, name: &str, result: Result<Msg, Msg>) -> bool {
        self.checks += 1;
        match result {
            Ok(detail) => {
                println!("PASS {name}: {detail}");
                true
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {name}: {why}");
                false
            }
        }
    }
}

fn cmd_err(what: &str, e: CmdError) -> Msg {
    text!("{what}: {e}")
}

/// Find the AHCI function (class 01.06.01) on bus 0, enable memory decoding and bus
/// mastering, return its ABAR.
pub fn find_controller() -> Result<(u64, Msg), Msg> {
    let mut found = None;
    let mut seen = text!("");
    pci::scan_bus0(|f, id, class| {
        let _ = core::fmt::Write::write_fmt(
            &mut seen,
            format_args!(
                " 00:{:02x}.{} {:04x}:{:04x} class {:06x};",
                f.dev,
                f.func,
                id & 0xffff,
                id >> 16,
                class >> 8
            ),
        );
        if found.is_none() && class >> 8 == 0x01_06_01 {
            found = Some((f, id));
        }
    });
    let Some((f, id)) = found else {
        return Err(text!(
            "no AHCI controller (class 01.06.01) on PCI bus 0; found:{seen}"
        ));
    };
    let mut bar = f.read32(pci::BAR5);
    if bar & 1 != 0 {
        return Err(text!("BAR5={bar:#x} is an I/O BAR, AHCI needs memory"));
    }
    if bar & 0x6 == 0x4 {
        return Err(text!("BAR5={bar:#x} is 64-bit, which BAR5 cannot be"));
    }
    if bar & !0xf == 0 {
        // Unassigned: place it ourselves in the MMIO hole.
        f.write32(pci::BAR5, 0xe000_0000);
        bar = f.read32(pci::BAR5);
    }
    let abar = u64::from(bar & !0xf);
    let cmd = f.read32(pci::COMMAND) & 0xffff;
    f.write32(
        pci::COMMAND,
        cmd | pci::CMD_MEMORY | pci::CMD_BUS_MASTER | pci::CMD_INTX_DISABLE,
    );
    Ok((
        abar,
        text!(
            "00:{:02x}.{} {:04x}:{:04x} ABAR={abar:#x}",
            f.dev,
            f.func,
            id & 0xffff,
            id >> 16
        ),
    ))
}

/// Bring the HBA up and every implemented port with a device; returns the ports that run.
fn bring_up(hba: &Hba, ports: &mut [Option<Port>; 32], report: &mut Report, tag: &str) -> u32 {
    let mut running = 0;
    for n in 0..32u32 {
        let Some(port) = ports[n as usize].as_ref() else {
            continue;
        };
        let name = text!("port{n} {tag}");
        match port.bring_up() {
            Ok(true) => {
                running |= 1 << n;
                report.record(
                    name.as_str(),
                    Ok(text!(
                        "engine running, PxSSTS={:#x} PxTFD={:#04x} PxSIG={:#010x}",
                        port.read(px::SSTS),
                        port.read(px::TFD),
                        port.read(px::SIG)
                    )),
                );
            }
            Ok(false) => println!(
                "SKIP port{n}: no device (PxSSTS={:#x})",
                port.read(px::SSTS)
            ),
            Err(e) => {
                report.record(name.as_str(), Err(e));
            }
        }
    }
    let _ = hba;
    running
}

/// Run every check; returns the report.
pub fn run(arena: &mut Arena) -> Report {
    let mut r = Report {
        checks: 0,
        failed: 0,
    };
    let abar = match find_controller() {
        Ok((abar, line)) => {
            r.record("pci", Ok(line));
            abar
        }
        Err(e) => {
            r.record("pci", Err(e));
            return r;
        }
    };
    let hba = match Hba::enable(abar) {
        Ok(h) => {
            r.record("hba", Ok(text!("{h}")));
            h
        }
        Err(e) => {
            r.record("hba", Err(e));
            return r;
        }
    };
    let mut ports: [Option<Port>; 32] = [const { None }; 32];
    for n in 0..32u32 {
        if hba.pi & (1 << n) != 0 {
            ports[n as usize] = Port::new(hba, n, arena);
        }
    }
    let running = bring_up(&hba, &mut ports, &mut r, "start");
    if running == 0 {
        r.record(
            "drives",
            Err(text!(
                "no implemented port (PI={:#x}) has a working device",
                hba.pi
            )),
        );
        return r;
    }
    let mut with_data = 0;
    for n in 0..32u32 {
        if running & (1 << n) == 0 {
            continue;
        }
        if let Some(port) = ports[n as usize].as_ref() {
            if port_checks(port, &hba, arena, &mut r) {
                with_data |= 1 << n;
            }
        }
    }
    hba_reset_check(&hba, &mut ports, running, with_data, arena, &mut r);
    r
}

/// The I/O checks on one port. Returns true if the dma check's data is on the disk (the HBA
/// reset check reads it back).
fn port_checks(port: &Port, hba: &Hba, arena: &mut Arena, r: &mut Report) -> bool {
    let n = port.n;
    if port.read(px::SIG) == crate::ahci::SIG_ATAPI {
        atapi_checks(port, arena, r);
        return false;
    }
    let mark = arena.mark();
    let Some(buf) = arena.alloc(512, 512) else {
        return false;
    };
    let id = match drive::identify(port, buf) {
        Err(e) => {
            r.record(
                text!("port{n} identify").as_str(),
                Err(cmd_err("IDENTIFY DEVICE", e)),
            );
            return false;
        }
        Ok(is) => {
            // SAFETY: buf is 512 bytes of arena memory written by the HBA.
            let id = Identity::parse(unsafe { phys_slice(buf, 512) });
            let pbc = port.prdbc(0);
            let why = if pbc != 512 {
                "PRDBC is not 512"
            } else if is & px::IS_PSS == 0 {
                "PxIS.PSS not set by the PIO Setup FIS"
            } else if !id.lba48 {
                "no 48-bit LBA support"
            } else if id.sectors < MIN_SECTORS {
                "the disk is smaller than the 16384 sectors the checks use"
            } else {
                ""
            };
            let ok = why.is_empty();
            let line = text!(
                "model=\"{}\" serial=\"{}\" sectors={} ncq={} lba48={} (PRDBC={pbc}, PxIS.PSS={}){}{}",
                trimmed(&id.model), trimmed(&id.serial), id.sectors, id.ncq_depth, id.lba48,
                (is & px::IS_PSS != 0) as u8, if ok { "" } else { ": " }, why
            );
            r.record(
                text!("port{n} identify").as_str(),
                if ok { Ok(line) } else { Err(line) },
            );
            if !ok {
                return false;
            }
            id
        }
    };

    r.record(text!("port{n} pio").as_str(), pio_check(port, arena));
    let dma_ok = r.record(text!("port{n} dma").as_str(), dma_check(port, arena));
    if dma_ok {
        let slots = hba.slots();
        r.record(
            text!("port{n} slots-{slots}").as_str(),
            slots_check(port, arena, slots),
        );
    }
    let depth = hba.slots().min(id.ncq_depth).min(32);
    let ncq_name = text!("port{n} ncq-{depth}");
    if hba.cap & crate::ahci::ghc::CAP_SNCQ == 0 || depth == 0 {
        r.record(
            ncq_name.as_str(),
            Err(text!("NCQ not supported (CAP.SNCQ or IDENTIFY word 76)")),
        );
    } else {
        r.record(ncq_name.as_str(), ncq_check(port, arena, depth));
    }
    let past_end = error_check(port, arena, id.sectors);
    r.record(text!("port{n} error-idnf").as_str(), past_end);
    r.record(
        text!("port{n} error-recovery").as_str(),
        recovery_check(port, arena, id.sectors),
    );
    r.record(
        text!("port{n} comreset").as_str(),
        comreset_check(port, arena),
    );
    arena.release(mark);
    dma_ok
}

/// An ATAPI port: IDENTIFY PACKET DEVICE and one READ(10) over PACKET DMA (no writes).
fn atapi_checks(port: &Port, arena: &mut Arena, r: &mut Report) {
    let n = port.n;
    let mark = arena.mark();
    let ok = r.record(
        text!("port{n} identify-packet").as_str(),
        crate::atapi::identify_packet(port, arena),
    );
    if ok {
        match crate::atapi::read10_dma(port, arena) {
            Ok(Some(line)) => {
                r.record(text!("port{n} atapi-read10-dma").as_str(), Ok(line));
            }
            Ok(None) => println!("SKIP port{n} atapi-read10-dma: no disc in the drive"),
            Err(e) => {
                r.record(text!("port{n} atapi-read10-dma").as_str(), Err(e));
            }
        }
    }
    arena.release(mark);
}

fn alloc(arena: &mut Arena, len: u64) -> Result<u64, Msg> {
    arena
        .alloc(len, 4096)
        .ok_or_else(|| text!("out of DMA arena memory"))
}

fn pio_check(port: &Port, arena: &mut Arena) -> Result<Msg, Msg> {
    let bytes = u32::from(PIO_SECTORS) * SECTOR as u32;
    let out = Sg::scattered(arena, &[bytes]).ok_or_else(|| text!("out of arena"))?;
    out.fill(PIO_LBA, SALT_PIO);
    let is = drive::rw(
        port,
        drive::WRITE_SECTORS_EXT,
        PIO_LBA,
        PIO_SECTORS,
        out.entries(),
    )
    .map_err(|e| cmd_err("WRITE SECTORS EXT", e))?;
    let w_pbc = port.prdbc(0);
    if w_pbc != bytes {
        return Err(text!("WRITE SECTORS EXT: PRDBC={w_pbc}, expected {bytes}"));
    }
    let back = Sg::scattered(arena, &[1536, bytes - 1536]).ok_or_else(|| text!("out of arena"))?;
    drive::rw(
        port,
        drive::READ_SECTORS_EXT,
        PIO_LBA,
        PIO_SECTORS,
        back.entries(),
    )
    .map_err(|e| cmd_err("READ SECTORS EXT", e))?;
    let r_pbc = port.prdbc(0);
    if r_pbc != bytes {
        return Err(text!("READ SECTORS EXT: PRDBC={r_pbc}, expected {bytes}"));
    }
    if let Some(at) = back.verify(PIO_LBA, SALT_PIO) {
        return Err(text!("data mismatch at byte {at} of {bytes}"));
    }
    Ok(text!("{PIO_SECTORS} sectors at LBA {PIO_LBA} written and read back by PIO, PRDBC={r_pbc}, PxIS.PSS={}", (is & px::IS_PSS != 0) as u8))
}

fn dma_check(port: &Port, arena: &mut Arena) -> Result<Msg, Msg> {
    let count = (DMA_BYTES / SECTOR as u32) as u16;
    let out_sizes = [4096, 510, 2, 8192, 1536, 16384, 2048, 32768];
    let in_sizes = [1000, 3096, 20480, 512, 40448];
    let out = Sg::scattered(arena, &out_sizes).ok_or_else(|| text!("out of arena"))?;
    out.fill(DMA_LBA, SALT_DMA);
    let is = drive::rw(port, drive::WRITE_DMA_EXT, DMA_LBA, count, out.entries())
        .map_err(|e| cmd_err("WRITE DMA EXT", e))?;
    let pbc = port.prdbc(0);
    if pbc != DMA_BYTES {
        return Err(text!("WRITE DMA EXT: PRDBC={pbc}, expected {DMA_BYTES}"));
    }
    if is & px::IS_DHRS == 0 {
        return Err(text!(
            "WRITE DMA EXT: PxIS.DHRS not set on completion (PxIS={is:#x})"
        ));
    }
    let back = Sg::scattered(arena, &in_sizes).ok_or_else(|| text!("out of arena"))?;
    drive::rw(port, drive::READ_DMA_EXT, DMA_LBA, count, back.entries())
        .map_err(|e| cmd_err("READ DMA EXT", e))?;
    let pbc = port.prdbc(0);
    if pbc != DMA_BYTES {
        return Err(text!("READ DMA EXT: PRDBC={pbc}, expected {DMA_BYTES}"));
    }
    if let Some(at) = back.verify(DMA_LBA, SALT_DMA) {
        return Err(text!("data mismatch at byte {at} of {DMA_BYTES}"));
    }
    let d2h = port.rfis()[RFIS_D2H];
    if d2h != FIS_D2H {
        return Err(text!(
            "no D2H Register FIS in the received-FIS area (byte 0x40 = {d2h:#x})"
        ));
    }
    Ok(text!(
        "{DMA_BYTES} bytes at LBA {DMA_LBA}: written over {} PRDs, read back over {}, PRDBC={pbc}",
        out.n,
        back.n
    ))
}

fn ncq_check(port: &Port, arena: &mut Arena, depth: u32) -> Result<Msg, Msg> {
    let bytes = u32::from(NCQ_SECTORS) * SECTOR as u32;
    let mask = if depth >= 32 {
        u32::MAX
    } else {
        (1u32 << depth) - 1
    };
    let mut bufs = [0u64; 32];
    for b in bufs.iter_mut().take(depth as usize) {
        *b = alloc(arena, u64::from(bytes))?;
    }
    let lba = |tag: u32| NCQ_LBA + u64::from(tag) * NCQ_STRIDE;
    let sg = |tag: u32| Sg {
        prdt: {
            let mut p = [(0, 0); crate::ahci::MAX_PRDT];
            p[0] = (bufs[tag as usize], bytes);
            p
        },
        n: 1,
    };
    for tag in 0..depth {
        sg(tag).fill(lba(tag), SALT_NCQ + u64::from(tag));
        port.prepare(
            tag,
            &fpdma_fis(true, tag, lba(tag), NCQ_SECTORS),
            true,
            sg(tag).entries(),
        );
    }
    // SAFETY: the FIS area is this port's arena memory; clearing the SDB FIS copy lets us see
    // the HBA write a fresh one.
    unsafe { phys_slice(port.fb + RFIS_SDB as u64, 8).fill(0) };
    port.write(px::IS, 0xffff_ffff);
    port.issue(mask, true);
    port.wait(mask, true, COMMAND_MS)
        .map_err(|e| cmd_err(text!("{depth} x WRITE FPDMA QUEUED").as_str(), e))?;
    let is = port.read(px::IS);
    let sdb = port.rfis()[RFIS_SDB];
    if is & px::IS_SDBS == 0 || sdb != FIS_SDB {
        return Err(text!("writes completed without a Set Device Bits FIS: PxIS={is:#x}, FIS area byte 0x58={sdb:#x}"));
    }
    for tag in 0..depth {
        sg(tag).zero();
        port.prepare(
            tag,
            &fpdma_fis(false, tag, lba(tag), NCQ_SECTORS),
            false,
            sg(tag).entries(),
        );
    }
    unsafe { phys_slice(port.fb + RFIS_SDB as u64, 8).fill(0) };
    port.write(px::IS, 0xffff_ffff);
    port.issue(mask, true);
    port.wait(mask, true, COMMAND_MS)
        .map_err(|e| cmd_err(text!("{depth} x READ FPDMA QUEUED").as_str(), e))?;
    let is = port.read(px::IS);
    let sdb = port.rfis();
    if is & px::IS_SDBS == 0 || sdb[RFIS_SDB] != FIS_SDB {
        return Err(text!(
            "reads completed without a Set Device Bits FIS: PxIS={is:#x}, FIS area byte 0x58={:#x}",
            sdb[RFIS_SDB]
        ));
    }
    let sdb_sactive = u32::from_le_bytes([
        sdb[RFIS_SDB + 4],
        sdb[RFIS_SDB + 5],
        sdb[RFIS_SDB + 6],
        sdb[RFIS_SDB + 7],
    ]);
    if sdb_sactive & !mask != 0 || sdb_sactive == 0 {
        return Err(text!(
            "last SDB FIS completes tags {sdb_sactive:#x}, outside the issued {mask:#x}"
        ));
    }
    for tag in 0..depth {
        if let Some(at) = sg(tag).verify(lba(tag), SALT_NCQ + u64::from(tag)) {
            return Err(text!("slot {tag} data mismatch at byte {at}"));
        }
    }
    port.write(px::IS, 0xffff_ffff);
    Ok(text!(
        "{depth} WRITE FPDMA + {depth} READ FPDMA issued at once (PxSACT=PxCI={mask:#x}), all completed via SDB FIS, data verified"
    ))
}

/// A non-queued READ DMA EXT through each command slot in turn: the slot's PxCI bit clears,
/// its PRDBC is written, the data is the dma check's.
fn slots_check(port: &Port, arena: &mut Arena, slots: u32) -> Result<Msg, Msg> {
    const BYTES: u32 = 4096;
    let buf = Sg::scattered(arena, &[BYTES]).ok_or_else(|| text!("out of arena"))?;
    let fis = drive::h2d(drive::READ_DMA_EXT, DMA_LBA, (BYTES / SECTOR as u32) as u16);
    for slot in 0..slots {
        buf.zero();
        port.write(px::IS, 0xffff_ffff);
        port.prepare(slot, &fis, false, buf.entries());
        port.issue(1 << slot, false);
        port.wait(1 << slot, false, COMMAND_MS)
            .map_err(|e| cmd_err(text!("READ DMA EXT in slot {slot}").as_str(), e))?;
        let pbc = port.prdbc(slot);
        if pbc != BYTES {
            return Err(text!("slot {slot}: PRDBC={pbc}, expected {BYTES}"));
        }
        if let Some(at) = buf.verify(DMA_LBA, SALT_DMA) {
            return Err(text!("slot {slot} data mismatch at byte {at}"));
        }
    }
    port.write(px::IS, 0xffff_ffff);
    Ok(text!("READ DMA EXT completed in each of the {slots} slots (PxCI bit cleared, PRDBC={BYTES}, data verified)"))
}

/// READ DMA EXT of the sector past the end must fail with a task file error and stop the
/// engine (AHCI 6.2.2.1). ACS-3 says the drive reports IDNF; the report says whether it did,
/// since a real drive behind pass-through answers for itself (QEMU's disk says ABRT).
fn error_check(port: &Port, arena: &mut Arena, sectors: u64) -> Result<Msg, Msg> {
    let buf = alloc(arena, 512)?;
    match drive::rw(port, drive::READ_DMA_EXT, sectors, 1, &[(buf, 512)]) {
        Ok(_) => Err(text!(
            "READ DMA EXT at LBA {sectors} (one past the end) succeeded"
        )),
        Err(CmdError::Error {
            is, tfd, serr, ci, ..
        }) => {
            let err = tfd >> 8;
            let ok = is & px::IS_TFES != 0
                && tfd & px::STS_ERR != 0
                && err != 0
                && ci & 1 != 0
                && serr == 0;
            let line = text!(
                "READ DMA EXT at LBA {sectors}: PxIS.TFES={} PxTFD.STS={:#04x} ERR={err:#04x} ({}) PxCI={ci:#x} PxSERR={serr:#x}",
                (is & px::IS_TFES != 0) as u8, tfd & 0xff,
                if err & ERR_IDNF != 0 { "IDNF set" } else { "no IDNF: the drive's own answer, ACS-3 says IDNF" }
            );
            if ok {
                Ok(line)
            } else {
                Err(line)
            }
        }
        Err(e) => Err(cmd_err(
            "READ DMA EXT past the end: expected a task file error, got",
            e,
        )),
    }
}

/// The documented recovery, then reads that work: the last sector, and the DMA check's data.
fn recovery_check(port: &Port, arena: &mut Arena, sectors: u64) -> Result<Msg, Msg> {
    let note = port.recover()?;
    let buf = alloc(arena, 512)?;
    drive::rw(port, drive::READ_DMA_EXT, sectors - 1, 1, &[(buf, 512)])
        .map_err(|e| cmd_err("READ DMA EXT of the last LBA after recovery", e))?;
    verify_dma_data(port, arena)?;
    Ok(text!(
        "engine restarted ({note}); last LBA {} and the DMA check's data read fine",
        sectors - 1
    ))
}

fn verify_dma_data(port: &Port, arena: &mut Arena) -> Result<(), Msg> {
    let back = Sg::scattered(arena, &[DMA_BYTES]).ok_or_else(|| text!("out of arena"))?;
    drive::rw(
        port,
        drive::READ_DMA_EXT,
        DMA_LBA,
        (DMA_BYTES / SECTOR as u32) as u16,
        back.entries(),
    )
    .map_err(|e| cmd_err("READ DMA EXT", e))?;
    match back.verify(DMA_LBA, SALT_DMA) {
        Some(at) => Err(text!("data written by the dma check differs at byte {at}")),
        None => Ok(()),
    }
}

fn comreset_check(port: &Port, arena: &mut Arena) -> Result<Msg, Msg> {
    // Clear the D2H copy so the signature FIS's arrival is visible.
    port.rfis()[RFIS_D2H..RFIS_D2H + 20].fill(0);
    port.comreset()?;
    if !crate::time::wait_for(COMMAND_MS, || {
        port.read(px::SIG) == SIG_ATA && port.read(px::TFD) & (px::STS_BSY | px::STS_DRQ) == 0
    }) {
        return Err(text!(
            "after COMRESET: PxSIG={:#010x} PxTFD={:#06x}, expected signature {SIG_ATA:#x} and BSY/DRQ clear",
            port.read(px::SIG), port.read(px::TFD)
        ));
    }
    let fis = port.rfis();
    let (kind, count, lba_low) = (fis[RFIS_D2H], fis[RFIS_D2H + 12], fis[RFIS_D2H + 4]);
    if kind != FIS_D2H || count != 1 || lba_low != 1 {
        return Err(text!(
            "signature D2H FIS not in the FIS area: type={kind:#x} count={count} lba_low={lba_low}"
        ));
    }
    port.clear_errors();
    port.start_engine()?;
    verify_dma_data(port, arena)?;
    Ok(text!(
        "PxSSTS.DET=3, PxSIG={:#010x}, signature D2H FIS received, I/O works again",
        port.read(px::SIG)
    ))
}

fn hba_reset_check(
    hba: &Hba,
    ports: &mut [Option<Port>; 32],
    before: u32,
    with_data: u32,
    arena: &mut Arena,
    r: &mut Report,
) {
    if let Err(e) = hba.reset() {
        r.record("hba-reset", Err(e));
        return;
    }
    let cap = hba.regs.read32(crate::ahci::ghc::CAP);
    let pi = hba.regs.read32(crate::ahci::ghc::PI);
    let mut running_after = 0;
    let mut err = None;
    for n in 0..32u32 {
        if before & (1 << n) == 0 {
            continue;
        }
        let Some(port) = ports[n as usize].as_ref() else {
            continue;
        };
        let st = port.read(px::CMD) & (px::CMD_ST | px::CMD_FRE);
        if st != 0 && err.is_none() {
            err = Some(text!(
                "port{n}: PxCMD.ST/FRE still set after GHC.HR (PxCMD={:#x})",
                port.read(px::CMD)
            ));
        }
        match port.bring_up() {
            Ok(true) if with_data & (1 << n) == 0 => running_after |= 1 << n,
            Ok(true) => match verify_dma_data(port, arena) {
                Ok(()) => running_after |= 1 << n,
                Err(e) => err = err.or(Some(text!("port{n}: {e}"))),
            },
            Ok(false) => err = err.or(Some(text!("port{n}: device gone after HBA reset"))),
            Err(e) => err = err.or(Some(text!("port{n}: {e}"))),
        }
    }
    let result = match err {
        Some(e) => Err(e),
        None if cap != hba.cap || pi != hba.pi => Err(text!("CAP/PI changed across reset: {cap:#x}/{pi:#x}")),
        None => Ok(text!("GHC.HR cleared, AE set again, ports {running_after:#x} restarted, ports {with_data:#x} read back the dma check's data")),
    };
    r.record("hba-reset", result);
}
