//! The AHCI HBA as a PCI function: configuration space (AHCI 1.3.1 section 2), ABAR in BAR5,
//! MSI (one vector per port) and INTx, and the access-width handling of the HBA registers.

use std::sync::Arc;

use super::checks::SpecChecks;
use super::hba::{Hba, InterruptState};
use super::port::Port;
use super::posted_writes::{PostedBatch, PostedWriteSource};
use super::register_page::{Publisher, RegisterPage};
use super::PortStats;
use crate::irq::InterruptSink;
use crate::mem::GuestMemory;
use crate::pci::config::{command, offset, STATUS_INTERRUPT};
use crate::pci::{BarKind, ConfigSpace, MsiCapability, PciFunction};
use crate::sata::SataDevice;
use crate::trace::{Event, Layer, Tracer};

/// Intel ICH9 SATA AHCI controller, as QEMU's `ahci` device: Linux's `ahci` driver lists it
/// as `board_ahci` (no quirks) and binds any class 01.06.01 function anyway.
pub const VENDOR_ID: u16 = 0x8086;
pub const DEVICE_ID: u16 = 0x2922;
/// Revision (ICH9 A2 as QEMU reports).
pub const REVISION: u8 = 0x02;
/// Subsystem: Red Hat, QEMU's value for emulated devices.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
pub const SUBSYSTEM_ID: u16 = 0x1100;
/// Class: mass storage (01h), SATA (06h), AHCI 1.0 (01h).
pub const CLASS: (u8, u8, u8) = (0x01, 0x06, 0x01);
/// ABAR is BAR5 (2.1.11).
pub const ABAR: usize = 5;
/// ABAR size: 0x100 bytes of global registers + 32 ports x 0x80 = 0x1100, rounded up.
pub const ABAR_SIZE: u64 = 0x2000;

/// The AHCI PCI function.
pub struct AhciFunction {
    config: ConfigSpace,
    msi: MsiCapability,
    /// MSI vectors asked for: one per port, rounded up to a power of two.
    msi_requested: u32,
    hba: Hba,
    irq: Arc<dyn InterruptSink>,
    intx_asserted: bool,
    tracer: Tracer,
    checks: Arc<SpecChecks>,
    /// PxSACT/PxCI writes the VMM took without an exit (none unless set).
    posted: Option<Arc<dyn PostedWriteSource>>,
    /// Posted writes applied so far.
    posted_writes: u64,
    /// Mapped registers: the page the guest reads the register file from (none: trap mode,
    /// every read is an exit).
    page: Option<Publisher>,
    /// Deferred issue: signalled when a register write left issued commands for the next
    /// completion pass (see [`Port::set_deferred_issue`]).
    issue_kick: Option<crate::sata::CompletionNotifier>,
}

/// How an [`AhciFunction`] reports what happens: a tracer (off by default) and the spec
/// checks (warnings only, by default).
#[derive(Debug, Clone, Default)]
pub struct Observers {
    pub tracer: Tracer,
    pub checks: Arc<SpecChecks>,
}

impl std::fmt::Debug for AhciFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AhciFunction")
            .field("hba", &self.hba)
            .field("intx_asserted", &self.intx_asserted)
            .finish_non_exhaustive()
    }
}

impl AhciFunction {
    /// One port per device, ports 0..n (1 to 32; devices beyond 32 are dropped). `bar5` is
    /// the initial ABAR address, `irq_line` the INTx line written to configuration space.
    pub fn new(
        devices: Vec<Box<dyn SataDevice>>,
        mem: Arc<dyn GuestMemory>,
        irq: Arc<dyn InterruptSink>,
        bar5: u32,
        irq_line: u8,
    ) -> Self {
        Self::with_observers(devices, mem, irq, bar5, irq_line, Observers::default())
    }

