//! CLI smoke tests: parse real argument lists and call [`run`] in-process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clap::Parser;

use super::{hint, run, Cli};

fn cli(args: &[&str]) -> Result<String, anyhow::Error> {
    let parsed = Cli::try_parse_from(std::iter::once("certs").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    run(parsed, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn help_texts_render_and_have_examples() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
    let mut cmd = Cli::command();
    let help = cmd.render_long_help().to_string();
    assert!(help.contains("Examples:"), "{help}");
    assert!(help.contains("certs dev --out"), "{help}");
    for sub in [
        vec!["ca", "create"],
        vec!["issue"],
        vec!["dev"],
        vec!["inspect"],
    ] {
        let mut c = Cli::command();
        let mut target = &mut c;
        for name in &sub {
            target = target.find_subcommand_mut(name).unwrap();
        }
        let text = target.render_long_help().to_string();
        assert!(text.contains("Example"), "{sub:?}: {text}");
    }
}

#[test]
fn ca_create_issue_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let out = cli(&[
        "ca",
        "create",
        "--trust-domain",
        "prod.example.com",
        "--out",
        s(&ca_dir),
        "--days",
        "30",
    ])
    .unwrap();
    assert!(out.contains("prod.example.com"), "{out}");
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);

    let leaf_dir = dir.path().join("leaf");
    let out = cli(&[
        "issue",
        "--ca-dir",
        s(&ca_dir),
        "--kind",
        "edge",
        "--name",
        "edge-1",
        "--dns",
        "edge.example.com",
        "--ip",
        "10.0.0.1",
        "--hours",
        "2",
        "--out",
        s(&leaf_dir),
    ])
    .unwrap();
    assert!(
        out.contains("spiffe://prod.example.com/edge/edge-1"),
        "{out}"
    );
    assert!(out.contains("edge-edge-1.pem"), "{out}");
    let pem = leaf_dir.join("edge-edge-1.pem");
    assert_eq!(mode(&leaf_dir.join("edge-edge-1.key")), 0o600);

    let out = cli(&["inspect", s(&pem)]).unwrap();
    assert!(
        out.contains("spiffe://prod.example.com/edge/edge-1"),
        "{out}"
    );
    assert!(out.contains("edge.example.com"), "{out}");
    assert!(out.contains("10.0.0.1"), "{out}");
    // Explicit --dns/--ip replace the edge defaults.
    assert!(!out.contains("localhost"), "{out}");
    assert!(out.contains("leaf"), "{out}");

    // Same again via --ca-cert/--ca-key, caller kind.
    let out = cli(&[
        "issue",
        "--ca-cert",
        s(&ca_dir.join("ca.pem")),
        "--ca-key",
        s(&ca_dir.join("ca.key")),
        "--kind",
        "caller",
        "--name",
        "ci-bot",
        "--out",
        s(&leaf_dir),
    ])
    .unwrap();
    assert!(
        out.contains("spiffe://prod.example.com/caller/ci-bot"),
        "{out}"
    );
}

#[test]
fn issue_refuses_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    cli(&["ca", "create", "--trust-domain", "t.local", "--out", d]).unwrap();
    let args = [
        "issue", "--ca-dir", d, "--kind", "tunnel", "--name", "demo", "--out", d,
    ];
    cli(&args).unwrap();
    let err = cli(&args).unwrap_err();
    assert!(
        format!("{err:#}").contains("use --force to overwrite"),
        "{err:#}"
    );
    assert!(hint(&err).unwrap().contains("--force"));
    let mut forced = args.to_vec();
    forced.push("--force");
    cli(&forced).unwrap();
    assert_eq!(mode(&dir.path().join("tunnel-demo.key")), 0o600);
}

#[test]
fn dev_writes_a_whole_set() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("dev");
    let out = cli(&["dev", "--out", s(&out_dir)]).unwrap();
    for id in [
        "spiffe://tether.local/edge/edge",
        "spiffe://tether.local/tunnel/demo",
        "spiffe://tether.local/caller/dev",
    ] {
        assert!(out.contains(id), "{out}");
    }
    for f in [
        "ca.pem",
        "edge-edge.pem",
        "tunnel-demo.pem",
        "caller-dev.pem",
    ] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
    for f in [
        "ca.key",
        "edge-edge.key",
        "tunnel-demo.key",
        "caller-dev.key",
    ] {
        assert_eq!(mode(&out_dir.join(f)), 0o600, "{f}");
    }
    let edge = cli(&["inspect", s(&out_dir.join("edge-edge.pem"))]).unwrap();
    assert!(
        edge.contains("localhost") && edge.contains("127.0.0.1") && edge.contains("::1"),
        "{edge}"
    );

    // A second run refuses before touching anything; --force replaces everything.
    let before = std::fs::read(out_dir.join("ca.pem")).unwrap();
    let err = cli(&["dev", "--out", s(&out_dir), "--caller", "other"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("use --force to overwrite"),
        "{err:#}"
    );
    assert!(!out_dir.join("caller-other.pem").exists());
    assert_eq!(std::fs::read(out_dir.join("ca.pem")).unwrap(), before);
    cli(&["dev", "--out", s(&out_dir), "--force"]).unwrap();
    assert_ne!(std::fs::read(out_dir.join("ca.pem")).unwrap(), before);
}

