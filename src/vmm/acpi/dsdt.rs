//! The Differentiated System Description Table (ACPI 6.5 §5.2.11.1): the AML that describes
//! satavm's machine to the guest.
//!
//! ```text
//! \_S5            sleep type of soft off (§7.4.2), what the sleep control register expects
//! \_SB.PCI0       PCI root bridge (PNP0A03, conventional PCI, configuration mechanism #1, no
//!                 ECAM): bus 0, the 0xcf8 ports, I/O windows around them, the 32-bit MMIO
//!                 hole up to the IOAPIC as its memory window; _PRT (§6.2.13) for each
//!                 function's INTx; one Device per function (_ADR)
//! \_SB.COM1       16550 UART (PNP0501) at 0x3f8, IRQ 4
//! \_SB.PWRC       motherboard resources (PNP0C02): the sleep/reset registers and the
//!                 exit-code port, so that the OS hands them to nothing else
//! \_SB.PEVT       pvpanic (QEMU0001) at its port (src/vmm/pvpanic.rs)
//! ```

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Name, Package,
    ResourceTemplate, Scope, IO,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use super::registers;
use super::{OEM_ID, OEM_REVISION};
use crate::vmm::bus::EXIT_CODE_PORT;
use crate::vmm::layout::{IOAPIC_ADDR, PCI_INTX_GSI, PCI_MMIO_START};
use crate::vmm::pvpanic;
use crate::vmm::serial::{COM1_BASE, COM1_PORTS};

/// DSDT revision 2: integers are 64 bits wide (§5.2.11.1).
const DSDT_REVISION: u8 = 2;
/// ISA IRQ (and GSI) of COM1.
const COM1_IRQ: u32 = 4;
/// PCI configuration mechanism #1's address and data ports.
const PCI_CONFIG_PORT: u16 = 0xcf8;
const PCI_CONFIG_PORTS: u8 = 8;

/// The DSDT for a machine whose PCI functions' INTx are `pci_intx`: (device number, pin 1-4).
pub fn build(pci_intx: &[(u8, u8)]) -> Sdt {
    let mut aml = Vec::new();
    s5().to_aml_bytes(&mut aml);

    let pci0 = PciRoot { intx: pci_intx };
    Scope::new(
        "\\_SB_".into(),
        vec![&pci0 as &dyn Aml, &Com1, &Pwrc, &Pevt],
    )
    .to_aml_bytes(&mut aml);

    let mut dsdt = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        *b"SATAVMDS",
        OEM_REVISION,
    );
    dsdt.append_slice(&aml);
    dsdt
}

/// `Name (_S5, Package () { SLP_TYPa, SLP_TYPb, 0, 0 })` (§7.4.2): in a hardware-reduced
/// platform only SLP_TYPa is used (§4.8.3.7).
fn s5() -> Name {
    let t = registers::S5_SLEEP_TYPE;
    Name::new("_S5_".into(), &Package::new(vec![&t, &t, &0u8, &0u8]))
}

/// `_PRT` entries (§6.2.13): address 0xDDDDFFFF (device D, any function), pin 0-3 (INTA#-INTD#),
/// source 0 (a global system interrupt, no link device), source index the GSI. With a GSI the
/// interrupt is level-triggered, active-low; KVM's IOAPIC takes the line's level as given.
struct PrtEntry {
    address: u32,
    pin: u8,
    gsi: u32,
}

impl Aml for PrtEntry {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        Package::new(vec![&self.address, &self.pin, &0u8, &self.gsi]).to_aml_bytes(sink);
    }
}

/// `\_SB.PCI0`, with the functions whose INTx are `intx`: (device number, pin 1-4).
struct PciRoot<'a> {
    intx: &'a [(u8, u8)],
}

