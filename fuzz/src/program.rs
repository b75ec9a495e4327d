//! The `ahci_mmio` input format: a program of operations a (hostile) guest performs on the
//! AHCI function, as bytes.
//!
//! Byte 0 selects the machine (bit 0: two ports instead of one). Every following operation
//! is an opcode byte (taken modulo the number of operations) and its fixed-size arguments,
//! little-endian; a program that ends in the middle of an operation has its missing bytes
//! read as zero. [`Op::encode`] writes exactly what [`Program::decode`] reads, so the seed
//! generator (`examples/gen_seeds.rs`) and the target share one format.

/// Most operations run from one input (keeps every run short).
pub const MAX_OPS: usize = 256;
/// Most PRD entries a [`Op::Command`] writes.
pub const MAX_PRDS: usize = 8;

/// Command header flags of [`Op::Command`] (bit meanings of its `flags` byte).
pub mod flags {
    /// Header W: host to device.
    pub const WRITE: u8 = 1 << 0;
    /// Header C: clear BSY and PxCI once the FIS is sent.
    pub const CLEAR_BUSY: u8 = 1 << 1;
    /// Header R: part of a software reset.
    pub const RESET: u8 = 1 << 2;
    /// CFIS with C = 0 (a Device Control update) instead of a command.
    pub const CONTROL: u8 = 1 << 3;
    /// Header PRDTL comes from `prdtl` instead of the number of PRDs written (more entries
    /// than the table holds, or entries that were never written).
    pub const RAW_PRDTL: u8 = 1 << 4;
    /// DBAU of every PRD is 1 (a buffer above 4 GiB, outside guest RAM).
    pub const HIGH_PRDS: u8 = 1 << 5;
    /// CTBAU is 1 (the command table outside guest RAM).
    pub const HIGH_TABLE: u8 = 1 << 6;
}

/// One PRD entry as [`Op::Command`] writes it: DBA (bit 0 reserved) and DW3 (DBC in 21:0,
/// I in bit 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prd {
    pub addr: u32,
    pub dw3: u32,
}

impl Prd {
    /// A PRD of `len` bytes (1 to 4 MiB) at `addr`.
    pub fn new(addr: u32, len: u32) -> Self {
        Prd {
            addr,
            dw3: len.saturating_sub(1) & 0x3f_ffff,
        }
    }
}

/// What a guest can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write `value` (its low `1 << width_log2` bytes, `width_log2` modulo 4) at ABAR offset
    /// `offset` (modulo 0x2000, the ABAR size).
    MmioWrite {
        offset: u16,
        width_log2: u8,
        value: u64,
    },
    /// Read at ABAR offset `offset` with the access width.
    MmioRead { offset: u16, width_log2: u8 },
    /// Store bytes in guest memory directly (the guest's CPU), anywhere.
    MemWrite { addr: u32, bytes: Vec<u8> },
    /// Build `slot`'s command header at the port's current PxCLB and a command table in the
    /// harness's table area (see [`crate::harness`]), without issuing it.
    Command {
        port: u8,
        slot: u8,
        flags: u8,
        command: u8,
        features: u16,
        lba: u32,
        count: u16,
        control: u8,
        prdtl: u16,
        prds: Vec<Prd>,
    },
    /// Write PxSACT (if `ncq`) and then PxCI with `slots`.
    Issue { port: u8, slots: u32, ncq: bool },
    /// Wait up to `ms` (modulo 32) milliseconds for the drive's completion notifier, then
    /// let the function process completions.
    Wait { ms: u8 },
    /// GHC.HR.
    HbaReset,
    /// COMRESET through PxSCTL.DET: 1 then (if `release`) 0.
    Comreset { port: u8, release: bool },
    /// Write PxCMD with ST and FRE as given (other PxCMD bits kept).
    Engine { port: u8, st: bool, fre: bool },
    /// Write PCI configuration space: `len` (1 to 4) bytes of `value` at `offset`.
    ConfigWrite { offset: u8, len: u8, value: u32 },
    /// The AHCI 10.1.2 bring-up of a port with the harness's default CLB/FB, as a guest
    /// driver does it: stop, program CLB/FB, clear SERR/IS, FRE, ST, PxIE all, GHC.IE.
    BringUp { port: u8 },
    /// Program PxCLB/PxFB (upper halves 0) with any values.
    SetBases { port: u8, clb: u32, fb: u32 },
}

const OPS: u8 = 12;

/// A decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Two ports (each with its own drive) instead of one.
    pub two_ports: bool,
    pub ops: Vec<Op>,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.b.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.b.split_first() {
            Some((&v, rest)) => {
                self.b = rest;
                v
            }
            None => 0,
        }
    }
    fn le(&mut self, n: usize) -> u64 {
        (0..n).fold(0u64, |v, i| v | u64::from(self.u8()) << (8 * i))
    }
    fn u16(&mut self) -> u16 {
        self.le(2) as u16
    }
    fn u32(&mut self) -> u32 {
        self.le(4) as u32
    }
    fn u64(&mut self) -> u64 {
        self.le(8)
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }
}

impl Program {
    /// Read a program from fuzzer input; every input is some program.
    pub fn decode(data: &[u8]) -> Program {
        let mut r = Reader { b: data };
        let two_ports = r.u8() & 1 != 0;
        let mut ops = Vec::new();
        while !r.done() && ops.len() < MAX_OPS {
            ops.push(Self::decode_op(&mut r));
        }
        Program { two_ports, ops }
    }

