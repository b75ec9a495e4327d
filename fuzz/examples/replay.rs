//! Run fuzz inputs without libFuzzer, e.g. to replay a crash under a debugger, or the whole
//! seed corpus (the test command does: `--all`).
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --example replay -- [--target NAME] FILE_OR_DIR...
//!   cargo run --manifest-path fuzz/Cargo.toml --example replay -- --all
//!   cargo run --release --manifest-path fuzz/Cargo.toml --example replay -- --repeat 20 --quiet corpus/ahci_mmio
//!
//! Without --target, the target is the name of the directory an input is in
//! (`corpus/<target>/...`, `artifacts/<target>/...`); `--all` replays every
//! `fuzz/corpus/<target>/` with its target; `--repeat N` runs every input N times (to measure).
//! Prints each input with its time (not with `--quiet`) and, at the end, the executions per
//! second of each target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use satavm_fuzz::targets;

fn inputs(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        entries.iter().for_each(|p| inputs(p, out));
    } else {
        out.push(path.to_path_buf());
    }
}

/// The target an input belongs to by where it lies.
fn target_of(path: &Path) -> Option<&'static str> {
    path.ancestors()
        .filter_map(|a| a.file_name()?.to_str())
        .find_map(|n| targets::NAMES.iter().find(|t| **t == n).copied())
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut forced: Option<&'static str> = None;
    let mut paths = Vec::new();
    let (mut repeat, mut quiet) = (1u32, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--target" => {
                let name = args.next().expect("--target NAME");
                forced = Some(
                    targets::NAMES
                        .iter()
                        .find(|t| **t == name)
                        .copied()
                        .unwrap_or_else(|| panic!("unknown target {name}: {:?}", targets::NAMES)),
                );
            }
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--repeat N");
            }
            "--quiet" => quiet = true,
            "--all" => {
                let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
                paths.extend(targets::NAMES.iter().map(|t| corpus.join(t)));
            }
            _ => paths.push(PathBuf::from(a)),
        }
    }
    assert!(
        !paths.is_empty(),
        "nothing to replay (FILE_OR_DIR..., or --all)"
    );
    let mut files = Vec::new();
    for p in &paths {
        inputs(p, &mut files);
    }
    let mut totals: BTreeMap<&str, (u32, Duration)> = BTreeMap::new();
    for f in &files {
        let name = forced
            .or_else(|| target_of(f))
            .unwrap_or_else(|| panic!("{}: which target? (--target NAME)", f.display()));
        let run = targets::by_name(name).expect("a known target");
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let start = Instant::now();
        for _ in 0..repeat {
            run(&data);
        }
        let took = start.elapsed();
        if !quiet {
            println!("{name} {}: ok ({:?} each)", f.display(), took / repeat);
        }
        let t = totals.entry(name).or_default();
        t.0 += repeat;
        t.1 += took;
    }
    for (name, (n, t)) in totals {
        println!(
            "{name}: {n} inputs in {t:?} ({:.0} exec/s)",
            f64::from(n) / t.as_secs_f64().max(1e-9)
        );
    }
}
