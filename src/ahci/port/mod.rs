//! One HBA port: its registers (AHCI 1.3.1 section 3.3), the command list engine (section 5)
//! and the link to its [`SataDevice`].
//!
//! The port fetches commands from guest memory when software sets PxCI bits, sends each CFIS
//! to the device with a [`DataPath`] over its PRDT, and turns the FISes the device answers with
//! into register updates (PxTFD, PxSIG, PxCI, PxSACT), received-FIS area writes and PxIS bits.
//! How a finished command's FISes change the port lives in [`crate::ahci::completion`].

use std::sync::Arc;
use std::time::Instant;

use crate::ahci::checks::{Rule, SpecChecks};
use crate::ahci::command::{self, FetchError};
use crate::ahci::completion::{self, InFlight};
use crate::ahci::events::{AhciEvent, EventHook};
use crate::ahci::regs::{port as reg, pxcmd, pxis, pxserr, pxtfd, scr, COMMAND_SLOTS, SIG_RESET};
use crate::ahci::rfis;
use crate::ahci::sdb_aggregation::{AggregationMode, SdbAggregation};
use crate::ahci::PortStats;
use crate::mem::GuestMemory;
use crate::sata::{Completion, DataPath, Fis, RegisterD2h, SataDevice, Submission};
use crate::trace::{Event, Layer, TracedDevice, Tracer};

/// State of the SATA link as PxSCTL.DET drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Communication established (PxSSTS.DET = 3).
    Up,
    /// COMRESET asserted (PxSCTL.DET = 1) or the Phy offline (PxSCTL.DET = 4).
    Down,
}

/// An HBA port with one device attached.
pub struct Port {
    index: u8,
    device: Box<dyn SataDevice>,
    mem: Arc<dyn GuestMemory>,
    clb: u32,
    clbu: u32,
    fb: u32,
    fbu: u32,
    /// PxIS write-one-to-clear bits (UFS, PCS, PRCS are derived from PxSERR).
    is: u32,
    ie: u32,
    /// PxCMD bits the port keeps (ST, FRE, FR, CR, CCS, ATAPI, DLAE).
    cmd: u32,
    tfd: u32,
    sig: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    sntf: u32,
    link: Link,
    /// The SATA generation the link negotiated at its last COMRESET ([`Port::negotiate_link`]).
    link_gen: u8,
    /// The device reported that PhyRdy dropped ([`crate::sata::LinkEvent::Lost`]) and has not
    /// come back yet: PxSSTS.DET reads 0 and COMRESET cannot bring the link up.
    phy_lost: bool,
    /// The device's signature FIS after an HBA reset, accepted once FIS reception is enabled.
    signature_pending: Option<RegisterD2h>,
    /// PxCI bits not yet sent to the device.
    issued: u32,
    /// Commands the device holds, by slot.
    in_flight: [Option<InFlight>; COMMAND_SLOTS],
    /// A fatal error stopped the command list engine until software clears PxCMD.ST (6.1.2).
    halted: bool,
    /// The engine was stopped while the device still had host I/O in flight that may write
    /// guest memory: PxCMD.CR stays set until the device has drained (10.3.2).
    cr_held: bool,
    /// PxIS bits set since the function last collected them (for edge-triggered MSI).
    new_events: u32,
    stats: PortStats,
    /// PxSACT bits software set since its last PxCI write (for [`Rule::SactWithoutCi`]).
    sact_since_ci: u32,
    tracer: Tracer,
    checks: Arc<SpecChecks>,
    /// Successful queued completions held back to share one SDB FIS.
    aggregation: SdbAggregation,
    /// Leave commands issued while others are in flight for the next completion pass (see
    /// [`Port::set_deferred_issue`]).
    defer_busy_issue: bool,
    /// A PxCI write left its commands for the next completion pass since
    /// [`Port::take_deferred_issue`] last looked.
    deferred_issue: bool,
    /// Where link changes, errors and resets are reported (see [`crate::ahci::events`]).
    events: Option<EventHook>,
    /// Declared hot-pluggable (PxCMD.HPCP).
    hot_plug: bool,
    /// A device is attached (see [`hotplug`]); an empty port holds a [`hotplug::NoDevice`].
    present: bool,
    /// Removed devices whose host I/O has not drained yet.
    retired: Vec<hotplug::Retired>,
    /// Counts attaches, removals and released devices (the event loop re-reads the devices'
    /// descriptors when it changes).
    plug_changes: u64,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("index", &self.index)
            .field("cmd", &format_args!("{:#x}", self.cmd))
            .field("is", &format_args!("{:#x}", self.is))
            .field("tfd", &format_args!("{:#x}", self.tfd))
            .field("ci", &format_args!("{:#x}", self.ci))
            .field("sact", &format_args!("{:#x}", self.sact))
            .finish_non_exhaustive()
    }
}

