//! What tracing costs: the same NCQ workload through the AHCI function and the real emulated
//! drive (in-process, no KVM), with tracing off, to a JSON file, and to JSON plus text.
//!
//! `cargo run --release --example trace_cost [COMMANDS]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use satavm::ahci::regs::port as px;
use satavm::ahci::Observers;
use satavm::ata::command::opcode;
use satavm::pci::config::{command, offset};
use satavm::pci::PciFunction;
use satavm::trace::{Format, Sink, Tracer};

/// Run `n` 4 KiB READ FPDMA QUEUED at queue depth 32; returns commands per second.
fn run(observers: Observers, n: u32) -> f64 {
    let mut t = TestHba::new_observed(1, observers, &[]);
    let cmd = command::MEMORY_SPACE | command::BUS_MASTER;
    t.f.config_write(offset::COMMAND, &cmd.to_le_bytes());
    t.start_port(0);
    let start = Instant::now();
    let mut issued = 0u32;
    let mut lba = 0u64;
    while issued < n {
        for tag in 0..32u8 {
            let buf = DATA + u64::from(tag) * 4096;
            lba = (lba + 8 * 7919) % (IMAGE_SECTORS - 8);
            t.prepare(
                0,
                tag,
                &fpdma(opcode::READ_FPDMA_QUEUED, tag, lba, 8),
                &[(buf, 4096)],
                0,
            );
            t.px_write(0, px::SACT, 1 << tag);
            t.px_write(0, px::CI, 1 << tag);
        }
        issued += 32;
        t.wait_until(|t| t.px_read(0, px::SACT) == 0);
        t.px_write(0, px::IS, u32::MAX);
    }
    f64::from(issued) / start.elapsed().as_secs_f64()
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64_000);
    let dir = std::env::temp_dir();
    let json = dir.join(format!("satavm-trace-cost-{}.jsonl", std::process::id()));
    let text = dir.join(format!("satavm-trace-cost-{}.txt", std::process::id()));
    let file = |p: &std::path::Path| -> Box<dyn std::io::Write + Send> {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::fs::File::create(p).unwrap(),
        ))
    };
    for round in 0..3 {
        let off = run(Observers::default(), n);
        let on = run(
            Observers {
                tracer: Tracer::new(vec![Sink::new(Format::Json, file(&json))]),
                ..Default::default()
            },
            n,
        );
        let both = run(
            Observers {
                tracer: Tracer::new(vec![
                    Sink::new(Format::Json, file(&json)),
                    Sink::new(Format::Human, file(&text)),
                ]),
                ..Default::default()
            },
            n,
        );
        let lines = std::fs::read_to_string(&json).map_or(0, |s| s.lines().count());
        println!(
            "round {round}: {n} x 4K NCQ reads QD32: off {off:.0} cmds/s, JSON {on:.0} cmds/s ({:.0}%), JSON+text {both:.0} cmds/s ({:.0}%); {} trace lines per command",
            100.0 * on / off,
            100.0 * both / off,
            lines as u64 / u64::from(n)
        );
    }
    let _ = std::fs::remove_file(json);
    let _ = std::fs::remove_file(text);
}
