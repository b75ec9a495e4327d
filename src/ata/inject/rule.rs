//! Fault injection rules and their text form (`--inject RULE`, `--inject-file FILE`).
//!
//! A rule is comma-separated items: filters that pick commands, and one action.
//!
//! Filters (all optional; a rule without filters matches every command):
//! - `port=N`: only the drive on AHCI port N (default: every drive);
//! - `op=read|write|flush|NAME-OR-0xHH`: `read` is every medium read (READ SECTORS/DMA/
//!   MULTIPLE (EXT), READ FPDMA QUEUED), `write` every medium write, `flush` FLUSH CACHE
//!   (EXT); `0x61` an opcode;
//! - `lba=A` or `lba=A-B`: commands whose sectors overlap LBAs A..=B;
//! - `nth=N`: only the N-th command that matches the other filters (counted from 1).
//!
//! Actions (exactly one):
//! - `error=abrt|unc|idnf|icrc`: the command fails with that ATA error. For `unc` and `idnf`
//!   the Register D2H FIS (non-queued) or the NCQ Command Error log (queued) reports the
//!   first LBA of the command inside the rule's range;
//! - `delay=MS`: the completion arrives MS milliseconds late;
//! - `drop`: the completion never arrives (the guest times out);
//! - `link-down`, `for:MS`: the device drops off the link when the command arrives (the
//!   command is lost) and comes back after MS milliseconds (default 1000);
//! - `link-down=after:MS`, `for:MS`: the same, MS milliseconds after the drive's first
//!   command (no filters other than `port`).
//!
//! In files, `#` starts a comment and blank lines are skipped.

use std::time::Duration;

use thiserror::Error;

use crate::ata::command::opcode::*;
use crate::ata::registers::error;

/// Which commands an `op=` filter picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFilter {
    Read,
    Write,
    Flush,
    Opcode(u8),
}

impl OpFilter {
    pub fn matches(self, op: u8) -> bool {
        match self {
            OpFilter::Read => matches!(
                op,
                READ_SECTORS
                    | READ_SECTORS_EXT
                    | READ_DMA
                    | READ_DMA_EXT
                    | READ_MULTIPLE
                    | READ_MULTIPLE_EXT
                    | READ_FPDMA_QUEUED
            ),
            OpFilter::Write => matches!(
                op,
                WRITE_SECTORS
                    | WRITE_SECTORS_EXT
                    | WRITE_DMA
                    | WRITE_DMA_EXT
                    | WRITE_DMA_FUA_EXT
                    | WRITE_MULTIPLE
                    | WRITE_MULTIPLE_EXT
                    | WRITE_MULTIPLE_FUA_EXT
                    | WRITE_FPDMA_QUEUED
            ),
            OpFilter::Flush => matches!(op, FLUSH_CACHE | FLUSH_CACHE_EXT),
            OpFilter::Opcode(o) => o == op,
        }
    }
}

/// The ATA error an `error=` action reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// ABRT: command aborted.
    Abrt,
    /// UNC: uncorrectable data error (a bad sector), reported with its LBA.
    Unc,
    /// IDNF: ID not found, reported with its LBA.
    Idnf,
    /// ICRC (with ABRT): interface CRC error, as ACS-3 reports it.
    Icrc,
}

impl InjectedError {
    /// The Error register bits.
    pub fn bits(self) -> u8 {
        match self {
            InjectedError::Abrt => error::ABRT,
            InjectedError::Unc => error::UNC,
            InjectedError::Idnf => error::IDNF,
            InjectedError::Icrc => error::ICRC | error::ABRT,
        }
    }

    /// True when the drive reports the failing LBA.
    pub fn reports_lba(self) -> bool {
        matches!(self, InjectedError::Unc | InjectedError::Idnf)
    }

    pub fn name(self) -> &'static str {
        match self {
            InjectedError::Abrt => "abrt",
            InjectedError::Unc => "unc",
            InjectedError::Idnf => "idnf",
            InjectedError::Icrc => "icrc",
        }
    }
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Error(InjectedError),
    Delay(Duration),
    Drop,
    /// The link goes down for `duration`: when a matching command arrives (`after` None),
    /// or `after` the drive's first command.
    LinkDown {
        after: Option<Duration>,
        duration: Duration,
    },
}

