//! The Grafana dashboard (`deploy/grafana/tether.json`) queries only
//! metrics the binaries export: every `tether_…` name in every panel
//! target's `expr` (and in the template variables' queries), less a
//! histogram's `_bucket`, `_sum` or `_count` suffix, is a family of
//! [`proxy::metrics::Metrics`]. A renamed or removed metric fails here
//! instead of leaving an empty panel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// The dashboard, from the repository root.
fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy/grafana/tether.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included, depth first.
fn panels(list: &Value, out: &mut Vec<Value>) {
    for panel in list.as_array().into_iter().flatten() {
        out.push(panel.clone());
        if let Some(nested) = panel.get("panels") {
            panels(nested, out);
        }
    }
}

/// The query strings of the dashboard: `(where, expr)` for each panel
/// target, and each template variable's query.
fn queries(dash: &Value) -> Vec<(String, String)> {
    let mut all = Vec::new();
    panels(&dash["panels"], &mut all);
    let mut out = Vec::new();
    for panel in &all {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((format!("panel '{title}'"), expr.to_string()));
            }
        }
    }
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap_or("?");
        if var["type"].as_str() != Some("query") {
            continue;
        }
        let query = match &var["query"] {
            Value::String(q) => Some(q.as_str()),
            q => q["query"].as_str(),
        };
        if let Some(q) = query {
            out.push((format!("variable '{name}'"), q.to_string()));
        }
    }
    out
}

/// The identifiers in `expr` that start with `tether_` (the characters
/// of a Prometheus metric name after it), not inside a longer identifier.
fn metric_names(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut names = Vec::new();
    let mut i = 0;
    while let Some(found) = expr[i..].find("tether_") {
        let start = i + found;
        let mut end = start + "tether_".len();
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// A histogram's series name, as its family.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

#[test]
fn the_scanner_finds_metric_names() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(tether_stream_duration_seconds_bucket{side=~\"$side\"}[5m]))) / my_tether_x"
        ),
        vec!["tether_stream_duration_seconds_bucket".to_string()]
    );
    assert_eq!(
        family("tether_stream_duration_seconds_count"),
        "tether_stream_duration_seconds"
    );
    assert_eq!(family("tether_audit_healthy"), "tether_audit_healthy");
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let exported: BTreeSet<String> = proxy::metrics::Metrics::new("edge")
        .unwrap()
        .names()
        .into_iter()
        .collect();
    let dash = dashboard();
    let queries = queries(&dash);
    assert!(!queries.is_empty(), "the dashboard queries nothing");
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (place, expr) in &queries {
        for name in metric_names(expr) {
            let fam = family(&name).to_string();
            if !exported.contains(&fam) {
                unknown.push(format!("{place}: {name}"));
            }
            used.insert(fam);
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the binaries do not export:\n  {}\nexported: {exported:?}",
        unknown.join("\n  ")
    );
    // What the dashboard is for: tunnels connected, call rate and errors by
    // cause, latency percentiles, audit flush latency and health, reloads.
    for needed in [
        "tether_connections",
        "tether_streams_opened_total",
        "tether_streams_closed_total",
        "tether_refusals_total",
        "tether_stream_duration_seconds",
        "tether_audit_flush_duration_seconds",
        "tether_audit_healthy",
        "tether_reloads_total",
    ] {
        assert!(used.contains(needed), "no panel queries {needed}");
    }
}

#[test]
fn latency_panels_use_histogram_quantile_over_buckets() {
    let dash = dashboard();
    for (place, expr) in queries(&dash) {
        if expr.contains("_bucket") {
            assert!(
                expr.contains("histogram_quantile(") && expr.contains("by (le"),
                "{place}: a _bucket query needs histogram_quantile over sum by (le, …): {expr}"
            );
        }
    }
}
