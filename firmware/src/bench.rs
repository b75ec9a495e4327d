//! Benchmark mode: commands/s and MB/s at queue depth 1 and 32, timed with the TSC.
//! Runs on the first port with a device; reads only, except the marked write rows.

use crate::ahci::{px, CmdError, Hba, Port, COMMAND_MS};
use crate::drive::{self, fpdma_fis, h2d, Identity, SECTOR};
use crate::mem::{phys_slice, Arena};
use crate::time::{rdtsc, tsc_per_ms, us_between};
use crate::{println, text};

/// Each row runs for this long (or `MAX_OPS` commands).
const ROW_MS: u64 = 1000;
const MAX_OPS: u64 = 200_000;

struct Row {
    name: &'static str,
    write: bool,
    ncq: bool,
    depth: u32,
    bytes: u32,
    random: bool,
}

const ROWS: [Row; 8] = [
    Row {
        name: "4K random read, DMA EXT",
        write: false,
        ncq: false,
        depth: 1,
        bytes: 4096,
        random: true,
    },
    Row {
        name: "4K random read, NCQ",
        write: false,
        ncq: true,
        depth: 1,
        bytes: 4096,
        random: true,
    },
    Row {
        name: "4K random read, NCQ",
        write: false,
        ncq: true,
        depth: 32,
        bytes: 4096,
        random: true,
    },
    Row {
        name: "128K seq read, NCQ",
        write: false,
        ncq: true,
        depth: 1,
        bytes: 128 * 1024,
        random: false,
    },
    Row {
        name: "128K seq read, NCQ",
        write: false,
        ncq: true,
        depth: 32,
        bytes: 128 * 1024,
        random: false,
    },
    Row {
        name: "1M seq read, DMA EXT",
        write: false,
        ncq: false,
        depth: 1,
        bytes: 1024 * 1024,
        random: false,
    },
    Row {
        name: "4K random write, NCQ",
        write: true,
        ncq: true,
        depth: 1,
        bytes: 4096,
        random: true,
    },
    Row {
        name: "4K random write, NCQ",
        write: true,
        ncq: true,
        depth: 32,
        bytes: 4096,
        random: true,
    },
];

struct Lba {
    state: u64,
    next_seq: u64,
    span: u64,
}

impl Lba {
    fn next(&mut self, sectors: u64, random: bool) -> u64 {
        let slots = (self.span / sectors).max(1);
        if random {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            (self.state % slots) * sectors
        } else {
            let lba = self.next_seq;
            self.next_seq = if lba + 2 * sectors > self.span {
                0
            } else {
                lba + sectors
            };
            lba
        }
    }
}

fn prepare(port: &Port, row: &Row, slot: u32, lba: u64, buf: u64) {
    let sectors = (row.bytes as usize / SECTOR) as u16;
    let prdt = [(buf, row.bytes)];
    if row.ncq {
        port.prepare(
            slot,
            &fpdma_fis(row.write, slot, lba, sectors),
            row.write,
            &prdt,
        );
    } else {
        let cmd = if row.write {
            drive::WRITE_DMA_EXT
        } else {
            drive::READ_DMA_EXT
        };
        port.prepare(slot, &h2d(cmd, lba, sectors), row.write, &prdt);
    }
}

/// Run one row; returns (commands, microseconds).
fn run_row(
    port: &Port,
    row: &Row,
    bufs: &[u64; 32],
    lbas: &mut Lba,
) -> Result<(u64, u64), CmdError> {
    let sectors = u64::from(row.bytes) / SECTOR as u64;
    let depth = row.depth.clamp(1, 32);
    let all = if depth == 32 {
        u32::MAX
    } else {
        (1 << depth) - 1
    };
    let start = rdtsc();
    let end = start + ROW_MS * tsc_per_ms();
    let mut issued = 0u32;
    let mut ops = 0u64;
    let mut started = 0u64;
    port.write(px::IS, 0xffff_ffff);
    loop {
        // Refill every free slot while time remains.
        let mut batch = 0u32;
        if rdtsc() < end && started < MAX_OPS {
            let mut free = all & !issued;
            while free != 0 {
                let slot = free.trailing_zeros();
                free &= free - 1;
                prepare(
                    port,
                    row,
                    slot,
                    lbas.next(sectors, row.random),
                    bufs[slot as usize],
                );
                batch |= 1 << slot;
                started += 1;
            }
        }
        if batch != 0 {
            port.issue(batch, row.ncq);
            issued |= batch;
        }
        if issued == 0 {
            break;
        }
        if depth == 1 {
            port.wait(issued, row.ncq, COMMAND_MS)?;
            ops += 1;
            issued = 0;
            continue;
        }
        // Wait for at least one completion.
        let poll_end = rdtsc() + COMMAND_MS * tsc_per_ms();
        loop {
            let is = port.read(px::IS);
            if is & px::IS_ERRORS != 0 {
                return port.wait(issued, row.ncq, 0).map(|_| (0, 0));
            }
            let busy = port.read(px::SACT) | port.read(px::CI);
            let done = issued & !busy;
            if done != 0 {
                ops += u64::from(done.count_ones());
                issued &= !done;
                break;
            }
            if rdtsc() > poll_end {
                return port.wait(issued, row.ncq, 0).map(|_| (0, 0));
            }
        }
        port.write(px::IS, px::IS_SDBS | px::IS_DHRS);
    }
    Ok((ops, us_between(start, rdtsc())))
}

