//! The `certs` command line: argument definitions, dispatch, and error hints.
//! `main.rs` only parses arguments and prints errors.

mod args;
mod commands;
#[cfg(test)]
mod tests;

use std::io::Write;

pub use args::Cli;
use args::{CaCommand, Command};
use certs::CertError;

/// Runs one parsed command, writing its report to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match &cli.command {
        Command::Ca(CaCommand::Create(args)) => commands::ca_create(args, out),
        Command::Issue(args) => commands::issue(args, out),
        Command::Dev(args) => commands::dev(args, out),
        Command::Inspect(args) => commands::inspect(args, out),
    }
}

/// A one-line suggestion of what to do about `err`, if we know one.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    let cert_err = err.chain().find_map(|e| e.downcast_ref::<CertError>())?;
    Some(match cert_err {
        CertError::InvalidTrustDomain { .. } => {
            "trust domains are lowercase DNS-like names such as tether.local or prod.example.com"
        }
        CertError::InvalidName { .. } => {
            "names are single DNS labels: lowercase letters, digits and '-', e.g. payments-api"
        }
        CertError::InvalidDnsName { .. } => {
            "pass host names such as localhost or edge.example.com (a leading '*.' wildcard is allowed)"
        }
        CertError::FileExists { .. } => {
            "choose another --out directory, or pass --force to replace the files \
             (replacing a CA invalidates every certificate it issued)"
        }
        CertError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            "check the path; `certs ca create` and `certs dev` write ca.pem and ca.key into their --out directory"
        }
        CertError::Io { .. } => "check the path and its permissions",
        CertError::Pem { .. } | CertError::Parse { .. } => {
            "expected PEM text with '-----BEGIN CERTIFICATE-----' blocks (and '-----BEGIN PRIVATE KEY-----' for keys)"
        }
        CertError::NotACa(_) | CertError::KeyMismatch | CertError::Key(_) => {
            "use the ca.pem and ca.key written together by `certs ca create` (or `certs dev`)"
        }
        CertError::InvalidValidity(_) => {
            "choose a shorter --hours, or create a new CA with a longer --days"
        }
        _ => return None,
    })
}
