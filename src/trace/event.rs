//! One trace event: where it happened (layer, port, slot), what (kind) and its fields.

use std::borrow::Cow;

/// The layer an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The HBA: register accesses, command fetches, interrupts, link state.
    Ahci,
    /// FISes crossing the port/device boundary.
    Sata,
    /// ATA commands as the device sees them.
    Ata,
    /// The SG_IO requests of a pass-through drive.
    SgIo,
    /// AHCI spec checks (things the guest should not do).
    Check,
    /// Fault injection.
    Inject,
}

impl Layer {
    /// The name used in traces.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Ahci => "ahci",
            Layer::Sata => "sata",
            Layer::Ata => "ata",
            Layer::SgIo => "sg_io",
            Layer::Check => "check",
            Layer::Inject => "inject",
        }
    }
}

/// A field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number (JSON number).
    U(u64),
    /// A register-like number: a JSON number, shown in hex with `digits` digits in the text
    /// form.
    Hex { value: u64, digits: u8 },
    /// Text.
    Str(Cow<'static, str>),
    /// A flag.
    Bool(bool),
}

/// A trace event; built only when the tracer is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub layer: Layer,
    /// What happened, e.g. `reg_write`, `fis`, `cmd`, `done`.
    pub kind: &'static str,
    pub port: Option<u8>,
    /// Command slot (for NCQ commands also the tag).
    pub slot: Option<u8>,
    pub fields: Vec<(&'static str, Value)>,
}

impl Event {
    pub fn new(layer: Layer, kind: &'static str) -> Self {
        Event {
            layer,
            kind,
            port: None,
            slot: None,
            fields: Vec::new(),
        }
    }

    pub fn port(mut self, port: u8) -> Self {
        self.port = Some(port);
        self
    }

    pub fn slot(mut self, slot: u8) -> Self {
        self.slot = Some(slot);
        self
    }

    /// A decimal number.
    pub fn u(mut self, name: &'static str, v: impl Into<u64>) -> Self {
        self.fields.push((name, Value::U(v.into())));
        self
    }

    /// A byte in hex (opcodes, status, error).
    pub fn hex8(mut self, name: &'static str, v: u8) -> Self {
        self.fields.push((
            name,
            Value::Hex {
                value: v.into(),
                digits: 2,
            },
        ));
        self
    }

    /// A dword in hex (registers).
    pub fn hex32(mut self, name: &'static str, v: u32) -> Self {
        self.fields.push((
            name,
            Value::Hex {
                value: v.into(),
                digits: 8,
            },
        ));
        self
    }

    /// Text.
    pub fn str(mut self, name: &'static str, v: impl Into<Cow<'static, str>>) -> Self {
        self.fields.push((name, Value::Str(v.into())));
        self
    }

    /// A flag.
    pub fn flag(mut self, name: &'static str, v: bool) -> Self {
        self.fields.push((name, Value::Bool(v)));
        self
    }

    /// The value of field `name`, if present.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}
