//! Link the firmware as a static, non-PIE ELF placed by link.ld at 0x200000, without the C
//! runtime's start files.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    for arg in [
        "-nostartfiles".to_string(),
        "-nodefaultlibs".to_string(),
        "-static".to_string(),
        "-no-pie".to_string(),
        format!("-Wl,-T,{dir}/link.ld"),
        "-Wl,--build-id=none".to_string(),
        "-Wl,--gc-sections".to_string(),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