    fn decode_op(r: &mut Reader<'_>) -> Op {
        match r.u8() % OPS {
            0 => Op::MmioWrite {
                offset: r.u16(),
                width_log2: r.u8(),
                value: r.u64(),
            },
            1 => Op::MmioRead {
                offset: r.u16(),
                width_log2: r.u8(),
            },
            2 => {
                let addr = r.u32();
                let len = usize::from(r.u8());
                let bytes = (0..len).map(|_| r.u8()).collect();
                Op::MemWrite { addr, bytes }
            }
            3 => {
                let port = r.u8();
                let slot = r.u8();
                let flags = r.u8();
                let command = r.u8();
                let features = r.u16();
                let lba = r.u32();
                let count = r.u16();
                let control = r.u8();
                let prdtl = r.u16();
                let n = usize::from(r.u8()) % (MAX_PRDS + 1);
                let prds = (0..n)
                    .map(|_| Prd {
                        addr: r.u32(),
                        dw3: r.u32(),
                    })
                    .collect();
                Op::Command {
                    port,
                    slot,
                    flags,
                    command,
                    features,
                    lba,
                    count,
                    control,
                    prdtl,
                    prds,
                }
            }
            4 => Op::Issue {
                port: r.u8(),
                slots: r.u32(),
                ncq: r.bool(),
            },
            5 => Op::Wait { ms: r.u8() },
            6 => Op::HbaReset,
            7 => Op::Comreset {
                port: r.u8(),
                release: r.bool(),
            },
            8 => {
                let port = r.u8();
                let bits = r.u8();
                Op::Engine {
                    port,
                    st: bits & 1 != 0,
                    fre: bits & 2 != 0,
                }
            }
            9 => Op::ConfigWrite {
                offset: r.u8(),
                len: r.u8(),
                value: r.u32(),
            },
            10 => Op::BringUp { port: r.u8() },
            _ => Op::SetBases {
                port: r.u8(),
                clb: r.u32(),
                fb: r.u32(),
            },
        }
    }

    /// The program as fuzzer input.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.two_ports)];
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }
}

impl Op {
    /// Append the operation's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn le(out: &mut Vec<u8>, v: u64, n: usize) {
            out.extend_from_slice(&v.to_le_bytes()[..n]);
        }
        match self {
            Op::MmioWrite {
                offset,
                width_log2,
                value,
            } => {
                out.push(0);
                le(out, u64::from(*offset), 2);
                out.push(*width_log2);
                le(out, *value, 8);
            }
            Op::MmioRead { offset, width_log2 } => {
                out.push(1);
                le(out, u64::from(*offset), 2);
                out.push(*width_log2);
            }
            Op::MemWrite { addr, bytes } => {
                for (i, chunk) in bytes.chunks(255).enumerate() {
                    out.push(2);
                    le(out, u64::from(*addr) + 255 * i as u64, 4);
                    out.push(chunk.len() as u8);
                    out.extend_from_slice(chunk);
                }
            }
            Op::Command {
                port,
                slot,
                flags,
                command,
                features,
                lba,
                count,
                control,
                prdtl,
                prds,
            } => {
                out.push(3);
                out.extend_from_slice(&[*port, *slot, *flags, *command]);
                le(out, u64::from(*features), 2);
                le(out, u64::from(*lba), 4);
                le(out, u64::from(*count), 2);
                out.push(*control);
                le(out, u64::from(*prdtl), 2);
                let prds = &prds[..prds.len().min(MAX_PRDS)];
                out.push(prds.len() as u8);
                for p in prds {
                    le(out, u64::from(p.addr), 4);
                    le(out, u64::from(p.dw3), 4);
                }
            }
            Op::Issue { port, slots, ncq } => {
                out.extend_from_slice(&[4, *port]);
                le(out, u64::from(*slots), 4);
                out.push(u8::from(*ncq));
            }
            Op::Wait { ms } => out.extend_from_slice(&[5, *ms]),
            Op::HbaReset => out.push(6),
            Op::Comreset { port, release } => {
                out.extend_from_slice(&[7, *port, u8::from(*release)])
            }
            Op::Engine { port, st, fre } => {
                out.extend_from_slice(&[8, *port, u8::from(*st) | u8::from(*fre) << 1])
            }
            Op::ConfigWrite { offset, len, value } => {
                out.extend_from_slice(&[9, *offset, *len]);
                le(out, u64::from(*value), 4);
            }
            Op::BringUp { port } => out.extend_from_slice(&[10, *port]),
            Op::SetBases { port, clb, fb } => {
                out.extend_from_slice(&[11, *port]);
                le(out, u64::from(*clb), 4);
                le(out, u64::from(*fb), 4);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_identity() {
        let p = Program {
            two_ports: true,
            ops: vec![
                Op::BringUp { port: 1 },
                Op::Command {
                    port: 0,
                    slot: 3,
                    flags: flags::WRITE,
                    command: 0x61,
                    features: 8,
                    lba: 17,
                    count: 3 << 3,
                    control: 0,
                    prdtl: 0,
                    prds: vec![Prd::new(0x10_0000, 4096)],
                },
                Op::Issue {
                    port: 0,
                    slots: 1 << 3,
                    ncq: true,
                },
                Op::Wait { ms: 10 },
                Op::MmioWrite {
                    offset: 4,
                    width_log2: 2,
                    value: 1,
                },
                Op::MemWrite {
                    addr: 0x2000,
                    bytes: vec![1, 2, 3],
                },
            ],
        };
        assert_eq!(Program::decode(&p.encode()), p);
    }
}
