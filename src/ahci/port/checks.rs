//! The spec checks a port makes on what software writes and on the commands it fetches
//! (the rules are in [`super::checks`]).

use super::Port;
use crate::ahci::checks::Rule;
use crate::ahci::command::FetchedCommand;
use crate::ahci::regs::{port as reg, pxcmd, pxtfd, scr};
use crate::sata::fis::is_fpdma_queued;
use crate::trace::{Event, Layer};

impl Port {
    /// Spec checks of a register write (before it takes effect); see [`super::checks`].
    pub(super) fn check_write(&mut self, offset: u64, merged: u32, ones: u32) {
        let port = self.index();
        let checks = &self.checks;
        match offset {
            reg::CLB | reg::CLBU if self.started() && merged != self.read(offset) => {
                checks.report(port, Rule::ClbWhileRunning, || {
                    format!("{:#x} written over {:#x}", merged, self.read(offset))
                })
            }
            reg::FB | reg::FBU if self.fis_receive_enabled() && merged != self.read(offset) => {
                checks.report(port, Rule::FbWhileReceiving, || {
                    format!("{:#x} written over {:#x}", merged, self.read(offset))
                })
            }
            reg::CMD if !self.started() && merged & pxcmd::ST != 0 => {
                if merged & pxcmd::FRE == 0 {
                    checks.report(port, Rule::StWithoutFre, || format!("PxCMD {merged:#x}"));
                }
                let tfd = if merged & pxcmd::CLO != 0 {
                    self.tfd & !(pxtfd::BSY | pxtfd::DRQ)
                } else {
                    self.tfd
                };
                // PxTFD shows a device's status only while one is on the link (DET = 3);
                // starting the engine of an empty port (as Linux does when a reset finds no
                // device) is not this rule's business.
                let device_present = self.read(reg::SSTS) & scr::DET_MASK == scr::DET_PRESENT_PHY;
                if device_present && tfd & (pxtfd::BSY | pxtfd::DRQ) != 0 {
                    checks.report(port, Rule::StWhileBusy, || format!("PxTFD {tfd:#x}"));
                }
            }
            reg::CI if ones != 0 => {
                if !self.started() {
                    checks.report(port, Rule::CiWhileStopped, || format!("PxCI {ones:#x}"));
                } else if ones & self.ci != 0 {
                    checks.report(port, Rule::CiAlreadySet, || {
                        format!("{ones:#x} written, PxCI was {:#x}", self.ci)
                    });
                }
                let orphans = std::mem::take(&mut self.sact_since_ci) & !ones & !self.ci;
                if orphans != 0 {
                    checks.report(port, Rule::SactWithoutCi, || {
                        format!("PxSACT bits {orphans:#x}, PxCI write {ones:#x}")
                    });
                }
            }
            _ => {}
        }
    }

    /// Spec checks and the trace of a fetched command.
    pub(super) fn check_fetched(&mut self, slot: u8, cmd: &FetchedCommand) {
        let bit = 1u32 << slot;
        let ncq = self.sact & bit != 0;
        if let Some((i, prd)) = cmd.prdt.iter().enumerate().find(|(_, p)| p.len % 2 != 0) {
            self.checks.report(self.index(), Rule::PrdOddByteCount, || {
                format!("slot {slot} PRD {i}: {} bytes", prd.len)
            });
        }
        if cmd.fis.c && !ncq && is_fpdma_queued(cmd.fis.command) {
            self.checks.report(self.index(), Rule::NcqWithoutSact, || {
                format!("slot {slot}, command {:#04x}", cmd.fis.command)
            });
        }
        self.tracer.emit(|| {
            Event::new(Layer::Ahci, "fetch")
                .port(self.index())
                .slot(slot)
                .u("cfl", cmd.header.cfl)
                .u("prdtl", cmd.header.prdtl)
                .u(
                    "prd_bytes",
                    cmd.prdt.iter().map(|p| u64::from(p.len)).sum::<u64>(),
                )
                .flag("w", cmd.header.write)
                .flag("c", cmd.header.clear_busy)
                .flag("ncq", ncq)
        });
    }
}
