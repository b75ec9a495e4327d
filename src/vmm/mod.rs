//! The KVM layer: the only code that touches KVM. It builds the VM (memory, irqchip, PIT,
//! vCPUs, MP table, boot), plugs the devices onto the buses, and runs the event loop.

pub mod acpi;
pub mod api;
pub mod boot;
pub mod bus;
pub mod cmos;
pub mod cpu;
pub mod doorbells;
pub mod exit;
pub mod guest_ram;
pub mod halt;
pub mod i8042;
pub mod interrupts;
pub mod layout;
pub mod mptable;
pub mod pvpanic;
pub mod register_slot;
pub mod reset_vector;
pub mod serial;
pub mod signals;
pub mod storage;
pub mod terminal;
pub mod vcpu;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryBackend as _, GuestMemoryMmap, GuestMemoryRegion};
use vm_superio::Serial;
use vmm_sys_util::eventfd::EventFd;

use crate::pci::PciRoot;
use boot::BootEntry;
use bus::IoBus;
pub use exit::{ExitSignal, VmExit};
use serial::{ConsoleEscape, ConsoleOut, EventFdTrigger, StdinInput};
pub use vcpu::ExitCounters;

/// Most vCPUs the MP table and the IOAPIC ID scheme allow here.
pub const MAX_CPUS: u8 = 32;
/// Least guest RAM.
pub const MIN_MEMORY: u64 = 64 << 20;
/// How often the main loop looks whether the guest has halted for good ([`halt`]).
const HALT_LOOK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// TSS address KVM needs on Intel hosts (three pages just below the BIOS area).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// What the vCPUs start.
#[derive(Debug, Clone)]
pub enum Boot {
    /// A Linux kernel (bzImage or ELF vmlinux) by the 64-bit boot protocol.
    Linux {
        kernel: PathBuf,
        initramfs: Option<PathBuf>,
        cmdline: String,
    },
    /// A bare-metal ELF entered in 64-bit mode with RDI = its NUL-terminated `args` (satavm's
    /// self-test in firmware/ is one).
    Firmware { elf: Vec<u8>, args: String },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub boot: Boot,
    pub cpus: u8,
    /// Guest RAM in bytes (a multiple of 4 KiB).
    pub memory: u64,
}

/// Why the VM could not be built or run.
#[derive(Debug, Error)]
pub enum VmmError {
    #[error("{}", open_kvm_help(.0))]
    OpenKvm(kvm_ioctls::Error),
    #[error("/dev/kvm speaks KVM API version {0}, satavm needs {KVM_API_VERSION}")]
    KvmApi(i32),
    #[error("KVM ioctl {what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("--cpus must be 1 to {MAX_CPUS}, got {0}")]
    Cpus(u8),
    #[error("--memory must be at least 64 MiB, got {}", mib(*.0))]
    Memory(u64),
    #[error("--memory must be a whole number of 4 KiB pages, got {0} bytes")]
    MemoryAlignment(u64),
    #[error("--memory {} is more than this host's RAM ({})", mib(*.asked), mib(*.host))]
    MemoryHost { asked: u64, host: u64 },
    #[error("guest memory: {0}")]
    GuestMemory(String),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error("event loop: {0}")]
    EventLoop(String),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// `bytes` for messages: "512 MiB", "1.5 GiB".
fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
    } else if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

/// RAM of this host in bytes (sysinfo), if it can be read.
pub fn host_ram() -> Option<u64> {
    nix::sys::sysinfo::sysinfo().ok().map(|i| i.ram_total())
}

/// Check `config`'s numbers without KVM: vCPU count, RAM size and alignment, and RAM within
/// what this host has (guest RAM is mapped lazily, so more would only fail when used).
pub fn check_config(config: &VmConfig) -> Result<(), VmmError> {
    if config.cpus == 0 || config.cpus > MAX_CPUS {
        return Err(VmmError::Cpus(config.cpus));
    }
    if config.memory < MIN_MEMORY {
        return Err(VmmError::Memory(config.memory));
    }
    if !config.memory.is_multiple_of(4096) {
        return Err(VmmError::MemoryAlignment(config.memory));
    }
    if let Some(host) = host_ram() {
        if config.memory > host {
            return Err(VmmError::MemoryHost {
                asked: config.memory,
                host,
            });
        }
    }
    Ok(())
}

/// A guest loaded into its memory, before any KVM resource exists: [`load`] checks the
/// configuration, maps guest RAM and loads the kernel, initramfs or firmware into it.
pub struct LoadedGuest {
    config: VmConfig,
    mem: Arc<GuestMemoryMmap>,
    entry: BootEntry,
}

impl std::fmt::Debug for LoadedGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedGuest")
            .field("cpus", &self.config.cpus)
            .field("memory", &self.config.memory)
            .field("entry", &self.entry)
            .finish()
    }
}

impl LoadedGuest {
    /// The 64-bit entry point.
    pub fn entry_point(&self) -> u64 {
        self.entry.rip
    }
}

