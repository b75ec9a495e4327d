//! The control socket (`--api-socket PATH`): JSON lines in QMP's shape over a Unix stream
//! socket, served from the VMM's event loop.
//!
//! - [`protocol`]: the wire format and line framing;
//! - [`socket`]: creating the path (0600, stale sockets replaced, nothing else touched);
//! - [`server`]: the event-loop subscriber, its clients and bounds;
//! - [`commands`]: what each command does to the VM;
//! - [`client`]: `satavm ctl`, one command or the event stream.
//!
//! Events come from the HBA through [`crate::ahci::events`] ([`event_hook`]).

pub mod client;
pub mod commands;
pub mod protocol;
pub mod server;
pub mod socket;

use serde_json::json;

use crate::ahci::events::{AhciEvent, EventHook};
pub use commands::VmCommands;
pub use server::{ApiServer, EventQueue, Handler};
pub use socket::{ApiSocket, SocketError};

/// Event names, for the README table.
pub mod event {
    /// `{"port": N, "state": "down"|"up"}`: PhyRdy lost, or COMINIT (the device is back).
    pub const LINK_CHANGE: &str = "LINK_CHANGE";
    /// `{"port", "slot", "status", "error", "pxis"}`: a command ended with an error.
    pub const DRIVE_ERROR: &str = "DRIVE_ERROR";
    /// `{"port": N}`: the guest asserted COMRESET (PxSCTL.DET).
    pub const PORT_RESET: &str = "PORT_RESET";
    /// `{}`: the guest reset the HBA (GHC.HR).
    pub const HBA_RESET: &str = "HBA_RESET";
    /// `{"count": N}`: N events were dropped because the loop fell behind.
    pub const EVENTS_LOST: &str = "EVENTS_LOST";
    /// `{"port": N}`: the drive on port N was removed (`drive-del`).
    pub const DRIVE_REMOVED: &str = "DRIVE_REMOVED";
    /// `{"port": N}`: a drive was put on port N (`drive-add`).
    pub const DRIVE_ADDED: &str = "DRIVE_ADDED";
}

/// The HBA's events, queued for the control socket's clients.
pub fn event_hook(queue: EventQueue) -> EventHook {
    EventHook::new(move |e| match e {
        AhciEvent::LinkLost { port } => {
            queue.push(event::LINK_CHANGE, json!({"port": port, "state": "down"}))
        }
        AhciEvent::LinkRestored { port } => {
            queue.push(event::LINK_CHANGE, json!({"port": port, "state": "up"}))
        }
        AhciEvent::CommandError {
            port,
            slot,
            pxtfd,
            pxis,
        } => queue.push(
            event::DRIVE_ERROR,
            json!({
                "port": port, "slot": slot,
                "status": pxtfd & 0xff, "error": (pxtfd >> 8) & 0xff, "pxis": pxis,
            }),
        ),
        AhciEvent::PortReset { port } => queue.push(event::PORT_RESET, json!({"port": port})),
        AhciEvent::HbaReset => queue.push(event::HBA_RESET, json!({})),
        AhciEvent::DeviceRemoved { port } => {
            queue.push(event::DRIVE_REMOVED, json!({"port": port}))
        }
        AhciEvent::DeviceAdded { port } => queue.push(event::DRIVE_ADDED, json!({"port": port})),
    })
}

/// Serve `listener` in the VM's event loop with `commands`, sending `queue`'s events.
pub fn attach(
    ctx: &mut crate::vmm::DeviceContext,
    listener: std::os::unix::net::UnixListener,
    commands: VmCommands,
    queue: EventQueue,
) -> std::io::Result<()> {
    use event_manager::SubscriberOps;
    ctx.events
        .add_subscriber(Box::new(ApiServer::new(listener, commands, queue)?));
    Ok(())
}
