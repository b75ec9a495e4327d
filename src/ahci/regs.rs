//! Register offsets and bit names of the HBA memory space behind ABAR (AHCI 1.3.1 section 3).

/// Generic Host Control registers (AHCI 3.1), offsets from ABAR.
pub mod hba {
    /// CAP: HBA capabilities (3.1.1).
    pub const CAP: u64 = 0x00;
    /// GHC: global HBA control (3.1.2).
    pub const GHC: u64 = 0x04;
    /// IS: interrupt status, one bit per port (3.1.3).
    pub const IS: u64 = 0x08;
    /// PI: ports implemented (3.1.4).
    pub const PI: u64 = 0x0c;
    /// VS: AHCI version (3.1.5).
    pub const VS: u64 = 0x10;
    /// CCC_CTL: command completion coalescing control (3.1.6); not supported, reads 0.
    pub const CCC_CTL: u64 = 0x14;
    /// CCC_PORTS (3.1.7); not supported, reads 0.
    pub const CCC_PORTS: u64 = 0x18;
    /// EM_LOC: enclosure management location (3.1.8); not supported, reads 0.
    pub const EM_LOC: u64 = 0x1c;
    /// EM_CTL (3.1.9); not supported, reads 0.
    pub const EM_CTL: u64 = 0x20;
    /// CAP2: extended capabilities (3.1.10).
    pub const CAP2: u64 = 0x24;
    /// BOHC: BIOS/OS handoff control (3.1.11); CAP2.BOH is 0, so it reads 0.
    pub const BOHC: u64 = 0x28;
    /// Port register sets start here, 0x80 bytes each (3.3).
    pub const PORTS_BASE: u64 = 0x100;
    /// Size of one port's register set.
    pub const PORT_SIZE: u64 = 0x80;
}

/// CAP bits (3.1.1).
pub mod cap {
    /// S64A: 64-bit addressing.
    pub const S64A: u32 = 1 << 31;
    /// SNCQ: native command queuing.
    pub const SNCQ: u32 = 1 << 30;
    /// SSNTF: SNotification register.
    pub const SSNTF: u32 = 1 << 29;
    /// SCLO: command list override.
    pub const SCLO: u32 = 1 << 24;
    /// ISS: interface speed support, bits 23:20 (3 = Gen3, 6 Gbps).
    pub const ISS_SHIFT: u32 = 20;
    pub const ISS_GEN3: u32 = 3;
    /// SAM: AHCI mode only (GHC.AE reads 1 and is read-only).
    pub const SAM: u32 = 1 << 18;
    /// NCS: number of command slots minus one, bits 12:8.
    pub const NCS_SHIFT: u32 = 8;
    /// NP: number of ports minus one, bits 4:0.
    pub const NP_MASK: u32 = 0x1f;
}

/// GHC bits (3.1.2).
pub mod ghc {
    /// HR: HBA reset (self-clearing).
    pub const HR: u32 = 1 << 0;
    /// IE: interrupt enable.
    pub const IE: u32 = 1 << 1;
    /// MRSM: MSI revert to single message.
    pub const MRSM: u32 = 1 << 2;
    /// AE: AHCI enable.
    pub const AE: u32 = 1 << 31;
}

/// VS value: AHCI 1.3.1 (3.1.5).
pub const AHCI_VERSION_1_3_1: u32 = 0x0001_0301;

/// Number of command slots per port (CAP.NCS + 1).
pub const COMMAND_SLOTS: usize = 32;

/// Port registers (3.3), offsets within a port's 0x80-byte set.
pub mod port {
    /// PxCLB: command list base, 1 KiB aligned (3.3.1).
    pub const CLB: u64 = 0x00;
    /// PxCLBU: command list base upper 32 bits (3.3.2).
    pub const CLBU: u64 = 0x04;
    /// PxFB: FIS base, 256-byte aligned (3.3.3).
    pub const FB: u64 = 0x08;
    /// PxFBU: FIS base upper 32 bits (3.3.4).
    pub const FBU: u64 = 0x0c;
    /// PxIS: interrupt status (3.3.5).
    pub const IS: u64 = 0x10;
    /// PxIE: interrupt enable (3.3.6).
    pub const IE: u64 = 0x14;
    /// PxCMD: command and status (3.3.7).
    pub const CMD: u64 = 0x18;
    /// PxTFD: task file data (3.3.8).
    pub const TFD: u64 = 0x20;
    /// PxSIG: signature (3.3.9).
    pub const SIG: u64 = 0x24;
    /// PxSSTS: SStatus (3.3.10).
    pub const SSTS: u64 = 0x28;
    /// PxSCTL: SControl (3.3.11).
    pub const SCTL: u64 = 0x2c;
    /// PxSERR: SError (3.3.12).
    pub const SERR: u64 = 0x30;
    /// PxSACT: SActive (3.3.13).
    pub const SACT: u64 = 0x34;
    /// PxCI: command issue (3.3.14).
    pub const CI: u64 = 0x38;
    /// PxSNTF: SNotification (3.3.15).
    pub const SNTF: u64 = 0x3c;
}

