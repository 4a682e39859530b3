//! Command-line arguments of the `certs` binary (clap derive).

use std::net::IpAddr;
use std::path::PathBuf;

use certs::IdentityKind;
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  # Everything for local development in one go (CA, edge, tunnel, caller):
  certs dev --out ./dev-certs

  # A CA for a trust domain, then identities signed by it:
  certs ca create --trust-domain prod.example.com --out ./ca
  certs issue --ca-dir ./ca --kind edge --name edge-1 --dns edge.example.com --out ./edge
  certs issue --ca-dir ./ca --kind tunnel --name payments --out ./tunnel
  certs issue --ca-dir ./ca --kind caller --name ci-bot --hours 8 --out ./caller

  # Check what a certificate file contains:
  certs inspect ./edge/edge-edge-1.pem

Private keys are written with mode 0600 and existing files are never replaced
unless --force is given. See docs/certs.md for lifetimes and rotation.";

/// Create a Tether CA and issue SPIFFE X.509 identities (SVIDs).
#[derive(Debug, Parser)]
#[command(
    name = "certs",
    version,
    about = "Create a Tether CA and issue SPIFFE X.509 identities (SVIDs)",
    long_about = "Create the certificate authority of a SPIFFE trust domain and issue \
                  X.509 SVIDs for Tether's three roles: tunnel (spiffe://TD/tunnel/NAME), \
                  edge (spiffe://TD/edge/NAME) and caller (spiffe://TD/caller/NAME). \
                  Keys are ECDSA P-256.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the certificate authority (CA) of a trust domain.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue a tunnel, edge or caller certificate signed by an existing CA.
    #[command(
        override_usage = "certs issue (--ca-dir <DIR> | --ca-cert <FILE> --ca-key <FILE>) \
                          --kind <KIND> --name <NAME> --out <DIR> [OPTIONS]",
        after_help = "Writes OUT/<kind>-<name>.pem and OUT/<kind>-<name>.key.\n\n\
        Example:\n  certs issue --ca-dir ./ca --kind tunnel --name payments --out ./tunnel"
    )]
    Issue(IssueArgs),
    /// Create a complete development set: a CA plus one edge, tunnel and caller identity.
    #[command(
        after_help = "Writes ca.pem/ca.key, edge-<edge>.*, tunnel-<tunnel>.* and caller-<caller>.* \
        into OUT.\nThe CA is new each time; to renew only the leaves use `certs issue --ca-dir OUT`.\n\n\
        Example:\n  certs dev --out ./dev-certs"
    )]
    Dev(DevArgs),
    /// Print every certificate in a PEM file: identity, SANs, validity, issuer, usages.
    #[command(after_help = "Example:\n  certs inspect ./dev-certs/edge-edge.pem")]
    Inspect(InspectArgs),
}

/// Subcommands of `certs ca`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new self-signed CA for a trust domain (writes ca.pem and ca.key).
    #[command(
        after_help = "Example:\n  certs ca create --trust-domain prod.example.com --out ./ca"
    )]
    Create(CaCreateArgs),
}

/// Arguments of `certs ca create`.
#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// SPIFFE trust domain, e.g. tether.local (lowercase a-z 0-9 . - _).
    #[arg(long, value_name = "TD")]
    pub trust_domain: String,
    /// Directory to write ca.pem (0644) and ca.key (0600) into; created if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How many days the CA is valid.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..))]
    pub days: u64,
    /// Replace existing ca.pem/ca.key (invalidates everything the old CA issued).
    #[arg(long)]
    pub force: bool,
}

/// Where to read the signing CA from: a directory, or explicit files.
#[derive(Debug, Args)]
#[group(id = "ca_source", required = true, multiple = true)]
pub struct CaSource {
    /// Directory holding ca.pem and ca.key (as written by `certs ca create`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["ca_cert", "ca_key"])]
    pub ca_dir: Option<PathBuf>,
    /// CA certificate file (use together with --ca-key instead of --ca-dir).
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// CA private key file (use together with --ca-cert instead of --ca-dir).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
}

/// Arguments of `certs issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The CA that signs the certificate.
    #[command(flatten)]
    pub ca: CaSource,
    /// Role of the identity; decides the SPIFFE path and the key usages.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// Identity name, a DNS label (lowercase a-z 0-9 -, at most 63 characters).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// DNS name to add as a SAN (repeatable). Edges default to localhost when
    /// neither --dns nor --ip is given.
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// IP address to add as a SAN (repeatable). Edges default to 127.0.0.1 and ::1
    /// when neither --dns nor --ip is given.
    #[arg(long = "ip", value_name = "ADDR")]
    pub ip: Vec<IpAddr>,
    /// How many hours the certificate is valid (it is also backdated 5 minutes).
    #[arg(long, value_name = "HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
    pub hours: u64,
    /// Directory to write <kind>-<name>.pem and .key into; created if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace existing certificate and key files.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `certs dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory to write the whole set into; created if missing.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// SPIFFE trust domain of the development CA.
    #[arg(long, value_name = "TD", default_value = "tether.local")]
    pub trust_domain: String,
    /// Name of the tunnel identity (spiffe://TD/tunnel/NAME).
    #[arg(long, value_name = "NAME", default_value = "demo")]
    pub tunnel: String,
    /// Name of the edge identity (spiffe://TD/edge/NAME); it gets localhost, 127.0.0.1 and ::1.
    #[arg(long, value_name = "NAME", default_value = "edge")]
    pub edge: String,
    /// Name of the caller identity (spiffe://TD/caller/NAME).
    #[arg(long, value_name = "NAME", default_value = "dev")]
    pub caller: String,
    /// How many hours the leaf certificates are valid (the CA gets 365 days).
    #[arg(long, value_name = "HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..))]
    pub hours: u64,
    /// Replace existing files (including the CA).
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `certs inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// PEM file to read (certificates in it are shown; key blocks are skipped).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `--kind` values, mapped onto the library's [`IdentityKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A tunnel client exposing a service (server + client auth).
    Tunnel,
    /// A public edge / tunnel server (server + client auth).
    Edge,
    /// A caller reaching services through the edge (client auth only).
    Caller,
}

impl From<KindArg> for IdentityKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Tunnel => IdentityKind::Tunnel,
            KindArg::Edge => IdentityKind::Edge,
            KindArg::Caller => IdentityKind::Caller,
        }
    }
}
