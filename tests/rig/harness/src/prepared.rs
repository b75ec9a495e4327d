//! The machine [`crate::prepare`] made ready for one L1 boot: the kernel, the initramfs it
//! built for the scenarios, the QEMU to run and the knobs that shape L1's machine. It is
//! also written to build/prepared.env (`KEY=VALUE` lines, list keys repeated) for people.

use std::path::{Path, PathBuf};

use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Where the boot's images, serial files and QEMU output go (target/rig/build).
    pub build: PathBuf,
    /// Where the scenario logs, summary.tsv, console.log and qmp.log go.
    pub logs: PathBuf,
    pub qemu_bin: PathBuf,
    /// QEMU arguments that come with that QEMU (its firmware directories).
    pub qemu_data_args: Vec<String>,
    pub l1_kernel: PathBuf,
    pub l1_initrd: PathBuf,
    pub l1_append: String,
    pub mem_mib: u32,
    pub smp: u32,
    /// The rig drive's IDENTIFY model and serial (QEMU ide-hd properties).
    pub model: String,
    pub serial: String,
    pub drive_bytes: u64,
    pub faulty_sector: u64,
    /// Whether this boot has the slow and vanishing drives (the QMP socket with them).
    pub fault_drives: bool,
    pub slow_bps: u64,
    pub slow_burst: u64,
    /// RIG_QEMU_ARGS, word-split.
    pub extra_args: Vec<String>,
    /// Seconds `scripts/rig` spent preparing (for the report line).
    pub prepare_secs: String,
}

impl Prepared {
    pub fn load(path: &Path) -> Result<Prepared, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Prepared::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Prepared, Error> {
        let mut single = std::collections::BTreeMap::new();
        let (mut data_args, mut extra_args) = (Vec::new(), Vec::new());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| Error::Prepared(format!("not KEY=VALUE: {line:?}")))?;
            match key {
                "QEMU_DATA_ARG" => data_args.push(value.to_string()),
                "EXTRA_ARG" => extra_args.push(value.to_string()),
                _ => {
                    single.insert(key.to_string(), value.to_string());
                }
            }
        }
        let get = |key: &str| {
            single
                .get(key)
                .cloned()
                .ok_or_else(|| Error::Prepared(format!("no {key}")))
        };
        let number = |key: &str| -> Result<u64, Error> {
            let v = get(key)?;
            v.parse()
                .map_err(|_| Error::Prepared(format!("{key}={v:?} is not a number")))
        };
        let small = |key: &str| -> Result<u32, Error> {
            u32::try_from(number(key)?).map_err(|_| Error::Prepared(format!("{key} too large")))
        };
        Ok(Prepared {
            build: get("BUILD")?.into(),
            logs: get("LOGS")?.into(),
            qemu_bin: get("QEMU_BIN")?.into(),
            qemu_data_args: data_args,
            l1_kernel: get("L1_KERNEL")?.into(),
            l1_initrd: get("L1_INITRD")?.into(),
            l1_append: get("L1_APPEND")?,
            mem_mib: small("MEM")?,
            smp: small("SMP")?,
            model: get("MODEL")?,
            serial: get("SERIAL")?,
            drive_bytes: size(&get("DRIVE_SIZE")?)?,
            faulty_sector: number("FAULTY_SECTOR")?,
            fault_drives: get("FAULT_DRIVES")? == "1",
            slow_bps: number("SLOW_BPS")?,
            slow_burst: number("SLOW_BURST")?,
            extra_args,
            prepare_secs: single.get("PREPARE_SECS").cloned().unwrap_or_default(),
        })
    }
}

impl Prepared {
    /// The description as `KEY=VALUE` lines ([`Prepared::parse`] reads them back).
    pub fn to_env(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: &str| {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push('\n');
        };
        line("BUILD", &self.build.to_string_lossy());
        line("LOGS", &self.logs.to_string_lossy());
        line("QEMU_BIN", &self.qemu_bin.to_string_lossy());
        for a in &self.qemu_data_args {
            line("QEMU_DATA_ARG", a);
        }
        line("L1_KERNEL", &self.l1_kernel.to_string_lossy());
        line("L1_INITRD", &self.l1_initrd.to_string_lossy());
        line("L1_APPEND", &self.l1_append);
        line("MEM", &self.mem_mib.to_string());
        line("SMP", &self.smp.to_string());
        line("MODEL", &self.model);
        line("SERIAL", &self.serial);
        line("DRIVE_SIZE", &self.drive_bytes.to_string());
        line("FAULTY_SECTOR", &self.faulty_sector.to_string());
        line("FAULT_DRIVES", if self.fault_drives { "1" } else { "0" });
        line("SLOW_BPS", &self.slow_bps.to_string());
        line("SLOW_BURST", &self.slow_burst.to_string());
        for a in &self.extra_args {
            line("EXTRA_ARG", a);
        }
        line("PREPARE_SECS", &self.prepare_secs);
        s
    }
}

/// A size as `truncate -s` takes it: bytes, or with a K, M or G suffix (powers of 1024).
pub fn size(text: &str) -> Result<u64, Error> {
    let bad = || Error::Prepared(format!("size {text:?}: bytes or NK/NM/NG"));
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K') => (&text[..text.len() - 1], 10),
        Some(b'M') => (&text[..text.len() - 1], 20),
        Some(b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = "BUILD=/r/build\nLOGS=/r/logs\nQEMU_BIN=/q/qemu\n\
        QEMU_DATA_ARG=-L\nQEMU_DATA_ARG=/q/share\nL1_KERNEL=/k/vmlinuz\nL1_INITRD=/r/build/l1.cpio.gz\n\
        L1_APPEND=\nMEM=2048\nSMP=1\nMODEL=SATAVM-RIG-DRIVE\nSERIAL=RIG0001\nDRIVE_SIZE=256M\n\
        FAULTY_SECTOR=40960\nFAULT_DRIVES=1\nSLOW_BPS=16384\nSLOW_BURST=1048576\n\
        EXTRA_ARG=-d\nEXTRA_ARG=guest_errors\nPREPARE_SECS=1.5\n";

    #[test]
    fn parses_what_scripts_rig_writes() {
        let p = Prepared::parse(SAMPLE).expect("parses");
        assert_eq!(p.qemu_data_args, ["-L", "/q/share"]);
        assert_eq!(p.extra_args, ["-d", "guest_errors"]);
        assert_eq!(p.drive_bytes, 256 << 20);
        assert!(p.fault_drives);
        assert_eq!(p.l1_append, "");
        assert_eq!(p.mem_mib, 2048);
    }

    #[test]
    fn reads_back_what_it_writes() {
        let p = Prepared::parse(SAMPLE).expect("parses");
        assert_eq!(Prepared::parse(&p.to_env()).ok(), Some(p));
    }

    #[test]
    fn refuses_missing_and_malformed_keys() {
        let without_mem = SAMPLE.replace("MEM=2048\n", "");
        assert!(matches!(Prepared::parse(&without_mem), Err(Error::Prepared(m)) if m == "no MEM"));
        assert!(Prepared::parse(&SAMPLE.replace("SMP=1", "SMP=one")).is_err());
        assert!(Prepared::parse("garbage").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("512").ok(), Some(512));
        assert_eq!(size("64K").ok(), Some(64 << 10));
        assert_eq!(size("1G").ok(), Some(1 << 30));
        assert!(size("M").is_err());
        assert!(size("99999999999G").is_err());
    }
}
