//! One boot's payload: L1's initramfs is the L1 base plus what this boot adds (satavm, the
//! scenarios, the L2 initramfs with the scenarios' L2 sides, the settings L1's /init reads),
//! after uncompressed segments with the L2 vmlinux and, when asked for, the L2 fio variant.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::cpio::Archive;
use super::initramfs;
use super::knobs::Knobs;
use super::Host;
use crate::Error;

/// What L1's /init does with this boot (RIG_MODE and what goes with it).
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Runs `names`, each with at most `timeout` seconds unless its own line says more.
    Run { names: Vec<String>, timeout: u64 },
    /// An interactive shell in L2 (through satavm) or in L1; `args` go to satavm.
    Shell { l1: bool, args: Vec<String> },
    /// satavm once with `args`; its output on the third serial port.
    Satavm { args: Vec<String> },
}

/// A scenario's `# rig: WORDS` lines.
pub fn markers(knobs: &Knobs, name: &str) -> Result<Vec<String>, Error> {
    let path = scenario_path(knobs, name);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("# rig: "))
        .map(|m| m.trim().to_string())
        .collect())
}

pub fn scenario_path(knobs: &Knobs, name: &str) -> PathBuf {
    knobs.scenario_dir.join(format!("{name}.sh"))
}

/// Every scenario in the scenario directory, by name.
pub fn all_scenarios(knobs: &Knobs) -> Result<Vec<String>, Error> {
    let dir = &knobs.scenario_dir;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".sh").map(str::to_string)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Whether one of `names` has the line `# rig: MARKER`.