/// Outcome of [`Port::fetch_and_submit`] for one slot.
enum Issue {
    /// Keep issuing.
    Next,
    /// Stop: a non-queued command is in flight or the port halted.
    Stop,
}

impl Port {
    /// A port after power-on: registers at their reset values, the device reset.
    pub fn new(index: u8, device: Box<dyn SataDevice>, mem: Arc<dyn GuestMemory>) -> Self {
        Self::with_observers(index, device, mem, Tracer::off(), Arc::default())
    }

    /// A port that reports to `tracer` (its device wrapped in a [`TracedDevice`] when the
    /// tracer is on) and checks what software does against `checks`.
    pub fn with_observers(
        index: u8,
        device: Box<dyn SataDevice>,
        mem: Arc<dyn GuestMemory>,
        tracer: Tracer,
        checks: Arc<SpecChecks>,
    ) -> Self {
        let device: Box<dyn SataDevice> = if tracer.enabled() {
            Box::new(TracedDevice::new(device, index, tracer.clone()))
        } else {
            device
        };
        let mut p = Port {
            hot_plug: false,
            present: true,
            retired: Vec::new(),
            plug_changes: 0,
            index,
            device,
            mem,
            clb: 0,
            clbu: 0,
            fb: 0,
            fbu: 0,
            is: 0,
            ie: 0,
            cmd: 0,
            tfd: pxtfd::RESET,
            sig: SIG_RESET,
            sctl: 0,
            serr: 0,
            sact: 0,
            ci: 0,
            sntf: 0,
            link: Link::Up,
            link_gen: 0,
            phy_lost: false,
            signature_pending: None,
            issued: 0,
            in_flight: Default::default(),
            halted: false,
            cr_held: false,
            new_events: 0,
            stats: PortStats::default(),
            sact_since_ci: 0,
            tracer,
            checks,
            aggregation: SdbAggregation::default(),
            defer_busy_issue: false,
            deferred_issue: false,
            events: None,
        };
        p.power_on_reset();
        p
    }

    /// Reset every register software can change, except PxCLB/PxCLBU/PxFB/PxFBU, and reset the
    /// device (AHCI 10.4.3: GHC.HR resets the port registers and issues a COMRESET).
    fn power_on_reset(&mut self) {
        self.is = 0;
        self.ie = 0;
        self.cmd = 0;
        self.tfd = pxtfd::RESET;
        self.sig = SIG_RESET;
        self.sctl = 0;
        self.serr = 0;
        self.sact = 0;
        self.ci = 0;
        self.sntf = 0;
        self.issued = 0;
        self.drop_in_flight();
        self.halted = false;
        self.cr_held = false;
        self.new_events = 0;
        self.sact_since_ci = 0;
        self.link = if self.phy_lost { Link::Down } else { Link::Up };
        // The device answers with its signature; PxTFD and PxSIG show it once software enables
        // FIS reception (until then they read 7Fh and FFFFFFFFh, as AHCI 3.3.8/3.3.9 allow for
        // a signature that has not arrived yet, and as QEMU's ahci-test expects).
        let sig = self.device.comreset();
        self.signature_pending = self.present.then_some(sig);
        if self.link == Link::Up {
            self.negotiate_link();
        }
    }

    /// Speed negotiation as the link comes up (SATA 3.x 8.4.1; AHCI 3.3.11 PxSCTL.SPD): the
    /// fastest generation the HBA (CAP.ISS), the device and the guest's limit (PxSCTL.SPD,
    /// 0 = no limit) all allow. PxSSTS.SPD reports it and the device learns it (IDENTIFY word
    /// 77). PxSCTL.IPM needs nothing: this link never leaves the active state (CAP.PSC and
    /// CAP.SSC are clear, the device offers no DIPM), so every IPM restriction holds.
    fn negotiate_link(&mut self) {
        let limit = ((self.sctl & scr::SPD_MASK) >> scr::SPD_SHIFT) as u8;
        let mut gen =
            (crate::ahci::regs::cap::ISS_GEN3 as u8).min(self.device.max_link_gen().max(1));
        if limit != 0 {
            gen = gen.min(limit);
        }
        self.link_gen = gen;
        self.device.link_negotiated(gen);
    }