/// Everything [`run`] needs that KVM does not: see [`LoadedGuest`].
pub fn load(config: &VmConfig) -> Result<LoadedGuest, VmmError> {
    check_config(config)?;
    let ram_size = config.memory;
    let ranges: Vec<(GuestAddress, usize)> = layout::ram_regions(ram_size)
        .into_iter()
        .map(|(s, l)| (GuestAddress(s), l as usize))
        .collect();
    let mem =
        Arc::new(guest_ram::guest_ram(&ranges).map_err(|e| VmmError::GuestMemory(e.to_string()))?);
    let entry = match &config.boot {
        Boot::Linux {
            kernel,
            initramfs,
            cmdline,
        } => boot::load_linux(&mem, ram_size, kernel, initramfs.as_deref(), cmdline)?,
        Boot::Firmware { elf, args } => boot::load_firmware(&mem, elf, args)?,
    };
    Ok(LoadedGuest {
        config: config.clone(),
        mem,
        entry,
    })
}

/// The only KVM API version there is (Documentation/virt/kvm/api.rst, KVM_GET_API_VERSION).
const KVM_API_VERSION: i32 = 12;

/// Say plainly why /dev/kvm cannot be used and what to do about it.
fn open_kvm_help(e: &kvm_ioctls::Error) -> String {
    let why = match e.errno() {
        libc::ENOENT => "/dev/kvm does not exist: this machine has no KVM. Load the module \
             (modprobe kvm_intel or kvm_amd), enable virtualization (VT-x/AMD-V) in the firmware \
             setup, or in a VM enable nested virtualization"
            .to_string(),
        libc::EACCES | libc::EPERM => "permission denied on /dev/kvm: add yourself to its group \
             (usually `kvm`: sudo usermod -aG kvm $USER, then log in again) or run as root"
            .to_string(),
        libc::ENXIO | libc::ENODEV => "/dev/kvm exists but no KVM module backs it: load kvm_intel \
             or kvm_amd (is virtualization enabled in the firmware setup?)"
            .to_string(),
        _ => format!("{e}"),
    };
    format!("cannot open /dev/kvm: {why}. A host whose KVM cannot run guests can use the nested rig: scripts/rig")
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { what, source }
}

/// Wakes the main loop for the exit and i8042 reset eventfds.
struct ExitWatcher {
    exit: Arc<ExitSignal>,
    reset: EventFd,
}

impl MutEventSubscriber for ExitWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        for fd in [&self.exit.evt, &self.reset] {
            if let Err(e) = ops.add(Events::new(fd, EventSet::IN)) {
                log::error!("cannot watch exit events: {e:?}");
            }
        }
    }
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == std::os::fd::AsRawFd::as_raw_fd(&self.reset) {
            let _ = self.reset.read();
            self.exit.raise(VmExit::Reset);
        } else {
            let _ = self.exit.evt.read();
        }
    }
}

/// Hooks for plugging devices into the VM before it starts.
pub struct DeviceContext<'a> {
    pub vm: &'a Arc<VmFd>,
    pub mem: &'a Arc<GuestMemoryMmap>,
    pub pci: &'a mut PciRoot,
    pub events: &'a mut EventManager<Box<dyn MutEventSubscriber + Send>>,
    /// (PCI device number, INTx pin) pairs for the MP table.
    pub pci_intx: &'a mut Vec<(u8, u8)>,
    /// KVM resources kept at BAR addresses, moved with their BAR (see [`bus::BarFollower`]).
    pub bar_followers: &'a mut Vec<bus::BarFollowerEntry>,
    /// Stops the VM (a device that must end the run raises it, e.g. under --strict).
    pub exit: &'a Arc<ExitSignal>,
    /// The vCPUs' exit counters (keep a clone to read them after the VM stops).
    pub exit_counters: &'a Arc<ExitCounters>,
}

