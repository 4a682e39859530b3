//! A loaded policy and the request it decides on.

use super::pattern::{GrpcPattern, IdPattern, NamePattern, PathPrefix};

/// Which end a policy belongs to; it fixes which keys a rule may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The edge: caller × tunnel × service × method/path.
    Edge,
    /// The tunnel client (the data-plane owner's veto): caller × local
    /// service × method/path.
    Client,
    /// Egress, at either end: tunnel identity (as caller) × workload label ×
    /// upstream (as service) × method/path.
    Egress,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Let the stream through (unless a deny also matches).
    Allow,
    /// Refuse the stream; beats any allow.
    Deny,
}

/// One rule. Every field left out matches anything, except `callers`,
/// which every rule must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique id, reported in decisions, refusals and audit records.
    pub id: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Caller identities the rule applies to.
    pub callers: Vec<IdPattern>,
    /// Tunnel identities (edge policies only).
    pub tunnels: Option<Vec<IdPattern>>,
    /// Service names.
    pub services: Option<Vec<NamePattern>>,
    /// HTTP methods (uppercase).
    pub methods: Option<Vec<String>>,
    /// HTTP path prefixes.
    pub paths: Option<Vec<PathPrefix>>,
    /// gRPC methods; a rule with `grpc` matches gRPC calls only.
    pub grpc: Option<Vec<GrpcPattern>>,
    /// Workload labels of the egress listener (egress policies only).
    pub workloads: Option<Vec<String>>,
    /// Deny rules only: record what would be denied, deny nothing.
    pub dry_run: bool,
    /// Line in the policy file, for messages.
    pub line: usize,
}

/// A whole validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Which end it is for.
    pub scope: Scope,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Record every denial as `would-deny` and deny nothing (trial runs).
    pub dry_run: bool,
    /// Identities and certificates that may not connect or call at all.
    pub revoked: Revoked,
}

/// The `[revoked]` table: a deny list checked before any rule, enforced
/// even in dry-run, that also closes the live connections it names (see
/// `crate::revocation`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Exact SPIFFE IDs.
    pub identities: std::collections::BTreeSet<String>,
    /// Certificate serials, as bytes without leading zeros.
    pub serials: std::collections::BTreeSet<Vec<u8>>,
}

/// The rule id a decision names when the deny list decided it; no rule in
/// a file may use it.
pub const REVOKED_RULE: &str = "revoked";

impl Revoked {
    /// Why `identity` (presenting the certificate with `serial`, if known)
    /// is revoked, or `None`.
    pub fn reason(&self, identity: &str, serial: Option<&[u8]>) -> Option<String> {
        if self.identities.contains(identity) {
            return Some(format!("identity {identity} is revoked"));
        }
        let serial = serial.filter(|s| self.serials.contains(*s))?;
        Some(format!(
            "certificate serial {} is revoked",
            crate::identity::format_serial(serial)
        ))
    }

    /// Nothing revoked.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.serials.is_empty()
    }
}

impl Policy {
    /// The policy that denies everything: what a process runs with before a
    /// policy file is given (default deny, never fail open).
    pub fn deny_all(scope: Scope) -> Self {
        Self {
            scope,
            rules: Vec::new(),
            dry_run: false,
            revoked: Revoked::default(),
        }
    }
}

/// What a decision is about. The path must already be canonical (see
/// [`super::canonical_path`]).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Caller SPIFFE ID (verified by the edge; asserted by the edge at the client).
    pub caller: &'a str,
    /// Tunnel SPIFFE ID.
    pub tunnel: &'a str,
    /// Service name.
    pub service: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// Canonical path without query.
    pub path: &'a str,
    /// gRPC call?
    pub grpc: bool,
    /// The egress listener's workload label, if any (egress only).
    pub workload: Option<&'a str>,
}

/// The result of evaluating a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Forward it.
    Allow,
    /// Refuse it.
    Deny,
    /// A denial that dry-run turned into an allow: forward, but record.
    WouldDeny,
}

/// A decision with the rule that made it. Only evaluation makes one
/// (the fields are private to `policy`), so a decision read from a
/// [`super::Permit`] or a denial is always one a policy reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, deny or would-deny.
    pub(super) outcome: Outcome,
    /// The deciding rule; `None` is the default deny.
    pub(super) rule: Option<String>,
}

impl Decision {
    /// True if the stream may be forwarded.
    pub fn permits(&self) -> bool {
        self.outcome != Outcome::Deny
    }

    /// Allow, deny or would-deny.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The deciding rule; `None` is the default deny.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// `allow`, `deny` or `would-deny`, as written to audit records.
    pub fn label(&self) -> &'static str {
        match self.outcome {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::WouldDeny => "would-deny",
        }
    }

    /// The rule id, or `default-deny`.
    pub fn rule_label(&self) -> &str {
        self.rule.as_deref().unwrap_or("default-deny")
    }
}