/// One injection rule; see the module documentation for the syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub port: Option<u8>,
    pub op: Option<OpFilter>,
    /// Inclusive LBA range.
    pub lba: Option<(u64, u64)>,
    pub nth: Option<u64>,
    pub action: Action,
    /// The rule as written (for traces and logs).
    pub text: String,
}

/// Why a rule does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RuleError {
    #[error("injection rule {rule:?}: {why}")]
    Bad { rule: String, why: String },
    #[error("{file}:{line}: {source}")]
    InFile {
        file: String,
        line: usize,
        source: Box<RuleError>,
    },
}

const DEFAULT_LINK_DOWN: Duration = Duration::from_millis(1000);

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn millis(s: &str) -> Option<Duration> {
    number(s.strip_suffix("ms").unwrap_or(s)).map(Duration::from_millis)
}

impl std::str::FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, RuleError> {
        let bad = |why: String| RuleError::Bad {
            rule: text.to_string(),
            why,
        };
        let mut rule = Rule {
            port: None,
            op: None,
            lba: None,
            nth: None,
            action: Action::Drop,
            text: text.trim().to_string(),
        };
        let mut action: Option<Action> = None;
        let mut link_after: Option<Option<Duration>> = None;
        let mut link_for: Option<Duration> = None;
        let mut set_action = |a: Action| -> Result<(), RuleError> {
            if action.replace(a).is_some() {
                return Err(bad("more than one action".into()));
            }
            Ok(())
        };
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = match item.split_once(['=', ':']) {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let need = || value.ok_or_else(|| bad(format!("{key} needs a value")));
            match key {
                "port" => {
                    let v = need()?;
                    let p = number(v).filter(|p| *p < 32);
                    rule.port = Some(p.ok_or_else(|| bad(format!("bad port {v:?}")))? as u8);
                }
                "op" => {
                    let v = need()?;
                    rule.op = Some(match v.to_ascii_lowercase().as_str() {
                        "read" => OpFilter::Read,
                        "write" => OpFilter::Write,
                        "flush" => OpFilter::Flush,
                        other => OpFilter::Opcode(
                            number(other)
                                .and_then(|n| u8::try_from(n).ok())
                                .ok_or_else(|| {
                                    bad(format!(
                                        "bad op {v:?}: read, write, flush or an opcode like 0x61"
                                    ))
                                })?,
                        ),
                    });
                }
                "lba" => {
                    let v = need()?;
                    let (a, b) = v.split_once('-').unwrap_or((v, v));
                    match (number(a.trim()), number(b.trim())) {
                        (Some(a), Some(b)) if a <= b => rule.lba = Some((a, b)),
                        _ => return Err(bad(format!("bad lba range {v:?}"))),
                    }
                }
                "nth" => {
                    let v = need()?;
                    let n = number(v).filter(|n| *n > 0);
                    rule.nth = Some(n.ok_or_else(|| bad(format!("bad nth {v:?}")))?);
                }
                "error" => {
                    let e = match need()?.to_ascii_lowercase().as_str() {
                        "abrt" => InjectedError::Abrt,
                        "unc" => InjectedError::Unc,
                        "idnf" => InjectedError::Idnf,
                        "icrc" => InjectedError::Icrc,
                        other => {
                            return Err(bad(format!(
                                "unknown error {other:?}: abrt, unc, idnf or icrc"
                            )))
                        }
                    };
                    set_action(Action::Error(e))?;
                }
                "delay" => {
                    let v = need()?;
                    set_action(Action::Delay(
                        millis(v).ok_or_else(|| bad(format!("bad delay {v:?}")))?,
                    ))?;
                }
                "drop" if value.is_none() => set_action(Action::Drop)?,
                "link-down" => {
                    let after = match value {
                        None => None,
                        Some(v) => {
                            let ms = v.strip_prefix("after:").or(v.strip_prefix("after="));
                            Some(
                                ms.and_then(millis)
                                    .ok_or_else(|| bad(format!("link-down={v}: want after:MS")))?,
                            )
                        }
                    };
                    link_after = Some(after);
                    set_action(Action::Drop)?;
                }
                "for" => {
                    let v = need()?;
                    link_for = Some(millis(v).ok_or_else(|| bad(format!("bad for {v:?}")))?);
                }
                _ => return Err(bad(format!("unknown item {item:?}"))),
            }
        }
        rule.action = match (action, link_after) {
            (None, _) => {
                return Err(bad(
                    "no action: error=, delay=, drop or link-down".to_string()
                ))
            }
            (Some(_), Some(after)) => Action::LinkDown {
                after,
                duration: link_for.unwrap_or(DEFAULT_LINK_DOWN),
            },
            (Some(a), None) => {
                if link_for.is_some() {
                    return Err(bad("for: applies to link-down only".into()));
                }
                a
            }
        };
        if let Action::LinkDown { after: Some(_), .. } = rule.action {
            if rule.op.is_some() || rule.lba.is_some() || rule.nth.is_some() {
                return Err(bad("link-down=after: takes no op/lba/nth filter".into()));
            }
        }
        Ok(rule)
    }
}

