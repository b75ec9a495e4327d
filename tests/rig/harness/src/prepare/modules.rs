//! Kernel modules for a guest: the named modules and everything they depend on, in an order
//! that loads each after its dependencies. The dependencies are the kernel's own: Debian's
//! package ships no modules.dep, so `depmod -b` (busybox's) writes one into the unpacked
//! package once, and this reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use super::host;
use super::kernel::Kernel;
use crate::Error;

/// What depmod wrote for one kernel: each module's file and its dependencies.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// Module name (dashes as underscores) -> (path under the modules directory, the names
    /// of every module it needs).
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

/// `kernel/drivers/ata/libata.ko.xz` -> `libata`; `crc-t10dif.ko` -> `crc_t10dif`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// The index of `kernel`'s modules (depmod run over its package the first time).
    pub fn load(kernel: &Kernel) -> Result<ModuleIndex, Error> {
        let dir = kernel.modules_dir();
        let stamp = dir.join(".satavm-rig-depmod");
        if !stamp.exists() {
            host::output(
                Command::new(host::require("busybox")?)
                    .arg("depmod")
                    .arg("-b")
                    .arg(&kernel.dir)
                    .arg(&kernel.version),
            )?;
            std::fs::write(&stamp, "").map_err(|e| Error::io(&stamp, e))?;
        }
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
        };
        ModuleIndex::parse(&read("modules.dep")?, &read("modules.builtin")?)
    }

    /// modules.dep (`path: dep-path dep-path ...`) and modules.builtin (a path a line).
    pub fn parse(dep: &str, builtin: &str) -> Result<ModuleIndex, Error> {
        let mut modules = BTreeMap::new();
        for line in dep.lines().filter(|l| !l.trim().is_empty()) {
            let (path, deps) = line.split_once(':').ok_or_else(|| {
                Error::Prepare(format!("modules.dep: not 'path: deps': {line:?}"))
            })?;
            let deps = deps.split_whitespace().map(module_name).collect();
            modules.insert(module_name(path), (path.trim().to_string(), deps));
        }
        let builtin = builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(module_name)
            .collect();
        Ok(ModuleIndex { modules, builtin })
    }

    /// `names` and their dependencies, each after what it needs, each once; built-in ones
    /// left out. Returns (name, path under the modules directory).
    pub fn load_order(&self, names: &[String]) -> Result<Vec<(String, String)>, Error> {
        #[derive(PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit(
            index: &ModuleIndex,
            name: &str,
            marks: &mut BTreeMap<String, Mark>,
            order: &mut Vec<(String, String)>,
        ) -> Result<(), Error> {
            match marks.get(name) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Visiting) => {
                    return Err(Error::Prepare(format!("module dependency cycle at {name}")))
                }
                None => {}
            }
            if index.builtin.contains(name) {
                marks.insert(name.to_string(), Mark::Done);
                return Ok(());
            }
            let (path, deps) = index.modules.get(name).ok_or_else(|| {
                Error::Prepare(format!("module {name} is not in the kernel package"))
            })?;
            marks.insert(name.to_string(), Mark::Visiting);
            for dep in deps {
                visit(index, dep, marks, order)?;
            }
            marks.insert(name.to_string(), Mark::Done);
            order.push((name.to_string(), path.clone()));
            Ok(())
        }
        let (mut marks, mut order) = (BTreeMap::new(), Vec::new());
        for name in names {
            visit(self, &module_name(name), &mut marks, &mut order)?;
        }
        Ok(order)
    }
}

/// Puts `names` and their dependencies, uncompressed (busybox's insmod reads plain .ko), into
/// `root`/lib/modules/VERSION/ with modules.builtin, modules.order and what busybox's depmod
/// makes of them there (the kernel's own module requests use it). Returns their in-guest
/// paths in load order.
pub fn install(kernel: &Kernel, names: &[String], root: &Path) -> Result<Vec<String>, Error> {
    let index = ModuleIndex::load(kernel)?;
    let src = kernel.modules_dir();
    let dest = root.join("lib/modules").join(&kernel.version);
    let mut paths = Vec::new();
    for (_, rel) in index.load_order(names)? {
        let plain = format!("{}.ko", rel.split(".ko").next().unwrap_or(&rel));
        let out = dest.join(&plain);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        uncompress(&src.join(&rel), &out)?;
        paths.push(format!("/lib/modules/{}/{plain}", kernel.version));
    }
    for f in ["modules.builtin", "modules.order"] {
        std::fs::copy(src.join(f), dest.join(f)).map_err(|e| Error::io(&src.join(f), e))?;
    }
    host::output(
        Command::new(host::require("busybox")?)
            .arg("depmod")
            .arg("-b")
            .arg(root)
            .arg(&kernel.version),
    )?;
    Ok(paths)
}

