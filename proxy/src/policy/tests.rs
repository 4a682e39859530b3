//! Decision matrices for both ends, plus `check`-style validation cases.

use super::*;

const EDGE: &str = r#"
[[rule]]
id = "orchestrator-echo"
effect = "allow"
callers = ["spiffe://td/caller/orchestrator"]
tunnels = ["spiffe://td/tunnel/east/*"]
services = ["echo"]
grpc = ["/tether.echo.v1.Echo/*"]

[[rule]]
id = "no-bidi"
effect = "deny"
callers = ["spiffe://td/caller/*"]
grpc = ["/tether.echo.v1.Echo/Bidi"]

[[rule]]
id = "ops-web-read"
effect = "allow"
callers = ["spiffe://td/caller/ops/*"]
services = ["web"]
methods = ["GET", "HEAD"]
paths = ["/status", "/api/"]

[[rule]]
id = "no-admin"
effect = "deny"
callers = ["spiffe://td/*"]
paths = ["/api/admin"]

[[rule]]
id = "trial-deny-delete"
effect = "deny"
callers = ["spiffe://td/caller/ops/*"]
methods = ["DELETE"]
dry_run = true

[[rule]]
id = "ops-web-write"
effect = "allow"
callers = ["spiffe://td/caller/ops/alice"]
services = ["web"]
methods = ["POST", "DELETE"]
paths = ["/api/"]
"#;

type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    Outcome,
    Option<&'static str>,
);

fn run(policy: &Policy, cases: &[Case]) {
    assert!(
        cases.len() >= 30,
        "a decision matrix needs at least 30 cases"
    );
    for (i, (caller, tunnel, service, method, path, grpc, outcome, rule)) in
        cases.iter().enumerate()
    {
        let s = Subject {
            caller,
            tunnel,
            service,
            method,
            path,
            grpc: *grpc,
            workload: None,
        };
        let d = decide(policy, &s);
        assert_eq!(
            (&d.outcome, d.rule.as_deref()),
            (outcome, *rule),
            "case {i}: {caller} {tunnel} {service} {method} {path}"
        );
    }
}

const O: &str = "spiffe://td/caller/orchestrator";
const EAST_A: &str = "spiffe://td/tunnel/east/a";
const ALICE: &str = "spiffe://td/caller/ops/alice";
const BOB: &str = "spiffe://td/caller/ops/bob";
const UNARY: &str = "/tether.echo.v1.Echo/Unary";
const BIDI: &str = "/tether.echo.v1.Echo/Bidi";
use Outcome::{Allow, Deny, WouldDeny};

