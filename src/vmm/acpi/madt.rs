//! The Multiple APIC Description Table (ACPI 6.5 §5.2.12): the same machine the MP table
//! describes (src/vmm/mptable.rs), in ACPI's terms: one Processor Local APIC per vCPU (APIC
//! ID = vCPU number), the IOAPIC (ID after the CPUs, GSI base 0), and the local APICs' LINT1 as
//! NMI. ISA IRQs 0-15 reach IOAPIC pins 0-15 one to one (KVM's default routing), which is
//! ACPI's default (§5.2.12.5), so there is no Interrupt Source Override, as the MP table has
//! only identity entries for them; the PCI functions' INTx are the DSDT's `_PRT`.

use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::{Aml, AmlSink};
use zerocopy::{Immutable, IntoBytes};

use super::{OEM_ID, OEM_REVISION};
use crate::vmm::layout::{IOAPIC_ADDR, LAPIC_ADDR};

/// MADT flags: PCAT_COMPAT, the machine also has dual 8259s (KVM's PICs) (§5.2.12 table 5.20).
const PCAT_COMPAT: u32 = 1;
/// Processor UID meaning "all processors" in a Local APIC NMI structure (§5.2.12.7).
const ALL_PROCESSORS: u8 = 0xff;
/// Local APIC NMI structure type (§5.2.12 table 5.21).
const LOCAL_APIC_NMI: u8 = 4;
/// MPS INTI flags: polarity and trigger "conforms to the bus" (§5.2.12.5 table 5.26).
const MPS_INTI_CONFORMING: u16 = 0;

/// Local APIC NMI structure (§5.2.12.7): which LINT pin of which processor is the NMI.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable)]
pub struct LocalApicNmi {
    r#type: u8,
    length: u8,
    processor_uid: u8,
    flags: [u8; 2],
    lint: u8,
}

impl LocalApicNmi {
    fn new(processor_uid: u8, lint: u8) -> Self {
        LocalApicNmi {
            r#type: LOCAL_APIC_NMI,
            length: 6,
            processor_uid,
            flags: MPS_INTI_CONFORMING.to_le_bytes(),
            lint,
        }
    }
}

impl Aml for LocalApicNmi {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

/// Offset of the MADT's Flags field, after the local interrupt controller address (§5.2.12
/// table 5.19); acpi_tables' MADT has no setter for it.
const FLAGS_OFFSET: usize = 40;

/// The MADT for `cpus` vCPUs, as bytes.
pub fn build(cpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        *b"SATAVMAP",
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for cpu in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    // The IOAPIC's ID follows the CPUs', as in the MP table.
    madt.add_structure(IoApic::new(cpus, IOAPIC_ADDR, 0));
    madt.add_structure(LocalApicNmi::new(ALL_PROCESSORS, 1));
    let mut bytes = Vec::new();
    madt.to_aml_bytes(&mut bytes);
    if let Some(flags) = bytes.get_mut(FLAGS_OFFSET..FLAGS_OFFSET + 4) {
        flags.copy_from_slice(&PCAT_COMPAT.to_le_bytes());
    }
    super::fix_checksum(&mut bytes);
    bytes
}
