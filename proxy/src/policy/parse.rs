//! Policy files: TOML → validated [`Policy`]. Every problem is reported at
//! once with the line of its rule and the key at fault; nothing partial is
//! ever returned.

use std::collections::HashSet;

use serde::Deserialize;
use toml::Spanned;

use super::model::{Effect, Policy, Revoked, Rule, Scope, REVOKED_RULE};
use super::pattern::{GrpcPattern, IdPattern, NamePattern, PathPrefix};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    revoked: RawRevoked,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevoked {
    #[serde(default)]
    identities: Vec<String>,
    #[serde(default)]
    serials: Vec<String>,
}

fn revoked(raw: RawRevoked, errs: &mut Vec<String>) -> Revoked {
    let mut out = Revoked::default();
    for id in raw.identities {
        match crate::identity::SpiffeId::parse(&id) {
            Ok(_) => {
                out.identities.insert(id);
            }
            Err(e) => errs.push(format!("revoked.identities: {e}")),
        }
    }
    for serial in raw.serials {
        match crate::identity::parse_serial(&serial) {
            Ok(s) => {
                out.serials.insert(s);
            }
            Err(e) => errs.push(format!("revoked.serials: {e}")),
        }
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    effect: String,
    callers: Vec<String>,
    tunnels: Option<Vec<String>>,
    services: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    grpc: Option<Vec<String>>,
    workloads: Option<Vec<String>>,
    #[serde(default)]
    dry_run: bool,
}

/// Every problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid policy:\n  - {}", .0.join("\n  - "))]
pub struct PolicyErrors(pub Vec<String>);

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn list<T>(
    key: &str,
    values: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
    errs: &mut Vec<String>,
    at: &str,
) -> Vec<T> {
    if values.is_empty() {
        errs.push(format!(
            "{at}: {key} is empty; leave the key out to match anything"
        ));
    }
    values
        .iter()
        .filter_map(|v| {
            parse(v)
                .map_err(|e| errs.push(format!("{at}: {key}: {e}")))
                .ok()
        })
        .collect()
}

/// Parses and validates a policy for `scope`.
pub fn parse_policy(text: &str, scope: Scope) -> Result<Policy, PolicyErrors> {
    let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyErrors(vec![e.to_string()]))?;
    let mut errs = Vec::new();
    let mut ids = HashSet::new();
    let mut rules = Vec::new();
    for spanned in raw.rule {
        let line = line_of(text, spanned.span().start);
        let r = spanned.into_inner();
        let at = format!("line {line}, rule '{}'", r.id);
        let id_ok = !r.id.is_empty()
            && r.id.len() <= 64
            && r.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            errs.push(format!(
                "{at}: id must be 1-64 characters of A-Z a-z 0-9 - _ ."
            ));
        }
        if r.id == REVOKED_RULE {
            errs.push(format!(
                "{at}: the id '{REVOKED_RULE}' is reserved for decisions of the [revoked] list"
            ));
        }
        if !ids.insert(r.id.clone()) {
            errs.push(format!("{at}: id is used by another rule"));
        }
        let effect = match r.effect.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => {
                errs.push(format!("{at}: effect '{other}' must be allow or deny"));
                Effect::Deny
            }
        };
        if r.dry_run && effect == Effect::Allow {
            errs.push(format!(
                "{at}: dry_run applies to deny rules; set dry_run = true at the top of the file to trial a whole policy"
            ));
        }
        let callers = list("callers", &r.callers, IdPattern::parse, &mut errs, &at);
        let tunnels = r
            .tunnels
            .as_ref()
            .map(|t| list("tunnels", t, IdPattern::parse, &mut errs, &at));
        if tunnels.is_some() && scope != Scope::Edge {
            errs.push(format!(
                "{at}: tunnels is an edge ingress key; in a client policy the tunnel is the client itself, and in an egress policy the tunnel is the caller (use callers)"
            ));
        }
        let workloads = r.workloads.as_ref().map(|w| {
            list(
                "workloads",
                w,
                |v| match crate::upstream::validate_name(v) {
                    Ok(()) => Ok(v.to_string()),
                    Err(e) => Err(format!("'{v}' {e}")),
                },
                &mut errs,
                &at,
            )
        });
        if workloads.is_some() && scope != Scope::Egress {
            errs.push(format!("{at}: workloads is an egress key"));
        }
        let services = r
            .services
            .as_ref()
            .map(|s| list("services", s, NamePattern::parse, &mut errs, &at));
        let methods = r.methods.as_ref().map(|m| {
            list(
                "methods",
                m,
                |v| {
                    http::Method::from_bytes(v.as_bytes())
                        .map(|m| m.as_str().to_ascii_uppercase())
                        .map_err(|_| format!("'{v}' is not an HTTP method"))
                },
                &mut errs,
                &at,
            )
        });
        let paths = r
            .paths
            .as_ref()
            .map(|p| list("paths", p, PathPrefix::parse, &mut errs, &at));
        let grpc = r
            .grpc
            .as_ref()
            .map(|g| list("grpc", g, GrpcPattern::parse, &mut errs, &at));
        rules.push(Rule {
            id: r.id,
            effect,
            callers,
            tunnels,
            services,
            methods,
            paths,
            grpc,
            workloads,
            dry_run: r.dry_run,
            line,
        });
    }
    let revoked = revoked(raw.revoked, &mut errs);
    if errs.is_empty() {
        Ok(Policy {
            scope,
            rules,
            dry_run: raw.dry_run,
            revoked,
        })
    } else {
        Err(PolicyErrors(errs))
    }
}
