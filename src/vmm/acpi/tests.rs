//! The tables checked by an independent parser, rust-osdev's `acpi` (RSDP -> XSDT -> FADT ->
//! DSDT, MADT entries, checksums), and the DSDT's AML by a small decoder of its own below
//! (ACPI 6.5 §20.2 encodings; no AML interpreter on crates.io builds on stable Rust).

use std::ptr::NonNull;

use ::acpi::fadt::Fadt;
use ::acpi::madt::{Madt, MadtEntry};
use ::acpi::{AcpiHandler, AcpiTables as ParsedTables, PhysicalMapping};

use super::*;
use crate::vmm::layout::{IOAPIC_ADDR, LAPIC_ADDR, PCI_INTX_GSI};

/// Guest physical memory holding only the tables, for the `acpi` crate to map.
#[derive(Clone, Copy)]
struct TableMemory {
    base: usize,
    bytes: &'static [u8],
}

impl TableMemory {
    fn new(tables: &AcpiTables) -> Self {
        TableMemory {
            base: tables.base as usize,
            bytes: Box::leak(tables.bytes.clone().into_boxed_slice()),
        }
    }
}

impl AcpiHandler for TableMemory {
    unsafe fn map_physical_region<T>(
        &self,
        address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let offset = address - self.base;
        assert!(
            offset + size <= self.bytes.len(),
            "mapping {address:#x}+{size} is outside the tables"
        );
        let ptr = NonNull::new(self.bytes[offset..].as_ptr() as *mut T).unwrap();
        // SAFETY: `ptr` points into a leaked, immutable buffer of at least `size` bytes; the
        // acpi crate's table types are packed (alignment 1) and only read through it.
        unsafe { PhysicalMapping::new(address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

fn parse(tables: &AcpiTables) -> ParsedTables<TableMemory> {
    // SAFETY: the RSDP is at the tables' base, inside the memory the handler maps.
    unsafe { ParsedTables::from_rsdp(TableMemory::new(tables), tables.rsdp() as usize) }
        .expect("RSDP and XSDT valid")
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// The table at guest address `at` (its length from its header).
fn table_at(tables: &AcpiTables, at: u64) -> &[u8] {
    let off = (at - tables.base) as usize;
    let len = u32::from_le_bytes(tables.bytes[off + 4..off + 8].try_into().unwrap()) as usize;
    &tables.bytes[off..off + len]
}

#[test]
fn every_table_sums_to_zero_and_the_chain_reaches_the_dsdt() {
    let t = build(2, &[(1, 1)]);
    assert_eq!(t.rsdp(), 0xe0000);
    let rsdp = &t.bytes[..36];
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp[15], 2, "ACPI 2.0+ RSDP");
    assert_eq!(sum(&rsdp[..20]), 0, "RSDP checksum (first 20 bytes)");
    assert_eq!(sum(rsdp), 0, "RSDP extended checksum");
    let xsdt_at = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
    let xsdt = table_at(&t, xsdt_at);
    assert_eq!(&xsdt[..4], b"XSDT");
    assert_eq!(sum(xsdt), 0, "XSDT checksum");
    let entries: Vec<u64> = xsdt[36..]
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let signatures: Vec<&[u8]> = entries.iter().map(|&a| &table_at(&t, a)[..4]).collect();
    assert_eq!(signatures, vec![b"FACP" as &[u8], b"APIC"]);
    for &a in &entries {
        assert_eq!(sum(table_at(&t, a)), 0, "checksum of the table at {a:#x}");
    }
    let fadt = table_at(&t, entries[0]);
    assert_eq!(fadt.len(), 276, "FADT 6.x length");
    let x_dsdt = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
    let dsdt = table_at(&t, x_dsdt);
    assert_eq!(&dsdt[..4], b"DSDT");
    assert_eq!(sum(dsdt), 0, "DSDT checksum");
    assert!(
        !t.bytes.windows(4).any(|w| w == b"MCFG"),
        "no MCFG: there is no ECAM"
    );

    // The same chain through an independent parser, which checks every checksum it meets.
    let parsed = parse(&t);
    let fadt = parsed.find_table::<Fadt>().expect("FADT");
    assert_eq!(fadt.dsdt_address().unwrap() as u64, x_dsdt);
    let aml = parsed.dsdt().expect("DSDT valid");
    assert_eq!(aml.address as u64, x_dsdt + 36);
    assert!(parsed.find_table::<Madt>().is_ok());
}

#[test]
fn the_fadt_is_hardware_reduced_with_sleep_and_reset_registers() {
    let parsed = parse(&build(1, &[]));
    let fadt = parsed.find_table::<Fadt>().unwrap();
    fadt.validate().unwrap();
    let flags = { fadt.flags };
    assert!(flags.system_is_hw_reduced_acpi());
    assert!(flags.supports_system_reset_via_fadt());
    let boot_arch = { fadt.iapc_boot_arch };
    assert!(boot_arch.dont_probe_vga());
    assert!(!boot_arch.motherboard_implements_8042());
    assert!(!boot_arch.dont_enable_msi());
    let byte_port = |g: ::acpi::address::GenericAddress, port: u16| {
        assert_eq!(g.address_space, ::acpi::address::AddressSpace::SystemIo);
        assert_eq!(
            (g.bit_width, g.bit_offset, g.address),
            (8, 0, u64::from(port))
        );
    };
    byte_port(fadt.reset_register().unwrap(), registers::RESET_PORT);
    assert_eq!({ fadt.reset_value }, registers::RESET_VALUE);
    byte_port(
        fadt.sleep_control_register()
            .unwrap()
            .expect("sleep control register"),
        registers::SLEEP_CONTROL_PORT,
    );
    byte_port(
        fadt.sleep_status_register()
            .unwrap()
            .expect("sleep status register"),
        registers::SLEEP_STATUS_PORT,
    );
}

/// What the MADT says, as the `acpi` crate reads it.
struct MadtSummary {
    /// Local APIC IDs, in order.
    lapics: Vec<u8>,
    /// (ID, address, GSI base) of each IOAPIC.
    ioapics: Vec<(u8, u32, u32)>,
    /// (processor UID, LINT) of each Local APIC NMI.
    nmis: Vec<(u8, u8)>,
    flags: u32,
}

fn madt_entries(cpus: u8) -> MadtSummary {
    let parsed = parse(&build(cpus, &[(1, 1)]));
    let madt = parsed.find_table::<Madt>().unwrap();
    let madt = madt.get();
    let (mut lapics, mut ioapics, mut nmis) = (Vec::new(), Vec::new(), Vec::new());
    assert_eq!({ madt.local_apic_address }, LAPIC_ADDR);
    for e in madt.entries() {
        match e {
            MadtEntry::LocalApic(l) => {
                assert_eq!({ l.flags } & 1, 1, "enabled");
                assert_eq!(l.processor_id, l.apic_id);
                lapics.push(l.apic_id);
            }
            MadtEntry::IoApic(i) => ioapics.push((i.io_apic_id, { i.io_apic_address }, {
                i.global_system_interrupt_base
            })),
            MadtEntry::LocalApicNmi(n) => nmis.push((n.processor_id, n.nmi_line)),
            other => panic!("unexpected MADT entry {other:?}"),
        }
    }
    MadtSummary {
        lapics,
        ioapics,
        nmis,
        flags: { madt.flags },
    }
}

#[test]
fn the_madt_has_a_local_apic_per_vcpu_and_the_ioapic_after_them() {
    for cpus in [1u8, 2, 7, crate::vmm::MAX_CPUS] {
        let MadtSummary {
            lapics,
            ioapics,
            nmis,
            flags,
        } = madt_entries(cpus);
        assert_eq!(lapics, (0..cpus).collect::<Vec<_>>(), "{cpus} vCPUs");
        assert_eq!(ioapics, vec![(cpus, IOAPIC_ADDR, 0)]);
        assert_eq!(nmis, vec![(0xff, 1)], "LINT1 is NMI on every CPU");
        assert_eq!(flags, 1, "PCAT_COMPAT");
    }
}

#[test]
fn the_tables_fit_the_bios_area_for_the_largest_machine() {
    let t = build(crate::vmm::MAX_CPUS, &[(1, 1)]);
    assert!(t.base + t.bytes.len() as u64 <= ACPI_END);
}

/// An AML data object (§20.2.3): what the decoder understands.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    Int(u64),
    Package(Vec<Data>),
    Buffer(Vec<u8>),
}

/// PkgLength (§20.2.4): (length, bytes it took).
fn pkg_length(b: &[u8]) -> (usize, usize) {
    let follow = usize::from(b[0] >> 6);
    if follow == 0 {
        return (usize::from(b[0] & 0x3f), 1);
    }
    let mut len = usize::from(b[0] & 0x0f);
    for i in 0..follow {
        len |= usize::from(b[1 + i]) << (4 + 8 * i);
    }
    (len, 1 + follow)
}

/// One data object at the start of `b`, and its size.
fn data(b: &[u8]) -> (Data, usize) {
    let le = |n: usize| {
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&b[1..1 + n]);
        u64::from_le_bytes(v)
    };
    match b[0] {
        0x00 => (Data::Int(0), 1),
        0x01 => (Data::Int(1), 1),
        0xff => (Data::Int(u64::MAX), 1),
        0x0a => (Data::Int(le(1)), 2),
        0x0b => (Data::Int(le(2)), 3),
        0x0c => (Data::Int(le(4)), 5),
        0x0e => (Data::Int(le(8)), 9),
        0x12 => {
            let (len, n) = pkg_length(&b[1..]);
            let count = usize::from(b[1 + n]);
            let mut at = 2 + n;
            let mut items = Vec::new();
            for _ in 0..count {
                let (d, used) = data(&b[at..]);
                items.push(d);
                at += used;
            }
            assert_eq!(at, 1 + len, "package length");
            (Data::Package(items), 1 + len)
        }
        0x11 => {
            let (len, n) = pkg_length(&b[1..]);
            let (size, used) = data(&b[1 + n..]);
            let Data::Int(size) = size else {
                panic!("buffer size")
            };
            let start = 1 + n + used;
            assert_eq!(start + size as usize, 1 + len, "buffer length");
            (Data::Buffer(b[start..1 + len].to_vec()), 1 + len)
        }
        op => panic!("data object opcode {op:#x} not decoded"),
    }
}

/// The body of `Device (NAME)` (§20.2.5.2 DefDevice: ExtOpPrefix 0x82 PkgLength NameString).
fn device<'a>(aml: &'a [u8], name: &str) -> &'a [u8] {
    for at in 0..aml.len().saturating_sub(6) {
        if aml[at..at + 2] == [0x5b, 0x82] {
            let (len, n) = pkg_length(&aml[at + 2..]);
            let seg = at + 2 + n;
            if &aml[seg..seg + 4] == name.as_bytes() {
                return &aml[seg + 4..at + 2 + len];
            }
        }
    }
    panic!("no Device ({name})");
}