    /// As [`AhciFunction::new`], reporting to `observers`.
    pub fn with_observers(
        devices: Vec<Box<dyn SataDevice>>,
        mem: Arc<dyn GuestMemory>,
        irq: Arc<dyn InterruptSink>,
        bar5: u32,
        irq_line: u8,
        observers: Observers,
    ) -> Self {
        let Observers { tracer, checks } = observers;
        if devices.len() > 32 {
            log::warn!("AHCI: {} devices, only 32 ports", devices.len());
        }
        let ports: Vec<Port> = devices
            .into_iter()
            .take(32)
            .enumerate()
            .map(|(i, d)| {
                Port::with_observers(i as u8, d, mem.clone(), tracer.clone(), checks.clone())
            })
            .collect();
        let mut config = ConfigSpace::new(VENDOR_ID, DEVICE_ID, CLASS, REVISION);
        config.set_subsystem(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID);
        config.add_bar(ABAR, ABAR_SIZE, BarKind::Memory32, u64::from(bar5));
        config.set_interrupt(1, irq_line);
        let msi_requested = (ports.len().max(1) as u32).next_power_of_two();
        let msi = MsiCapability::install(&mut config, msi_requested.trailing_zeros() as u8);
        AhciFunction {
            config,
            msi,
            msi_requested,
            hba: Hba::new(ports),
            irq,
            intx_asserted: false,
            tracer,
            checks,
            posted: None,
            posted_writes: 0,
            page: None,
            issue_kick: None,
        }
    }

    /// Take PxSACT/PxCI writes from `source` too (see [`super::posted_writes`]). Where ABAR
    /// decodes is the VMM's business: the PCI root reports BAR moves to it.
    pub fn set_posted_writes(&mut self, source: Arc<dyn PostedWriteSource>) {
        self.posted = Some(source);
    }

    /// Apply the writes posted so far (before any other access to ABAR, and when the VMM
    /// learns of new ones).
    pub fn apply_posted_writes(&mut self) {
        let Some(source) = &self.posted else { return };
        let mut batch = PostedBatch::default();
        source.take(&mut batch);
        if batch.is_empty() {
            return;
        }
        self.posted_writes += batch.writes();
        for (port, register, bits) in batch.in_order() {
            let at = register.abar_offset(port);
            self.abar_write_dword(at, bits, u32::MAX, "reg_write_posted");
        }
        self.update_interrupts();
    }

    /// Mapped registers: keep `page` equal to the register file from now on (see
    /// [`super::register_page`]: published before every interrupt). Not with posted writes.
    pub fn set_register_page(&mut self, page: Arc<dyn RegisterPage>) {
        debug_assert!(
            self.posted.is_none(),
            "mapped registers exclude posted writes"
        );
        self.page = Some(Publisher::new(page));
        self.publish();
    }

    /// The dword register at ABAR offset `at` as the HBA holds it, with no side effect (no
    /// posted writes applied, no trace): what the mapped page must show.
    pub fn register(&self, at: u64) -> u32 {
        if at >= ABAR_SIZE {
            return 0;
        }
        self.hba.read(at & !3, self.mrsm())
    }

    /// Under load, leave commands issued by a register write for the next completion pass and
    /// signal `kick` (the completion notifier the VMM's event loop watches) so that it runs
    /// soon: see [`Port::set_deferred_issue`].
    pub fn set_deferred_issue(&mut self, kick: crate::sata::CompletionNotifier) {
        for p in &mut self.hba.ports {
            p.set_deferred_issue(true);
        }
        self.issue_kick = Some(kick);
    }

    /// Report link changes, command errors and resets to `hook` (see [`super::events`]).
    pub fn set_event_hook(&mut self, hook: super::events::EventHook) {
        for p in &mut self.hba.ports {
            p.set_event_hook(hook.clone());
        }
    }

    /// Register dwords stored into the mapped page so far (0 in trap mode).
    pub fn register_page_stores(&self) -> u64 {
        self.page.as_ref().map_or(0, Publisher::stores)
    }

    /// Bring the mapped page up to date (nothing in trap mode).
    fn publish(&mut self) {
        let mrsm = self.mrsm();
        let hba = &self.hba;
        if let Some(page) = &mut self.page {
            page.publish(hba.port_count(), |at| hba.read(at, mrsm));
        }
    }

