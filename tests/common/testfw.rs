//! The tiny test firmware (tests/fixtures/testfw.S), built with gcc once per test binary:
//! what the CLI tests boot on a host KVM that cannot run Linux.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The firmware ELF (built on first use).
pub fn testfw() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/testfw.S");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "testfw-{}.elf",
            std::env::current_exe()
                .ok()
                .and_then(|e| e.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_default()
        ));
        let st = Command::new("gcc")
            .args([
                "-nostdlib",
                "-static",
                "-Wl,-Ttext=0x200000",
                "-Wl,--build-id=none",
            ])
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .expect("gcc");
        assert!(st.success(), "building {}", src.display());
        out
    })
}