/// The value of `Name (SEG, ...)` directly in `body` (§20.2.5.1 DefName: 0x08 NameSeg DataRef).
fn name(body: &[u8], seg: &str) -> Data {
    let mut pat = vec![0x08];
    pat.extend_from_slice(seg.as_bytes());
    let at = body
        .windows(5)
        .position(|w| w == pat.as_slice())
        .unwrap_or_else(|| panic!("no Name ({seg})"));
    data(&body[at + 5..]).0
}

fn int(d: &Data) -> u64 {
    match d {
        Data::Int(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

/// A resource descriptor (§6.4) the decoder understands.
#[derive(Debug, PartialEq)]
enum Res {
    /// I/O port descriptor: min, max, length.
    Io(u16, u16, u8),
    /// Extended interrupt descriptor: flags, interrupt number.
    Irq(u8, u32),
    /// Word or DWord address space descriptor: resource type (0 memory, 1 I/O, 2 bus), min, max.
    Space(u8, u64, u64),
}

fn resources(d: &Data) -> Vec<Res> {
    let Data::Buffer(b) = d else {
        panic!("_CRS is not a buffer: {d:?}")
    };
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let tag = b[at];
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        match tag {
            0x47 => {
                out.push(Res::Io(u16_at(at + 2), u16_at(at + 4), b[at + 7]));
                at += 8;
            }
            0x79 => break,
            0x87..=0x89 => {
                let len = usize::from(u16_at(at + 1));
                match tag {
                    0x89 => out.push(Res::Irq(b[at + 3], u32_at(at + 5))),
                    0x88 => out.push(Res::Space(
                        b[at + 3],
                        u64::from(u16_at(at + 8)),
                        u64::from(u16_at(at + 10)),
                    )),
                    _ => out.push(Res::Space(
                        b[at + 3],
                        u64::from(u32_at(at + 10)),
                        u64::from(u32_at(at + 14)),
                    )),
                }
                at += 3 + len;
            }
            other => panic!("resource descriptor {other:#x} not decoded"),
        }
    }
    out
}

/// The DSDT's AML (after its header).
fn dsdt_aml(pci_intx: &[(u8, u8)]) -> Vec<u8> {
    let t = build(1, pci_intx);
    let parsed = parse(&t);
    let dsdt = parsed.dsdt().unwrap();
    let off = dsdt.address - t.base as usize;
    t.bytes[off..off + dsdt.length as usize].to_vec()
}

#[test]
fn s5_names_the_sleep_type_the_sleep_control_register_powers_off_with() {
    let aml = dsdt_aml(&[(1, 1)]);
    // At the root of the namespace, ahead of \_SB.
    let Data::Package(s5) = name(&aml, "_S5_") else {
        panic!("\\_S5 is not a package");
    };
    assert_eq!(s5.len(), 4);
    let slp_typ_a = int(&s5[0]) as u8;
    assert_eq!(slp_typ_a, registers::S5_SLEEP_TYPE);
    // What the guest then writes (§4.8.3.7: SLP_TYP in bits 2-4, SLP_EN bit 5).
    assert_eq!(
        registers::write(registers::SLEEP_CONTROL_PORT, (slp_typ_a << 2) | 1 << 5),
        Some(registers::PowerRequest::PowerOff)
    );
}

#[test]
fn prt_routes_the_ahci_function_inta_to_its_gsi() {
    let aml = dsdt_aml(&[(1, 1)]);
    let pci0 = device(&aml, "PCI0");
    let Data::Package(prt) = name(pci0, "_PRT") else {
        panic!("_PRT")
    };
    // One entry: { address 0x0001FFFF (device 1, any function), pin 0 (INTA#), source 0 (a
    // GSI), source index the GSI }.
    let entries: Vec<Vec<u64>> = prt
        .iter()
        .map(|e| match e {
            Data::Package(f) => f.iter().map(int).collect(),
            other => panic!("_PRT entry {other:?}"),
        })
        .collect();
    assert_eq!(
        entries,
        vec![vec![0x0001_ffff, 0, 0, u64::from(PCI_INTX_GSI)]]
    );
    assert_eq!(int(&name(device(pci0, "S001"), "_ADR")), 0x0001_0000);

    let two = dsdt_aml(&[(1, 1), (3, 2)]);
    let Data::Package(prt) = name(device(&two, "PCI0"), "_PRT") else {
        panic!()
    };
    assert_eq!(
        prt[1],
        Data::Package(vec![
            Data::Int(0x0003_ffff),
            Data::Int(1),
            Data::Int(0),
            Data::Int(u64::from(PCI_INTX_GSI))
        ]),
        "device 3 INTB#"
    );
}

#[test]
fn the_pci_root_is_a_pci_host_bridge_with_satavm_windows() {
    let aml = dsdt_aml(&[(1, 1)]);
    let pci0 = device(&aml, "PCI0");
    assert_eq!(int(&name(pci0, "_HID")), eisa_id("PNP0A03"));
    assert_eq!(
        resources(&name(pci0, "_CRS")),
        vec![
            Res::Space(2, 0, 0),
            Res::Io(0xcf8, 0xcf8, 8),
            Res::Space(1, 0, 0xcf7),
            Res::Space(1, 0xd00, 0xffff),
            Res::Space(0, 0xc000_0000, u64::from(IOAPIC_ADDR) - 1),
        ]
    );
}

#[test]
fn com1_is_a_16550_at_0x3f8_on_irq_4() {
    let aml = dsdt_aml(&[]);
    let com1 = device(&aml, "COM1");
    assert_eq!(int(&name(com1, "_HID")), eisa_id("PNP0501"));
    // Flags: consumer, edge-triggered, active-high, exclusive (§6.4.3.6).
    assert_eq!(
        resources(&name(com1, "_CRS")),
        vec![Res::Io(0x3f8, 0x3f8, 8), Res::Irq(0b0011, 4)]
    );
}

#[test]
fn the_power_registers_and_exit_port_are_claimed_as_motherboard_resources() {
    let aml = dsdt_aml(&[]);
    let pwrc = device(&aml, "PWRC");
    assert_eq!(int(&name(pwrc, "_HID")), eisa_id("PNP0C02"));
    assert_eq!(
        resources(&name(pwrc, "_CRS")),
        vec![Res::Io(0x600, 0x600, 3), Res::Io(0x501, 0x501, 4)]
    );
}

/// An EISA ID as AML encodes it (§19.6.35).
fn eisa_id(id: &str) -> u64 {
    let b = id.as_bytes();
    let c = |x: u8| u32::from(x - b'@');
    let hex = u32::from_str_radix(&id[3..], 16).unwrap();
    u64::from((c(b[0]) << 26 | c(b[1]) << 21 | c(b[2]) << 16 | hex).swap_bytes())
}

#[test]
fn pvpanic_is_described_at_its_port() {
    let aml = dsdt_aml(&[]);
    let pevt = device(&aml, "PEVT");
    // _HID is the string "QEMU0001" (StringPrefix 0x0d).
    let hid = b"\x08_HID\x0dQEMU0001\x00";
    assert!(pevt.windows(hid.len()).any(|w| w == hid));
    assert_eq!(
        resources(&name(pevt, "_CRS")),
        vec![Res::Io(
            crate::vmm::pvpanic::PORT,
            crate::vmm::pvpanic::PORT,
            1
        )]
    );
    assert_eq!(int(&name(pevt, "_STA")), 0x0b);
}
