//! Spec checks for driver authors: things AHCI 1.3.1 forbids software to do, or leaves
//! undefined, noticed as the guest does them.
//!
//! Each [`Rule`] names its section. The first time a rule is broken the HBA logs a warning
//! (`log::warn!`); every occurrence goes to the trace (layer `check`). In strict mode each
//! occurrence is also handed to a hook; satavm's `--strict` wires that hook to stop the VM
//! with the rule's description as the failure.
//!
//! The HBA still does what it always did with the access (the checks only observe), so a
//! guest behaves the same with and without them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::trace::{Event, Layer, Tracer};

/// Something the guest should not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// PxCMD.ST set while PxCMD.FRE is clear.
    StWithoutFre,
    /// PxCMD.ST set while PxTFD.STS.BSY or DRQ is set (and CLO not used).
    StWhileBusy,
    /// PxCLB/PxCLBU changed while PxCMD.ST is set.
    ClbWhileRunning,
    /// PxFB/PxFBU changed while PxCMD.FRE is set.
    FbWhileReceiving,
    /// A command header's CFL is outside 2..=16 dwords.
    CflOutOfRange,
    /// A PRD's DBC bit 0 is 0 (an odd byte count).
    PrdOddByteCount,
    /// A PxCI bit written as 1 while it is already set (the slot is still busy).
    CiAlreadySet,
    /// PxCI written while PxCMD.ST is clear.
    CiWhileStopped,
    /// PxSACT bits set without issuing the matching PxCI bits.
    SactWithoutCi,
    /// A queued (FPDMA) command issued without its PxSACT bit.
    NcqWithoutSact,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 10] = [
        Rule::StWithoutFre,
        Rule::StWhileBusy,
        Rule::ClbWhileRunning,
        Rule::FbWhileReceiving,
        Rule::CflOutOfRange,
        Rule::PrdOddByteCount,
        Rule::CiAlreadySet,
        Rule::CiWhileStopped,
        Rule::SactWithoutCi,
        Rule::NcqWithoutSact,
    ];

    /// A short stable name (used in traces).
    pub fn name(self) -> &'static str {
        match self {
            Rule::StWithoutFre => "st-without-fre",
            Rule::StWhileBusy => "st-while-busy",
            Rule::ClbWhileRunning => "clb-while-running",
            Rule::FbWhileReceiving => "fb-while-receiving",
            Rule::CflOutOfRange => "cfl-out-of-range",
            Rule::PrdOddByteCount => "prd-odd-byte-count",
            Rule::CiAlreadySet => "ci-already-set",
            Rule::CiWhileStopped => "ci-while-stopped",
            Rule::SactWithoutCi => "sact-without-ci",
            Rule::NcqWithoutSact => "ncq-without-sact",
        }
    }

    /// The AHCI 1.3.1 section that states the rule.
    pub fn section(self) -> &'static str {
        match self {
            Rule::StWithoutFre | Rule::StWhileBusy => "10.3.1",
            Rule::ClbWhileRunning => "3.3.1",
            Rule::FbWhileReceiving => "3.3.3",
            Rule::CflOutOfRange => "4.2.2",
            Rule::PrdOddByteCount => "4.2.3.3",
            Rule::CiAlreadySet | Rule::CiWhileStopped => "3.3.14",
            Rule::SactWithoutCi | Rule::NcqWithoutSact => "3.3.13",
        }
    }

    /// What the rule says.
    pub fn description(self) -> &'static str {
        match self {
            Rule::StWithoutFre => "PxCMD.ST set while PxCMD.FRE is clear",
            Rule::StWhileBusy => "PxCMD.ST set while PxTFD.STS.BSY or DRQ is set",
            Rule::ClbWhileRunning => "PxCLB/PxCLBU changed while PxCMD.ST is set",
            Rule::FbWhileReceiving => "PxFB/PxFBU changed while PxCMD.FRE is set",
            Rule::CflOutOfRange => "command header CFL outside 2..16 dwords",
            Rule::PrdOddByteCount => "PRD byte count is odd (DBC bit 0 must be 1)",
            Rule::CiAlreadySet => "PxCI bit written while already set (slot still busy)",
            Rule::CiWhileStopped => "PxCI written while PxCMD.ST is clear",
            Rule::SactWithoutCi => "PxSACT bit set without issuing the matching PxCI bit",
            Rule::NcqWithoutSact => "FPDMA (NCQ) command issued without its PxSACT bit",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub port: u8,
    /// The values involved, e.g. "PxCI 0x1 written, PxCI was 0x1".
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AHCI 1.3.1 section {}: port {}: {} ({}) [{}]",
            self.rule.section(),
            self.port,
            self.rule.description(),
            self.detail,
            self.rule.name()
        )
    }
}

/// Called with each violation in strict mode.
pub type ViolationHook = Arc<dyn Fn(&Violation) + Send + Sync>;

/// The checks of one HBA, shared by its ports.
pub struct SpecChecks {
    /// Rules already warned about (one bit per [`Rule`]).
    warned: AtomicU32,
    strict: Option<ViolationHook>,
    tracer: Tracer,
}

impl std::fmt::Debug for SpecChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecChecks")
            .field("warned", &self.warned)
            .field("strict", &self.strict.is_some())
            .finish()
    }
}

impl Default for SpecChecks {
    fn default() -> Self {
        Self::new(Tracer::off(), None)
    }
}

impl SpecChecks {
    /// Checks that warn and trace; with `strict`, each violation also goes to the hook.
    pub fn new(tracer: Tracer, strict: Option<ViolationHook>) -> Self {
        SpecChecks {
            warned: AtomicU32::new(0),
            strict,
            tracer,
        }
    }

    /// Rules broken so far.
    pub fn broken(&self) -> Vec<Rule> {
        let w = self.warned.load(Ordering::Relaxed);
        Rule::ALL.into_iter().filter(|r| w & r.bit() != 0).collect()
    }

    /// Report that port `port` broke `rule`; `detail` runs only when something is reported.
    pub fn report(&self, port: u8, rule: Rule, detail: impl FnOnce() -> String) {
        let v = Violation {
            rule,
            port,
            detail: detail(),
        };
        if self.warned.fetch_or(rule.bit(), Ordering::Relaxed) & rule.bit() == 0 {
            log::warn!("{v} (warned once per rule)");
        }
        self.tracer.emit(|| {
            Event::new(Layer::Check, "violation")
                .port(port)
                .str("rule", rule.name())
                .str("section", rule.section())
                .str("what", rule.description())
                .str("detail", v.detail.clone())
        });
        if let Some(hook) = &self.strict {
            hook(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn warns_once_per_rule_and_calls_the_strict_hook_every_time() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let hook: ViolationHook = Arc::new(move |v: &Violation| s.lock().unwrap().push(v.clone()));
        let c = SpecChecks::new(Tracer::off(), Some(hook));
        c.report(0, Rule::CiWhileStopped, || "PxCI 0x1".into());
        c.report(1, Rule::CiWhileStopped, || "PxCI 0x2".into());
        c.report(0, Rule::PrdOddByteCount, || "PRD 0: 511 bytes".into());
        assert_eq!(
            c.broken(),
            vec![Rule::PrdOddByteCount, Rule::CiWhileStopped]
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[1].to_string(),
            "AHCI 1.3.1 section 3.3.14: port 1: PxCI written while PxCMD.ST is clear (PxCI 0x2) [ci-while-stopped]"
        );
    }
}
