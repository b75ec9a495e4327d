//! Run `ahci_mmio` inputs (files or directories of them) without libFuzzer, e.g. to replay a
//! crash under a debugger or to check the seed corpus:
//! cargo run --manifest-path fuzz/Cargo.toml --example replay -- fuzz/corpus/ahci_mmio

use std::path::Path;

fn run(path: &Path) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("read directory")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        entries.iter().for_each(|p| run(p));
        return;
    }
    let data = std::fs::read(path).expect("read input");
    let start = std::time::Instant::now();
    satavm_fuzz::harness::run(&data);
    println!("{}: ok ({:?})", path.display(), start.elapsed());
}

fn main() {
    for arg in std::env::args_os().skip(1) {
        run(Path::new(&arg));
    }
}