impl Aml for PciRoot<'_> {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let hid = Name::new("_HID".into(), &EISAName::new("PNP0A03"));
        let seg = Name::new("_SEG".into(), &0u8);
        let uid = Name::new("_UID".into(), &0u8);
        let bbn = Name::new("_BBN".into(), &0u8);
        let bus = AddressSpace::<u16>::new_bus_number(0, 0);
        let config_ports = IO::new(PCI_CONFIG_PORT, PCI_CONFIG_PORT, 1, PCI_CONFIG_PORTS);
        let io_low = AddressSpace::<u16>::new_io(0, PCI_CONFIG_PORT - 1, None);
        let io_high = AddressSpace::<u16>::new_io(
            PCI_CONFIG_PORT + u16::from(PCI_CONFIG_PORTS),
            0xffff,
            None,
        );
        let mmio = AddressSpace::<u32>::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            PCI_MMIO_START as u32,
            IOAPIC_ADDR - 1,
            None,
        );
        let crs = Name::new(
            "_CRS".into(),
            &ResourceTemplate::new(vec![&bus, &config_ports, &io_low, &io_high, &mmio]),
        );
        let entries: Vec<PrtEntry> = self
            .intx
            .iter()
            .map(|&(device, pin)| PrtEntry {
                address: u32::from(device) << 16 | 0xffff,
                pin: pin.saturating_sub(1),
                gsi: PCI_INTX_GSI,
            })
            .collect();
        let prt = Name::new(
            "_PRT".into(),
            &Package::new(entries.iter().map(|e| e as &dyn Aml).collect()),
        );
        let functions: Vec<(Name, String)> = self
            .intx
            .iter()
            .map(|&(device, _)| {
                (
                    Name::new("_ADR".into(), &(u32::from(device) << 16)),
                    format!("S{device:03X}"),
                )
            })
            .collect();
        let function_devices: Vec<Device> = functions
            .iter()
            .map(|(adr, name)| Device::new(name.as_str().into(), vec![adr as &dyn Aml]))
            .collect();
        let mut children: Vec<&dyn Aml> = vec![&hid, &seg, &uid, &bbn, &crs, &prt];
        children.extend(function_devices.iter().map(|d| d as &dyn Aml));
        Device::new("PCI0".into(), children).to_aml_bytes(sink);
    }
}

/// `\_SB.COM1`: the 8250 that satavm's console is.
struct Com1;

impl Aml for Com1 {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let hid = Name::new("_HID".into(), &EISAName::new("PNP0501"));
        let uid = Name::new("_UID".into(), &1u8);
        let io = IO::new(COM1_BASE, COM1_BASE, 1, COM1_PORTS as u8);
        // Edge-triggered, active-high, exclusive: an ISA interrupt.
        let irq = Interrupt::new(true, true, false, false, COM1_IRQ);
        let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&io, &irq]));
        Device::new("COM1".into(), vec![&hid, &uid, &crs]).to_aml_bytes(sink);
    }
}

/// `\_SB.PWRC`: ports satavm decodes that no PCI BAR may get.
struct Pwrc;

impl Aml for Pwrc {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let hid = Name::new("_HID".into(), &EISAName::new("PNP0C02"));
        let uid = Name::new("_UID".into(), &2u8);
        let power = IO::new(
            registers::FIRST_PORT,
            registers::FIRST_PORT,
            1,
            registers::PORT_COUNT as u8,
        );
        let exit = IO::new(EXIT_CODE_PORT, EXIT_CODE_PORT, 1, 4);
        let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&power, &exit]));
        Device::new("PWRC".into(), vec![&hid, &uid, &crs]).to_aml_bytes(sink);
    }
}

/// `\_SB.PEVT`: the pvpanic port. `_STA` 0x0B: present, enabled, functioning, not shown in
/// the UI (QEMU's value).
struct Pevt;

impl Aml for Pevt {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        let hid = Name::new("_HID".into(), &"QEMU0001");
        let io = IO::new(pvpanic::PORT, pvpanic::PORT, 1, 1);
        let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&io]));
        let sta = Name::new("_STA".into(), &0x0bu8);
        Device::new("PEVT".into(), vec![&hid, &crs, &sta]).to_aml_bytes(sink);
    }
}
