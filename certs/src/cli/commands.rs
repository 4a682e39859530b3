//! The work behind each subcommand; output goes to the given writer so tests can
//! capture it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use certs::{
    inspect_pem, summarize, trust_domain_id, validate_name, validate_trust_domain, Ca, CertError,
    IdentityKind, IssuedCert, LeafSpec, CA_CERT_FILE, CA_KEY_FILE,
};

use super::args::{CaCreateArgs, CaSource, DevArgs, InspectArgs, IssueArgs};

const SECS_PER_HOUR: u64 = 60 * 60;
const SECS_PER_DAY: u64 = 24 * SECS_PER_HOUR;

/// `certs ca create`.
pub fn ca_create(args: &CaCreateArgs, out: &mut dyn Write) -> Result<()> {
    let lifetime = duration(args.days, SECS_PER_DAY, "--days")?;
    let ca = Ca::create(&args.trust_domain, lifetime).context("cannot create the CA")?;
    let (cert, key) = ca
        .write_files(&args.out, args.force)
        .context("cannot write the CA files")?;
    writeln!(out, "created CA for trust domain {}", ca.trust_domain())?;
    writeln!(
        out,
        "  identity:    {}",
        trust_domain_id(ca.trust_domain())?
    )?;
    writeln!(
        out,
        "  certificate: {}  (trust bundle; give it to every peer)",
        cert.display()
    )?;
    writeln!(
        out,
        "  private key: {}  (mode 0600; keep it offline if you can)",
        key.display()
    )?;
    writeln!(out, "  valid until: {}", not_after(&ca.cert_der())?)?;
    Ok(())
}

/// `certs issue`.
pub fn issue(args: &IssueArgs, out: &mut dyn Write) -> Result<()> {
    let ca = load_ca(&args.ca)?;
    let mut spec = LeafSpec::new(args.kind.into(), &args.name);
    if !args.dns.is_empty() || !args.ip.is_empty() {
        spec.dns_names = args.dns.clone();
        spec.ip_addresses = args.ip.clone();
    }
    spec.lifetime = duration(args.hours, SECS_PER_HOUR, "--hours")?;
    let issued = ca.issue(&spec).with_context(|| {
        format!(
            "cannot issue a {} certificate for {:?}",
            spec.kind, spec.name
        )
    })?;
    let (cert, key) = issued
        .write_files(&args.out, &spec.file_stem(), args.force)
        .context("cannot write the certificate files")?;
    writeln!(out, "issued {}", issued.spiffe_id)?;
    print_leaf_details(out, &issued, &cert, &key)?;
    Ok(())
}

/// `certs dev`.
pub fn dev(args: &DevArgs, out: &mut dyn Write) -> Result<()> {
    // Validate everything before writing anything, so a typo leaves no partial set.
    validate_trust_domain(&args.trust_domain)?;
    let specs = [
        (IdentityKind::Edge, &args.edge),
        (IdentityKind::Tunnel, &args.tunnel),
        (IdentityKind::Caller, &args.caller),
    ];
    for (_, name) in &specs {
        validate_name(name)?;
    }
    let lifetime = duration(args.hours, SECS_PER_HOUR, "--hours")?;
    let mut specs: Vec<LeafSpec> = specs
        .iter()
        .map(|(kind, name)| LeafSpec::new(*kind, name))
        .collect();
    for spec in &mut specs {
        spec.lifetime = lifetime;
    }
    if !args.force {
        let mut names = vec![CA_CERT_FILE.to_owned(), CA_KEY_FILE.to_owned()];
        for spec in &specs {
            names.push(format!("{}.pem", spec.file_stem()));
            names.push(format!("{}.key", spec.file_stem()));
        }
        for name in names {
            let path = args.out.join(name);
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(CertError::FileExists { path })
                    .context("cannot write the development set");
            }
        }
    }

    let ca = Ca::create(&args.trust_domain, certs::DEFAULT_CA_LIFETIME)
        .context("cannot create the CA")?;
    let issued = specs
        .iter()
        .map(|spec| {
            ca.issue(spec)
                .with_context(|| format!("cannot issue the {} certificate", spec.kind))
        })
        .collect::<Result<Vec<_>>>()?;
    let (ca_cert, ca_key) = ca
        .write_files(&args.out, args.force)
        .context("cannot write the CA files")?;
    writeln!(
        out,
        "wrote a development set for trust domain {} to {}",
        ca.trust_domain(),
        args.out.display()
    )?;
    writeln!(out)?;
    writeln!(out, "CA {}", trust_domain_id(ca.trust_domain())?)?;
    writeln!(
        out,
        "  certificate: {}  (the trust bundle)",
        ca_cert.display()
    )?;
    writeln!(out, "  private key: {}", ca_key.display())?;
    writeln!(out, "  valid until: {}", not_after(&ca.cert_der())?)?;
    for (spec, leaf) in specs.iter().zip(&issued) {
        let (cert, key) = leaf
            .write_files(&args.out, &spec.file_stem(), args.force)
            .context("cannot write the certificate files")?;
        writeln!(out)?;
        writeln!(out, "{} {}", spec.kind, leaf.spiffe_id)?;
        print_leaf_details(out, leaf, &cert, &key)?;
    }
    Ok(())
}

/// `certs inspect`.
pub fn inspect(args: &InspectArgs, out: &mut dyn Write) -> Result<()> {
    let text = std::fs::read(&args.file)
        .map_err(|e| CertError::Io {
            action: "read",
            path: args.file.clone(),
            error: e,
        })
        .context("cannot inspect")?;
    let text = String::from_utf8_lossy(&text);
    let summaries =
        inspect_pem(&text).with_context(|| format!("cannot inspect {}", args.file.display()))?;
    let total = summaries.len();
    for (i, summary) in summaries.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "{} certificate {} of {total}:",
            args.file.display(),
            i + 1
        )?;
        writeln!(out, "{summary}")?;
    }
    Ok(())
}

fn load_ca(source: &CaSource) -> Result<Ca> {
    let (cert, key) = match (&source.ca_dir, &source.ca_cert, &source.ca_key) {
        (Some(dir), _, _) => (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE)),
        (None, Some(cert), Some(key)) => (cert.clone(), key.clone()),
        // clap enforces the combinations; this is the message if that ever changes.
        _ => anyhow::bail!(
            "give the CA as --ca-dir DIR, or as --ca-cert FILE together with --ca-key FILE"
        ),
    };
    Ca::load_files(&cert, &key)
        .with_context(|| format!("cannot load the CA from {}", cert.display()))
}

fn print_leaf_details(
    out: &mut dyn Write,
    leaf: &IssuedCert,
    cert: &Path,
    key: &Path,
) -> Result<()> {
    let summary = summarize(&leaf.cert_der)?;
    writeln!(out, "  certificate: {}", cert.display())?;
    writeln!(out, "  private key: {}  (mode 0600)", key.display())?;
    if !summary.dns_sans.is_empty() || !summary.ip_sans.is_empty() {
        let sans: Vec<String> = summary
            .dns_sans
            .iter()
            .chain(&summary.ip_sans)
            .cloned()
            .collect();
        writeln!(out, "  host names:  {}", sans.join(", "))?;
    }
    writeln!(out, "  valid until: {}", summary.not_after)?;
    Ok(())
}

fn not_after(der: &[u8]) -> Result<String> {
    Ok(summarize(der)?.not_after)
}

fn duration(count: u64, unit: u64, flag: &str) -> Result<Duration> {
    count
        .checked_mul(unit)
        .map(Duration::from_secs)
        .with_context(|| format!("{flag} {count} is too large"))
}
