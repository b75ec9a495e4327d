//! The control socket's commands, executed against the running VM: see the table in the
//! README ("Control socket"). Each takes its arguments from a JSON object and returns a JSON
//! value or an [`ApiError`]; none blocks (they copy counters and registers under the HBA's
//! lock, or leave a request for the devices, which the event loop acts on).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::protocol::{class, ApiError};
use super::server::Handler;
use crate::ahci::regs::{pxcmd, scr};
use crate::ata::inject::{InjectControl, LinkRequest, Rule};
use crate::ata::names::opcode_name;
use crate::disk_spec::DiskSpec;
use crate::hostfile::FileId;
use crate::trace::file::check_path;
use crate::trace::{Format, Sink, Tracer};
use crate::vmm::exit::{ExitSignal, VmExit};
use crate::vmm::storage::{StatsSnapshot, Storage};

/// Every command, for `CommandNotFound` and the README table.
pub const COMMANDS: [&str; 12] = [
    "query-status",
    "query-ports",
    "query-stats",
    "inject-add",
    "inject-del",
    "inject-list",
    "link",
    "trace",
    "media-change",
    "drive-add",
    "drive-del",
    "quit",
];

/// The VM the commands act on.
pub struct VmCommands {
    pub storage: Option<Storage>,
    pub control: InjectControl,
    pub exit: Arc<ExitSignal>,
    pub started: Instant,
    pub cpus: u8,
    /// A [`Tracer::switchable`] one.
    pub tracer: Tracer,
    /// Files no trace may overwrite (the disks, kernel, ...).
    pub own_files: Vec<(FileId, String)>,
}

fn bad(desc: impl Into<String>) -> ApiError {
    ApiError::generic(desc)
}

fn arg_u64(args: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("\"{key}\" must be a non-negative integer"))),
    }
}

fn arg_str<'a>(args: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("\"{key}\" must be a string"))),
    }
}

fn required<T>(v: Option<T>, key: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| bad(format!("missing argument \"{key}\"")))
}

/// Refuse arguments the command does not know (a typo would otherwise be ignored).
fn only(args: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "unknown argument {k:?} (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))),
        None => Ok(()),
    }
}

/// One port's counters as JSON: the numbers the SIGUSR1 text prints.
fn port_stats_json(port: usize, snap: &StatsSnapshot) -> Value {
    let Some(s) = snap.ports.get(port) else {
        return Value::Null;
    };
    let by_opcode: Map<String, Value> = s
        .by_opcode
        .iter()
        .map(|(op, n)| (opcode_name(*op).to_string(), json!(n)))
        .collect();
    let host = snap.host.get(port).copied().flatten().map(|h| {
        json!({
            "commands_sent": h.commands_sent, "peak_in_flight": h.peak_in_flight,
            "errors": h.errors, "timeouts": h.timeouts,
            "direct_io": h.direct_io, "indirect_io": h.indirect_io,
        })
    });
    let engine = snap.engines.get(port).copied().flatten().map(|(name, e)| {
        json!({
            "name": name, "submitted": e.submitted, "syscalls": e.syscalls,
            "peak_in_flight": e.peak_in_flight, "bounced_bytes": e.bounced_bytes,
        })
    });
    json!({
        "port": port,
        "commands": s.commands,
        "by_opcode": by_opcode,
        "bytes_read": s.bytes_read,
        "bytes_written": s.bytes_written,
        "ncq_peak_depth": s.ncq_peak_depth,
        "errors": s.errors,
        "resets": s.resets,
        "link_drops": s.link_drops,
        "aggregated_sdbs": s.aggregated_sdbs,
        "aggregated_completions": s.aggregated_completions,
        "host": host,
        "engine": engine,
    })
}

fn drive_json(spec: Option<&DiskSpec>) -> Value {
    let Some(spec) = spec else {
        // An empty port.
        return Value::Null;
    };
    match spec {
        DiskSpec::Image {
            path,
            model,
            serial,
            read_only,
            ..
        } => json!({
            "kind": "image",
            "path": path.display().to_string(),
            "model": model.as_deref().unwrap_or(crate::ata::emulated::DEFAULT_MODEL),
            // None: derived from the path (see EmulatedDrive).
            "serial": serial,
            "read_only": read_only,
        }),
        DiskSpec::Cdrom {
            path,
            model,
            serial,
            ..
        } => json!({
            "kind": "cdrom",
            // None: an empty tray (as configured; media-change may have changed it).
            "path": path.as_ref().map(|p| p.display().to_string()),
            "model": model.as_deref().unwrap_or(crate::ata::atapi::DEFAULT_MODEL),
            "serial": serial,
            "read_only": true,
        }),
        DiskSpec::Passthrough {
            path, read_only, ..
        } => json!({
            "kind": "passthrough",
            "path": path.display().to_string(),
            // The host drive's own IDENTIFY strings (not read here).
            "model": null,
            "serial": null,
            "read_only": read_only,
        }),
    }
}