pub fn marked(knobs: &Knobs, names: &[String], marker: &str) -> Result<bool, Error> {
    for name in names {
        if markers(knobs, name)?.iter().any(|m| m == marker) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A scenario's limit in L1: `default`, or its own `# rig: timeout SECS` if longer.
pub fn scenario_timeout(knobs: &Knobs, name: &str, default: u64) -> Result<u64, Error> {
    let own = markers(knobs, name)?
        .iter()
        .filter_map(|m| m.strip_prefix("timeout ")?.trim().parse::<u64>().ok())
        .max();
    Ok(own.map_or(default, |o| o.max(default)))
}

/// A value as a shell word (L1's busybox sh sources the settings file).
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The settings file L1's /init sources.
pub fn settings(knobs: &Knobs, mode: &Mode) -> String {
    let (mode_name, scenarios, timeout, shell, shell_args) = match mode {
        Mode::Run { names, timeout } => (
            "run",
            names.join(" "),
            timeout.to_string(),
            "",
            String::new(),
        ),
        Mode::Shell { l1, args } => (
            "shell",
            String::new(),
            "0".into(),
            if *l1 { "l1" } else { "l2" },
            args.join(" "),
        ),
        Mode::Satavm { args } => ("satavm", String::new(), "0".into(), "", args.join(" ")),
    };
    let vars: [(&str, String); 13] = [
        ("RIG_L1_KERNEL", knobs.l1_kernel.as_str().into()),
        ("RIG_L2_KERNEL", knobs.l2_kernel.as_str().into()),
        ("RIG_MODE", mode_name.into()),
        ("RIG_SCENARIOS", scenarios),
        ("RIG_TIMEOUT", timeout),
        ("RIG_MODEL", knobs.model.clone()),
        ("RIG_SERIAL", knobs.serial.clone()),
        ("RIG_FAULTY_SECTOR", knobs.faulty_sector.to_string()),
        ("RIG_SLOW_BPS", knobs.slow_bps.to_string()),
        ("RIG_SLOW_BURST", knobs.slow_burst.to_string()),
        ("RIG_L2_APPEND", knobs.l2_append.clone()),
        ("RIG_SHELL", shell.into()),
        ("RIG_SHELL_ARGS", shell_args),
    ];
    vars.iter()
        .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
        .collect()
}

/// Builds build/l1.cpio.gz for this boot and returns its path.
pub fn build_initrd(
    knobs: &Knobs,
    host: &Host,
    satavm: Option<&Path>,
    mode: &Mode,
    l2_fio: bool,
    log: super::host::Log<'_>,
) -> Result<PathBuf, Error> {
    let build = knobs.build();
    let rig_src = knobs.rig_src();

    // L2's initramfs = its base + the L2 side of the scenarios.
    let mut l2 = Archive::new();
    l2.dir("/scenarios");
    for dir in [rig_src.join("l2"), knobs.scenario_dir.join("l2")] {
        for (name, path) in shell_scripts(&dir)? {
            l2.host_file(&format!("/scenarios/{name}"), &path, 0o755);
        }
    }
    let l2_payload = build.join("l2-payload.cpio.gz");
    l2.write_gzip(&l2_payload)?;
    let l2_initrd = build.join("l2-initrd.cpio.gz");
    concat(&[&host.l2_base, &l2_payload], &l2_initrd)?;

    let mut payload = Archive::new();
    payload
        .dir("/rig/scenarios")
        .host_file("/rig/l2/initrd.cpio.gz", &l2_initrd, 0o644);
    for (name, path) in shell_scripts(&knobs.scenario_dir)? {
        payload.host_file(&format!("/rig/scenarios/{name}"), &path, 0o755);
    }
    payload.host_file("/rig/lib.sh", &rig_src.join("lib.sh"), 0o644);
    if let Some(satavm) = satavm {
        initramfs::add_binary(&mut payload, &satavm.to_string_lossy(), Some("/bin/satavm"))?;
    }
    payload.bytes("/rig/env", settings(knobs, mode), 0o644);
    let payload_file = build.join("payload.cpio.gz");
    payload.write_gzip(&payload_file)?;

    // The ELF vmlinux in an uncompressed first segment (like early microcode): L1's kernel
    // copies it instead of spending ~10 s of emulated CPU on decompressing it.
    let vmlinux_cpio = build.join(format!("l2-vmlinux-{}.cpio", host.l2.version));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (modified(&vmlinux_cpio), modified(&host.l2.vmlinux)) {
        (Some(archived), Some(kernel)) => archived < kernel,
        _ => true,
    };
    if stale {
        let mut a = Archive::new();
        a.host_file("/rig/l2/vmlinux", &host.l2.vmlinux, 0o644);
        a.write(&vmlinux_cpio)?;
    }
    let mut segments: Vec<PathBuf> = vec![vmlinux_cpio];
    // The L2 fio variant, in boots that need it: an uncompressed segment too, as it is
    // gzip'd already (L1's kernel copies its 40 MB instead of inflating them once more).
    if l2_fio {
        let fio = initramfs::l2_fio(knobs, log)?;
        let variant = build.join("l2-initrd-fio.cpio.gz");
        concat(&[&host.l2_base, &fio, &l2_payload], &variant)?;
        let mut a = Archive::new();
        a.host_file("/rig/l2/initrd-fio.cpio.gz", &variant, 0o644);
        let segment = build.join("l2-fio-initrd.cpio");
        a.write(&segment)?;
        segments.push(segment);
    }
    segments.push(host.l1_base.clone());
    segments.push(payload_file);
    let out = build.join("l1.cpio.gz");
    let parts: Vec<&Path> = segments.iter().map(PathBuf::as_path).collect();
    concat(&parts, &out)?;
    Ok(out)
}

/// The `*.sh` files of `dir` (none if it does not exist), by name.
fn shell_scripts(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, p)| n.ends_with(".sh") && p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// `parts` one after another into `out` (the kernel unpacks concatenated archives).
fn concat(parts: &[&Path], out: &Path) -> Result<(), Error> {
    let tmp = super::host::with_suffix(out, ".tmp");
    let mut w = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for p in parts {
        let mut r = File::open(p).map_err(|e| Error::io(p, e))?;
        std::io::copy(&mut r, &mut w).map_err(|e| Error::io(p, e))?;
    }
    drop(w);
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        let value = "a 'quoted' $HOME `x` \\ end";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("V={}; printf %s \"$V\"", shell_quote(value)))
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), value);
    }

    #[test]
    fn settings_name_the_mode() {
        let knobs = Knobs::from_lookup(|_| None).expect("defaults");
        let run = settings(
            &knobs,
            &Mode::Run {
                names: vec!["l2-boot".into(), "pt-drive".into()],
                timeout: 300,
            },
        );
        assert!(run.contains("RIG_MODE='run'\n"));
        assert!(run.contains("RIG_SCENARIOS='l2-boot pt-drive'\n"));
        assert!(run.contains("RIG_TIMEOUT='300'\n"));
        let shell = settings(
            &knobs,
            &Mode::Shell {
                l1: false,
                args: vec!["--disk".into(), "passthrough=/dev/sg0".into()],
            },
        );
        assert!(shell.contains("RIG_SHELL='l2'\n"));
        assert!(shell.contains("RIG_SHELL_ARGS='--disk passthrough=/dev/sg0'\n"));
    }

    #[test]
    fn a_scenario_line_raises_its_limit() {
        let knobs = Knobs::from_lookup(|_| None).expect("defaults");
        // strict-boots says "# rig: timeout 600"; l2-boot says nothing.
        assert_eq!(
            scenario_timeout(&knobs, "strict-boots", 300).ok(),
            Some(600)
        );
        assert_eq!(
            scenario_timeout(&knobs, "strict-boots", 900).ok(),
            Some(900)
        );
        assert_eq!(scenario_timeout(&knobs, "l2-boot", 300).ok(), Some(300));
        let names: Vec<String> = vec!["l2-boot".into(), "pt-vanish".into()];
        assert!(marked(&knobs, &names, "fault-drives").expect("reads"));
        assert!(!marked(&knobs, &names[..1], "fault-drives").expect("reads"));
        assert!(all_scenarios(&knobs)
            .expect("lists")
            .iter()
            .any(|n| n == "debian-boot"));
    }
}
