//! 64-bit Linux direct boot (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"):
//! load a bzImage or ELF vmlinux and the initramfs, write the command line and boot_params.
//! Also the firmware boot: a static ELF entered in 64-bit mode with RDI pointing at its
//! NUL-terminated argument string (see firmware/).

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{load_cmdline, BzImage, Elf, KernelLoader};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{self, CMDLINE, CMDLINE_MAX, HIMEM_START, ZERO_PAGE};

/// The command line used when none is given. Linux reboots through the ACPI reset register
/// first, then the keyboard controller (with `acpi=off`); a panic reboots after 1 s.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=1 pci=conf1 tsc=reliable";

/// Boot protocol constants (boot.rst).
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// loadflags: the kernel may use the heap between setup and 0x10000 (CAN_USE_HEAP).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// bzImage's 64-bit entry point lies 0x200 bytes into the protected-mode kernel.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// Why the guest cannot be booted.
#[derive(Debug, Error)]
pub enum BootError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is neither an ELF vmlinux nor a bzImage: {source}")]
    Kernel {
        path: String,
        source: linux_loader::loader::Error,
    },
    #[error("firmware is not a loadable 64-bit ELF: {0}")]
    Firmware(linux_loader::loader::Error),
    #[error("firmware arguments must be at most {max} bytes without NUL characters")]
    FirmwareArgs { max: usize },
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("initramfs of {size} bytes does not fit in guest RAM below {limit:#x}")]
    InitramfsTooBig { size: u64, limit: u64 },
    #[error("writing boot data into guest memory: {0}")]
    Memory(String),
}

/// What the vCPU needs to start the kernel.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    /// 64-bit entry point.
    pub rip: u64,
    /// Address of boot_params (passed in RSI); 0 for firmware.
    pub zero_page: u64,
    /// Passed in RDI: the firmware's argument string; 0 for Linux.
    pub rdi: u64,
}

/// Load a firmware ELF (its PT_LOAD segments at their physical addresses, which must lie at or
/// above 1 MiB) and write `args` NUL-terminated at [`CMDLINE`], whose address goes in RDI.
pub fn load_firmware(
    mem: &GuestMemoryMmap,
    elf: &[u8],
    args: &str,
) -> Result<BootEntry, BootError> {
    if args.len() >= CMDLINE_MAX || args.contains('\0') {
        return Err(BootError::FirmwareArgs {
            max: CMDLINE_MAX - 1,
        });
    }
    let loaded = Elf::load(
        mem,
        None,
        &mut Cursor::new(elf),
        Some(GuestAddress(HIMEM_START)),
    )
    .map_err(BootError::Firmware)?;
    let mut bytes = Vec::with_capacity(args.len() + 1);
    bytes.extend_from_slice(args.as_bytes());
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    Ok(BootEntry {
        rip: loaded.kernel_load.0,
        zero_page: 0,
        rdi: CMDLINE,
    })
}

/// Load `kernel` (and `initramfs`) into `mem` of `ram_size` bytes, write `cmdline` and the
/// zero page.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    ram_size: u64,
    kernel: &Path,
    initramfs: Option<&Path>,
    cmdline: &str,
) -> Result<BootEntry, BootError> {
    let kernel_path = kernel.display().to_string();
    let mut file = File::open(kernel).map_err(|source| BootError::Open {
        path: kernel_path.clone(),
        source,
    })?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|source| BootError::Read {
            path: kernel_path.clone(),
            source,
        })?;
    let is_elf = magic == *b"\x7fELF";
    let loaded = if is_elf {
        Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
    } else {
        BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
    }
    .map_err(|source| BootError::Kernel {
        path: kernel_path,
        source,
    })?;
    let rip = if is_elf {
        loaded.kernel_load.0
    } else {
        loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET
    };

    let mut params = boot_params::default();
    if let Some(hdr) = loaded.setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    if params.hdr.kernel_alignment == 0 {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }

    let mut cl = Cmdline::new(CMDLINE_MAX).map_err(|e| BootError::Cmdline(e.to_string()))?;
    cl.insert_str(cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE), &cl).map_err(|e| BootError::Cmdline(e.to_string()))?;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = cmdline.len() as u32 + 1;

    if let Some(path) = initramfs {
        let (addr, size) = load_initramfs(
            mem,
            ram_size,
            path,
            loaded.kernel_end,
            u64::from(params.hdr.initrd_addr_max),
        )?;
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    for (i, (start, len, kind)) in layout::e820_map(ram_size).into_iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: start,
            size: len,
            r#type: kind as u32,
        };
        params.e820_entries = i as u8 + 1;
    }

    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE)),
        mem,
    )
    .map_err(|e| BootError::Memory(e.to_string()))?;
    Ok(BootEntry {
        rip,
        zero_page: ZERO_PAGE,
        rdi: 0,
    })
}

