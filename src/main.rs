//! satavm command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use satavm::vmm::{self, boot::DEFAULT_CMDLINE, VmConfig, VmExit};

/// A KVM microVM with a layered AHCI controller.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Guest kernel: bzImage or ELF vmlinux.
    #[arg(long)]
    kernel: PathBuf,
    /// Initramfs (cpio, optionally compressed) for the guest.
    #[arg(long)]
    initramfs: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = DEFAULT_CMDLINE)]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let config = VmConfig {
        kernel: cli.kernel,
        initramfs: cli.initramfs,
        cmdline: cli.cmdline,
        cpus: cli.cpus,
        memory_mib: cli.memory,
    };
    match vmm::run(&config, |_| Ok(())) {
        Ok(VmExit::Reset) | Ok(VmExit::PowerOff) => ExitCode::SUCCESS,
        Ok(VmExit::Failure(msg)) => {
            eprintln!("satavm: guest failed: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("satavm: {e}");
            ExitCode::from(1)
        }
    }
}
