//! The checks of an ATAPI port (PxSIG EB140101h): IDENTIFY PACKET DEVICE, then one READ(10)
//! over PACKET DMA (the command header's A bit, the CDB in the command table's ACMD area,
//! AHCI 1.3.1 4.2.2/4.2.3). Reads only.

use crate::ahci::{h2d_fis, px, CmdError, Msg, Port};
use crate::drive::trimmed;
use crate::mem::{phys_slice, Arena};
use crate::text;

pub const IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
pub const PACKET: u8 = 0xa0;
/// PACKET Features: DMA (bit 0).
const PACKET_DMA: u16 = 1;
const BLOCK: u32 = 2048;
/// ISO 9660's primary volume descriptor is at block 16.
const PVD_LBA: u32 = 16;

/// IDENTIFY PACKET DEVICE: a PACKET device of the CD/DVD command set, its model.
pub fn identify_packet(port: &Port, arena: &mut Arena) -> Result<Msg, Msg> {
    let buf = arena
        .alloc(512, 512)
        .ok_or_else(|| text!("out of DMA arena memory"))?;
    let fis = h2d_fis(IDENTIFY_PACKET_DEVICE, 0, 0, 0, 0);
    let is = port
        .run(&fis, false, &[(buf, 512)])
        .map_err(|e| text!("IDENTIFY PACKET DEVICE: {e}"))?;
    // SAFETY: 512 bytes of arena memory the HBA wrote.
    let d = unsafe { phys_slice(buf, 512) };
    let w0 = u16::from_le_bytes([d[0], d[1]]);
    let mut model = [b' '; 40];
    for i in 0..20 {
        model[2 * i] = d[54 + 2 * i + 1];
        model[2 * i + 1] = d[54 + 2 * i];
    }
    for b in model.iter_mut() {
        if !(0x20..0x7f).contains(b) {
            *b = b'?';
        }
    }
    let line = text!(
        "model=\"{}\" word0={w0:#06x} (type {:#04x}, {}-byte CDBs) PRDBC={} PxSIG={:#010x}",
        trimmed(&model),
        (w0 >> 8) & 0x1f,
        if w0 & 3 == 1 { 16 } else { 12 },
        port.prdbc(0),
        port.read(px::SIG)
    );
    if w0 >> 14 != 0b10 || port.prdbc(0) != 512 || is & px::IS_PSS == 0 {
        return Err(text!(
            "not an ATAPI IDENTIFY (word 0 bits 15:14, PRDBC 512, PxIS.PSS): {line}"
        ));
    }
    Ok(line)
}

/// Issue the PACKET command `cdb` by DMA into `buf` of `len` bytes, in slot 0.
fn packet_dma(port: &Port, cdb: &[u8; 12], buf: u64, len: u32) -> Result<u32, CmdError> {
    port.write(px::IS, 0xffff_ffff);
    let fis = h2d_fis(PACKET, 0, 0, PACKET_DMA, 0);
    let prdt = [(buf, len)];
    port.prepare(0, &fis, false, if len == 0 { &[] } else { &prdt });
    port.set_acmd(0, cdb);
    port.issue(1, false);
    port.wait(1, false, crate::ahci::COMMAND_MS)?;
    let is = port.read(px::IS);
    port.write(px::IS, is);
    Ok(is)
}

/// READ(10) of the primary volume descriptor's block over PACKET DMA (after TEST UNIT READY,
/// which a drive answers with UNIT ATTENTION once after a disc change). Ok(None): no disc.
pub fn read10_dma(port: &Port, arena: &mut Arena) -> Result<Option<Msg>, Msg> {
    let buf = arena
        .alloc(u64::from(BLOCK), 4096)
        .ok_or_else(|| text!("out of DMA arena memory"))?;
    let mut ready = false;
    let mut tfd = 0;
    for _ in 0..3 {
        match packet_dma(port, &[0; 12], 0, 0) {
            Ok(_) => {
                ready = true;
                break;
            }
            Err(e) => {
                tfd = match e {
                    CmdError::Error { tfd, .. } | CmdError::Timeout { tfd, .. } => tfd,
                    CmdError::Status { tfd } => tfd,
                };
                port.recover()?;
            }
        }
    }
    if !ready {
        // Sense key NOT READY (2) in the Error register's high nibble: no disc.
        if (tfd >> 12) & 0xf == 2 {
            return Ok(None);
        }
        return Err(text!("TEST UNIT READY: CHECK CONDITION, PxTFD={tfd:#06x}"));
    }
    let l = PVD_LBA.to_be_bytes();
    let cdb = [0x28, 0, l[0], l[1], l[2], l[3], 0, 0, 1, 0, 0, 0];
    // SAFETY: the block of arena memory the read goes to.
    let d = unsafe { phys_slice(buf, BLOCK as usize) };
    d.fill(0xee);
    let is = packet_dma(port, &cdb, buf, BLOCK).map_err(|e| {
        let _ = port.recover();
        text!("READ(10) over PACKET DMA: {e}")
    })?;
    let pbc = port.prdbc(0);
    if pbc != BLOCK || is & px::IS_DHRS == 0 {
        return Err(text!(
            "READ(10): PRDBC={pbc} (expected {BLOCK}), PxIS={is:#x} (expected DHRS)"
        ));
    }
    let what = if &d[1..6] == b"CD001" {
        "an ISO 9660 primary volume descriptor"
    } else {
        "no ISO 9660 volume descriptor"
    };
    Ok(Some(text!(
        "READ(10) LBA {PVD_LBA} by PACKET DMA: PRDBC={pbc}, PxIS.DHRS=1, {what}"
    )))
}