#[test]
fn bad_input_is_an_error_with_a_hint_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());

    let err = cli(&["dev", "--out", d, "--tunnel", "Bad_Name"]).unwrap_err();
    assert!(format!("{err:#}").contains("invalid name"), "{err:#}");
    assert!(hint(&err).is_some());

    let err = cli(&["ca", "create", "--trust-domain", "UPPER.case", "--out", d]).unwrap_err();
    assert!(
        format!("{err:#}").contains("invalid trust domain"),
        "{err:#}"
    );

    let missing = dir.path().join("nope");
    let err = cli(&[
        "issue",
        "--ca-dir",
        s(&missing),
        "--kind",
        "caller",
        "--name",
        "x",
        "--out",
        d,
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
    assert!(hint(&err).unwrap().contains("ca.pem"));

    let err = cli(&["inspect", s(&missing)]).unwrap_err();
    assert!(format!("{err:#}").contains("cannot read"), "{err:#}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"\x00\xffnot pem at all").unwrap();
    let err = cli(&["inspect", s(&garbage)]).unwrap_err();
    assert!(
        format!("{err:#}").contains("no '-----BEGIN CERTIFICATE-----' block"),
        "{err:#}"
    );

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = cli(&["inspect", s(&broken)]).unwrap_err();
    assert!(format!("{err:#}").contains("cannot parse"), "{err:#}");

    // A leaf (not a CA) offered as the CA.
    cli(&["dev", "--out", d]).unwrap();
    let err = cli(&[
        "issue",
        "--ca-cert",
        s(&dir.path().join("edge-edge.pem")),
        "--ca-key",
        s(&dir.path().join("edge-edge.key")),
        "--kind",
        "caller",
        "--name",
        "x",
        "--out",
        d,
    ])
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("not a usable Tether CA"),
        "{err:#}"
    );

    // Mismatched CA cert and key.
    let other = dir.path().join("other");
    cli(&[
        "ca",
        "create",
        "--trust-domain",
        "t.local",
        "--out",
        s(&other),
    ])
    .unwrap();
    let err = cli(&[
        "issue",
        "--ca-cert",
        s(&dir.path().join("ca.pem")),
        "--ca-key",
        s(&other.join("ca.key")),
        "--kind",
        "caller",
        "--name",
        "x",
        "--out",
        d,
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("does not match"), "{err:#}");
}

#[test]
fn argument_errors_are_caught_by_clap() {
    // Neither CA source.
    assert!(cli(&["issue", "--kind", "edge", "--name", "x", "--out", "/tmp/x"]).is_err());
    // Both CA sources.
    assert!(cli(&[
        "issue",
        "--ca-dir",
        "a",
        "--ca-cert",
        "b",
        "--ca-key",
        "c",
        "--kind",
        "edge",
        "--name",
        "x",
        "--out",
        "o"
    ])
    .is_err());
    // --ca-cert without --ca-key.
    assert!(cli(&[
        "issue",
        "--ca-cert",
        "b",
        "--kind",
        "edge",
        "--name",
        "x",
        "--out",
        "o"
    ])
    .is_err());
    // Unknown kind, zero hours, bad IP.
    assert!(
        cli(&["issue", "--ca-dir", "a", "--kind", "admin", "--name", "x", "--out", "o"]).is_err()
    );
    assert!(cli(&[
        "issue", "--ca-dir", "a", "--kind", "edge", "--name", "x", "--hours", "0", "--out", "o"
    ])
    .is_err());
    assert!(cli(&[
        "issue", "--ca-dir", "a", "--kind", "edge", "--name", "x", "--ip", "nope", "--out", "o"
    ])
    .is_err());
}

#[test]
fn oversized_lifetimes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = s(dir.path());
    let err = cli(&[
        "ca",
        "create",
        "--trust-domain",
        "t.local",
        "--out",
        d,
        "--days",
        "18446744073709551615",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("too large"), "{err:#}");
    let err = cli(&[
        "ca",
        "create",
        "--trust-domain",
        "t.local",
        "--out",
        d,
        "--days",
        "99999999",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("invalid validity"), "{err:#}");
    cli(&[
        "ca",
        "create",
        "--trust-domain",
        "t.local",
        "--out",
        d,
        "--days",
        "2",
    ])
    .unwrap();
    // A leaf may not outlive its CA.
    let err = cli(&[
        "issue", "--ca-dir", d, "--kind", "tunnel", "--name", "x", "--hours", "100", "--out", d,
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("CA expires"), "{err:#}");
}
