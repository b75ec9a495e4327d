//! The guests' initramfs bases, built once and kept in the build directory while their inputs
//! stay the same: L2's (busybox, its modules, /init, the tools every L2 gets), L1's (busybox,
//! its modules, /init, the L2 kernel, extra programs and files), and the fio layer of the L2
//! variant that scenarios marked `# rig: l2-fio` boot.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::cpio::Archive;
use super::host::{self, Log};
use super::kernel::Kernel;
use super::knobs::Knobs;
use super::modules;
use crate::Error;

/// Modules each guest loads, in this order, each after its own dependencies.
/// crct10dif_generic must come before crc-t10dif (which sd_mod needs): crc-t10dif looks the
/// algorithm up when it loads.
pub const L1_MODULES: &[&str] = &[
    "crct10dif_generic",
    "ahci",
    "sd_mod",
    "sg",
    "kvm_amd",
    "crc32c_generic",
    "ext4",
];
/// pvpanic_mmio: a panicking L2 then ends satavm with its own status (81), not a reboot.
pub const L2_MODULES: &[&str] = &[
    "crct10dif_generic",
    "ahci",
    "sd_mod",
    "sg",
    "crc32c_generic",
    "ext4",
    "sr_mod",
    "isofs",
    "pvpanic_mmio",
];
/// Programs every L2 gets (small: hdparm sends raw ATA commands through SG_IO, sg_raw any
/// SCSI CDB).
pub const L2_TOOLS: &[&str] = &["hdparm", "blkid", "eject", "smartctl", "sg_raw"];

/// What decides a base's contents besides its inputs' files: the code that lays it out.
const LAYOUT: &[&str] = &[
    include_str!("initramfs.rs"),
    include_str!("modules.rs"),
    include_str!("cpio.rs"),
];