/// Parse a rule file: one rule per line, `#` comments, blank lines skipped.
pub fn parse_file(name: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        rules.push(line.parse().map_err(|e| RuleError::InFile {
            file: name.to_string(),
            line: i + 1,
            source: Box::new(e),
        })?);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Rule {
        s.parse().unwrap()
    }

    #[test]
    fn the_documented_examples_parse() {
        let r = p("port=0,op=read,lba=1000-1003,error=unc");
        assert_eq!(
            (r.port, r.op, r.lba, r.nth, r.action),
            (
                Some(0),
                Some(OpFilter::Read),
                Some((1000, 1003)),
                None,
                Action::Error(InjectedError::Unc)
            )
        );
        let r = p("op=0x61,nth=5,error=abrt");
        assert_eq!((r.op, r.nth), (Some(OpFilter::Opcode(0x61)), Some(5)));
        assert_eq!(
            p("op=read,delay=200").action,
            Action::Delay(Duration::from_millis(200))
        );
        assert_eq!(p("op=write,nth=3,drop").action, Action::Drop);
        assert_eq!(
            p("link-down=after:2000,for:500").action,
            Action::LinkDown {
                after: Some(Duration::from_millis(2000)),
                duration: Duration::from_millis(500)
            }
        );
        assert_eq!(
            p("op=read,lba=7,nth=1,link-down,for:300").action,
            Action::LinkDown {
                after: None,
                duration: Duration::from_millis(300)
            }
        );
        assert_eq!(p("lba=9,error=icrc").lba, Some((9, 9)));
    }

    #[test]
    fn mistakes_are_reported() {
        for bad in [
            "",
            "op=read",
            "op=read,error=unc,drop",
            "error=boom",
            "op=frob,drop",
            "lba=9-3,drop",
            "nth=0,drop",
            "port=32,drop",
            "delay=soon",
            "drop,for:5",
            "link-down=after:10,op=read",
            "link-down=soon",
            "colour=blue,drop",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn files_have_comments_and_line_numbers() {
        let rules = parse_file(
            "f",
            "# bad sectors\nop=read,lba=5,error=unc # one\n\ndelay=10\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        let e = parse_file("f", "drop\nnonsense\n").unwrap_err();
        assert!(e.to_string().starts_with("f:2: "), "{e}");
    }

    #[test]
    fn op_classes() {
        assert!(OpFilter::Read.matches(READ_FPDMA_QUEUED) && OpFilter::Read.matches(READ_DMA));
        assert!(!OpFilter::Read.matches(WRITE_DMA_EXT) && !OpFilter::Read.matches(READ_LOG_EXT));
        assert!(OpFilter::Write.matches(WRITE_FPDMA_QUEUED));
        assert!(OpFilter::Flush.matches(FLUSH_CACHE_EXT));
    }
}