/// Build the VM around `guest`, let `plug` add devices, call `ready` once everything is set
/// up (just before the vCPUs start), and run it until it stops: the guest ends it, a vCPU
/// fails, a device raises the exit signal, SIGTERM/SIGINT/SIGHUP arrives
/// ([`signals::ExitOnSignal`]) or the user quits from the console (Ctrl-A x). Every vCPU is
/// stopped and joined before this returns.
///
/// SIGTERM, SIGINT and SIGHUP are blocked in the calling thread from here on (and in every
/// thread it starts), SIGUSR1 too ([`storage::block_sigusr1`]).
pub fn run(
    guest: LoadedGuest,
    plug: impl FnOnce(&mut DeviceContext) -> Result<(), VmmError>,
    ready: impl FnOnce() -> Result<(), String>,
) -> Result<VmExit, VmmError> {
    let LoadedGuest { config, mem, entry } = guest;
    // Before any thread starts, so that every thread inherits the mask.
    signals::block_exit_signals().map_err(|e| VmmError::Io(e.into()))?;
    storage::block_sigusr1().map_err(|e| VmmError::Setup(e.to_string()))?;
    vcpu::install_kick_handler()?;
    let kvm = Kvm::new().map_err(VmmError::OpenKvm)?;
    if kvm.get_api_version() != KVM_API_VERSION {
        return Err(VmmError::KvmApi(kvm.get_api_version()));
    }
    let vm = Arc::new(kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?);
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;

    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| VmmError::GuestMemory(e.to_string()))?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which outlives the VM (it is
        // kept alive until the process exits).
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }

    let mut events: EventManager<Box<dyn MutEventSubscriber + Send>> =
        EventManager::new().map_err(|e| VmmError::EventLoop(format!("{e:?}")))?;
    let exit = Arc::new(ExitSignal::new()?);
    events.add_subscriber(Box::new(
        signals::ExitOnSignal::new(exit.clone()).map_err(|e| VmmError::Io(e.into()))?,
    ));

    // COM1 with its interrupt on an irqfd.
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK)?;
    vm.register_irqfd(&serial_irq, layout::SERIAL_GSI)
        .map_err(kvm_err("KVM_IRQFD"))?;
    let serial = Arc::new(Mutex::new(Serial::new(
        EventFdTrigger(serial_irq),
        Box::new(ConsoleOut) as Box<dyn std::io::Write + Send>,
    )));
    let escape = terminal::stdin_is_terminal().then(|| ConsoleEscape::new(exit.clone()));
    events.add_subscriber(Box::new(StdinInput::new(serial.clone(), escape)?));

    let reset = EventFd::new(libc::EFD_NONBLOCK)?;
    events.add_subscriber(Box::new(ExitWatcher {
        exit: exit.clone(),
        reset: reset.try_clone()?,
    }));

    let mut pci = PciRoot::new();
    let mut pci_intx = Vec::new();
    let mut bar_followers = Vec::new();
    let exit_counters = Arc::new(ExitCounters::default());
    plug(&mut DeviceContext {
        vm: &vm,
        mem: &mem,
        pci: &mut pci,
        events: &mut events,
        pci_intx: &mut pci_intx,
        bar_followers: &mut bar_followers,
        exit: &exit,
        exit_counters: &exit_counters,
    })?;

    // Both descriptions of the machine: ACPI for Linux, the MP table for `acpi=off` and for
    // firmware that reads no ACPI.
    let table = mptable::build(config.cpus, layout::EBDA_START, &pci_intx);
    vm_memory::Bytes::write_slice(&*mem, &table, GuestAddress(layout::EBDA_START))
        .map_err(|e| VmmError::GuestMemory(e.to_string()))?;
    acpi::write(&mem, config.cpus, &pci_intx)?;
    vm_memory::Bytes::write_slice(
        &*mem,
        &reset_vector::stub(),
        GuestAddress(reset_vector::RESET_VECTOR),
    )
    .map_err(|e| VmmError::GuestMemory(e.to_string()))?;

    let bus = Arc::new(IoBus::new(
        serial,
        i8042::I8042::new(EventFdTrigger(reset)),
        pci,
        bar_followers,
        exit.clone(),
    ));

    let mut vcpu_fds = Vec::new();
    for id in 0..config.cpus {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        cpu::configure(&kvm, &vcpu, &mem, id, config.cpus, entry)?;
        vcpu_fds.push(vcpu);
    }
    ready().map_err(VmmError::Setup)?;

    let _terminal = terminal::RawModeGuard::new();
    // Declared after the terminal guard: dropped (stopped and joined) before it.
    let mut vcpus = vcpu::Vcpus::new();
    let halt_watch = Arc::new(halt::HaltWatch::new(config.cpus));
    for (id, vcpu) in (0..config.cpus).zip(vcpu_fds) {
        let (bus, exit_for_run, counters) = (bus.clone(), exit.clone(), exit_counters.clone());
        let halt_watch = halt_watch.clone();
        vcpus.spawn(id, exit.clone(), move |stop| {
            vcpu::run(id, vcpu, bus, exit_for_run, counters, halt_watch, stop)
        })?;
    }

    let mut last_look = std::time::Instant::now();
    let reason = loop {
        if let Err(e) = events.run_with_timeout(1000) {
            break Err(VmmError::EventLoop(format!("{e:?}")));
        }
        if let Some(reason) = exit.reason() {
            break Ok(reason);
        }
        if last_look.elapsed() >= HALT_LOOK_INTERVAL {
            match halt_watch.look(exit_counters.io_exits()) {
                halt::Look::Halted => exit.raise(VmExit::Halted),
                halt::Look::Kick => vcpus.kick_all(),
                halt::Look::Busy => {}
            }
            last_look = std::time::Instant::now();
        }
    };
    let stuck = vcpus.stop(vcpu::STOP_DEADLINE);
    if !stuck.is_empty() {
        log::warn!(
            "vCPU threads {stuck:?} did not stop within {:?}; exiting anyway",
            vcpu::STOP_DEADLINE
        );
    }
    reason
}