/// A key for a cached piece: a hash of its inputs (files' contents and words).
fn inputs_key(files: &[&Path], words: &[String]) -> Result<String, Error> {
    let mut h = Sha256::new();
    for part in LAYOUT {
        h.update(part.as_bytes());
    }
    for w in words {
        h.update(w.as_bytes());
        h.update([0]);
    }
    for f in files {
        let data = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        h.update(Sha256::digest(&data));
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// `out` as built for `key`, or built now by `build`.
fn cached(
    out: &Path,
    key: &str,
    what: &str,
    log: Log<'_>,
    build: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    let key_file = host::with_suffix(out, ".key");
    if out.is_file() && std::fs::read_to_string(&key_file).is_ok_and(|k| k.trim() == key) {
        return Ok(());
    }
    log(&format!("building {what}"));
    build()?;
    std::fs::write(&key_file, key).map_err(|e| Error::io(&key_file, e))
}

/// A busybox userland: every applet linked in /bin, sbin and usr/{bin,sbin} pointing there.
pub fn busybox_tree(a: &mut Archive, prompt: &str) -> Result<(), Error> {
    let busybox = host::require("busybox")?;
    for d in [
        "/bin", "/dev", "/proc", "/sys", "/tmp", "/etc", "/root", "/usr", "/rig",
    ] {
        a.dir(d);
    }
    a.symlink("/sbin", "bin")
        .symlink("/usr/bin", "../bin")
        .symlink("/usr/sbin", "../bin")
        .host_file("/bin/busybox", &busybox, 0o755);
    let list = host::output(Command::new(&busybox).arg("--list"))?;
    for applet in list.split_whitespace().filter(|&a| a != "busybox") {
        a.symlink(&format!("/bin/{applet}"), "busybox");
    }
    a.bytes(
        "/etc/profile",
        format!("export PS1='{prompt} \\w# '\n"),
        0o644,
    )
    .bytes("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    Ok(())
}

/// The program `src` (a path or a name in PATH) at `dest` (default /bin/NAME), with the
/// shared libraries `ldd` lists at their own paths.
pub fn add_binary(a: &mut Archive, src: &str, dest: Option<&str>) -> Result<(), Error> {
    let path =
        host::which(src).ok_or_else(|| Error::Prepare(format!("no program {src} on this host")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dest = dest.map_or_else(|| format!("/bin/{name}"), str::to_string);
    a.host_file(&dest, &path, 0o755);
    for lib in host::shared_libs(&path) {
        let guest = lib.to_string_lossy().into_owned();
        if !a.contains(&guest) {
            let meta = std::fs::metadata(&lib).map_err(|e| Error::io(&lib, e))?;
            a.host_file(&guest, &lib, super::cpio::permissions(&meta));
        }
    }
    Ok(())
}

/// The kernel modules `names` (and what they need) into `a`, with the load order at `list`.
fn add_modules(
    a: &mut Archive,
    kernel: &Kernel,
    names: Vec<String>,
    list: &str,
    scratch: &Path,
) -> Result<(), Error> {
    let _ = std::fs::remove_dir_all(scratch);
    let paths = modules::install(kernel, &names, scratch)?;
    a.host_tree("/lib/modules", &scratch.join("lib/modules"))?;
    let mut text = paths.join("\n");
    text.push('\n');
    a.bytes(list, text, 0o644);
    Ok(())
}

fn words(list: &[&str], extra: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        .collect()
}

/// The L2 base: busybox, the L2 modules, /init, the tools. Scenario scripts are added per
/// run as a second, concatenated archive (the kernel unpacks both).
pub fn l2_base(knobs: &Knobs, kernel: &Kernel, log: Log<'_>) -> Result<PathBuf, Error> {
    let build = knobs.build();
    let out = build.join(format!("l2-base-{}.cpio.gz", kernel.version));
    let init = knobs.rig_src().join("init/l2-init");
    let busybox = host::require("busybox")?;
    let modules = words(L2_MODULES, &knobs.l2_modules_extra);
    let tools = words(L2_TOOLS, &knobs.l2_binaries);
    let mut key_words = vec![kernel.package.clone(), kernel.version.clone()];
    key_words.extend(modules.iter().cloned());
    key_words.push("|".into());
    key_words.extend(tools.iter().cloned());
    let key = inputs_key(&[&init, &busybox], &key_words)?;
    cached(&out, &key, "the L2 initramfs base", log, || {
        let mut a = Archive::new();
        busybox_tree(&mut a, "l2")?;
        a.host_file("/init", &init, 0o755);
        let scratch = build.join("l2-modules-root");
        add_modules(&mut a, kernel, modules.clone(), "/rig/l2-modules", &scratch)?;
        for tool in &tools {
            add_binary(&mut a, tool, None)?;
        }
        let written = a.write_gzip(&out);
        let _ = std::fs::remove_dir_all(&scratch);
        written
    })?;
    Ok(out)
}

/// The fio layer of the L2 variant: fio and the shared libraries it links. Debian's fio
/// links about 60 of them (ceph, gluster, rdma, ICU...): 84 MB, 36 MB gzip'd, so it stays
/// out of the L2 base that every other L2 boot unpacks.
pub fn l2_fio(knobs: &Knobs, log: Log<'_>) -> Result<PathBuf, Error> {
    let out = knobs.build().join("l2-fio.cpio.gz");
    let fio = host::require("fio")?;
    let libs = host::shared_libs(&fio);
    let mut files: Vec<&Path> = vec![&fio];
    files.extend(libs.iter().map(PathBuf::as_path));
    let key = inputs_key(&files, &["fio".to_string()])?;
    cached(&out, &key, "the L2 fio layer", log, || {
        let mut a = Archive::new();
        add_binary(&mut a, &fio.to_string_lossy(), None)?;
        a.write_gzip(&out)
    })?;
    Ok(out)
}

/// The L1 base: busybox, the L1 modules, /init, the L2 kernel, RIG_L1_BINARIES and
/// RIG_L1_FILES. Boots with extras (the benchmark's programs, the installed Debian's, the
/// host CD boot's sr_mod) keep a base of their own, so that alternating with plain boots
/// rebuilds neither.
pub fn l1_base(knobs: &Knobs, l1: &Kernel, l2: &Kernel, log: Log<'_>) -> Result<PathBuf, Error> {
    let build = knobs.build();
    let extras: Vec<String> = knobs
        .l1_binaries
        .iter()
        .chain(&knobs.l1_files)
        .chain(&knobs.l1_modules_extra)
        .cloned()
        .collect();
    let slot = if extras.is_empty() {
        String::new()
    } else {
        let h = Sha256::digest(extras.join(" ").as_bytes());
        format!(
            "-{}",
            h.iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    let out = build.join(format!(
        "l1-base-{}-l2-{}{slot}.cpio.gz",
        l1.version, l2.version
    ));
    let init = knobs.rig_src().join("init/l1-init");
    let busybox = host::require("busybox")?;
    let modules = words(L1_MODULES, &knobs.l1_modules_extra);
    let mut key_words = vec![l1.package.clone(), l1.version.clone()];
    key_words.extend(modules.iter().cloned());
    key_words.push("|".into());
    key_words.extend(extras.iter().cloned());
    let key = inputs_key(&[&init, &busybox, &l2.vmlinuz], &key_words)?;
    cached(&out, &key, "the L1 initramfs base", log, || {
        let mut a = Archive::new();
        busybox_tree(&mut a, "l1")?;
        a.host_file("/init", &init, 0o755);
        let scratch = build.join("l1-modules-root");
        add_modules(&mut a, l1, modules.clone(), "/rig/l1-modules", &scratch)?;
        a.host_file("/rig/l2/vmlinuz", &l2.vmlinuz, 0o644);
        for bin in &knobs.l1_binaries {
            add_binary(&mut a, bin, None)?;
        }
        for f in &knobs.l1_files {
            a.host_tree(f, Path::new(f))?;
        }
        let written = a.write_gzip(&out);
        let _ = std::fs::remove_dir_all(&scratch);
        written
    })?;
    Ok(out)
}
