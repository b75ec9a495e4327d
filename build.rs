//! Build the bare-metal self-test firmware (firmware/, a separate Cargo project with its own
//! profile and flags) and leave its ELF at $OUT_DIR/satavm-selftest.elf for `src/firmware.rs`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Environment of the outer build that must not leak into the firmware's: flags, target
/// selection, target dir, and wrappers (`cargo clippy` sets one).
const CLEARED: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_PRIMARY_PACKAGE",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "OUT_DIR",
];

fn main() {
    println!("cargo:rerun-if-changed=firmware");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let firmware = manifest_dir.join("firmware");
    let target_dir = out_dir.join("firmware-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let mut cmd = Command::new(cargo);
    // Run inside firmware/ so its .cargo/config.toml (rustflags) applies.
    cmd.current_dir(&firmware)
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(firmware.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for var in CLEARED {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the firmware: {e}"));
    assert!(status.success(), "building firmware/ failed ({status})");

    let elf = target_dir.join("release").join("satavm-selftest");
    let dest = out_dir.join("satavm-selftest.elf");
    std::fs::copy(&elf, &dest)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", elf.display(), dest.display()));
}
