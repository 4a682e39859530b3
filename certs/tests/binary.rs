//! The real `certs` binary: exit codes and the `error:` / `hint:` format.

use std::process::Command;

#[allow(clippy::unwrap_used)] // helper of tests: failing to spawn is a test failure
fn certs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_certs"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_succeeds_and_shows_examples() {
    let out = certs(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Examples:") && text.contains("certs dev"),
        "{text}"
    );
}

#[test]
fn failures_print_error_and_hint_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let out = certs(&["inspect", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("hint: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = certs(&["dev", "--out", dir.path().to_str().unwrap(), "--edge=bad-"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("invalid name"), "{err}");
}

#[test]
fn dev_then_inspect_via_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = certs(&["dev", "--out", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = certs(&["inspect", &format!("{d}/tunnel-demo.pem")]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("spiffe://tether.local/tunnel/demo"));
}
