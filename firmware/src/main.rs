//! satavm-selftest: a bare-metal AHCI self-test guest.
//!
//! satavm loads this ELF and enters `_start` in 64-bit long mode with the first 4 GiB
//! identity-mapped, interrupts off, and RDI pointing at a NUL-terminated argument string.
//! It finds the AHCI HBA on PCI bus 0, drives it like a careful polling driver (AHCI 1.3.1
//! section 10), prints one PASS/FAIL line per check on COM1 and reports the verdict through
//! satavm's exit-code port (0 = pass). With the argument `bench` it measures throughput.
#![no_std]
#![no_main]
// No allocator: report text travels by value in fixed-size buffers.
#![allow(clippy::result_large_err)]

mod ahci;
mod atapi;
mod bench;
mod drive;
mod hw;
mod mem;
mod pci;
mod selftest;
mod time;

use core::panic::PanicInfo;

use mem::Arena;

/// Stack for the firmware, in .bss (16-byte aligned).
const STACK_BYTES: usize = 256 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_BYTES]);

#[no_mangle]
static mut FIRMWARE_STACK: Stack = Stack([0; STACK_BYTES]);

// Entry: enable SSE (CR0.EM=0, CR0.MP=1, CR4.OSFXSR/OSXMMEXCPT: the compiler uses SSE
// registers, and the boot path leaves CR4 with PAE only), zero .bss (the stack is in it, so
// before using the stack), switch to our stack, call firmware_main(args). RDI (the argument
// pointer) is preserved in R12.
core::arch::global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "    cli",
    "    cld",
    "    mov r12, rdi",
    "    mov rax, cr0",
    "    and rax, ~(1 << 2)",
    "    or rax, 1 << 1",
    "    mov cr0, rax",
    "    mov rax, cr4",
    "    or rax, 3 << 9",
    "    mov cr4, rax",
    "    mov rdi, offset __bss_start",
    "    mov rcx, offset __bss_end",
    "    sub rcx, rdi",
    "    xor eax, eax",
    "    rep stosb",
    "    mov rsp, offset FIRMWARE_STACK + {stack}",
    "    xor ebp, ebp",
    "    mov rdi, r12",
    "    call firmware_main",
    "2:  hlt",
    "    jmp 2b",
    stack = const STACK_BYTES,
);

/// The argument string satavm passed (`--firmware-args`), at most 4 KiB.
fn args(ptr: *const u8) -> &'static str {
    if ptr.is_null() {
        return "";
    }
    let mut len = 0;
    // SAFETY: satavm writes a NUL-terminated string at `ptr` in RAM; bounded to 4 KiB.
    while len < 4096 && unsafe { ptr.add(len).read_volatile() } != 0 {
        len += 1;
    }
    // SAFETY: as above, `len` bytes are readable.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

#[no_mangle]
extern "C" fn firmware_main(arg_ptr: *const u8) -> ! {
    hw::serial_init();
    let args = args(arg_ptr);
    println!("satavm-selftest: AHCI self-test firmware, args \"{args}\"");
    match time::calibrate() {
        Some(khz) => println!("satavm-selftest: TSC {khz} kHz (calibrated against PIT channel 2)"),
        None => {
            println!("satavm-selftest: PIT calibration failed, assuming TSC at 1 GHz for timeouts")
        }
    }
    let mut bench = false;
    for word in args.split_ascii_whitespace() {
        match word {
            "bench" => bench = true,
            other => {
                println!("satavm-selftest: ignoring unknown argument \"{other}\" (known: bench)")
            }
        }
    }
    let mut arena = Arena::new();
    if bench {
        let code = bench::run(&mut arena);
        println!(
            "satavm-selftest: bench {}",
            if code == 0 { "done" } else { "FAILED" }
        );
        hw::exit(code);
    }
    let report = selftest::run(&mut arena);
    if report.failed == 0 {
        println!("satavm-selftest: RESULT PASS ({} checks)", report.checks);
        hw::exit(0);
    }
    println!(
        "satavm-selftest: RESULT FAIL ({} of {} failed)",
        report.failed, report.checks
    );
    hw::exit(1)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("satavm-selftest: PANIC {info}");
    println!("satavm-selftest: RESULT FAIL (firmware panic)");
    hw::exit(3)
}
