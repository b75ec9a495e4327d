//! Preparing a boot: the host packages, the Debian kernels and QEMU (fetched into the cache),
//! the initramfs bases, and per boot the payload (satavm, the scenarios, the settings) and
//! the machine description ([`Prepared`]) the boot loop runs.
//!
//! [`prepare`] is `scripts/rig prepare`; [`boot`] is what `run`, `shell` and `satavm` do
//! before booting, and what tests/rig.rs calls for each of its boots.

pub mod apt;
pub mod cpio;
pub mod host;
pub mod initramfs;
pub mod kernel;
pub mod knobs;
pub mod modules;
pub mod payload;
pub mod qemu;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub use knobs::Knobs;
pub use payload::Mode;

use crate::prepared::Prepared;
use crate::Error;
use host::Log;

/// What `prepare` made ready: the kernels, the QEMU, the bases.
#[derive(Debug, Clone)]
pub struct Host {
    pub l1: kernel::Kernel,
    pub l2: kernel::Kernel,
    pub qemu: qemu::Qemu,
    pub l1_base: PathBuf,
    pub l2_base: PathBuf,
    /// Seconds it took.
    pub secs: f64,
}

/// Installs missing packages, fetches the kernels and QEMU into the cache, builds the
/// initramfs bases. Idempotent; what is cached and current is kept.
pub fn prepare(knobs: &Knobs, log: Log<'_>) -> Result<Host, Error> {
    let t0 = Instant::now();
    for dir in [knobs.cache(), knobs.build(), knobs.logs.clone()] {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let mut apt = apt::Apt::new(&knobs.cache());
    apt.ensure_packages(apt::PACKAGES, log)?;
    let l2 = kernel::fetch(&mut apt, &knobs.cache(), knobs.l2_kernel, log)?;
    let l1 = if knobs.l1_kernel == knobs.l2_kernel {
        l2.clone()
    } else {
        kernel::fetch(&mut apt, &knobs.cache(), knobs.l1_kernel, log)?
    };
    let qemu = qemu::resolve(&mut apt, &knobs.cache(), knobs.qemu, log)?;
    let t_fetch = t0.elapsed().as_secs_f64();
    let l2_base = initramfs::l2_base(knobs, &l2, log)?;
    let l1_base = initramfs::l1_base(knobs, &l1, &l2, log)?;
    let secs = t0.elapsed().as_secs_f64();
    log(&format!(
        "prepared L1 {}, L2 {}, QEMU {} in {secs:.1} s (packages and kernels: {t_fetch:.1} s)",
        l1.package, l2.package, qemu.version
    ));
    Ok(Host {
        l1,
        l2,
        qemu,
        l1_base,
        l2_base,
        secs,
    })
}

/// Which satavm L1 gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Satavm {
    /// `cargo build --release --bin satavm` (a no-op when fresh: a binary left from older
    /// sources would otherwise be what L1 runs), then target/release/satavm.
    Build,
    Path(PathBuf),
    /// None (L1-only scenarios, an L1 shell).
    None,
}

/// The satavm binary `satavm` names (built first for [`Satavm::Build`]).
pub fn resolve_satavm(
    knobs: &Knobs,
    satavm: &Satavm,
    log: Log<'_>,
) -> Result<Option<PathBuf>, Error> {
    let path = match satavm {
        Satavm::None => return Ok(None),
        Satavm::Path(p) => p.clone(),
        Satavm::Build => {
            log("building satavm (cargo build --release)");
            host::status(
                Command::new("cargo")
                    .args(["build", "--release", "--bin", "satavm"])
                    .current_dir(&knobs.repo),
            )?;
            knobs.target_dir.join("release/satavm")
        }
    };
    let real = path
        .canonicalize()
        .map_err(|_| Error::Prepare(format!("no satavm binary at {}", path.display())))?;
    Ok(Some(real))
}

/// A prepared boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub prepared: Prepared,
    /// The scenarios (Run mode).
    pub names: Vec<String>,
    /// QEMU's wall-clock limit for a Run boot: 120 s + each scenario's limit.
    pub overall: Duration,
}

/// Everything one boot needs: [`prepare`], satavm, the payload, the machine description
/// (also written to build/prepared.env, for people). `Mode::Run` with no names runs every
/// scenario of the scenario directory.
pub fn boot(knobs: &Knobs, mode: Mode, satavm: &Satavm, log: Log<'_>) -> Result<Boot, Error> {
    let mut mode = mode;
    let mut names = Vec::new();
    let mut overall = 0u64;
    if let Mode::Run { names: n, timeout } = &mut mode {
        if n.is_empty() {
            *n = payload::all_scenarios(knobs)?;
        }
        for name in n.iter() {
            let path = payload::scenario_path(knobs, name);
            if !path.is_file() {
                return Err(Error::Usage(format!("no scenario {}", path.display())));
            }
            overall += payload::scenario_timeout(knobs, name, *timeout)?;
        }
        names = n.clone();
        overall += 120;
    }
    let host = prepare(knobs, log)?;
    let satavm = resolve_satavm(knobs, satavm, log)?;
    if matches!(mode, Mode::Shell { l1: false, .. } | Mode::Satavm { .. }) && satavm.is_none() {
        return Err(Error::Usage("this needs satavm".into()));
    }
    // What the scenarios ask for with their '# rig: ...' lines: the fault drives (in L1's
    // machine) and the L2 variant with fio (in L1's initramfs).
    let fault_drives = knobs
        .fault_drives
        .resolve(payload::marked(knobs, &names, "fault-drives")?);
    let l2_fio = knobs
        .l2_fio
        .resolve(payload::marked(knobs, &names, "l2-fio")?);
    let initrd = payload::build_initrd(knobs, &host, satavm.as_deref(), &mode, l2_fio, log)?;
    let prepared = Prepared {
        build: knobs.build(),
        logs: knobs.logs.clone(),
        qemu_bin: host.qemu.bin.clone(),
        qemu_data_args: host.qemu.data_args.clone(),
        l1_kernel: host.l1.vmlinuz.clone(),
        l1_initrd: initrd,
        l1_append: knobs.l1_append.clone(),
        mem_mib: knobs.mem_mib,
        smp: knobs.smp,
        model: knobs.model.clone(),
        serial: knobs.serial.clone(),
        drive_bytes: crate::prepared::size(&knobs.drive_size)?,
        faulty_sector: knobs.faulty_sector,
        fault_drives,
        slow_bps: knobs.slow_bps,
        slow_burst: knobs.slow_burst,
        extra_args: knobs.qemu_args.clone(),
        prepare_secs: format!("{:.1}", host.secs),
    };
    let file = knobs.build().join("prepared.env");
    std::fs::write(&file, prepared.to_env()).map_err(|e| Error::io(&file, e))?;
    Ok(Boot {
        prepared,
        names,
        overall: Duration::from_secs(overall),
    })
}

/// Whether this repository's default satavm is built (`shell --l1` boots without one if not).
pub fn default_satavm_built(knobs: &Knobs) -> bool {
    knobs.target_dir.join("release/satavm").is_file()
}
