//! Authorisation: who may open which stream.
//!
//! A policy is a list of rules (`parse`, `model`) over patterns (`pattern`)
//! evaluated purely (`eval`): default deny, an explicit deny beats any allow,
//! every decision names its rule. Inputs are validated strictly first
//! (`canonical`): a non-canonical path is refused, never normalised.
//! [`PolicyHandle`] holds the live policy and swaps a new one in atomically,
//! so no stream is ever decided on a partial policy.

pub mod canonical;
pub mod eval;
pub mod model;
pub mod parse;
pub mod pattern;
mod permit;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use canonical::{canonical_authority, canonical_path, InputError};
pub use eval::{decide, explain, RuleTrace};
pub use model::{Decision, Effect, Outcome, Policy, Revoked, Rule, Scope, Subject, REVOKED_RULE};
pub use parse::{parse_policy, PolicyErrors};
pub use permit::{authorize, Permit};

/// Loads a policy file.
pub fn load_policy(path: &Path, scope: Scope) -> Result<Policy, PolicyErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PolicyErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
    parse_policy(&text, scope).map_err(|PolicyErrors(errs)| {
        PolicyErrors(
            errs.into_iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect(),
        )
    })
}

/// The live policy of a process, shared by every stream handler.
#[derive(Debug)]
pub struct PolicyHandle {
    current: RwLock<Arc<Policy>>,
    source: Option<PathBuf>,
    reloads: AtomicU64,
    failures: AtomicU64,
    generation: tokio::sync::watch::Sender<u64>,
    loaded_from: std::sync::Mutex<Option<reload::Fingerprint>>,
}

impl PolicyHandle {
    /// A handle serving `policy`, reloadable from `source` if given.
    pub fn new(policy: Policy, source: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(policy)),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            generation: tokio::sync::watch::Sender::new(0),
            loaded_from: std::sync::Mutex::new(source.as_deref().and_then(reload::fingerprint)),
            source,
        })
    }

    /// The policy to decide with now. Holders keep a consistent snapshot
    /// even if a reload happens meanwhile.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => p.clone(),
            // A panic while swapping cannot leave a half-written Arc; keep serving it.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the policy atomically.
    pub fn swap(&self, policy: Policy) {
        let new = Arc::new(policy);
        match self.current.write() {
            Ok(mut p) => *p = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        self.reloads.fetch_add(1, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Notified on every swap (status pages, tests).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-reads the source file. An invalid file is refused and counted;
    /// the old policy stays in force.
    pub fn reload(&self) -> Result<(), PolicyErrors> {
        let Some(path) = &self.source else {
            return Ok(());
        };
        let scope = self.current().scope;
        self.set_fingerprint(reload::fingerprint(path));
        match load_policy(path, scope) {
            Ok(p) => {
                self.swap(p);
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// The fingerprint of the file as last examined.
    pub(crate) fn fingerprint(&self) -> Option<reload::Fingerprint> {
        *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_fingerprint(&self, f: Option<reload::Fingerprint>) {
        *self
            .loaded_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = f;
    }

    /// The file this policy is reloaded from.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Successful reloads so far.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Refused reloads so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;

/// A human explanation of a decision, for the `policy explain` commands.
pub fn explain_text(policy: &Policy, s: &Subject<'_>) -> String {
    let (decision, trace) = explain(policy, s);
    let mut out = format!(
        "decision: {} (rule: {})\n",
        decision.label(),
        decision.rule_label()
    );
    if policy.dry_run {
        out.push_str(
            "note: the whole policy is in dry-run mode; denials are recorded, not enforced\n",
        );
    }
    for t in trace {
        match t.mismatch {
            None => out.push_str(&format!("  line {:>4}  {:<24} matches\n", t.line, t.id)),
            Some(field) => out.push_str(&format!(
                "  line {:>4}  {:<24} does not match ({field})\n",
                t.line, t.id
            )),
        }
    }
    if decision.rule() == Some(REVOKED_RULE) {
        out.push_str("the caller or the tunnel is on the [revoked] list: denied before any rule\n");
    }
    if decision.rule.is_none() && !decision.permits() {
        out.push_str("no allow rule matched: default deny\n");
    }
    out
}