    /// Posted writes applied so far.
    pub fn posted_writes(&self) -> u64 {
        self.posted_writes
    }

    /// The spec checks (which rules the guest broke so far).
    pub fn spec_checks(&self) -> &SpecChecks {
        &self.checks
    }

    /// The tracer (off unless set up with one).
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// Trace a guest access to ABAR.
    fn trace_access(&self, kind: &'static str, at: u64, len: usize, value: u32) {
        self.tracer.emit(|| {
            let (name, port) = super::regs::register_name(at);
            let e = Event::new(Layer::Ahci, kind)
                .str("reg", name)
                .hex32("offset", at as u32)
                .hex32("value", value);
            let e = if len != 4 { e.u("size", len as u64) } else { e };
            match port {
                Some(p) => e.port(p),
                None => e,
            }
        });
    }

    /// Collect device completions, update PxCI/PxSACT/PxIS, write FISes, raise interrupts.
    pub fn process_completions(&mut self) {
        self.hba.process_completions();
        self.update_interrupts();
    }

    /// Declare every port hot-pluggable (PxCMD.HPCP) and make the ports without a device
    /// (`present[port]` false) empty from power-on (see [`super::port::hotplug`]).
    pub fn set_hot_plug(&mut self, present: &[bool]) {
        for (i, p) in self.hba.ports.iter_mut().enumerate() {
            p.set_hot_plug();
            if !present.get(i).copied().unwrap_or(true) {
                p.make_empty();
            }
        }
        self.update_interrupts();
    }

    /// Surprise removal of the device on `port` (a cable pull); `on_drained` runs once its
    /// host I/O has drained and it was dropped.
    pub fn detach_device(
        &mut self,
        port: usize,
        on_drained: Option<super::port::hotplug::OnDrained>,
    ) -> Result<(), HotPlugRequestError> {
        let p = self
            .hba
            .ports
            .get_mut(port)
            .ok_or(HotPlugRequestError::NoPort(port))?;
        p.detach(on_drained)?;
        self.update_interrupts();
        Ok(())
    }

    /// Put `device` on the empty `port` (COMINIT, the link up, its signature).
    pub fn attach_device(
        &mut self,
        port: usize,
        device: Box<dyn crate::sata::SataDevice>,
    ) -> Result<(), HotPlugRequestError> {
        let p = self
            .hba
            .ports
            .get_mut(port)
            .ok_or(HotPlugRequestError::NoPort(port))?;
        p.attach(device)?;
        self.update_interrupts();
        Ok(())
    }

    /// Changes to the ports' devices so far (hot plug): when it changes, the event loop
    /// re-reads [`Self::device_ready_fds`].
    pub fn plug_generation(&self) -> u64 {
        self.hba.ports.iter().map(|p| p.plug_changes()).sum()
    }

    /// True while `port`'s devices (a removed one included) have host I/O in flight.
    pub fn port_draining(&self, port: usize) -> bool {
        self.hba.ports.get(port).is_some_and(|p| p.draining())
    }

    /// Whether `port` has a device attached (None: no such port).
    pub fn port_present(&self, port: usize) -> Option<bool> {
        self.hba.ports.get(port).map(|p| p.present())
    }

    /// Per-port statistics.
    pub fn port_stats(&self) -> Vec<PortStats> {
        self.hba.ports.iter().map(|p| p.stats()).collect()
    }

    /// How every port aggregates queued completions (off unless set; see
    /// [`super::sdb_aggregation`]).
    pub fn set_aggregation(&mut self, mode: super::sdb_aggregation::AggregationMode) {
        for p in &mut self.hba.ports {
            p.set_aggregation(mode);
        }
    }

    /// Report every held completion now (aggregation was turned off).
    pub fn flush_held(&mut self) {
        for p in &mut self.hba.ports {
            p.flush_held();
        }
        self.update_interrupts();
    }

    /// When a port next needs its completions processed without a device signal (held
    /// completions due, a device's own deadline): the VMM calls [`Self::process_completions`]
    /// then (a timer), or tests do.
    pub fn next_deadline(&self) -> Option<std::time::Instant> {
        self.hba.next_deadline()
    }