/// The spec name of the generic host control register at `offset` (AHCI 3.1), e.g. "GHC";
/// None for offsets in the port area.
pub fn hba_register_name(offset: u64) -> Option<&'static str> {
    Some(match offset & !3 {
        hba::CAP => "CAP",
        hba::GHC => "GHC",
        hba::IS => "IS",
        hba::PI => "PI",
        hba::VS => "VS",
        hba::CCC_CTL => "CCC_CTL",
        hba::CCC_PORTS => "CCC_PORTS",
        hba::EM_LOC => "EM_LOC",
        hba::EM_CTL => "EM_CTL",
        hba::CAP2 => "CAP2",
        hba::BOHC => "BOHC",
        o if o < hba::PORTS_BASE => "reserved",
        _ => return None,
    })
}

/// The spec name of the port register at `offset` within a port's set (AHCI 3.3), without
/// the "Px" prefix, e.g. "CI"; "reserved" for the rest.
pub fn port_register_name(offset: u64) -> &'static str {
    match offset & !3 {
        port::CLB => "CLB",
        port::CLBU => "CLBU",
        port::FB => "FB",
        port::FBU => "FBU",
        port::IS => "IS",
        port::IE => "IE",
        port::CMD => "CMD",
        port::TFD => "TFD",
        port::SIG => "SIG",
        port::SSTS => "SSTS",
        port::SCTL => "SCTL",
        port::SERR => "SERR",
        port::SACT => "SACT",
        port::CI => "CI",
        port::SNTF => "SNTF",
        _ => "reserved",
    }
}

/// The name of the register at ABAR offset `offset` as the spec writes it for a given port:
/// "GHC", "P0CI", "P3SSTS"; with the port, if it is a port register.
pub fn register_name(offset: u64) -> (String, Option<u8>) {
    if let Some(n) = hba_register_name(offset) {
        return (n.to_string(), None);
    }
    let rel = offset - hba::PORTS_BASE;
    let port = rel / hba::PORT_SIZE;
    if port >= 32 {
        return ("beyond-ports".to_string(), None);
    }
    (
        format!("P{port}{}", port_register_name(rel % hba::PORT_SIZE)),
        Some(port as u8),
    )
}

/// PxIS / PxIE bits (3.3.5, 3.3.6).
pub mod pxis {
    /// DHRS: a Register D2H FIS with I set was received.
    pub const DHRS: u32 = 1 << 0;
    /// PSS: a PIO Setup FIS with I set was received.
    pub const PSS: u32 = 1 << 1;
    /// DSS: a DMA Setup FIS with I set was received.
    pub const DSS: u32 = 1 << 2;
    /// SDBS: a Set Device Bits FIS with I set was received.
    pub const SDBS: u32 = 1 << 3;
    /// UFS: unknown FIS (mirrors PxSERR.DIAG.F).
    pub const UFS: u32 = 1 << 4;
    /// DPS: a PRD with I set completed.
    pub const DPS: u32 = 1 << 5;
    /// PCS: port connect change (mirrors PxSERR.DIAG.X).
    pub const PCS: u32 = 1 << 6;
    /// DMPS: device mechanical presence.
    pub const DMPS: u32 = 1 << 7;
    /// PRCS: PhyRdy change (mirrors PxSERR.DIAG.N).
    pub const PRCS: u32 = 1 << 22;
    /// IPMS: incorrect port multiplier status.
    pub const IPMS: u32 = 1 << 23;
    /// OFS: overflow, the device sent more data than the PRDT describes.
    pub const OFS: u32 = 1 << 24;
    /// INFS: interface non-fatal error.
    pub const INFS: u32 = 1 << 26;
    /// IFS: interface fatal error.
    pub const IFS: u32 = 1 << 27;
    /// HBDS: host bus data error.
    pub const HBDS: u32 = 1 << 28;
    /// HBFS: host bus fatal error (e.g. a bad pointer).
    pub const HBFS: u32 = 1 << 29;
    /// TFES: task file error (status ERR in a FIS from the device).
    pub const TFES: u32 = 1 << 30;
    /// CPDS: cold port detect.
    pub const CPDS: u32 = 1 << 31;

    /// Bits that are write-one-to-clear (the others mirror PxSERR or are reserved).
    pub const RW1C: u32 =
        DHRS | PSS | DSS | SDBS | DPS | DMPS | IPMS | OFS | INFS | IFS | HBDS | HBFS | TFES | CPDS;
    /// Every defined bit (PxIE's writable bits).
    pub const ALL: u32 = RW1C | UFS | PCS | PRCS;
    /// The errors that stop the port until software clears PxCMD.ST (6.1.2).
    pub const FATAL: u32 = HBFS | HBDS | IFS | TFES | OFS;
}