impl VmCommands {
    fn storage(&self) -> Result<&Storage, ApiError> {
        self.storage
            .as_ref()
            .ok_or_else(|| bad("this VM has no AHCI ports (no --disk)"))
    }

    fn port_arg(&self, args: &Map<String, Value>) -> Result<u8, ApiError> {
        let port = required(arg_u64(args, "port")?, "port")?;
        let ports = self.storage()?.port_count();
        match u8::try_from(port) {
            Ok(p) if usize::from(p) < ports => Ok(p),
            _ => Err(bad(format!("no port {port} (this HBA has {ports})"))),
        }
    }

    fn query_status(&self) -> Value {
        let reason = self.exit.reason();
        json!({
            "running": reason.is_none(),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "vcpus": self.cpus,
            "exit_reason": reason.map(|r| format!("{r:?}")),
        })
    }

    fn query_ports(&self) -> Result<Value, ApiError> {
        let storage = self.storage()?;
        let ports = storage.specs().into_iter().enumerate().map(|(port, spec)| {
            let r = storage.port_registers(port);
            let reg = |f: fn(&crate::vmm::storage::PortRegisters) -> u32| r.as_ref().map(f);
            let ssts = reg(|r| r.ssts).unwrap_or(0);
            let cmd = reg(|r| r.cmd).unwrap_or(0);
            json!({
                "port": port,
                "drive": drive_json(spec.as_ref()),
                // PxSSTS (3.3.10): DET 3 = device present, Phy communication established.
                "link": {
                    "det": ssts & scr::DET_MASK,
                    "spd": (ssts >> 4) & 0xf,
                    "ipm": (ssts >> 8) & 0xf,
                    "up": ssts & scr::DET_MASK == scr::DET_PRESENT_PHY,
                },
                "pxcmd": cmd,
                "st": cmd & pxcmd::ST != 0,
                "cr": cmd & pxcmd::CR != 0,
                "fre": cmd & pxcmd::FRE != 0,
                "pxci": reg(|r| r.ci),
                "pxsact": reg(|r| r.sact),
                "pxtfd": reg(|r| r.tfd),
                "pxserr": reg(|r| r.serr),
                "pxis": reg(|r| r.is),
            })
        });
        Ok(Value::Array(ports.collect()))
    }

    fn query_stats(&self) -> Result<Value, ApiError> {
        let snap = self.storage()?.snapshot();
        Ok(json!({
            "ports": (0..snap.ports.len()).map(|p| port_stats_json(p, &snap)).collect::<Vec<_>>(),
            "doorbell_writes": snap.posted_writes,
            "register_page_stores": snap.register_page_stores,
        }))
    }

    fn inject_add(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        only(args, &["rule"])?;
        let text = required(arg_str(args, "rule")?, "rule")?;
        let rule: Rule = text.parse().map_err(|e| bad(format!("{e}")))?;
        let ports = self.storage.as_ref().map_or(0, |s| s.port_count());
        if let Some(p) = rule.port.filter(|p| usize::from(*p) >= ports) {
            return Err(bad(format!(
                "rule for port {p}, but there are only {ports} disks"
            )));
        }
        let id = self.control.add(rule);
        Ok(json!({ "id": id }))
    }

    fn inject_del(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        only(args, &["id"])?;
        let id = required(arg_u64(args, "id")?, "id")?;
        u32::try_from(id)
            .ok()
            .and_then(|id| self.control.remove(id))
            .map(|r| json!({ "id": id, "rule": r.text }))
            .ok_or_else(|| bad(format!("no injection rule {id}")))
    }

    fn inject_list(&self) -> Value {
        let rules = self.control.list().into_iter();
        Value::Array(
            rules
                .map(|(id, r)| json!({ "id": id, "rule": r.text }))
                .collect(),
        )
    }

