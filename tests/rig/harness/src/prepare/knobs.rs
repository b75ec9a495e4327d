//! The rig's knobs: `RIG_*` environment variables (tests/rig/README.md lists them), read
//! once into one value. A lookup function stands in for the environment so that
//! tests/rig.rs can set a boot's knobs without touching its own process's environment.

use std::path::PathBuf;

use crate::Error;

/// A Debian kernel generation (`RIG_KERNEL`, `RIG_L1_KERNEL`, `RIG_L2_KERNEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// bookworm's linux-image-amd64.
    Linux6_1,
    /// bookworm-backports' linux-image-amd64.
    Linux6_12,
}

impl Generation {
    pub fn parse(text: &str) -> Result<Generation, Error> {
        match text {
            "6.1" => Ok(Generation::Linux6_1),
            "6.12" => Ok(Generation::Linux6_12),
            _ => Err(Error::Usage(format!(
                "unknown kernel generation {text:?} (RIG_KERNEL, RIG_L1_KERNEL, RIG_L2_KERNEL: 6.1 or 6.12)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Linux6_1 => "6.1",
            Generation::Linux6_12 => "6.12",
        }
    }

    /// Whether its packages come from bookworm-backports (the private apt configuration).
    pub fn backports(self) -> bool {
        self == Generation::Linux6_12
    }
}

/// The L0 QEMU (`RIG_QEMU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuChoice {
    /// bookworm-backports' 10.0.x, unpacked into the cache.
    Qemu10,
    /// The host's Debian package.
    Qemu7_2,
}

/// 1, 0 or auto (what the scenarios to run ask for with their `# rig: ...` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    On,
    Off,
    Auto,
}

impl Auto {
    fn parse(name: &str, text: &str) -> Result<Auto, Error> {
        match text {
            "1" => Ok(Auto::On),
            "0" => Ok(Auto::Off),
            "auto" => Ok(Auto::Auto),
            _ => Err(Error::Usage(format!("{name}={text:?}: 1, 0 or auto"))),
        }
    }

