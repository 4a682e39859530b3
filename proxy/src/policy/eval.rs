//! Evaluating a policy: pure, no IO, no clock. Default deny; an explicit
//! deny beats any allow; dry run turns denials into recorded allows.

use super::model::{Decision, Effect, Outcome, Policy, Rule, Subject};

/// Why a rule did or did not match, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    /// The rule id.
    pub id: String,
    /// Its line.
    pub line: usize,
    /// `None` if it matched, else the first field that did not.
    pub mismatch: Option<&'static str>,
}

fn first_mismatch(rule: &Rule, s: &Subject<'_>) -> Option<&'static str> {
    // Deny rules compare paths and methods without regard to case, so a
    // case-insensitive service cannot be reached past a deny by respelling.
    let fold = rule.effect == Effect::Deny;
    if !rule.callers.iter().any(|p| p.matches(s.caller)) {
        return Some("callers");
    }
    if let Some(t) = &rule.tunnels {
        if !t.iter().any(|p| p.matches(s.tunnel)) {
            return Some("tunnels");
        }
    }
    if let Some(svc) = &rule.services {
        if !svc.iter().any(|p| p.matches(s.service)) {
            return Some("services");
        }
    }
    if let Some(m) = &rule.methods {
        if !m.iter().any(|m| m.eq_ignore_ascii_case(s.method)) {
            return Some("methods");
        }
    }
    if let Some(paths) = &rule.paths {
        if !paths.iter().any(|p| p.matches(s.path, fold)) {
            return Some("paths");
        }
    }
    if let Some(w) = &rule.workloads {
        if !s.workload.is_some_and(|label| w.iter().any(|x| x == label)) {
            return Some("workloads");
        }
    }
    if let Some(g) = &rule.grpc {
        if !s.grpc || !g.iter().any(|p| p.matches(s.path, fold)) {
            return Some("grpc");
        }
    }
    None
}

/// Decides on `s`, and says for each rule whether it matched. A revoked
/// caller or tunnel is denied before any rule, dry run or not.
pub fn explain(policy: &Policy, s: &Subject<'_>) -> (Decision, Vec<RuleTrace>) {
    if policy.revoked.reason(s.caller, None).is_some()
        || policy.revoked.reason(s.tunnel, None).is_some()
    {
        let decision = Decision {
            outcome: Outcome::Deny,
            rule: Some(super::model::REVOKED_RULE.to_string()),
        };
        return (decision, Vec::new());
    }
    let mut trace = Vec::with_capacity(policy.rules.len());
    let mut deny: Option<&Rule> = None;
    let mut dry_deny: Option<&Rule> = None;
    let mut allow: Option<&Rule> = None;
    for rule in &policy.rules {
        let mismatch = first_mismatch(rule, s);
        trace.push(RuleTrace {
            id: rule.id.clone(),
            line: rule.line,
            mismatch,
        });
        if mismatch.is_some() {
            continue;
        }
        let slot = match (rule.effect, rule.dry_run) {
            (Effect::Deny, false) => &mut deny,
            (Effect::Deny, true) => &mut dry_deny,
            (Effect::Allow, _) => &mut allow,
        };
        slot.get_or_insert(rule);
    }
    let id = |r: &Rule| Some(r.id.clone());
    let decision = match (deny, allow, dry_deny) {
        (Some(d), _, _) => Decision {
            outcome: if policy.dry_run {
                Outcome::WouldDeny
            } else {
                Outcome::Deny
            },
            rule: id(d),
        },
        (None, Some(_), Some(dd)) => Decision {
            outcome: Outcome::WouldDeny,
            rule: id(dd),
        },
        (None, Some(a), None) => Decision {
            outcome: Outcome::Allow,
            rule: id(a),
        },
        (None, None, _) => Decision {
            outcome: if policy.dry_run {
                Outcome::WouldDeny
            } else {
                Outcome::Deny
            },
            rule: None,
        },
    };
    (decision, trace)
}

/// Decides on `s`.
pub fn decide(policy: &Policy, s: &Subject<'_>) -> Decision {
    explain(policy, s).0
}