    fn link(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        only(args, &["port", "state", "duration_ms"])?;
        let port = self.port_arg(args)?;
        let duration = arg_u64(args, "duration_ms")?.map(Duration::from_millis);
        let request = match required(arg_str(args, "state")?, "state")? {
            "down" => LinkRequest::Down(duration),
            "up" if duration.is_none() => LinkRequest::Up,
            "up" => {
                return Err(bad(
                    "duration_ms goes with \"down\" (how long it stays down)",
                ))
            }
            other => return Err(bad(format!("state {other:?}: want \"down\" or \"up\""))),
        };
        self.control.request_link(port, request);
        Ok(json!({}))
    }

    /// `drive-add`: a `--disk` spec (same parser, checks and locks) on an empty port.
    fn drive_add(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        only(args, &["port", "disk"])?;
        let port = self.port_arg(args)?;
        let text = required(arg_str(args, "disk")?, "disk")?;
        let spec: DiskSpec = text.parse().map_err(|e| bad(format!("disk: {e}")))?;
        if let Some(id) = FileId::of_path(spec.path()) {
            if let Some((_, what)) = self.own_files.iter().find(|(f, _)| *f == id) {
                if !what.starts_with("the disk of port") {
                    return Err(bad(format!("{} is {what}", spec.path().display())));
                }
            }
        }
        self.storage()?
            .add_drive(usize::from(port), spec)
            .map_err(|e| bad(e.to_string()))?;
        Ok(json!({}))
    }

    /// `drive-del`: surprise removal of the drive on a port.
    fn drive_del(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        only(args, &["port", "graceful"])?;
        let port = self.port_arg(args)?;
        let graceful = match args.get("graceful") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("\"graceful\" must be true or false")),
        };
        let removed = self
            .storage()?
            .remove_drive(usize::from(port), graceful)
            .map_err(|e| bad(e.to_string()))?;
        Ok(json!({ "draining": removed.draining }))
    }

    fn trace(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        only(args, &["state", "file"])?;
        let file = arg_str(args, "file")?.map(PathBuf::from);
        let sinks = match required(arg_str(args, "state")?, "state")? {
            "off" if file.is_none() => Vec::new(),
            "on" => match &file {
                Some(p) => {
                    check_path(p, &self.own_files).map_err(|e| bad(e.to_string()))?;
                    let f = std::fs::File::create(p)
                        .map_err(|e| bad(format!("{}: {e}", p.display())))?;
                    vec![Sink::new(Format::Json, Box::new(f))]
                }
                None => vec![Sink::new(Format::Human, Box::new(std::io::stderr()))],
            },
            "off" => return Err(bad("\"file\" goes with \"on\"")),
            other => return Err(bad(format!("state {other:?}: want \"on\" or \"off\""))),
        };
        let on = !sinks.is_empty();
        if !self.tracer.set_sinks(sinks) {
            return Err(bad("tracing cannot be switched in this run"));
        }
        Ok(json!({ "tracing": on }))
    }
}

impl Handler for VmCommands {
    fn execute(&mut self, command: &str, args: &Map<String, Value>) -> Result<Value, ApiError> {
        let none = |args: &Map<String, Value>| only(args, &[]);
        match command {
            "query-status" => none(args).map(|()| self.query_status()),
            "query-ports" => none(args).and_then(|()| self.query_ports()),
            "query-stats" => none(args).and_then(|()| self.query_stats()),
            "inject-add" => self.inject_add(args),
            "inject-del" => self.inject_del(args),
            "inject-list" => none(args).map(|()| self.inject_list()),
            "link" => self.link(args),
            "trace" => self.trace(args),
            "media-change" => {
                only(args, &["port", "file"])?;
                let port = self.port_arg(args)?;
                let file = arg_str(args, "file")?.map(std::path::Path::new);
                let storage = self.storage()?;
                let control = storage
                    .media_controls()
                    .into_iter()
                    .find(|(p, _)| *p == usize::from(port))
                    .map(|(_, c)| c)
                    .ok_or_else(|| bad(format!("port {port} is not a CD/DVD drive")))?;
                match file {
                    Some(f) => control.insert(f),
                    None => control.eject(),
                }
                .map(|()| json!({}))
                .map_err(|e| bad(e.to_string()))
            }
            "drive-add" => self.drive_add(args),
            "drive-del" => self.drive_del(args),
            "quit" => {
                none(args)?;
                self.tracer.flush();
                self.exit.raise(VmExit::ApiQuit);
                Ok(json!({}))
            }
            other => Err(ApiError::new(
                class::COMMAND_NOT_FOUND,
                format!("no command {other:?} (known: {})", COMMANDS.join(", ")),
            )),
        }
    }
}