#[test]
fn edge_decision_matrix() {
    let p = parse_policy(EDGE, Scope::Edge).unwrap();
    let cases: Vec<Case> = vec![
        (
            O,
            EAST_A,
            "echo",
            "POST",
            UNARY,
            true,
            Allow,
            Some("orchestrator-echo"),
        ),
        (
            O,
            "spiffe://td/tunnel/east/b/c",
            "echo",
            "POST",
            UNARY,
            true,
            Allow,
            Some("orchestrator-echo"),
        ),
        (
            O,
            "spiffe://td/tunnel/eastern",
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (
            O,
            "spiffe://td/tunnel/east",
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (
            O,
            "spiffe://td/tunnel/west/a",
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (O, EAST_A, "other", "POST", UNARY, true, Deny, None),
        (
            O,
            EAST_A,
            "echo",
            "POST",
            "/other.Svc/Unary",
            true,
            Deny,
            None,
        ),
        (O, EAST_A, "echo", "POST", UNARY, false, Deny, None),
        (O, EAST_A, "echo", "POST", BIDI, true, Deny, Some("no-bidi")),
        (
            O,
            EAST_A,
            "echo",
            "POST",
            "/TETHER.ECHO.V1.ECHO/BIDI",
            true,
            Deny,
            Some("no-bidi"),
        ),
        (
            O,
            EAST_A,
            "echo",
            "POST",
            "/tether.echo.v1.Echo/ServerStream",
            true,
            Allow,
            Some("orchestrator-echo"),
        ),
        (
            "spiffe://td/caller/orchestrator2",
            EAST_A,
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (
            "spiffe://other/caller/orchestrator",
            EAST_A,
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (
            ALICE,
            EAST_A,
            "web",
            "GET",
            "/status",
            false,
            Allow,
            Some("ops-web-read"),
        ),
        (
            ALICE,
            EAST_A,
            "web",
            "HEAD",
            "/status",
            false,
            Allow,
            Some("ops-web-read"),
        ),
        (
            ALICE,
            EAST_A,
            "web",
            "get",
            "/status",
            false,
            Allow,
            Some("ops-web-read"),
        ),
        (
            ALICE,
            EAST_A,
            "web",
            "GET",
            "/status/sub",
            false,
            Allow,
            Some("ops-web-read"),
        ),
        (ALICE, EAST_A, "web", "GET", "/statusx", false, Deny, None),
        (
            ALICE,
            EAST_A,
            "web",
            "GET",
            "/api/items",
            false,
            Allow,
            Some("ops-web-read"),
        ),
        (ALICE, EAST_A, "web", "GET", "/api", false, Deny, None),
        (
            ALICE,
            EAST_A,
            "web",
            "GET",
            "/api/admin",
            false,
            Deny,
            Some("no-admin"),
        ),
        (
            ALICE,
            EAST_A,
            "web",
            "GET",
            "/api/admin/users",
            false,
            Deny,
            Some("no-admin"),
        ),
        (
            ALICE,
            EAST_A,
            "web",
            "GET",
            "/API/Admin/users",
            false,
            Deny,
            Some("no-admin"),
        ),
        (
            ALICE,
            EAST_A,
            "web",
            "GET",
            "/api/administrator",
            false,
            Allow,
            Some("ops-web-read"),
        ),
        (ALICE, EAST_A, "web", "PUT", "/api/items", false, Deny, None),
        (
            ALICE,
            EAST_A,
            "web",
            "POST",
            "/api/items",
            false,
            Allow,
            Some("ops-web-write"),
        ),
        (BOB, EAST_A, "web", "POST", "/api/items", false, Deny, None),
        (
            ALICE,
            EAST_A,
            "web",
            "DELETE",
            "/api/items",
            false,
            WouldDeny,
            Some("trial-deny-delete"),
        ),
        (
            BOB,
            EAST_A,
            "web",
            "DELETE",
            "/api/items",
            false,
            Deny,
            None,
        ),
        (ALICE, EAST_A, "echo", "GET", "/status", false, Deny, None),
        (
            BOB,
            EAST_A,
            "web",
            "GET",
            "/status",
            false,
            Allow,
            Some("ops-web-read"),
        ),
        (
            "spiffe://td/caller/ops",
            EAST_A,
            "web",
            "GET",
            "/status",
            false,
            Deny,
            None,
        ),
        (
            O,
            EAST_A,
            "echo",
            "POST",
            "/api/admin",
            false,
            Deny,
            Some("no-admin"),
        ),
    ];
    run(&p, &cases);
}

const CLIENT: &str = r#"
[[rule]]
id = "cp-echo"
effect = "allow"
callers = ["spiffe://td/caller/*"]
services = ["echo"]
grpc = ["/tether.echo.v1.Echo/Unary", "/tether.echo.v1.Echo/ServerStream"]

[[rule]]
id = "cp-web"
effect = "allow"
callers = ["spiffe://td/caller/orchestrator"]
services = ["web"]

[[rule]]
id = "never-secrets"
effect = "deny"
callers = ["spiffe://td/*"]
services = ["*"]
paths = ["/secrets"]
"#;

#[test]
fn client_decision_matrix() {
    let p = parse_policy(CLIENT, Scope::Client).unwrap();
    let t = "spiffe://td/tunnel/demo";
    let cases: Vec<Case> = vec![
        (O, t, "echo", "POST", UNARY, true, Allow, Some("cp-echo")),
        (
            ALICE,
            t,
            "echo",
            "POST",
            UNARY,
            true,
            Allow,
            Some("cp-echo"),
        ),
        (
            O,
            t,
            "echo",
            "POST",
            "/tether.echo.v1.Echo/ServerStream",
            true,
            Allow,
            Some("cp-echo"),
        ),
        (O, t, "echo", "POST", BIDI, true, Deny, None),
        (
            O,
            t,
            "echo",
            "POST",
            "/tether.echo.v1.Echo/ClientStream",
            true,
            Deny,
            None,
        ),
        (
            O,
            t,
            "echo",
            "POST",
            "/tether.echo.v1.Echo/unary",
            true,
            Deny,
            None,
        ),
        (O, t, "echo", "POST", UNARY, false, Deny, None),
        (
            "spiffe://td/tunnel/x",
            t,
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (
            "spiffe://td/callerx/a",
            t,
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (
            "spiffe://td/caller",
            t,
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (
            "spiffe://xd/caller/a",
            t,
            "echo",
            "POST",
            UNARY,
            true,
            Deny,
            None,
        ),
        (O, t, "web", "GET", "/", false, Allow, Some("cp-web")),
        (
            O,
            t,
            "web",
            "POST",
            "/anything/deep",
            false,
            Allow,
            Some("cp-web"),
        ),
        (O, t, "web", "DELETE", "/x", false, Allow, Some("cp-web")),
        (ALICE, t, "web", "GET", "/", false, Deny, None),
        (
            O,
            t,
            "web",
            "GET",
            "/secrets",
            false,
            Deny,
            Some("never-secrets"),
        ),
        (
            O,
            t,
            "web",
            "GET",
            "/secrets/key",
            false,
            Deny,
            Some("never-secrets"),
        ),
        (
            O,
            t,
            "web",
            "GET",
            "/SECRETS",
            false,
            Deny,
            Some("never-secrets"),
        ),
        (
            O,
            t,
            "web",
            "GET",
            "/Secrets/key",
            false,
            Deny,
            Some("never-secrets"),
        ),
        (
            O,
            t,
            "web",
            "GET",
            "/secretsanta",
            false,
            Allow,
            Some("cp-web"),
        ),
        (
            O,
            t,
            "echo",
            "GET",
            "/secrets",
            false,
            Deny,
            Some("never-secrets"),
        ),
        (O, t, "other", "GET", "/", false, Deny, None),
        (
            O,
            t,
            "other",
            "GET",
            "/secrets",
            false,
            Deny,
            Some("never-secrets"),
        ),
        (O, t, "web", "PATCH", "/a", false, Allow, Some("cp-web")),
        (
            O,
            t,
            "web",
            "GET",
            "/a/secrets",
            false,
            Allow,
            Some("cp-web"),
        ),
        (ALICE, t, "echo", "POST", BIDI, true, Deny, None),
        (BOB, t, "echo", "POST", UNARY, true, Allow, Some("cp-echo")),
        (
            "spiffe://td/caller/orchestrator/sub",
            t,
            "web",
            "GET",
            "/",
            false,
            Deny,
            None,
        ),
        (O, t, "web", "OPTIONS", "/", false, Allow, Some("cp-web")),
        (
            O,
            t,
            "web",
            "HEAD",
            "/secrets",
            false,
            Deny,
            Some("never-secrets"),
        ),
    ];
    run(&p, &cases);
}

const EGRESS: &str = r#"
[[rule]]
id = "east-billing"
effect = "allow"
callers = ["spiffe://td/tunnel/east/*"]
workloads = ["billing", "payments"]
services = ["billing-api", "billing-reports"]
methods = ["GET", "POST"]
paths = ["/v1/"]

[[rule]]
id = "all-telemetry"
effect = "allow"
callers = ["spiffe://td/tunnel/*"]
services = ["telemetry"]
grpc = ["/otel.Collector/*"]

[[rule]]
id = "no-billing-admin"
effect = "deny"
callers = ["spiffe://td/*"]
services = ["billing-api", "billing-reports"]
paths = ["/v1/admin"]

[[rule]]
id = "batch-no-telemetry"
effect = "deny"
callers = ["spiffe://td/tunnel/*"]
workloads = ["batch"]
services = ["telemetry"]
"#;

/// An egress case: tunnel (the caller), workload label, upstream, method,
/// path, gRPC?, expected outcome and rule.
type EgressCase = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    &'static str,
    bool,
    Outcome,
    Option<&'static str>,
);

#[test]
fn egress_decision_matrix() {
    let p = parse_policy(EGRESS, Scope::Egress).unwrap();
    let east = EAST_A;
    let west = "spiffe://td/tunnel/west/b";
    let export = "/otel.Collector/Export";
    let cases: Vec<EgressCase> = vec![
        // The listener's label selects the rule; several labels may share one.
        (
            east,
            Some("billing"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Allow,
            Some("east-billing"),
        ),
        (
            east,
            Some("payments"),
            "billing-reports",
            "POST",
            "/v1/pay",
            false,
            Allow,
            Some("east-billing"),
        ),
        (
            east,
            Some("app"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        // No label matches no `workloads` rule: never a wildcard.
        (
            east,
            None,
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        // Labels match exactly: no case folding, no prefixes.
        (
            east,
            Some("Billing"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        (
            east,
            Some("billing-2"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        // The other fields still apply.
        (
            west,
            Some("billing"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        (
            east,
            Some("billing"),
            "billing-api",
            "DELETE",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        (
            east,
            Some("billing"),
            "billing-api",
            "GET",
            "/v2/invoices",
            false,
            Deny,
            None,
        ),
        (
            east,
            Some("billing"),
            "billing-apix",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        (
            east,
            Some("billing"),
            "telemetry",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        // The caller of an egress call is a tunnel, never a caller identity.
        (
            O,
            Some("billing"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        (
            "spiffe://other/tunnel/east/a",
            Some("billing"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        // A deny beats the allow, whatever the spelling.
        (
            east,
            Some("billing"),
            "billing-api",
            "GET",
            "/v1/admin",
            false,
            Deny,
            Some("no-billing-admin"),
        ),
        (
            east,
            Some("payments"),
            "billing-reports",
            "POST",
            "/V1/Admin/users",
            false,
            Deny,
            Some("no-billing-admin"),
        ),
        (
            east,
            Some("billing"),
            "billing-api",
            "GET",
            "/v1/administrator",
            false,
            Allow,
            Some("east-billing"),
        ),
        // A rule without `workloads` applies to every label, and to none.
        (
            west,
            None,
            "telemetry",
            "POST",
            export,
            true,
            Allow,
            Some("all-telemetry"),
        ),
        (
            west,
            Some("app"),
            "telemetry",
            "POST",
            export,
            true,
            Allow,
            Some("all-telemetry"),
        ),
        (
            east,
            Some("billing"),
            "telemetry",
            "POST",
            export,
            true,
            Allow,
            Some("all-telemetry"),
        ),
        (west, None, "telemetry", "POST", export, false, Deny, None),
        (
            west,
            None,
            "telemetry",
            "POST",
            "/other.Svc/Export",
            true,
            Deny,
            None,
        ),
        // A deny scoped to one label leaves the others alone.
        (
            west,
            Some("batch"),
            "telemetry",
            "POST",
            export,
            true,
            Deny,
            Some("batch-no-telemetry"),
        ),
        (
            east,
            Some("batch"),
            "billing-api",
            "GET",
            "/v1/invoices",
            false,
            Deny,
            None,
        ),
        (
            east,
            Some("batch"),
            "billing-api",
            "GET",
            "/v1/admin",
            false,
            Deny,
            Some("no-billing-admin"),
        ),
    ];
    assert!(cases.len() >= 10);
    for (i, (tunnel, workload, service, method, path, grpc, outcome, rule)) in
        cases.iter().enumerate()
    {
        let s = Subject {
            caller: tunnel,
            tunnel,
            service,
            method,
            path,
            grpc: *grpc,
            workload: *workload,
        };
        let d = decide(&p, &s);
        assert_eq!(
            (&d.outcome, d.rule.as_deref()),
            (outcome, *rule),
            "case {i}: {tunnel} {workload:?} {service} {method} {path}"
        );
    }
}

#[test]
fn check_keeps_workloads_to_egress_and_tunnels_out_of_it() {
    let workloads = "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/tunnel/x\"]\nworkloads = [\"app\"]\n";
    assert!(parse_policy(workloads, Scope::Egress).is_ok());
    for scope in [Scope::Edge, Scope::Client] {
        let msg = parse_policy(workloads, scope).unwrap_err().to_string();
        assert!(msg.contains("workloads"), "{scope:?}: {msg}");
        assert!(msg.contains("line 1"), "{scope:?}: {msg}");
    }
    let tunnels = "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/tunnel/x\"]\ntunnels = [\"spiffe://td/tunnel/x\"]\n";
    let msg = parse_policy(tunnels, Scope::Egress)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tunnels"), "{msg}");
    assert!(
        msg.contains("callers"),
        "the message says what to use instead: {msg}"
    );
    assert!(parse_policy(tunnels, Scope::Edge).is_ok());
    // Labels are DNS labels, as the listener's `workload` is.
    for bad in [
        "[]",
        "[\"\"]",
        "[\"App\"]",
        "[\"a b\"]",
        "[\"-app\"]",
        "[\"a.b\"]",
    ] {
        let text = format!(
            "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/tunnel/x\"]\nworkloads = {bad}\n"
        );
        let msg = parse_policy(&text, Scope::Egress)
            .expect_err(&text)
            .to_string();
        assert!(msg.contains("workloads"), "{bad}: {msg}");
    }
}

#[test]
fn empty_policy_denies_everything() {
    let p = Policy::deny_all(Scope::Edge);
    let s = Subject {
        caller: O,
        tunnel: EAST_A,
        service: "echo",
        method: "POST",
        path: UNARY,
        grpc: true,
        workload: None,
    };
    assert_eq!(
        decide(&p, &s),
        Decision {
            outcome: Deny,
            rule: None
        }
    );
    let mut dry = p.clone();
    dry.dry_run = true;
    assert_eq!(decide(&dry, &s).outcome, WouldDeny);
}

#[test]
fn whole_policy_dry_run_records_instead_of_denying() {
    let mut p = parse_policy(EDGE, Scope::Edge).unwrap();
    p.dry_run = true;
    let s = Subject {
        caller: O,
        tunnel: EAST_A,
        service: "echo",
        method: "POST",
        path: BIDI,
        grpc: true,
        workload: None,
    };
    let d = decide(&p, &s);
    assert_eq!(d.outcome, WouldDeny);
    assert_eq!(d.rule.as_deref(), Some("no-bidi"));
    assert!(d.permits());
}

#[test]
fn check_rejects_bad_policies_naming_line_and_key() {
    let cases = [
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/tunnel/east*\"]\n", "callers"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/*/x\"]\n", "callers"),
        ("[[rule]]\nid = \"a\"\neffect = \"permit\"\ncallers = [\"spiffe://td/a\"]\n", "effect"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = []\n", "callers"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\ngrpc = [\"/pkg.Svc\"]\n", "grpc"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\npaths = [\"/a/../b\"]\n", "paths"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\nmethods = [\"GE T\"]\n", "methods"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\ndry_run = true\n", "dry_run"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\nservices = [\"Echo\"]\n", "services"),
        ("[[rule]]\nid = \"a b\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\n", "id"),
        ("[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\ncolour = \"red\"\n", "colour"),
    ];
    for (text, key) in cases {
        let err = parse_policy(text, Scope::Edge).expect_err(text);
        let msg = err.to_string();
        assert!(msg.contains(key), "{msg} should name {key}");
        assert!(msg.contains("line"), "{msg} should name the line");
    }
    let dup = "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\n\n[[rule]]\nid = \"a\"\neffect = \"deny\"\ncallers = [\"spiffe://td/a\"]\n";
    let msg = parse_policy(dup, Scope::Edge).unwrap_err().to_string();
    assert!(msg.contains("line 6"), "{msg}");
    let tunnels_in_client = "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://td/a\"]\ntunnels = [\"spiffe://td/tunnel/x\"]\n";
    assert!(parse_policy(tunnels_in_client, Scope::Client).is_err());
    assert!(parse_policy(tunnels_in_client, Scope::Edge).is_ok());
}

#[test]
fn invalid_reload_keeps_the_old_policy() {
    let dir = std::env::temp_dir().join(format!("tether-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, CLIENT).unwrap();
    let handle = PolicyHandle::new(
        load_policy(&path, Scope::Client).unwrap(),
        Some(path.clone()),
    );
    let before = handle.current();
    std::fs::write(&path, "[[rule]]\nid = 1\n").unwrap();
    assert!(handle.reload().is_err());
    assert_eq!(handle.failures(), 1);
    assert_eq!(*handle.current(), *before);
    std::fs::write(
        &path,
        EDGE.replace("tunnels = [\"spiffe://td/tunnel/east/*\"]\n", ""),
    )
    .unwrap();
    handle.reload().unwrap();
    assert_eq!(handle.reloads(), 1);
    assert_ne!(*handle.current(), *before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn file_changes_are_picked_up_and_bad_files_refused() {
    let dir = std::env::temp_dir().join(format!("tether-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, CLIENT).unwrap();
    let handle = PolicyHandle::new(
        load_policy(&path, Scope::Client).unwrap(),
        Some(path.clone()),
    );
    let mut changes = handle.subscribe();
    let cancel = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(reload::watch(
        handle.clone(),
        std::time::Duration::from_millis(5),
        cancel.clone(),
    ));
    // A different size is a different fingerprint even within one mtime tick.
    std::fs::write(&path, format!("{CLIENT}\n# edited\n")).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed())
        .await
        .expect("the edit was not picked up")
        .unwrap();
    assert_eq!(handle.reloads(), 1);
    // A broken edit is refused; the policy in force stays the last good one.
    let good = handle.current();
    std::fs::write(
        &path,
        "[[rule]]\nid = \"x\"\neffect = \"allow\"\ncallers = [\"*\"]\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while handle.failures() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken edit was never examined"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(*handle.current(), *good);
    cancel.cancel();
    watcher.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
