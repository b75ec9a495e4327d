//! `satavm ctl`: a client of a running satavm's control socket (`--api-socket`). Part of the
//! binary; the work is in [`satavm::vmm::api::client`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use satavm::vmm::api::client::{self, ClientError};

/// Send one command to a running satavm's control socket and print the reply (exit 0 on a
/// `return`, 1 on an `error`), or print its events until it exits (--events).
#[derive(Debug, Parser)]
#[command(
    name = "satavm ctl",
    after_help = "Examples:\n  satavm ctl vm.sock query-ports\n  \
                  satavm ctl vm.sock link '{\"port\": 0, \"state\": \"down\", \"duration_ms\": 500}'\n  \
                  satavm ctl vm.sock inject-add '{\"rule\": \"port=0,op=read,error=unc\"}'\n  \
                  satavm ctl vm.sock --events\n\
                  Exit status: 0 return, 1 error reply, 64 usage, 69 cannot connect, 74 I/O error."
)]
struct CtlCli {
    /// The control socket (--api-socket PATH of the satavm to talk to).
    path: PathBuf,
    /// The command (query-status, query-ports, query-stats, inject-add, inject-del,
    /// inject-list, link, trace, media-change, quit).
    #[arg(required_unless_present = "events")]
    command: Option<String>,
    /// Its arguments as a JSON object.
    #[arg(value_name = "JSON-ARGS")]
    arguments: Option<String>,
    /// Print every event (one JSON object per line) until satavm closes the socket.
    #[arg(long, conflicts_with_all = ["command", "arguments"])]
    events: bool,
}

fn failed(e: &ClientError) -> ExitCode {
    eprintln!("satavm ctl: {e}");
    ExitCode::from(match e {
        ClientError::Connect { .. } => 69,
        ClientError::Arguments(_) => 64,
        _ => 74,
    })
}

/// `satavm ctl ...` (the arguments after `satavm`).
pub fn main() -> ExitCode {
    let args = std::env::args_os().skip(1);
    let cli = match CtlCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if cli.events {
        return match client::events(&cli.path, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failed(&e),
        };
    }
    let Some(command) = cli.command else {
        return ExitCode::from(64);
    };
    let reply = client::parse_arguments(cli.arguments.as_deref())
        .and_then(|args| client::execute(&cli.path, &command, args));
    match reply {
        Ok(v) => {
            println!("{v}");
            if v.get("error").is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => failed(&e),
    }
}
