//! vCPU state for the 64-bit boot protocol: CPUID, MSRs, long-mode segments and page tables,
//! FPU, and the local APIC's LINT0/LINT1 (Intel SDM vol. 3 chapters 3, 4, 10).

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::boot::BootEntry;
use super::layout::{BOOT_GDT, BOOT_IDT, BOOT_STACK, PDE, PDPTE, PML4};

/// Why a vCPU could not be set up.
#[derive(Debug, Error)]
pub enum CpuError {
    #[error("KVM ioctl {what} failed: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("writing boot page tables or GDT: {0}")]
    Memory(String),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CpuError {
    move |source| CpuError::Kvm { what, source }
}

// MSR numbers (Intel SDM vol. 4).
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

// Control register bits.
const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

// Local APIC LVT registers and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Configure vCPU `id` of `count` to enter the kernel at `entry`.
pub fn configure(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    mem: &GuestMemoryMmap,
    id: u8,
    count: u8,
    entry: BootEntry,
) -> Result<(), CpuError> {
    setup_cpuid(kvm, vcpu, id, count)?;
    setup_msrs(vcpu)?;
    setup_regs(vcpu, entry)?;
    setup_sregs(vcpu, mem)?;
    setup_fpu(vcpu)?;
    setup_lapic(vcpu)
}

fn setup_cpuid(kvm: &Kvm, vcpu: &VcpuFd, id: u8, count: u8) -> Result<(), CpuError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(self::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // Initial APIC ID (31:24) and logical processor count (23:16); hypervisor bit.
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                e.ecx |= 1 << 31;
                // TSC-deadline mode of the LAPIC timer (ECX bit 24), which KVM emulates but
                // KVM_GET_SUPPORTED_CPUID leaves for userspace to set (api.rst,
                // KVM_CAP_TSC_DEADLINE_TIMER), as QEMU does: without it Linux calibrates the
                // LAPIC timer against the PIT at boot and reprograms TMICT on every tick.
                if kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
                    e.ecx |= 1 << 24;
                }
            }
            0xb | 0x1f => e.edx = u32::from(id), // x2APIC ID
            _ => {}
        }
    }
    vcpu.set_cpuid2(&cpuid).map_err(self::kvm("KVM_SET_CPUID2"))
}

fn setup_msrs(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    let msrs = Msrs::from_entries(&[
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ])
    .map_err(|_| CpuError::Memory("MSR list too long".into()))?;
    vcpu.set_msrs(&msrs).map_err(self::kvm("KVM_SET_MSRS"))?;
    Ok(())
}

fn setup_regs(vcpu: &VcpuFd, entry: BootEntry) -> Result<(), CpuError> {
    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry.rip,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        rsi: entry.zero_page,
        rdi: entry.rdi,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))
}

/// A GDT descriptor from access `flags` (bits 15:12 G/DB/L/AVL, 7:0 P/DPL/S/type), base, limit.
fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0xffff)
}

/// The kvm_segment that loading selector `index * 8` from `entry` would produce.
fn segment(index: u16, entry: u64) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        ..Default::default()
    }
}

fn setup_sregs(vcpu: &VcpuFd, mem: &GuestMemoryMmap) -> Result<(), CpuError> {
    let gdt = [
        gdt_entry(0, 0, 0),
        gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
        gdt_entry(0xc093, 0, 0xfffff), // data
        gdt_entry(0x808b, 0, 0xfffff), // TSS
    ];
    let write = |addr: u64, v: u64| {
        mem.write_obj(v, GuestAddress(addr))
            .map_err(|e| CpuError::Memory(e.to_string()))
    };
    for (i, e) in gdt.iter().enumerate() {
        write(BOOT_GDT + 8 * i as u64, *e)?;
    }
    write(BOOT_IDT, 0)?;
    // Identity map of the first 4 GiB with 2 MiB pages.
    write(PML4, PDPTE | 0x3)?;
    for i in 0..4u64 {
        write(PDPTE + 8 * i, (PDE + 0x1000 * i) | 0x3)?;
        for j in 0..512u64 {
            write(PDE + 0x1000 * i + 8 * j, ((i * 512 + j) << 21) | 0x83)?;
        }
    }

    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 7;
    let code = segment(1, gdt[1]);
    let data = segment(2, gdt[2]);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(3, gdt[3]);
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = PML4;
    sregs.cr4 |= CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))
}

fn setup_fpu(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))
}

fn setup_lapic(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let v = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_code_segment() {
        let cs = segment(1, gdt_entry(0xa09b, 0, 0xfffff));
        assert_eq!(
            (cs.selector, cs.l, cs.db, cs.present, cs.type_, cs.s),
            (8, 1, 0, 1, 0xb, 1)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = segment(2, gdt_entry(0xc093, 0, 0xfffff));
        assert_eq!((ds.db, ds.l, ds.type_), (1, 0, 3));
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
    }
}