fn uncompress(src: &Path, out: &Path) -> Result<(), Error> {
    let name = src.to_string_lossy();
    let tool: Option<(&str, &[&str])> = if name.ends_with(".ko") {
        None
    } else if name.ends_with(".ko.xz") {
        Some(("xz", &["-dc"]))
    } else if name.ends_with(".ko.zst") {
        Some(("zstd", &["-qdc"]))
    } else if name.ends_with(".ko.gz") {
        Some(("gzip", &["-dc"]))
    } else {
        return Err(Error::Prepare(format!("unknown module format: {name}")));
    };
    let Some((tool, args)) = tool else {
        return std::fs::copy(src, out)
            .map(|_| ())
            .map_err(|e| Error::io(src, e));
    };
    let input = File::open(src).map_err(|e| Error::io(src, e))?;
    let output = File::create(out).map_err(|e| Error::io(out, e))?;
    let st = Command::new(host::require(tool)?)
        .args(args)
        .stdin(input)
        .stdout(output)
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| Error::Command(format!("{tool}: {e}")))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::Command(format!(
            "{tool} {} exited with {st}",
            src.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko.xz \
        kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz\n\
        kernel/drivers/ata/libahci.ko.xz: kernel/drivers/ata/libata.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz \
        kernel/drivers/scsi/scsi_common.ko.xz\n\
        kernel/drivers/ata/libata.ko.xz: kernel/drivers/scsi/scsi_mod.ko.xz kernel/drivers/scsi/scsi_common.ko.xz\n\
        kernel/drivers/scsi/scsi_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz\n\
        kernel/drivers/scsi/scsi_common.ko.xz:\n\
        kernel/drivers/scsi/sd_mod.ko.xz: kernel/lib/crc-t10dif.ko.xz kernel/drivers/scsi/scsi_mod.ko.xz \
        kernel/drivers/scsi/scsi_common.ko.xz\n\
        kernel/lib/crc-t10dif.ko.xz: kernel/crypto/crct10dif_common.ko.xz\n\
        kernel/crypto/crct10dif_common.ko.xz:\n\
        kernel/crypto/crct10dif_generic.ko.xz: kernel/crypto/crct10dif_common.ko.xz\n";

    fn names(order: &[(String, String)]) -> Vec<&str> {
        order.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn each_module_after_what_it_needs_once() {
        let index = ModuleIndex::parse(DEP, "kernel/crypto/crc32c_generic.ko\n").expect("parses");
        let want: Vec<String> = ["crct10dif_generic", "ahci", "sd_mod", "crc32c_generic"]
            .map(String::from)
            .into();
        let order = index.load_order(&want).expect("resolves");
        assert_eq!(
            names(&order),
            [
                "crct10dif_common",
                "crct10dif_generic",
                "scsi_common",
                "scsi_mod",
                "libata",
                "libahci",
                "ahci",
                "crc_t10dif",
                "sd_mod"
            ]
        );
        assert_eq!(order[6].1, "kernel/drivers/ata/ahci.ko.xz");
    }

    #[test]
    fn missing_modules_and_cycles_are_errors() {
        let index = ModuleIndex::parse(DEP, "").expect("parses");
        assert!(index.load_order(&["nvme".to_string()]).is_err());
        let cyclic = ModuleIndex::parse("a.ko: b.ko\nb.ko: a.ko\n", "").expect("parses");
        assert!(
            matches!(cyclic.load_order(&["a".to_string()]), Err(Error::Prepare(m)) if m.contains("cycle"))
        );
        assert!(ModuleIndex::parse("no colon here\n", "").is_err());
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(module_name("kernel/lib/crc-t10dif.ko.xz"), "crc_t10dif");
        assert_eq!(module_name("sd_mod.ko"), "sd_mod");
        assert_eq!(module_name("crc-t10dif"), "crc_t10dif");
    }
}
