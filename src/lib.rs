//! satavm: a small KVM microVM whose one storage controller is a layered AHCI HBA.
//!
//! The storage stack is three layers with narrow interfaces, none of which touch KVM:
//! - [`ahci`]: the HBA (AHCI 1.3.1): registers, command list, PRDT, received-FIS area, interrupts.
//! - [`sata`]: the frames exchanged between a port and a device (SATA 3.x section 10.5) and
//!   the [`sata::SataDevice`] trait that is the port/device boundary.
//! - [`ata`]: the device (ACS-3): taskfile, command protocols, an emulated drive and the SG_IO
//!   pass-through drive.
//! - [`block`]: under the ATA layer, the I/O engines every byte moves through (io_uring, the
//!   sg driver's asynchronous interface, threads where neither fits), zero copy.
//!
//! Device logic sees guest memory through [`mem::GuestMemory`] and delivers interrupts through
//! [`irq::InterruptSink`]; only [`vmm`] knows about KVM.

pub mod ahci;
pub mod ata;
pub mod block;
pub mod clock;
pub mod disk_spec;
pub mod firmware;
pub mod hostfile;
pub mod irq;
pub mod mem;
pub mod pci;
pub mod sata;
pub mod trace;
pub mod vmm;