    /// Each port's device's I/O engine and its counters.
    pub fn port_engines(&self) -> Vec<Option<(&'static str, crate::block::EngineStats)>> {
        self.hba.ports.iter().map(|p| p.engine_stats()).collect()
    }

    /// Descriptors the event loop watches besides the completion notifier: the drives' own
    /// I/O engines' readiness (see [`crate::sata::SataDevice::ready_fd`]).
    pub fn device_ready_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.hba.device_ready_fds()
    }

    /// GHC.MRSM (3.1.2): MSI is on with fewer vectors than asked for, so every port shares
    /// vector 0.
    fn mrsm(&self) -> bool {
        self.msi.enabled(&self.config) && self.msi.vectors(&self.config) < self.msi_requested
    }

    /// Signal what the HBA's interrupt state asks for: an MSI per port event (vector = port,
    /// or 0 under MRSM), or the INTx level when MSI is off and INTx is not disabled.
    ///
    /// Every change to the register file ends here, so this is where the mapped page is
    /// published: after IS is updated, before any interrupt is signalled.
    fn update_interrupts(&mut self) {
        let InterruptState { level, edges } = self.hba.interrupt_state();
        self.publish();
        let msi_on = self.msi.enabled(&self.config);
        if msi_on {
            let mrsm = self.mrsm();
            let mut sent = 0u32;
            for port in (0..32).filter(|p| edges & (1 << p) != 0) {
                let vector = if mrsm { 0 } else { port };
                if sent & (1 << vector) != 0 {
                    continue;
                }
                sent |= 1 << vector;
                if let Some(msg) = self.msi.message(&self.config, vector) {
                    if let Err(e) = self.irq.signal_msi(msg) {
                        log::warn!("AHCI: MSI delivery failed: {e}");
                    }
                }
            }
        }
        // PCI status bit 3 shows the INTx condition whether or not INTx is disabled.
        let pending = level && !msi_on;
        let status = self.config.u16_at(offset::STATUS);
        let status = if pending {
            status | STATUS_INTERRUPT
        } else {
            status & !STATUS_INTERRUPT
        };
        self.config.set_u16(offset::STATUS, status);
        let assert = pending && self.config.command() & command::INTX_DISABLE == 0;
        if assert != self.intx_asserted {
            self.intx_asserted = assert;
            if let Err(e) = self.irq.set_intx(assert) {
                log::warn!("AHCI: INTx update failed: {e}");
            }
        }
    }

    /// Read `data.len()` bytes at ABAR offset `at`, dword by dword.
    fn abar_read(&self, at: u64, data: &mut [u8]) {
        let mrsm = self.mrsm();
        for (i, b) in data.iter_mut().enumerate() {
            let addr = at.saturating_add(i as u64);
            *b = if addr < ABAR_SIZE {
                let dword = self.hba.read(addr & !3, mrsm);
                (dword >> (8 * (addr & 3))) as u8
            } else {
                0
            };
        }
        if self.tracer.enabled() {
            let mut v = [0u8; 4];
            let n = data.len().min(4);
            v[..n].copy_from_slice(&data[..n]);
            self.trace_access("reg_read", at, data.len(), u32::from_le_bytes(v));
        }
    }

    /// Write `data` at ABAR offset `at`: each dword it touches gets one write whose mask
    /// selects the bytes written (8-byte accesses become two dword writes).
    fn abar_write(&mut self, at: u64, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let addr = at.saturating_add(i as u64);
            let dword_at = addr & !3;
            let mut value = 0u32;
            let mut mask = 0u32;
            while i < data.len() && at.saturating_add(i as u64) & !3 == dword_at {
                let shift = 8 * (at.saturating_add(i as u64) & 3);
                value |= u32::from(data[i]) << shift;
                mask |= 0xff << shift;
                i += 1;
            }
            self.abar_write_dword(dword_at, value, mask, "reg_write");
        }
        self.update_interrupts();
        if let Some(kick) = &self.issue_kick {
            let deferred = self
                .hba
                .ports
                .iter_mut()
                .fold(false, |any, p| p.take_deferred_issue() | any);
            if deferred {
                if let Err(e) = kick.write(1) {
                    log::warn!("AHCI: deferred issue: cannot wake the event loop: {e}");
                }
            }
        }
    }

    /// One write to the dword at ABAR offset `dword_at` (bytes selected by `mask`), traced as
    /// `kind`.
    fn abar_write_dword(&mut self, dword_at: u64, value: u32, mask: u32, kind: &'static str) {
        if dword_at >= ABAR_SIZE {
            return;
        }
        if self.tracer.enabled() {
            let size = (mask.count_ones() / 8) as usize;
            let shift = mask.trailing_zeros();
            self.trace_access(kind, dword_at + u64::from(shift / 8), size, value >> shift);
        }
        self.hba.write(dword_at, value, mask);
    }
}