    /// `device` as the port keeps it: wrapped for tracing when the tracer is on.
    fn wrap_traced(&self, device: Box<dyn SataDevice>) -> Box<dyn SataDevice> {
        if self.tracer.enabled() {
            Box::new(TracedDevice::new(device, self.index, self.tracer.clone()))
        } else {
            device
        }
    }

    /// Forget every command the device held, with any completions held back for aggregation.
    fn drop_in_flight(&mut self) {
        self.in_flight = Default::default();
        self.aggregation.clear();
    }

    /// With `on`, a PxCI write made while the device holds other commands only records the
    /// issue (PxCI reads the new bits at once, as software expects); the command is fetched
    /// and sent at the next completion pass ([`Port::process_completions`]), on whichever
    /// thread runs it. AHCI lets the HBA fetch issued commands when it likes (5.3.2); the VMM
    /// uses this so that, under load, a vCPU's PxCI exit returns to the guest at once and the
    /// event loop does the fetch, PRDT walk and submission beside it. A write to an idle port
    /// still sends the command at once (lowest latency at queue depth 1).
    pub fn set_deferred_issue(&mut self, on: bool) {
        self.defer_busy_issue = on;
    }

    /// True once after a PxCI write left its commands for the next completion pass (the
    /// caller makes that pass happen soon).
    pub fn take_deferred_issue(&mut self) -> bool {
        std::mem::take(&mut self.deferred_issue)
    }

    /// Report link changes, command errors and COMRESETs to `hook`.
    pub fn set_event_hook(&mut self, hook: EventHook) {
        self.events = Some(hook);
    }

    /// Tell the event hook, if there is one.
    pub(crate) fn report(&self, event: AhciEvent) {
        if let Some(hook) = &self.events {
            hook.report(event);
        }
    }

    /// How this port aggregates queued completions (see [`crate::ahci::sdb_aggregation`]).
    pub fn set_aggregation(&mut self, mode: AggregationMode) {
        self.aggregation.set_mode(mode);
    }

    /// A guest access to any HBA register, to learn how fast the guest runs.
    pub fn note_access(&mut self, now: Instant) {
        self.aggregation.note_access(now);
    }

    /// GHC.HR: reset the port as part of an HBA reset.
    pub fn hba_reset(&mut self) {
        self.stats.resets += 1;
        self.power_on_reset();
    }

    /// PxIS as software reads it.
    pub fn is(&self) -> u32 {
        let mut v = self.is;
        if self.serr & pxserr::DIAG_X != 0 {
            v |= pxis::PCS;
        }
        if self.serr & pxserr::DIAG_N != 0 {
            v |= pxis::PRCS;
        }
        if self.serr & pxserr::DIAG_F != 0 {
            v |= pxis::UFS;
        }
        v
    }

    /// True while an enabled PxIS bit is set (the port's bit in the HBA's IS register).
    pub fn interrupt_pending(&self) -> bool {
        self.is() & self.ie != 0
    }

    /// Enabled PxIS bits set since the last call (each is one MSI edge).
    pub fn take_new_events(&mut self) -> u32 {
        std::mem::take(&mut self.new_events) & self.ie
    }

    /// Set PxIS bits.
    pub(crate) fn raise(&mut self, bits: u32) {
        let fresh = bits & !self.is();
        if fresh != 0 {
            self.tracer.emit(|| {
                Event::new(Layer::Ahci, "pxis")
                    .port(self.index)
                    .hex32("set", fresh)
            });
        }
        self.is |= bits & pxis::RW1C;
        self.new_events |= fresh;
    }

    /// The port's statistics, with the aggregation counters.
    pub fn stats(&self) -> PortStats {
        PortStats {
            aggregated_sdbs: self.aggregation.batches,
            aggregated_completions: self.aggregation.batched,
            ..self.stats.clone()
        }
    }

    /// The port number.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Set PxSERR bits (hardware-set; software clears them by writing ones).
    fn set_serr(&mut self, bits: u32) {
        self.serr |= bits;
    }