    /// On or off, `auto` deciding by `wanted`.
    pub fn resolve(self, wanted: bool) -> bool {
        match self {
            Auto::On => true,
            Auto::Off => false,
            Auto::Auto => wanted,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Knobs {
    /// The repository (sources, scenarios, cargo's workspace).
    pub repo: PathBuf,
    /// RIG_DIR (target/rig): cache/ (packages, kernels), build/ (images, archives).
    pub rig_dir: PathBuf,
    /// RIG_LOGS (RIG_DIR/logs).
    pub logs: PathBuf,
    /// CARGO_TARGET_DIR (REPO/target): where cargo builds satavm.
    pub target_dir: PathBuf,
    pub model: String,
    pub serial: String,
    pub drive_size: String,
    pub faulty_sector: u64,
    pub fault_drives: Auto,
    pub l2_fio: Auto,
    pub slow_bps: u64,
    pub slow_burst: u64,
    /// RIG_QEMU_ARGS, word-split.
    pub qemu_args: Vec<String>,
    pub mem_mib: u32,
    pub smp: u32,
    pub l1_append: String,
    pub l2_append: String,
    pub l1_binaries: Vec<String>,
    pub l2_binaries: Vec<String>,
    pub l1_files: Vec<String>,
    pub l1_kernel: Generation,
    pub l2_kernel: Generation,
    pub qemu: QemuChoice,
    pub l1_modules_extra: Vec<String>,
    pub l2_modules_extra: Vec<String>,
    /// RIG_SCENARIO_DIR: NAME.sh for L1, l2/NAME.sh for L2 (tests/rig/scenarios).
    pub scenario_dir: PathBuf,
    /// RIG_SCENARIO_TIMEOUT: the default per-scenario limit in L1, seconds.
    pub scenario_timeout: u64,
}

impl Knobs {
    /// The knobs of this process's environment.
    pub fn from_env() -> Result<Knobs, Error> {
        Knobs::from_lookup(|name| std::env::var(name).ok())
    }

    /// The knobs `lookup` gives (None: unset; an empty value counts as unset where the
    /// variable has a default, as `${VAR:-default}` does).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Knobs, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let text = |name: &str, default: &str| get(name).unwrap_or_else(|| default.to_string());
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let number = |name: &str, default: u64| -> Result<u64, Error> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| Error::Usage(format!("{name}={v:?}: a number expected"))),
            }
        };
        let small = |name: &str, default: u32| -> Result<u32, Error> {
            u32::try_from(number(name, u64::from(default))?)
                .map_err(|_| Error::Usage(format!("{name}: too large")))
        };
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../..")
            .canonicalize()
            .map_err(|e| Error::io(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), e))?;
        let rig_dir = get("RIG_DIR").map_or_else(|| repo.join("target/rig"), PathBuf::from);
        let kernel = Generation::parse(&text("RIG_KERNEL", "6.1"))?;
        let generation = |name: &str| get(name).map_or(Ok(kernel), |v| Generation::parse(&v));
        let qemu = match text("RIG_QEMU", "10").as_str() {
            "10" => QemuChoice::Qemu10,
            "7.2" => QemuChoice::Qemu7_2,
            other => {
                return Err(Error::Usage(format!(
                    "unknown RIG_QEMU {other:?} (10 or 7.2)"
                )))
            }
        };
        let drive_size = text("RIG_DRIVE_SIZE", "256M");
        crate::prepared::size(&drive_size).map_err(|_| {
            Error::Usage(format!("RIG_DRIVE_SIZE={drive_size:?}: bytes or NK/NM/NG"))
        })?;
        Ok(Knobs {
            logs: get("RIG_LOGS").map_or_else(|| rig_dir.join("logs"), PathBuf::from),
            target_dir: get("CARGO_TARGET_DIR").map_or_else(|| repo.join("target"), PathBuf::from),
            model: text("RIG_MODEL", "SATAVM-RIG-DRIVE"),
            serial: text("RIG_SERIAL", "RIG0001"),
            drive_size,
            faulty_sector: number("RIG_FAULTY_SECTOR", 40960)?,
            fault_drives: Auto::parse("RIG_FAULT_DRIVES", &text("RIG_FAULT_DRIVES", "auto"))?,
            l2_fio: Auto::parse("RIG_L2_FIO", &text("RIG_L2_FIO", "auto"))?,
            slow_bps: number("RIG_SLOW_BPS", 16384)?,
            slow_burst: number("RIG_SLOW_BURST", 1 << 20)?,
            qemu_args: words("RIG_QEMU_ARGS"),
            mem_mib: small("RIG_MEM", 2048)?,
            smp: small("RIG_SMP", 1)?,
            l1_append: text("RIG_L1_APPEND", ""),
            l2_append: text("RIG_L2_APPEND", ""),
            l1_binaries: words("RIG_L1_BINARIES"),
            l2_binaries: words("RIG_L2_BINARIES"),
            l1_files: words("RIG_L1_FILES"),
            l1_kernel: generation("RIG_L1_KERNEL")?,
            l2_kernel: generation("RIG_L2_KERNEL")?,
            qemu,
            l1_modules_extra: words("RIG_L1_MODULES_EXTRA"),
            l2_modules_extra: words("RIG_L2_MODULES_EXTRA"),
            scenario_dir: get("RIG_SCENARIO_DIR")
                .map_or_else(|| repo.join("tests/rig/scenarios"), PathBuf::from),
            scenario_timeout: number("RIG_SCENARIO_TIMEOUT", 300)?,
            rig_dir,
            repo,
        })
    }

    pub fn cache(&self) -> PathBuf {
        self.rig_dir.join("cache")
    }

    pub fn build(&self) -> PathBuf {
        self.rig_dir.join("build")
    }

    /// tests/rig: init scripts, lib.sh, the L2 sides of scenarios.
    pub fn rig_src(&self) -> PathBuf {
        self.repo.join("tests/rig")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn knobs(vars: &[(&str, &str)]) -> Result<Knobs, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Knobs::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_and_levels() {
        let k = knobs(&[]).expect("defaults");
        assert_eq!(
            (k.l1_kernel, k.l2_kernel),
            (Generation::Linux6_1, Generation::Linux6_1)
        );
        assert_eq!(k.qemu, QemuChoice::Qemu10);
        assert_eq!(k.scenario_timeout, 300);
        assert_eq!(k.fault_drives, Auto::Auto);
        assert!(k.rig_dir.ends_with("target/rig"));
        let k = knobs(&[
            ("RIG_KERNEL", "6.12"),
            ("RIG_L1_KERNEL", "6.1"),
            ("RIG_QEMU_ARGS", " -d  int "),
        ])
        .expect("levels");
        assert_eq!(
            (k.l1_kernel, k.l2_kernel),
            (Generation::Linux6_1, Generation::Linux6_12)
        );
        assert_eq!(k.qemu_args, ["-d", "int"]);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(
            knobs(&[("RIG_KERNEL", "5.10")]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(knobs(&[("RIG_QEMU", "8")]), Err(Error::Usage(_))));
        assert!(matches!(
            knobs(&[("RIG_MEM", "lots")]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            knobs(&[("RIG_FAULT_DRIVES", "yes")]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            knobs(&[("RIG_DRIVE_SIZE", "big")]),
            Err(Error::Usage(_))
        ));
    }
}