impl PciFunction for AhciFunction {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        // Writes posted while ABAR decoded where it did come first. (A BAR move is reported by
        // the PCI root to the VMM, which moves the doorbells and the register memslot.)
        self.apply_posted_writes();
        self.config.write(offset, data);
        // MSI enable and INTx disable change how a pending interrupt is signalled.
        self.update_interrupts();
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == ABAR {
            self.apply_posted_writes();
            self.hba.note_access(std::time::Instant::now());
            self.abar_read(offset, data);
        } else {
            data.fill(0);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == ABAR {
            self.apply_posted_writes();
            self.hba.note_access(std::time::Instant::now());
            self.abar_write(offset, data);
        }
    }
}

/// Why [`AhciFunction::detach_device`] or [`AhciFunction::attach_device`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HotPlugRequestError {
    #[error("no port {0}")]
    NoPort(usize),
    #[error(transparent)]
    Port(#[from] super::port::hotplug::HotPlugError),
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::ahci::mock::{layout, mock};
    use crate::ahci::regs::{ghc, hba, port as px, pxis};
    use crate::irq::RecordingSink;
    use crate::mem::VecMemory;

    fn function(ports: usize) -> (AhciFunction, Arc<RecordingSink>) {
        let mem = Arc::new(VecMemory::new(layout::MEM_SIZE));
        let sink = Arc::new(RecordingSink::default());
        let devices = (0..ports).map(|_| mock().0).collect();
        (
            AhciFunction::new(devices, mem, sink.clone(), 0xfebf_0000, 10),
            sink,
        )
    }

    fn r32(f: &mut AhciFunction, at: u64) -> u32 {
        let mut b = [0u8; 4];
        f.bar_read(ABAR, at, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn msi_capability_asks_for_one_vector_per_port() {
        for (ports, mmc) in [(1, 0), (2, 1), (3, 2), (5, 3), (32, 5)] {
            let (f, _) = function(ports);
            let at = f.config().u8_at(offset::CAPABILITIES_POINTER) as usize;
            assert_eq!((f.config().u16_at(at + 2) >> 1) & 7, mmc, "{ports} ports");
        }
    }

    #[test]
    fn mrsm_when_fewer_vectors_than_ports() {
        let (mut f, _) = function(3);
        let at = f.config().u8_at(offset::CAPABILITIES_POINTER) as usize;
        assert_eq!(r32(&mut f, hba::GHC) & ghc::MRSM, 0, "MSI off");
        f.config_write(at + 2, &(1u16 | 1 << 4).to_le_bytes());
        assert_ne!(r32(&mut f, hba::GHC) & ghc::MRSM, 0, "2 of 4 vectors");
        f.config_write(at + 2, &(1u16 | 2 << 4).to_le_bytes());
        assert_eq!(r32(&mut f, hba::GHC) & ghc::MRSM, 0, "4 of 4 vectors");
    }

    #[test]
    fn byte_writes_clear_only_their_pxis_bits_and_intx_follows() {
        let (mut f, sink) = function(1);
        f.config_write(offset::COMMAND, &command::MEMORY_SPACE.to_le_bytes());
        let p0 = hba::PORTS_BASE;
        f.bar_write(ABAR, p0 + px::IE, &pxis::ALL.to_le_bytes());
        f.bar_write(ABAR, hba::GHC, &ghc::IE.to_le_bytes());
        f.hba.ports[0].raise(pxis::DHRS | pxis::TFES);
        f.update_interrupts();
        assert!(sink.intx.load(Ordering::SeqCst));
        assert_eq!(r32(&mut f, hba::IS), 1);
        // Clear TFES with a byte write to PxIS byte 3: DHRS stays, so does the line.
        f.bar_write(ABAR, p0 + px::IS + 3, &[0x40]);
        assert_eq!(r32(&mut f, p0 + px::IS), pxis::DHRS);
        assert!(sink.intx.load(Ordering::SeqCst));
        f.bar_write(ABAR, p0 + px::IS, &[0x01]);
        f.bar_write(ABAR, hba::IS, &1u32.to_le_bytes());
        assert!(!sink.intx.load(Ordering::SeqCst));
        assert!(sink.msis.lock().unwrap().is_empty());
    }

    /// An interrupt sink that records, at each MSI, what the mapped page shows.
    struct PageAtMsi {
        page: Arc<crate::ahci::register_page::HeapRegisterPage>,
        seen: std::sync::Mutex<Vec<(u32, u32)>>,
    }

    impl InterruptSink for PageAtMsi {
        fn signal_msi(&self, _: crate::irq::MsiMessage) -> std::io::Result<()> {
            use crate::ahci::register_page::RegisterPage;
            let is = self.page.load(hba::IS);
            let pxis = self.page.load(hba::PORTS_BASE + px::IS);
            self.seen.lock().unwrap().push((is, pxis));
            Ok(())
        }
        fn set_intx(&self, _: bool) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn mapped_registers_are_published_before_the_interrupt_that_reports_them() {
        let page = Arc::new(crate::ahci::register_page::HeapRegisterPage::default());
        let sink = Arc::new(PageAtMsi {
            page: page.clone(),
            seen: Default::default(),
        });
        let mem = Arc::new(VecMemory::new(layout::MEM_SIZE));
        let mut f = AhciFunction::new(vec![mock().0], mem, sink.clone(), 0xfebf_0000, 10);
        f.set_register_page(page.clone());
        use crate::ahci::register_page::RegisterPage;
        assert_eq!(
            page.load(hba::CAP),
            r32(&mut f, hba::CAP),
            "published at once"
        );
        assert_eq!(page.load(hba::PI), 1);
        f.config_write(offset::COMMAND, &command::MEMORY_SPACE.to_le_bytes());
        let at = f.config().u8_at(offset::CAPABILITIES_POINTER) as usize;
        f.config_write(at + 4, &0xfee0_0000u32.to_le_bytes());
        f.config_write(at + 2, &1u16.to_le_bytes());
        let p0 = hba::PORTS_BASE;
        f.bar_write(ABAR, p0 + px::IE, &pxis::ALL.to_le_bytes());
        f.bar_write(ABAR, hba::GHC, &ghc::IE.to_le_bytes());
        assert_eq!(
            page.load(hba::GHC) & ghc::IE,
            ghc::IE,
            "a write is published"
        );
        f.hba.ports[0].raise(pxis::DHRS);
        f.update_interrupts();
        assert_eq!(*sink.seen.lock().unwrap(), [(1, pxis::DHRS)]);
        // The guest's write-one-to-clear, then the page shows them clear.
        f.bar_write(ABAR, p0 + px::IS, &pxis::DHRS.to_le_bytes());
        f.bar_write(ABAR, hba::IS, &1u32.to_le_bytes());
        assert_eq!((page.load(hba::IS), page.load(p0 + px::IS)), (0, 0));
        for at in (0..0x180).step_by(4) {
            assert_eq!(page.load(at), f.register(at), "ABAR {at:#x}");
        }
    }

    #[test]
    fn more_than_32_devices_are_dropped_not_a_panic() {
        let (mut f, _) = function(33);
        assert_eq!(r32(&mut f, hba::PI), u32::MAX);
        assert_eq!(f.port_stats().len(), 32);
    }
}