/// Place the initramfs page-aligned at the top of low RAM, below the kernel's initrd_addr_max.
fn load_initramfs(
    mem: &GuestMemoryMmap,
    ram_size: u64,
    path: &Path,
    kernel_end: u64,
    initrd_addr_max: u64,
) -> Result<(u64, u64), BootError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| BootError::Read { path: p, source })?;
    let size = data.len() as u64;
    let addr_max = if initrd_addr_max == 0 {
        DEFAULT_INITRD_ADDR_MAX
    } else {
        initrd_addr_max
    };
    let top = ram_size.min(layout::MMIO_HOLE_START).min(addr_max + 1);
    let too_big = BootError::InitramfsTooBig { size, limit: top };
    let addr = top.checked_sub(size).ok_or(too_big)? & !0xfff;
    if addr < kernel_end {
        return Err(BootError::InitramfsTooBig { size, limit: top });
    }
    mem.write_slice(&data, GuestAddress(addr))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap()
    }

    #[test]
    fn firmware_is_loaded_at_its_address_with_args_in_rdi() {
        let mem = memory();
        let elf = crate::firmware::SELFTEST_ELF;
        let entry = load_firmware(&mem, elf, "bench").unwrap();
        assert_eq!(entry.rip, 0x20_0000);
        assert_eq!(entry.rdi, CMDLINE);
        assert_eq!(entry.zero_page, 0);
        let mut args = [0u8; 6];
        mem.read_slice(&mut args, GuestAddress(CMDLINE)).unwrap();
        assert_eq!(&args, b"bench\0");
        // The first bytes at the entry are the ELF's first PT_LOAD segment (file offset 0x1000).
        let mut code = [0u8; 16];
        mem.read_slice(&mut code, GuestAddress(entry.rip)).unwrap();
        assert_eq!(&code[..], &elf[0x1000..0x1010]);
    }

    #[test]
    fn firmware_rejects_garbage_and_bad_args() {
        let mem = memory();
        assert!(matches!(
            load_firmware(&mem, b"not an elf at all, just text", ""),
            Err(BootError::Firmware(_))
        ));
        assert!(matches!(
            load_firmware(&mem, crate::firmware::SELFTEST_ELF, "a\0b"),
            Err(BootError::FirmwareArgs { .. })
        ));
    }

    /// A minimal ELF64 x86-64 executable: one PT_LOAD of `code` at physical 0x100_0000.
    fn tiny_elf(code: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 0x1000];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // 64-bit
        e[5] = 1; // little endian
        e[6] = 1; // version
        e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        e[18..20].copy_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
        e[20..24].copy_from_slice(&1u32.to_le_bytes());
        e[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // e_entry
        e[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        e[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        e[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        e[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut e[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&5u32.to_le_bytes()); // R+X
        ph[8..16].copy_from_slice(&0x1000u64.to_le_bytes()); // p_offset
        ph[16..24].copy_from_slice(&0x100_0000u64.to_le_bytes()); // p_vaddr
        ph[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // p_paddr
        ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes()); // p_filesz
        ph[40..48].copy_from_slice(&(code.len() as u64).to_le_bytes()); // p_memsz
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes()); // p_align
        e.extend_from_slice(code);
        e
    }

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("satavm-boot-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn zero_page_describes_kernel_cmdline_initramfs_and_e820() {
        let mem = memory();
        let kernel = temp_file("vmlinux", &tiny_elf(&[0xf4; 16]));
        let initrd_bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let initrd = temp_file("initrd", &initrd_bytes);
        let cmdline = "console=ttyS0 quiet";
        let entry = load_linux(&mem, 64 << 20, &kernel, Some(&initrd), cmdline).unwrap();
        std::fs::remove_file(&kernel).unwrap();
        std::fs::remove_file(&initrd).unwrap();

        assert_eq!(entry.rip, 0x100_0000, "ELF entry point");
        assert_eq!((entry.zero_page, entry.rdi), (ZERO_PAGE, 0));
        let zp: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE)).unwrap();
        let hdr = zp.hdr;
        assert_eq!(
            (hdr.boot_flag, hdr.header, hdr.type_of_loader),
            (
                KERNEL_BOOT_FLAG_MAGIC,
                KERNEL_HDR_MAGIC,
                KERNEL_LOADER_OTHER
            )
        );
        assert_eq!(hdr.cmd_line_ptr as u64, CMDLINE);
        let mut cl = vec![0u8; cmdline.len() + 1];
        mem.read_slice(&mut cl, GuestAddress(CMDLINE)).unwrap();
        assert_eq!(&cl[..cmdline.len()], cmdline.as_bytes());
        assert_eq!(cl[cmdline.len()], 0, "NUL-terminated");

        // The initramfs sits page-aligned at the top of RAM, intact.
        let (addr, size) = (u64::from(hdr.ramdisk_image), u64::from(hdr.ramdisk_size));
        assert_eq!(size, 10_000);
        assert_eq!(addr % 4096, 0);
        assert!(addr + size <= 64 << 20 && addr + size > (64 << 20) - 8192);
        let mut back = vec![0u8; initrd_bytes.len()];
        mem.read_slice(&mut back, GuestAddress(addr)).unwrap();
        assert_eq!(back, initrd_bytes);

        // E820: low RAM, the reserved EBDA, RAM from 1 MiB to the end.
        let n = usize::from(zp.e820_entries);
        let e820: Vec<(u64, u64, u32)> = zp.e820_table[..n]
            .iter()
            .map(|e| (e.addr, e.size, e.r#type))
            .collect();
        assert_eq!(
            e820,
            vec![
                (0, 0x9fc00, 1),
                (0x9fc00, 0x400, 2),
                (HIMEM_START, (64 << 20) - HIMEM_START, 1)
            ]
        );
    }

    #[test]
    fn an_initramfs_larger_than_ram_is_refused() {
        let mem = memory();
        let kernel = temp_file("vmlinux2", &tiny_elf(&[0xf4; 16]));
        let initrd = temp_file("huge", &vec![0u8; 70 << 20]);
        let r = load_linux(&mem, 64 << 20, &kernel, Some(&initrd), "x");
        std::fs::remove_file(&kernel).unwrap();
        std::fs::remove_file(&initrd).unwrap();
        assert!(matches!(r, Err(BootError::InitramfsTooBig { .. })), "{r:?}");
    }
}
