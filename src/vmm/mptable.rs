//! Intel MultiProcessor Specification 1.4 tables: how Linux finds the CPUs, the IOAPIC and the
//! interrupt routing without ACPI (MP spec chapter 4).

use super::layout::{IOAPIC_ADDR, IOAPIC_PINS, LAPIC_ADDR, PCI_INTX_GSI};

const MPC_SPEC_REV: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const BUS_PCI: u8 = 0;
const BUS_ISA: u8 = 1;

/// Entry types (MP spec table 4-3).
mod entry {
    pub const PROCESSOR: u8 = 0;
    pub const BUS: u8 = 1;
    pub const IOAPIC: u8 = 2;
    pub const IO_INTERRUPT: u8 = 3;
    pub const LOCAL_INTERRUPT: u8 = 4;
}

/// Interrupt types (MP spec table 4-9).
mod irq_type {
    pub const INT: u8 = 0;
    pub const NMI: u8 = 1;
    pub const EXTINT: u8 = 3;
}

/// Polarity/trigger flags: active high, level triggered (MP spec table 4-10).
const FLAGS_LEVEL_HIGH: u16 = 0b1101;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_sub(*b))
}

/// The MP floating pointer structure followed by the configuration table, ready to be copied
/// to guest address `at`.
pub fn build(cpus: u8, at: u64, pci_intx: &[(u8, u8)]) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count = 0u16;
    for cpu in 0..cpus {
        let mut e = [0u8; 20];
        e[0] = entry::PROCESSOR;
        e[1] = cpu; // local APIC ID
        e[2] = LAPIC_VERSION;
        e[3] = 0x01 | if cpu == 0 { 0x02 } else { 0 }; // EN, BP
        e[4..8].copy_from_slice(&0x600u32.to_le_bytes()); // CPU signature: family 6
        e[8..12].copy_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&e);
        count += 1;
    }
    for (id, name) in [(BUS_PCI, b"PCI   "), (BUS_ISA, b"ISA   ")] {
        let mut e = [0u8; 8];
        e[0] = entry::BUS;
        e[1] = id;
        e[2..8].copy_from_slice(name);
        entries.extend_from_slice(&e);
        count += 1;
    }
    let mut e = [0u8; 8];
    e[0] = entry::IOAPIC;
    e[1] = ioapic_id;
    e[2] = IOAPIC_VERSION;
    e[3] = 0x01; // EN
    e[4..8].copy_from_slice(&IOAPIC_ADDR.to_le_bytes());
    entries.extend_from_slice(&e);
    count += 1;
    let mut io_interrupt = |kind: u8, flags: u16, bus: u8, bus_irq: u8, pin: u8| {
        let mut e = [0u8; 8];
        e[0] = entry::IO_INTERRUPT;
        e[1] = kind;
        e[2..4].copy_from_slice(&flags.to_le_bytes());
        e[4] = bus;
        e[5] = bus_irq;
        e[6] = ioapic_id;
        e[7] = pin;
        entries.extend_from_slice(&e);
        count += 1;
    };
    // ISA IRQs 0..15 on IOAPIC pins 0..15, as KVM's default GSI routing wires them.
    for irq in 0..16 {
        io_interrupt(irq_type::INT, 0, BUS_ISA, irq, irq);
    }
    // PCI INTx: source IRQ is (device << 2) | (pin - 1) (MP spec D.3).
    for &(device, pin) in pci_intx {
        let gsi = PCI_INTX_GSI as u8;
        debug_assert!(gsi < IOAPIC_PINS);
        io_interrupt(
            irq_type::INT,
            FLAGS_LEVEL_HIGH,
            BUS_PCI,
            device << 2 | (pin - 1),
            gsi,
        );
    }
    for (kind, lint) in [(irq_type::EXTINT, 0u8), (irq_type::NMI, 1)] {
        let mut e = [0u8; 8];
        e[0] = entry::LOCAL_INTERRUPT;
        e[1] = kind;
        e[4] = BUS_ISA;
        e[6] = 0xff; // all local APICs
        e[7] = lint;
        entries.extend_from_slice(&e);
        count += 1;
    }

    let table_at = at + 16;
    let mut table = vec![0u8; 44];
    table[0..4].copy_from_slice(b"PCMP");
    let length = (44 + entries.len()) as u16;
    table[4..6].copy_from_slice(&length.to_le_bytes());
    table[6] = MPC_SPEC_REV;
    table[8..16].copy_from_slice(b"SATAVM  ");
    table[16..28].copy_from_slice(b"MICROVM     ");
    table[34..36].copy_from_slice(&count.to_le_bytes());
    table[36..40].copy_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = vec![0u8; 16];
    floating[0..4].copy_from_slice(b"_MP_");
    floating[4..8].copy_from_slice(&(table_at as u32).to_le_bytes());
    floating[8] = 1; // length in 16-byte units
    floating[9] = MPC_SPEC_REV;
    floating[10] = checksum(&floating);
    floating.extend_from_slice(&table);
    floating
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_pointers_are_valid() {
        let t = build(4, 0x9fc00, &[(1, 1)]);
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(sum(&t[0..16]), 0, "floating pointer checksum");
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 0x9fc10);
        let table = &t[16..];
        assert_eq!(&table[0..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(sum(table), 0, "configuration table checksum");
    }

    #[test]
    fn entries_describe_cpus_ioapic_and_routing() {
        let t = build(2, 0x9fc00, &[(1, 1)]);
        let table = &t[16..];
        let count = u16::from_le_bytes([table[34], table[35]]);
        let mut at = 44;
        let (mut cpus, mut boot_cpus, mut buses, mut ioapics, mut ints, mut lints) =
            (0, 0, 0, 0, 0, 0);
        let mut pci_route = None;
        for _ in 0..count {
            let kind = table[at];
            match kind {
                0 => {
                    cpus += 1;
                    if table[at + 3] & 2 != 0 {
                        boot_cpus += 1;
                    }
                    at += 20;
                    continue;
                }
                1 => buses += 1,
                2 => {
                    ioapics += 1;
                    assert_eq!(table[at + 1], 2, "IOAPIC ID follows the CPUs");
                }
                3 => {
                    ints += 1;
                    if table[at + 4] == BUS_PCI {
                        pci_route = Some((table[at + 5], table[at + 7]));
                    }
                }
                4 => lints += 1,
                other => panic!("unexpected entry type {other}"),
            }
            at += 8;
        }
        assert_eq!(at, table.len());
        assert_eq!(
            (cpus, boot_cpus, buses, ioapics, ints, lints),
            (2, 1, 2, 1, 17, 2)
        );
        assert_eq!(
            pci_route,
            Some((1 << 2, PCI_INTX_GSI as u8)),
            "device 1 INTA# -> GSI"
        );
    }
}
