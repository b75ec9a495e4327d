//! satavm command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use satavm::disk_spec::DiskSpec;
use satavm::vmm::{self, boot::DEFAULT_CMDLINE, VmConfig, VmExit};

/// A KVM microVM whose storage controller is a layered AHCI HBA (AHCI / SATA FIS / ATA).
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
    /// A SATA drive on the next AHCI port (repeatable, up to 32):
    /// path=FILE[,model=M][,serial=S][,readonly=on] or
    /// passthrough=/dev/sgN[,timeout=SECS][,allow=all][,readonly=on].
    #[arg(long = "disk", value_name = "SPEC")]
    disks: Vec<DiskSpec>,
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
    let mut storage = None;
    let result = vmm::run(&config, |ctx| {
        storage = vmm::storage::attach(ctx, &cli.disks)?;
        Ok(())
    });
    if let Some(storage) = &storage {
        for line in storage.summary() {
            eprintln!("satavm: {line}");
        }
    }
    match result {
        Ok(VmExit::Reset) | Ok(VmExit::PowerOff) | Ok(VmExit::GuestCode(0)) => ExitCode::SUCCESS,
        Ok(VmExit::GuestCode(code)) => {
            eprintln!("satavm: guest reported failure code {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX).max(1))
        }
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
