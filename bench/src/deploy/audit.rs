//! Audit durability as bench configures it: the mode the command line
//! names, and the mode of each end of a deployment.

use std::time::Duration;

use proxy::audit::Durability;
use serde::Serialize;

/// An audit durability mode as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Audit {
    /// fsync every open record before the call moves on (group commit).
    Always,
    /// fsync every 100 ms.
    Interval,
    /// Never fsync.
    None,
}

impl Audit {
    /// The durability this mode configures at both ends.
    pub fn durability(self) -> Durability {
        match self {
            Audit::Always => Durability::Always,
            Audit::Interval => Durability::Interval(Duration::from_millis(100)),
            Audit::None => Durability::None,
        }
    }

    /// The mode's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Audit::Always => "always",
            Audit::Interval => "interval",
            Audit::None => "none",
        }
    }
}

/// Audit durability at each end.
#[derive(Clone, Copy, Debug)]
pub struct AuditModes {
    /// The edge's.
    pub edge: Durability,
    /// The client's.
    pub client: Durability,
}

impl AuditModes {
    /// `mode` at both ends.
    pub fn both(mode: Durability) -> Self {
        Self {
            edge: mode,
            client: mode,
        }
    }
}
