//! ACPI tables (ACPI 6.5) for a hardware-reduced platform (§4.1): how a Linux guest finds
//! the CPUs, the interrupt controllers, the PCI root with its windows and routing, COM1, and
//! how it powers off and resets the machine. Built with rust-vmm's `acpi_tables`.
//!
//! ```text
//! 0xe0000 RSDP (§5.2.5, revision 2, in the BIOS area an OS scans) -> XSDT (§5.2.8)
//!         XSDT -> FADT (§5.2.9), MADT (§5.2.12)
//!         FADT -> DSDT (§5.2.11.1, AML: dsdt.rs); sleep control/status and reset
//!                 registers in port I/O (registers.rs); HW_REDUCED_ACPI, no FACS
//! ```
//!
//! No MCFG: satavm's PCI root has no ECAM, only configuration mechanism #1. The MP table
//! (mptable.rs) stays in the EBDA for `acpi=off` and for firmware that does not read ACPI.

pub mod dsdt;
pub mod madt;
pub mod registers;

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{ACPI_END, ACPI_START};

/// OEM ID of every table.
pub const OEM_ID: [u8; 6] = *b"SATAVM";
/// OEM revision of every table.
pub const OEM_REVISION: u32 = 1;
/// FADT hypervisor vendor identity (§5.2.9 table 5.9).
const HYPERVISOR_VENDOR: [u8; 8] = *b"SATAVM  ";
/// IA-PC boot architecture flags (§5.2.9.3 table 5.11): VGA Not Present. Neither LEGACY_DEVICES
/// nor 8042 is set: there are no ISA devices for the OS to probe beyond those in the DSDT
/// (satavm's i8042 is only there for the keyboard-controller reset, which needs no driver).
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// Tables are 8-byte aligned; the RSDP must be on a 16-byte boundary (§5.2.5.1).
const TABLE_ALIGN: usize = 16;

/// Why the tables could not be written.
#[derive(Debug, Error)]
pub enum AcpiError {
    #[error("ACPI tables of {size} bytes do not fit in {limit} bytes at {at:#x}")]
    TooBig { size: usize, limit: u64, at: u64 },
    #[error("writing ACPI tables into guest memory: {0}")]
    Memory(String),
}

/// The tables laid out for guest address [`ACPI_START`]: the RSDP first, then the XSDT, the
/// FADT, the DSDT and the MADT.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    /// Every table, as it goes to guest memory at `base`.
    pub bytes: Vec<u8>,
    /// Guest address of `bytes[0]`, the RSDP.
    pub base: u64,
}

impl AcpiTables {
    /// Guest address of the RSDP.
    pub fn rsdp(&self) -> u64 {
        self.base
    }
}

/// Recompute an SDT's checksum (byte 9) so that all its bytes sum to zero (§5.2.6).
pub(crate) fn fix_checksum(table: &mut [u8]) {
    if table.len() < 10 {
        return;
    }
    table[9] = 0;
    let sum = table.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    table[9] = 0u8.wrapping_sub(sum);
}

/// Appends tables, each aligned, and says where each went.
struct Layout {
    base: u64,
    bytes: Vec<u8>,
}

impl Layout {
    fn push(&mut self, table: &[u8]) -> u64 {
        let at = self.bytes.len().next_multiple_of(TABLE_ALIGN);
        self.bytes.resize(at, 0);
        self.bytes.extend_from_slice(table);
        self.base + at as u64
    }

    /// Where the next table will go.
    fn next(&self) -> u64 {
        self.base + self.bytes.len().next_multiple_of(TABLE_ALIGN) as u64
    }
}

fn aml_bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

/// One byte-wide register in port I/O space.
fn io_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// The FADT of a hardware-reduced platform whose DSDT is at `dsdt`.
fn fadt(dsdt: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, *b"SATAVMFA", OEM_REVISION)
        .dsdt_64(dsdt)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        // No fixed-feature power or sleep button (there is no button at all).
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    b.iapc_boot_arch = IAPC_VGA_NOT_PRESENT.into();
    b.reset_reg = io_register(registers::RESET_PORT);
    b.reset_value = registers::RESET_VALUE;
    b.sleep_control_reg = io_register(registers::SLEEP_CONTROL_PORT);
    b.sleep_status_reg = io_register(registers::SLEEP_STATUS_PORT);
    b.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_VENDOR).into();
    aml_bytes(&b.finalize())
}

/// Build every table for `cpus` vCPUs and PCI functions with INTx `pci_intx` (device, pin).
pub fn build(cpus: u8, pci_intx: &[(u8, u8)]) -> AcpiTables {
    let mut out = Layout {
        base: ACPI_START,
        bytes: Vec::new(),
    };
    // The RSDP points at the XSDT, which comes right after it: reserve the RSDP's room now.
    let rsdp_len = Rsdp::len();
    out.bytes.resize(rsdp_len, 0);

    let dsdt = aml_bytes(&dsdt::build(pci_intx));
    let madt = madt::build(cpus);
    // The XSDT lists two tables; lay it out first so the others' addresses are known.
    let xsdt_at = out.next();
    let xsdt_len = 36 + 2 * 8;
    let fadt_at = (xsdt_at + xsdt_len as u64).next_multiple_of(TABLE_ALIGN as u64);
    let fadt_len = acpi_tables::fadt::FADT::len();
    let dsdt_at = (fadt_at + fadt_len as u64).next_multiple_of(TABLE_ALIGN as u64);
    let madt_at = (dsdt_at + dsdt.len() as u64).next_multiple_of(TABLE_ALIGN as u64);

    let mut xsdt = XSDT::new(OEM_ID, *b"SATAVMXS", OEM_REVISION);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    let placed = [
        out.push(&aml_bytes(&xsdt)),
        out.push(&fadt(dsdt_at)),
        out.push(&dsdt),
        out.push(&madt),
    ];
    debug_assert_eq!(placed, [xsdt_at, fadt_at, dsdt_at, madt_at]);

    let rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt_at));
    out.bytes[..rsdp_len].copy_from_slice(&rsdp);
    AcpiTables {
        bytes: out.bytes,
        base: out.base,
    }
}

/// Build the tables and write them into guest memory at [`ACPI_START`].
pub fn write(
    mem: &GuestMemoryMmap,
    cpus: u8,
    pci_intx: &[(u8, u8)],
) -> Result<AcpiTables, AcpiError> {
    let tables = build(cpus, pci_intx);
    let limit = ACPI_END - ACPI_START;
    if tables.bytes.len() as u64 > limit {
        return Err(AcpiError::TooBig {
            size: tables.bytes.len(),
            limit,
            at: ACPI_START,
        });
    }
    mem.write_slice(&tables.bytes, GuestAddress(tables.base))
        .map_err(|e| AcpiError::Memory(e.to_string()))?;
    Ok(tables)
}

#[cfg(test)]
mod tests;
