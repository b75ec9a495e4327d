//! Guest physical memory map of the microVM.
//!
//! ```text
//! 0x0000_0500  GDT                 0x0000_7000  zero page (boot_params)
//! 0x0000_8ff0  boot stack top      0x0000_9000  PML4, PDPTE, 4 x PDE (identity map of 4 GiB)
//! 0x0002_0000  kernel command line 0x0009_fc00  MP floating pointer + configuration table
//! 0x000e_0000  ACPI tables (RSDP first), in the BIOS area below 1 MiB
//! 0x000f_fff0  real-mode reset vector: a stub that writes the ACPI reset register
//! 0x0010_0000  kernel (bzImage protected-mode part or ELF segments), then the initramfs near
//!              the top of low RAM
//! 0xc000_0000  PCI MMIO hole (BARs) .. 0xfec0_0000 IOAPIC, 0xfee0_0000 local APIC
//! 0x1_0000_0000  RAM above 3 GiB continues here
//! ```

/// Global descriptor table.
pub const BOOT_GDT: u64 = 0x500;
/// Interrupt descriptor table (empty).
pub const BOOT_IDT: u64 = 0x520;
/// Linux zero page (struct boot_params).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Page map level 4.
pub const PML4: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPTE: u64 = 0xa000;
/// Four page directories of 2 MiB pages, mapping 0..4 GiB.
pub const PDE: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Longest command line accepted.
pub const CMDLINE_MAX: usize = 0x10000;
/// Start of the extended BIOS data area; the MP table lives here.
pub const EBDA_START: u64 = 0x9fc00;
/// End of conventional memory.
pub const LOW_MEMORY_END: u64 = 0xa0000;
/// ACPI tables, RSDP first: the start of the BIOS area an OS scans for the RSDP (ACPI 6.5
/// §5.2.5.1). Not RAM in the E820 map (nothing there is), so the guest leaves it alone.
pub const ACPI_START: u64 = 0xe_0000;
/// End of the area for the ACPI tables.
pub const ACPI_END: u64 = 0x10_0000;
/// Where the kernel goes.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole; RAM beyond this moves above 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// First address above 4 GiB.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// PCI BARs are placed from here.
pub const PCI_MMIO_START: u64 = 0xc000_0000;
/// IOAPIC registers.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Local APIC registers.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;

/// IOAPIC pin (GSI) of the 8250 serial port (COM1, ISA IRQ 4).
pub const SERIAL_GSI: u32 = 4;
/// IOAPIC pin (GSI) that PCI INTx# of the AHCI function is wired to.
pub const PCI_INTX_GSI: u32 = 11;
/// Number of IOAPIC pins in KVM's in-kernel IOAPIC.
pub const IOAPIC_PINS: u8 = 24;

/// The guest RAM regions for `size` bytes of RAM: below the MMIO hole, then above 4 GiB.
pub fn ram_regions(size: u64) -> Vec<(u64, u64)> {
    let low = size.min(MMIO_HOLE_START);
    let mut regions = vec![(0, low)];
    if size > low {
        regions.push((FOUR_GIB, size - low));
    }
    regions
}

/// An E820 entry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Kind {
    Ram = 1,
    Reserved = 2,
}

/// The E820 map Linux gets for `size` bytes of RAM: (start, length, kind).
pub fn e820_map(size: u64) -> Vec<(u64, u64, E820Kind)> {
    let mut map = vec![
        (0, EBDA_START, E820Kind::Ram),
        (EBDA_START, LOW_MEMORY_END - EBDA_START, E820Kind::Reserved),
    ];
    let regions = ram_regions(size);
    if let Some(&(_, low)) = regions.first() {
        if low > HIMEM_START {
            map.push((HIMEM_START, low - HIMEM_START, E820Kind::Ram));
        }
    }
    if let Some(&(start, len)) = regions.get(1) {
        map.push((start, len, E820Kind::Ram));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_above_the_hole_moves_past_4gib() {
        assert_eq!(ram_regions(512 << 20), vec![(0, 512 << 20)]);
        assert_eq!(
            ram_regions(4 << 30),
            vec![(0, MMIO_HOLE_START), (FOUR_GIB, 1 << 30)]
        );
    }

    #[test]
    fn e820_reserves_the_ebda_and_skips_the_hole() {
        let map = e820_map(4 << 30);
        assert_eq!(map[0], (0, 0x9fc00, E820Kind::Ram));
        assert_eq!(map[1].2, E820Kind::Reserved);
        assert_eq!(
            map[2],
            (HIMEM_START, MMIO_HOLE_START - HIMEM_START, E820Kind::Ram)
        );
        assert_eq!(map[3], (FOUR_GIB, 1 << 30, E820Kind::Ram));
        assert!(map
            .iter()
            .all(|&(s, l, _)| s + l <= MMIO_HOLE_START || s >= FOUR_GIB));
    }
}
