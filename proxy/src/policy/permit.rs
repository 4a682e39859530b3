//! [`Permit`]: the proof that a policy allowed one stream, and the only
//! way to get one ([`authorize`]).
//!
//! The promise "no byte is forwarded without a decision" is kept by the
//! types: a `Permit`'s fields are private to this module, it has no public
//! constructor and is not `Clone`, and the admission path
//! (`crate::admission`) consumes it to write the stream's durable open
//! record, which is what every forwarding primitive requires.

use super::eval::decide;
use super::model::{Decision, Subject};
use super::PolicyHandle;

/// Proof that one stream was decided on by a policy and allowed (or
/// would-be denied under dry run), naming exactly what it allows: who
/// calls, through which tunnel, which service or upstream, with which
/// method and path. Made only by [`authorize`]; consumed once.
#[derive(Debug)]
pub struct Permit {
    decision: Decision,
    caller: String,
    tunnel: String,
    service: String,
    method: String,
    path: String,
    workload: Option<String>,
}

impl Permit {
    /// The decision behind it (allow or would-deny) and its rule.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The caller it allows (a SPIFFE ID).
    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// The tunnel it allows the stream through (a SPIFFE ID).
    pub fn tunnel(&self) -> &str {
        &self.tunnel
    }

    /// The service (ingress) or upstream (egress) it allows.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The HTTP method it allows (`CONNECT` for raw TCP).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The canonical path it allows (`/` for raw TCP).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The egress workload label it was decided for, if any.
    pub fn workload(&self) -> Option<&str> {
        self.workload.as_deref()
    }
}

/// Decides on `subject` with the policy in force now: a [`Permit`] naming
/// what was allowed, or the denying decision (default deny, or the rule
/// that denies). This is the only constructor of a `Permit`.
pub fn authorize(policy: &PolicyHandle, subject: &Subject<'_>) -> Result<Permit, Decision> {
    let decision = decide(&policy.current(), subject);
    if !decision.permits() {
        return Err(decision);
    }
    Ok(Permit {
        decision,
        caller: subject.caller.to_owned(),
        tunnel: subject.tunnel.to_owned(),
        service: subject.service.to_owned(),
        method: subject.method.to_owned(),
        path: subject.path.to_owned(),
        workload: subject.workload.map(str::to_owned),
    })
}