/// PxCMD bits (3.3.7).
pub mod pxcmd {
    /// ST: start processing the command list.
    pub const ST: u32 = 1 << 0;
    /// SUD: spin-up device (read-only 1 without staggered spin-up).
    pub const SUD: u32 = 1 << 1;
    /// POD: power on device (read-only 1 without cold presence detection).
    pub const POD: u32 = 1 << 2;
    /// CLO: command list override (clears PxTFD.STS.BSY and DRQ, self-clearing).
    pub const CLO: u32 = 1 << 3;
    /// FRE: FIS receive enable.
    pub const FRE: u32 = 1 << 4;
    /// CCS: current command slot, bits 12:8.
    pub const CCS_SHIFT: u32 = 8;
    pub const CCS_MASK: u32 = 0x1f << CCS_SHIFT;
    /// FR: FIS receive running.
    pub const FR: u32 = 1 << 14;
    /// CR: command list running.
    pub const CR: u32 = 1 << 15;
    /// HPCP: hot plug capable port (read-only, set on ports declared hot-pluggable).
    pub const HPCP: u32 = 1 << 18;
    /// ATAPI: the device is an ATAPI device (software-owned).
    pub const ATAPI: u32 = 1 << 24;
    /// DLAE: drive LED on ATAPI enable (software-owned).
    pub const DLAE: u32 = 1 << 25;
    /// ICC: interface communication control, bits 31:28 (no power states: reads 0).
    pub const ICC_MASK: u32 = 0xf << 28;
}

/// PxTFD layout (3.3.8): status in 7:0, error in 15:8.
pub mod pxtfd {
    /// Value after reset, before the device's first Register D2H FIS (3.3.8: 7Fh).
    pub const RESET: u32 = 0x7f;
    /// STS.BSY.
    pub const BSY: u32 = 0x80;
    /// STS.DRQ.
    pub const DRQ: u32 = 0x08;
    /// STS.ERR.
    pub const ERR: u32 = 0x01;
    /// Error register shift.
    pub const ERR_SHIFT: u32 = 8;
}

/// PxSIG value after reset, before the signature arrives (3.3.9).
pub const SIG_RESET: u32 = 0xffff_ffff;

/// PxSSTS / PxSCTL fields (3.3.10, 3.3.11; SATA 3.x 14.1).
pub mod scr {
    /// DET field mask.
    pub const DET_MASK: u32 = 0xf;
    /// SSTS.DET = 1: device presence detected, no Phy communication (link in reset).
    pub const DET_PRESENT_NO_PHY: u32 = 1;
    /// SSTS.DET = 3: device present and Phy communication established.
    pub const DET_PRESENT_PHY: u32 = 3;
    /// SSTS.DET = 4 / SCTL.DET = 4: Phy offline.
    pub const DET_OFFLINE: u32 = 4;
    /// SCTL.DET = 1: perform interface initialization (COMRESET).
    pub const SCTL_DET_COMRESET: u32 = 1;
    /// SSTS.IPM = 1: interface in the active state (bits 11:8).
    pub const SSTS_IPM_ACTIVE: u32 = 0x100;
    /// SSTS.SPD / SCTL.SPD: bits 7:4 (SCTL: 0 = no restriction, n = at most generation n).
    pub const SPD_SHIFT: u32 = 4;
    pub const SPD_MASK: u32 = 0xf << SPD_SHIFT;
    /// PxSSTS of a link that is up at generation `gen`: IPM active, SPD `gen`, DET 3.
    pub const fn ssts_link_up(gen: u8) -> u32 {
        SSTS_IPM_ACTIVE | (gen as u32) << SPD_SHIFT | DET_PRESENT_PHY
    }
    /// PxSCTL's writable bits: DET, SPD, IPM (the rest is reserved).
    pub const SCTL_WRITABLE: u32 = 0xfff;
}

/// PxSERR bits (3.3.12).
pub mod pxserr {
    /// ERR.C: non-recovered persistent communication or data integrity error (e.g. the
    /// device dropped off the link).
    pub const ERR_C: u32 = 1 << 9;
    /// DIAG.N: PhyRdy change.
    pub const DIAG_N: u32 = 1 << 16;
    /// DIAG.F: unknown FIS type.
    pub const DIAG_F: u32 = 1 << 25;
    /// DIAG.X: exchanged (a COMINIT was received: device presence changed).
    pub const DIAG_X: u32 = 1 << 26;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_names() {
        assert_eq!(register_name(hba::GHC), ("GHC".to_string(), None));
        assert_eq!(
            register_name(0x100 + port::CI),
            ("P0CI".to_string(), Some(0))
        );
        assert_eq!(
            register_name(0x100 + 3 * 0x80 + port::SSTS + 2),
            ("P3SSTS".to_string(), Some(3))
        );
        assert_eq!(register_name(0x40).0, "reserved");
        assert_eq!(register_name(0x100 + 0x44).0, "P0reserved");
    }
}
