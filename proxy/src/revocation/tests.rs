//! Admission refuses revoked peers, a reload closes the live ones it
//! names (by identity or by serial) and only those, and both are audited.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::audit::{AuditConfig, Side};
use crate::policy::{parse_policy, PolicyHandle, Scope};

const ALICE: &str = "spiffe://tether.test/caller/alice";
const BOB: &str = "spiffe://tether.test/caller/bob";

fn policy(revoked: &str) -> crate::policy::Policy {
    parse_policy(revoked, Scope::Edge).unwrap()
}

fn peer<'a>(identity: &'a str, serial: &'a [u8]) -> Peer<'a> {
    Peer {
        identity,
        serial: Some(serial),
        kind: "caller",
        tunnel: "",
    }
}

fn setup() -> (
    tempfile::TempDir,
    Arc<PolicyHandle>,
    Arc<LiveSessions>,
    AuditLog,
) {
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(AuditConfig::new(dir.path().join("a.log"), Side::Edge)).unwrap();
    let handle = PolicyHandle::new(policy(""), None);
    let sessions = LiveSessions::new(vec![handle.clone()], audit.clone());
    (dir, handle, sessions, audit)
}

async fn revoke_records(
    audit: &AuditLog,
    dir: &std::path::Path,
    n: u64,
) -> Vec<crate::audit::AuditRecord> {
    audit.wait_written(n).await;
    audit.sync().await.unwrap();
    let text = std::fs::read_to_string(dir.join("a.log")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<crate::audit::AuditRecord>(l).unwrap())
        .filter(|r| r.event == Event::Revoke)
        .collect()
}

#[tokio::test]
async fn a_reload_closes_the_revoked_sessions_only() {
    let (dir, handle, sessions, audit) = setup();
    let alice = sessions.admit(&peer(ALICE, &[0x0a])).unwrap();
    let bob = sessions.admit(&peer(BOB, &[0x3a, 0x0f])).unwrap();
    let task = tokio::spawn(enforce(
        sessions.clone(),
        handle.clone(),
        CancellationToken::new(),
    ));
    handle.swap(policy("[revoked]\nserials = [\"00:3A:0F\"]\n"));
    tokio::time::timeout(Duration::from_secs(5), bob.revoked())
        .await
        .expect("bob's certificate was revoked");
    assert!(!alice.revoked.is_cancelled(), "alice is not revoked");
    assert_eq!(sessions.closed(), 1);
    let recs = revoke_records(&audit, dir.path(), 1).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].caller, BOB);
    assert_eq!(recs[0].rule.as_deref(), Some("revoked"));
    assert_eq!(
        recs[0].reason.as_deref(),
        Some("certificate serial 3a:0f is revoked")
    );
    task.abort();
}

#[tokio::test]
async fn a_revoked_identity_is_refused_at_admission() {
    let (dir, handle, sessions, audit) = setup();
    handle.swap(policy(&format!("[revoked]\nidentities = [\"{ALICE}\"]\n")));
    let err = sessions.admit(&peer(ALICE, &[1])).err().unwrap();
    assert!(err.contains("revoked"), "{err}");
    assert!(sessions.admit(&peer(BOB, &[2])).is_ok());
    let recs = revoke_records(&audit, dir.path(), 1).await;
    assert_eq!(recs[0].labels.as_ref().unwrap()["action"], "refused");
}

#[test]
fn dropping_a_session_unregisters_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let (_dir, _handle, sessions, _audit) = setup();
    let s = sessions.admit(&peer(ALICE, &[1])).unwrap();
    assert_eq!(sessions.len(), 1);
    drop(s);
    assert!(sessions.is_empty());
}

#[test]
fn bad_entries_in_the_revoked_list_are_reported() {
    let err = parse_policy(
        "[revoked]\nidentities = [\"nope\"]\nserials = [\"xyz\"]\n",
        Scope::Edge,
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
}

#[test]
fn revoked_callers_are_denied_by_evaluation_even_in_dry_run() {
    let p = policy(&format!(
        "dry_run = true\n[revoked]\nidentities = [\"{ALICE}\"]\n[[rule]]\nid = \"all\"\neffect = \"allow\"\ncallers = [\"spiffe://tether.test/*\"]\n"
    ));
    let s = crate::policy::Subject {
        caller: ALICE,
        tunnel: "spiffe://tether.test/tunnel/t",
        service: "s",
        method: "GET",
        path: "/",
        grpc: false,
        workload: None,
    };
    let d = crate::policy::decide(&p, &s);
    assert!(!d.permits());
    assert_eq!(d.rule(), Some("revoked"));
    let ok = crate::policy::decide(&p, &crate::policy::Subject { caller: BOB, ..s });
    assert!(ok.permits());
}