    fn started(&self) -> bool {
        self.cmd & pxcmd::ST != 0
    }

    fn fis_receive_enabled(&self) -> bool {
        self.cmd & pxcmd::FRE != 0
    }

    fn clb(&self) -> u64 {
        u64::from(self.clb) | u64::from(self.clbu) << 32
    }

    fn fb(&self) -> u64 {
        u64::from(self.fb) | u64::from(self.fbu) << 32
    }

    /// Read the port register at `offset` (within the port's 0x80 bytes).
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            reg::CLB => self.clb,
            reg::CLBU => self.clbu,
            reg::FB => self.fb,
            reg::FBU => self.fbu,
            reg::IS => self.is(),
            reg::IE => self.ie,
            reg::CMD => {
                let hpcp = if self.hot_plug { pxcmd::HPCP } else { 0 };
                self.cmd | pxcmd::SUD | pxcmd::POD | hpcp
            }
            reg::TFD => self.tfd,
            reg::SIG => self.sig,
            reg::SSTS => match self.link {
                _ if self.phy_lost => 0,
                Link::Up => scr::ssts_link_up(self.link_gen),
                Link::Down if self.sctl & scr::DET_MASK == scr::DET_OFFLINE => scr::DET_OFFLINE,
                Link::Down => 0,
            },
            reg::SCTL => self.sctl,
            reg::SERR => self.serr,
            reg::SACT => self.sact,
            reg::CI => self.ci,
            reg::SNTF => self.sntf,
            _ => 0,
        }
    }

    /// Write `value` to the port register at `offset`; only the bits in `mask` are written
    /// (a sub-dword access), the others keep their value and are not "written as one".
    pub fn write(&mut self, offset: u64, value: u32, mask: u32) {
        let merged = (self.read(offset) & !mask) | (value & mask);
        let ones = value & mask;
        self.check_write(offset, merged, ones);
        match offset {
            // 3.3.1: bits 9:0 reserved (1 KiB alignment); 3.3.3: bits 7:0 (256 bytes).
            reg::CLB => self.clb = merged & !0x3ff,
            reg::CLBU => self.clbu = merged,
            reg::FB => self.fb = merged & !0xff,
            reg::FBU => self.fbu = merged,
            reg::IS => self.is &= !(ones & pxis::RW1C),
            reg::IE => {
                let newly = merged & pxis::ALL & !self.ie;
                self.ie = merged & pxis::ALL;
                // Enabling a bit that is already set is an interrupt event too.
                self.new_events |= self.is() & newly;
            }
            reg::CMD => self.write_cmd(merged),
            reg::SCTL => self.write_sctl(merged & scr::SCTL_WRITABLE),
            reg::SERR => self.serr &= !ones,
            // 3.3.13: software may only set bits, and only while ST is 1.
            reg::SACT if self.started() => {
                self.sact_since_ci |= ones & !self.sact;
                self.sact |= ones;
            }
            reg::CI => self.write_ci(ones),
            // 3.3.15: PMN bits 15:0, write one to clear.
            reg::SNTF => self.sntf &= !(ones & 0xffff),
            _ => {}
        }
    }

    /// PxCMD (3.3.7) and the engine start/stop sequences of section 10.3.
    fn write_cmd(&mut self, v: u32) {
        let old = self.cmd;
        let keep = pxcmd::ST | pxcmd::FRE | pxcmd::ATAPI | pxcmd::DLAE;
        self.cmd = (self.cmd & !keep) | (v & keep);

        // FRE: FR follows it at once; the pending signature (if any) is accepted now.
        if v & pxcmd::FRE != 0 {
            self.cmd |= pxcmd::FR;
            if self.link == Link::Up {
                if let Some(sig) = self.signature_pending.take() {
                    self.accept_signature(sig);
                }
            }
        } else {
            self.cmd &= !pxcmd::FR;
        }

        // CLO (3.3.7): clear PxTFD.STS.BSY and DRQ; the bit clears itself.
        if v & pxcmd::CLO != 0 {
            self.tfd &= !(pxtfd::BSY | pxtfd::DRQ);
        }

        match (old & pxcmd::ST != 0, v & pxcmd::ST != 0) {
            (false, true) => {
                // (Setting ST while CR is still held is the guest's mistake, AHCI 10.3.1; the
                // device holds the new commands back until its old I/O has drained.)
                self.cr_held = false;
                self.cmd |= pxcmd::CR;
                self.issue_pending();
            }
            (true, false) => self.stop_engine(),
            _ => {}
        }
    }

    /// ST 1 -> 0 (10.3.2): PxCI and PxSACT clear, the device drops what it holds, CR clears
    /// once nothing is in flight any more: at once, or — when the device's host I/O cannot be
    /// recalled and may still move data into guest memory — when it has drained
    /// ([`SataDevice::draining`]; see [`Port::process_completions`]).
    fn stop_engine(&mut self) {
        self.device.abort_all();
        self.drop_in_flight();
        self.ci = 0;
        self.sact = 0;
        self.issued = 0;
        self.halted = false;
        self.cmd &= !pxcmd::CCS_MASK;
        self.cr_held = self.draining();
        if !self.cr_held {
            self.cmd &= !pxcmd::CR;
        }
    }

    /// True while aborted commands' host I/O is still in flight (CR held, or an HBA reset
    /// that cannot complete yet).
    pub fn draining(&self) -> bool {
        self.device.draining() || self.retired_draining()
    }

    /// CR was held for a drain that is over now: clear it.
    fn release_cr(&mut self) {
        if self.cr_held && !self.draining() {
            self.cr_held = false;
            if !self.started() {
                self.cmd &= !pxcmd::CR;
            }
        }
    }

    /// PxSCTL (3.3.11): DET = 1 asserts COMRESET, DET = 4 takes the Phy offline, DET back to 0
    /// re-establishes the link and the device sends its signature (10.4.2).
    fn write_sctl(&mut self, v: u32) {
        let old_det = self.sctl & scr::DET_MASK;
        let new_det = v & scr::DET_MASK;
        self.sctl = v;
        match new_det {
            scr::SCTL_DET_COMRESET | scr::DET_OFFLINE
                if self.link == Link::Up || old_det != new_det =>
            {
                // 10.4.2: PxTFD.STS reads 7Fh and PxSSTS.DET 0 while COMRESET is asserted.
                self.link = Link::Down;
                self.tfd = pxtfd::RESET;
                self.drop_in_flight();
                self.signature_pending = None;
                self.stats.resets += 1;
                self.tracer.emit(|| {
                    Event::new(Layer::Ahci, "link")
                        .port(self.index)
                        .str("state", "comreset")
                });
                self.report(AhciEvent::PortReset { port: self.index });
                // The device is reset now; its signature is sent once the link comes back.
                let sig = self.device.comreset();
                self.signature_pending = self.present.then_some(sig);
            }
            // A device that dropped off the link does not answer a COMRESET; the link comes
            // back when it does (see `link`).
            0 if self.link == Link::Down && !self.phy_lost => {
                self.link = Link::Up;
                self.negotiate_link();
                // COMINIT from the device: presence changed (DIAG.X, mirrored by PxIS.PCS).
                self.raise(pxis::PCS);
                self.serr |= pxserr::DIAG_X;
                self.tfd |= pxtfd::BSY;
                // The first D2H FIS after the reset updates PxTFD and PxSIG even with FRE = 0
                // (3.3.7 FRE); it reaches the received-FIS area only with FRE = 1.
                if let Some(sig) = self.signature_pending.take() {
                    self.accept_signature(sig);
                }
            }
            _ => {}
        }
    }

    /// The device's signature FIS: PxTFD, PxSIG (3.3.9: count, LBA low/mid/high).
    fn accept_signature(&mut self, d2h: RegisterD2h) {
        let lba = d2h.lba as u32 & 0x00ff_ffff;
        self.sig = lba << 8 | u32::from(d2h.count as u8);
        self.receive_d2h(&d2h);
    }

    /// A Register D2H FIS: PxTFD, the RFIS area, PxIS.DHRS if I is set.
    fn receive_d2h(&mut self, d2h: &RegisterD2h) {
        self.tfd = u32::from(d2h.status) | u32::from(d2h.error) << pxtfd::ERR_SHIFT;
        self.post_fis(&Fis::RegisterD2h(*d2h));
        if d2h.interrupt {
            self.raise(pxis::DHRS);
        }
    }

    /// Copy a FIS into the received-FIS area if FIS reception is enabled. A write outside
    /// RAM is a host bus fatal error.
    fn post_fis(&mut self, fis: &Fis) {
        if !self.fis_receive_enabled() {
            return;
        }
        if let Err(e) = rfis::post(&*self.mem, self.fb(), fis) {
            log::warn!("AHCI port {}: received-FIS area: {e}", self.index);
            self.fatal(pxis::HBFS);
        }
    }

    /// Stop the command list engine on a fatal error (6.1.2) until software clears ST.
    fn fatal(&mut self, bit: u32) {
        self.raise(bit);
        self.halted = true;
        self.stats.errors += 1;
    }

    /// PxCI (3.3.14): software sets bits while ST is 1; the port fetches them at once.
    fn write_ci(&mut self, ones: u32) {
        if !self.started() {
            return;
        }
        let new = ones & !self.ci;
        self.ci |= new;
        self.issued |= new;
        if new != 0 {
            self.aggregation.note_issue(Instant::now());
        }
        if self.defer_busy_issue && self.in_flight.iter().any(Option::is_some) {
            self.deferred_issue |= new != 0;
            return;
        }
        self.issue_pending();
    }

    /// True while a non-queued command holds the device (its PxCI bit is what software waits on).
    fn non_queued_busy(&self) -> bool {
        self.in_flight.iter().flatten().any(|c| !c.ncq)
    }

    /// Send issued commands to the device, lowest slot first, one non-queued command at a
    /// time (5.3.2, state CFIS:Xmit).
    fn issue_pending(&mut self) {
        while self.issued != 0
            && self.started()
            && !self.halted
            && self.link == Link::Up
            && !self.phy_lost
            && !self.non_queued_busy()
        {
            let slot = self.issued.trailing_zeros() as u8;
            self.issued &= !(1 << slot);
            if let Issue::Stop = self.fetch_and_submit(slot) {
                break;
            }
        }
    }

    fn set_ccs(&mut self, slot: u8) {
        self.cmd = (self.cmd & !pxcmd::CCS_MASK) | u32::from(slot) << pxcmd::CCS_SHIFT;
    }

    fn fetch_and_submit(&mut self, slot: u8) -> Issue {
        let bit = 1u32 << slot;
        self.set_ccs(slot);
        let cmd = match command::fetch(&*self.mem, self.clb(), slot) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("AHCI port {} slot {slot}: {e}", self.index);
                if let FetchError::BadCfisLength(cfl) = e {
                    self.checks.report(self.index, Rule::CflOutOfRange, || {
                        format!("slot {slot}: CFL {cfl}")
                    });
                }
                self.tracer.emit(|| {
                    Event::new(Layer::Ahci, "fetch_error")
                        .port(self.index)
                        .slot(slot)
                        .str("error", e.to_string())
                });
                // 6.1.2: a bad pointer is a host bus fatal error; a malformed CFIS cannot be
                // sent on the link, an interface fatal error. PxCI keeps the slot's bit.
                let bit = match e {
                    FetchError::Memory(_) => pxis::HBFS,
                    _ => pxis::IFS,
                };
                self.tfd |= pxtfd::ERR;
                self.fatal(bit);
                return Issue::Stop;
            }
        };
        self.check_fetched(slot, &cmd);
        // Sending the FIS sets BSY (5.3.2, CFIS:Xmit); the device's answer clears it.
        self.tfd |= pxtfd::BSY;
        if !cmd.fis.c {
            // A Device Control update (software reset, 10.4.1): no data, no completion; the
            // slot is done once sent. The device answers SRST's release with its signature.
            self.ci &= !bit;
            if cmd.header.clear_busy {
                self.tfd &= !pxtfd::BSY;
            }
            if let Some(sig) = self.device.device_control(&cmd.fis) {
                self.accept_signature(sig);
            }
            return Issue::Next;
        }
        let ncq = self.sact & bit != 0;
        let data = DataPath::new(self.mem.clone(), cmd.prdt);
        let record = InFlight {
            ncq,
            data: data.clone(),
            prd_interrupt: cmd.prd_interrupt,
            write: cmd.header.write,
            issued_at: Instant::now(),
        };
        self.stats.commands += 1;
        *self.stats.by_opcode.entry(cmd.fis.command).or_default() += 1;
        if cmd.header.clear_busy {
            // C (4.2.2): clear BSY and the PxCI bit once the FIS is acknowledged.
            self.tfd &= !pxtfd::BSY;
        }
        let submitted = match &cmd.acmd {
            Some(acmd) => self.device.submit_packet(slot, &cmd.fis, acmd, data),
            None => self.device.submit(slot, &cmd.fis, data),
        };
        match submitted {
            Submission::Complete(c) => {
                self.track(slot, record);
                // Reported at once: this runs on the vCPU's write of PxCI, where nothing
                // would come back to report a held completion later.
                completion::apply(self, vec![c]);
            }
            Submission::Pending { accepted } => {
                self.track(slot, record);
                if let Some(d2h) = accepted {
                    self.receive_d2h(&d2h);
                    if self.tfd & pxtfd::ERR != 0 {
                        // The device refused the command: a task file error.
                        self.in_flight[usize::from(slot)] = None;
                        self.raise(pxis::TFES);
                        self.halted = true;
                        self.stats.errors += 1;
                        return Issue::Stop;
                    }
                    self.ci &= !bit;
                }
            }
        }
        if cmd.header.clear_busy {
            self.ci &= !bit;
        }
        if self.halted {
            Issue::Stop
        } else {
            Issue::Next
        }
    }

    fn track(&mut self, slot: u8, record: InFlight) {
        if let Some(s) = self.in_flight.get_mut(usize::from(slot)) {
            *s = Some(record);
        }
        let depth = self.in_flight.iter().flatten().filter(|c| c.ncq).count() as u32;
        self.stats.ncq_peak_depth = self.stats.ncq_peak_depth.max(depth);
    }

    /// Collect the device's completions and apply them (called when its notifier fired), and
    /// report held completions whose time has come.
    pub fn process_completions(&mut self) {
        self.poll_retired();
        self.poll_link();
        let done = self.device.poll_completions();
        if !done.is_empty() {
            self.complete(done);
        }
        self.release_cr();
        self.report_held(Instant::now());
        self.issue_pending();
    }

    /// When this port next needs [`Port::process_completions`] without a device signal: held
    /// completions due, or a deadline of the device's own (the VMM arms a timer for it).
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.aggregation.deadline(), self.device.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The device's I/O engine and its counters, if it has one.
    pub fn engine_stats(&self) -> Option<(&'static str, crate::block::EngineStats)> {
        self.device.engine_stats()
    }

    /// The device's own readiness descriptor for the event loop, if it has one.
    pub fn device_ready_fd(&self) -> Option<std::os::fd::RawFd> {
        self.device.ready_fd()
    }

    /// Report held completions if their deadline passed by `now`.
    pub fn report_held(&mut self, now: Instant) {
        let due = self.aggregation.due(now);
        if !due.is_empty() {
            completion::apply(self, due);
        }
    }

    /// Report every held completion now.
    pub fn flush_held(&mut self) {
        let held = self.aggregation.take_all();
        if !held.is_empty() {
            completion::apply(self, held);
        }
    }

    /// Apply finished commands, or hold plain queued ones back; see [`crate::ahci::completion`]
    /// and [`crate::ahci::sdb_aggregation`].
    fn complete(&mut self, done: Vec<Completion>) {
        let in_flight = &self.in_flight;
        let now = Instant::now();
        // Hold only while the device keeps up with the guest: it finished this command within
        // one window, and at most DEVICE_BUSY_DEPTH other commands are still in it. A device
        // with a queue of its own (a sequential stream, a slow host drive) is the bottleneck,
        // and holding its completions would only keep the guest from refilling that queue.
        let fast = self.aggregation.window();
        let in_device = in_flight
            .iter()
            .flatten()
            .filter(|r| r.ncq)
            .count()
            .saturating_sub(done.len() + self.aggregation.held_count());
        let device_keeps_up = in_device <= DEVICE_BUSY_DEPTH;
        let report = self.aggregation.offer(now, done, |c| {
            device_keeps_up
                && completion::holdable(
                    in_flight.get(usize::from(c.slot)).and_then(Option::as_ref),
                    c,
                )
                && in_flight
                    .get(usize::from(c.slot))
                    .and_then(Option::as_ref)
                    .is_some_and(|r| now.saturating_duration_since(r.issued_at) <= fast)
        });
        if !report.is_empty() {
            completion::apply(self, report);
        }
    }
}

/// Queued commands still in the device above which its completions are never held back.
const DEVICE_BUSY_DEPTH: usize = 2;

mod checks;
mod completion_target;
pub mod hotplug;
mod link;

#[cfg(test)]
mod hotplug_tests;
#[cfg(test)]
mod tests;