/// Benchmark mode. Returns the exit code.
pub fn run(arena: &mut Arena) -> u32 {
    let (hba, port) = match find_port(arena) {
        Ok(v) => v,
        Err(e) => {
            println!("satavm-selftest: bench: {e}");
            return 1;
        }
    };
    let Some(id_buf) = arena.alloc(512, 512) else {
        return 1;
    };
    if let Err(e) = drive::identify(&port, id_buf) {
        println!("satavm-selftest: bench: IDENTIFY DEVICE: {e}");
        return 1;
    }
    // SAFETY: 512 bytes of arena memory written by the HBA.
    let id = Identity::parse(unsafe { phys_slice(id_buf, 512) });
    let mut bufs = [0u64; 32];
    for b in bufs.iter_mut() {
        match arena.alloc(1024 * 1024, 4096) {
            Some(a) => *b = a,
            None => {
                println!("satavm-selftest: bench: out of DMA arena memory");
                return 1;
            }
        }
    }
    let ncq = hba.cap & crate::ahci::ghc::CAP_SNCQ != 0 && id.ncq_depth > 0;
    let max_depth = hba.slots().min(if ncq { id.ncq_depth } else { 1 });
    println!(
        "satavm-selftest: benchmark on port{} \"{}\", {} sectors, TSC {} kHz; {} ms per row",
        port.n,
        drive::trimmed(&id.model),
        id.sectors,
        tsc_per_ms(),
        ROW_MS
    );
    println!(
        "  {:<26} {:>3} {:>8} {:>9} {:>10} {:>9}",
        "test", "QD", "cmds", "time ms", "cmds/s", "MB/s"
    );
    let mut lbas = Lba {
        state: 0x2545_f491_4f6c_dd1d,
        next_seq: 0,
        span: id.sectors.min(1 << 30),
    };
    let mut failed = false;
    for row in ROWS.iter() {
        if (row.ncq && !ncq) || row.depth > max_depth {
            println!(
                "  {:<26} {:>3} skipped (queue depth {} not available)",
                row.name, row.depth, max_depth
            );
            continue;
        }
        match run_row(&port, row, &bufs, &mut lbas) {
            Ok((ops, us)) => {
                let us = us.max(1);
                let per_s = ops * 1_000_000 / us;
                // bytes per microsecond = MB/s; one decimal.
                let mb10 = ops * u64::from(row.bytes) * 10 / us;
                println!(
                    "  {:<26} {:>3} {:>8} {:>9} {:>10} {:>7}.{}",
                    row.name,
                    row.depth,
                    ops,
                    us / 1000,
                    per_s,
                    mb10 / 10,
                    mb10 % 10
                );
            }
            Err(e) => {
                println!("  {:<26} {:>3} FAILED: {}", row.name, row.depth, e);
                failed = true;
                let _ = port.recover();
            }
        }
    }
    let _ = text!("");
    if failed {
        1
    } else {
        0
    }
}

fn find_port(arena: &mut Arena) -> Result<(Hba, Port), crate::ahci::Msg> {
    let (abar, _) = crate::selftest::find_controller()?;
    let hba = Hba::enable(abar)?;
    for n in 0..32u32 {
        if hba.pi & (1 << n) == 0 {
            continue;
        }
        let port = Port::new(hba, n, arena).ok_or_else(|| text!("out of DMA arena memory"))?;
        // A disk only: an ATAPI port (a CD/DVD drive) is not benchmarked.
        if port.bring_up()? && port.read(crate::ahci::px::SIG) != crate::ahci::SIG_ATAPI {
            return Ok((hba, port));
        }
    }
    Err(text!("no port with a device"))
}
