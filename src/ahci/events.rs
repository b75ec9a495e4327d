//! What the HBA tells an outside observer (the VMM's control socket) as it happens: link
//! changes (PhyRdy lost / COMINIT, SATA 3.x 8.4; AHCI 1.3.1 6.2.2), commands that ended in
//! an error (PxIS.TFES or a bus error, 6.1), guest resets of the HBA (GHC.HR, 10.4.3) and of
//! a port (COMRESET through PxSCTL.DET, 10.4.2).
//!
//! The hook runs on whichever thread changed the port (a vCPU, the event loop) while the
//! HBA is locked: it must be quick and never block (the control socket queues the event and
//! signals an eventfd).

use std::sync::Arc;

/// One thing that happened on the HBA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AhciEvent {
    /// The device dropped off the link (PhyRdy 1 -> 0: PxSSTS.DET 0, PxSERR.DIAG.N, ERR.C).
    LinkLost { port: u8 },
    /// The device is back (COMINIT): PxSSTS.DET 3 once software does not hold COMRESET.
    LinkRestored { port: u8 },
    /// A command ended with an error: `pxtfd` is PxTFD after it (ERR in STS, the error
    /// register in bits 15:8), `pxis` the PxIS bits it set.
    CommandError {
        port: u8,
        slot: u8,
        pxtfd: u32,
        pxis: u32,
    },
    /// Software asserted COMRESET on the port (PxSCTL.DET = 1 or 4).
    PortReset { port: u8 },
    /// Software reset the whole HBA (GHC.HR).
    HbaReset,
    /// A device was taken off the port (hot plug: a surprise removal).
    DeviceRemoved { port: u8 },
    /// A device was put on the empty port (hot plug: COMINIT follows).
    DeviceAdded { port: u8 },
}

/// Where the HBA reports [`AhciEvent`]s.
#[derive(Clone)]
pub struct EventHook(Arc<dyn Fn(AhciEvent) + Send + Sync>);

impl EventHook {
    pub fn new(f: impl Fn(AhciEvent) + Send + Sync + 'static) -> Self {
        EventHook(Arc::new(f))
    }

    /// Report `event`.
    pub fn report(&self, event: AhciEvent) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for EventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHook")
    }
}
