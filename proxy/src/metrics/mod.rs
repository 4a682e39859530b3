//! Prometheus metrics: one registry per process, served at `/metrics` on
//! the admin listener (docs/operations.md lists every metric and what to
//! alert on).
//!
//! Stream metrics are derived from the stream's audit events at the
//! moment they are appended ([`Metrics::observe`]): the audit log already
//! sees every stream's decision (open) and ending (close), so the two can
//! never disagree and the forwarding path carries no second set of hooks.
//! State that lives elsewhere (connections, QUIC statistics, the audit
//! log's health) is read when scraped, by the [`Refresh`] functions each
//! binary registers.
//!
//! Names follow Prometheus's conventions: `tether_` prefix, base units in
//! the name (`_seconds`, `_bytes`), `_total` on counters. Label values are
//! bounded ([`labels`]).

pub mod labels;
pub mod recent;

use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::audit::{AuditEvent, Event};

/// Reads state owned elsewhere into the registry's gauges, at each scrape.
pub type Refresh = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Buckets of `tether_stream_duration_seconds`: 1 ms to 60 s, for calls
/// from unary RPCs to long streams.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of `tether_audit_flush_duration_seconds`: 10 µs (no fsync) to
/// 1 s (a disk in trouble).
const FLUSH_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    1.0,
];

/// Buckets of `tether_audit_records_per_flush`.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The process's metrics. Cheap to share (`Arc`); every family is
/// registered once, at construction.
pub struct Metrics {
    registry: Registry,
    refreshers: Mutex<Vec<Refresh>>,
    /// The last refusals and denials, for the status page.
    pub recent: recent::Recent,
    /// Streams by direction, kind, decision, tunnel and service (`-` when
    /// refused before routing).
    pub streams_opened: IntCounterVec,
    /// Streams ended, by direction, kind, outcome, tunnel and service.
    pub streams_closed: IntCounterVec,
    /// Streams opened and not yet closed, by direction.
    pub streams_in_flight: IntGaugeVec,
    /// How long streams lasted, by direction and kind.
    pub stream_duration: HistogramVec,
    /// Body bytes by direction and way (`in`: from the caller, `out`: to
    /// it).
    pub stream_bytes: IntCounterVec,
    /// Policy decisions by direction, rule id and decision.
    pub policy_decisions: IntCounterVec,
    /// Streams refused before any policy, by direction and cause.
    pub refusals: IntCounterVec,
    /// Calls refused by a `[limits]` share, by limit (edge).
    pub limit_rejections: IntCounterVec,
    /// Tunnel connections by state (edge) or edge connections by edge and
    /// state (client).
    pub connections: IntGaugeVec,
    /// Registrations by outcome: at the edge each tunnel connection's, at
    /// the client each dial's.
    pub registrations: IntCounterVec,
    /// Dial attempts (client).
    pub reconnect_attempts: IntCounter,
    /// GOAWAYs sent and received.
    pub drain_events: IntCounterVec,
    /// Policy and credential reloads by what and outcome.
    pub reloads: IntCounterVec,
    /// QUIC round-trip time by peer (largest over the peer's connections).
    pub quic_rtt: prometheus::GaugeVec,
    /// QUIC congestion window by peer (sum over the peer's connections).
    pub quic_cwnd: IntGaugeVec,
    /// Packets QUIC declared lost, by peer, over its live connections.
    pub quic_lost: IntGaugeVec,
    /// Audit records written.
    pub audit_records: IntCounter,
    /// Audit write and fsync failures.
    pub audit_failures: IntCounter,
    /// 1 while the audit log takes records, 0 while it fails closed.
    pub audit_healthy: IntGauge,
    /// How long each audit flush (write and, when asked, fsync) took.
    pub audit_flush: Histogram,
    /// Records per audit flush.
    pub audit_batch: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Why the registry could not be built: two families with one name, a bad
/// name or bucket list. A programming error, caught by the unit test.
#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let m = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let m = IntGauge::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let m = IntCounter::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

/// Raises `counter` to `total`, a count kept elsewhere since start (the
/// audit writer's, the quotas'): a counter only goes up, and one whose
/// source went backwards (it cannot) stays where it is.
pub fn catch_up(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, MetricsError> {
    let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

impl Metrics {
    /// Every family, registered; `side` (`edge` or `client`) is a constant
    /// label on all of them, so one Prometheus can scrape both binaries.
    pub fn new(side: &str) -> Result<Arc<Metrics>, MetricsError> {
        let labels = [("side".to_string(), side.to_string())].into();
        let r = Registry::new_custom(None, Some(labels))?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tether_stream_duration_seconds",
                "How long streams lasted, from admission to their close record.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["direction", "kind"],
        )?;
        r.register(Box::new(duration.clone()))?;
        let quic_rtt = prometheus::GaugeVec::new(
            Opts::new(
                "tether_quic_rtt_seconds",
                "QUIC smoothed round-trip time, the largest over the peer's live connections.",
            ),
            &["peer"],
        )?;
        r.register(Box::new(quic_rtt.clone()))?;
        r.register(Box::new(crate::probes::ProbeCollector))?;
        Ok(Arc::new(Metrics {
            streams_opened: counter_vec(
                &r,
                "tether_streams_opened_total",
                "Streams admitted or refused (one per open audit record).",
                &["direction", "kind", "decision", "tunnel", "service"],
            )?,
            streams_closed: counter_vec(
                &r,
                "tether_streams_closed_total",
                "Streams ended (one per close audit record), by outcome.",
                &["direction", "kind", "outcome", "tunnel", "service"],
            )?,
            streams_in_flight: gauge_vec(
                &r,
                "tether_streams_in_flight",
                "Streams opened and not yet closed.",
                &["direction"],
            )?,
            stream_duration: duration,
            stream_bytes: counter_vec(
                &r,
                "tether_stream_bytes_total",
                "Body bytes of ended streams; way=in from the caller, out to it.",
                &["direction", "way"],
            )?,
            policy_decisions: counter_vec(
                &r,
                "tether_policy_decisions_total",
                "Authorisation decisions by rule id (default: the default deny).",
                &["direction", "rule", "decision"],
            )?,
            refusals: counter_vec(
                &r,
                "tether_refusals_total",
                "Streams refused before or instead of a policy decision, by tether-error cause.",
                &["direction", "cause"],
            )?,
            limit_rejections: counter_vec(
                &r,
                "tether_limit_rejections_total",
                "Calls refused over a [limits] share since start, by limit.",
                &["limit"],
            )?,
            connections: gauge_vec(
                &r,
                "tether_connections",
                "Tunnel connections by peer and state (registered, draining).",
                &["peer", "state"],
            )?,
            registrations: counter_vec(
                &r,
                "tether_registrations_total",
                "Tunnel registrations by outcome.",
                &["outcome"],
            )?,
            reconnect_attempts: counter(
                &r,
                "tether_reconnect_attempts_total",
                "Dial attempts to an edge (the first included).",
            )?,
            drain_events: counter_vec(
                &r,
                "tether_drain_events_total",
                "GOAWAY frames sent or received on tunnel control streams.",
                &["event"],
            )?,
            reloads: counter_vec(
                &r,
                "tether_reloads_total",
                "Policy and credential reloads by outcome (ok, error).",
                &["what", "outcome"],
            )?,
            quic_rtt,
            quic_cwnd: gauge_vec(
                &r,
                "tether_quic_congestion_window_bytes",
                "QUIC congestion window, summed over the peer's live connections.",
                &["peer"],
            )?,
            quic_lost: gauge_vec(
                &r,
                "tether_quic_lost_packets",
                "Packets QUIC declared lost over the peer's live connections.",
                &["peer"],
            )?,
            audit_records: counter(
                &r,
                "tether_audit_records_written_total",
                "Audit records written since start.",
            )?,
            audit_failures: counter(
                &r,
                "tether_audit_write_failures_total",
                "Audit writes or fsyncs that failed since start (each refused its streams).",
            )?,
            audit_healthy: gauge(
                &r,
                "tether_audit_healthy",
                "1 while the audit log takes records; 0 while it fails closed.",
            )?,
            audit_flush: histogram(
                &r,
                "tether_audit_flush_duration_seconds",
                "How long each audit flush (write, and fsync when due) took.",
                FLUSH_BUCKETS,
            )?,
            audit_batch: histogram(
                &r,
                "tether_audit_records_per_flush",
                "Records written by each audit flush.",
                BATCH_BUCKETS,
            )?,
            registry: r,
            refreshers: Mutex::new(Vec::new()),
            recent: recent::Recent::default(),
        }))
    }

    /// The name of every family this process exports (with or without
    /// samples yet), for checks that a dashboard or alert queries only
    /// what exists. Histograms also export `_bucket`, `_sum` and `_count`.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 21] = [
            &self.streams_opened,
            &self.streams_closed,
            &self.streams_in_flight,
            &self.stream_duration,
            &self.stream_bytes,
            &self.policy_decisions,
            &self.refusals,
            &self.limit_rejections,
            &self.connections,
            &self.registrations,
            &self.reconnect_attempts,
            &self.drain_events,
            &self.reloads,
            &self.quic_rtt,
            &self.quic_cwnd,
            &self.quic_lost,
            &self.audit_records,
            &self.audit_failures,
            &self.audit_healthy,
            &self.audit_flush,
            &self.audit_batch,
        ];
        let mut names: Vec<String> = collectors
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Adds a function run at each scrape, before the families are read.
    pub fn on_scrape(&self, refresh: Refresh) {
        if let Ok(mut r) = self.refreshers.lock() {
            r.push(refresh);
        }
    }

    /// The text exposition format, as `/metrics` serves it.
    pub fn render(&self) -> String {
        if let Ok(refreshers) = self.refreshers.lock() {
            for refresh in refreshers.iter() {
                refresh(self);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# metrics could not be encoded: {e}\n");
        }
        String::from_utf8(out).unwrap_or_else(|e| format!("# metrics are not UTF-8: {e}\n"))
    }

    /// Counts one audit event of a stream: decisions and refusals at its
    /// open, outcome, duration and bytes at its close.
    pub fn observe(&self, event: &AuditEvent) {
        let direction = event.direction.as_str();
        let kind = labels::kind(event);
        let routed = labels::routed(event);
        let (tunnel, service) = labels::route(event, routed);
        match event.event {
            Event::Open => {
                self.recent.observe(event);
                let decision = labels::decision(event);
                self.streams_opened
                    .with_label_values(&[direction, kind, decision, tunnel, service])
                    .inc();
                if routed {
                    self.policy_decisions
                        .with_label_values(&[direction, labels::rule(event), decision])
                        .inc();
                } else {
                    self.refusals
                        .with_label_values(&[direction, labels::cause(event)])
                        .inc();
                }
                self.streams_in_flight.with_label_values(&[direction]).inc();
            }
            Event::Close => {
                self.streams_closed
                    .with_label_values(&[direction, kind, labels::outcome(event), tunnel, service])
                    .inc();
                self.streams_in_flight.with_label_values(&[direction]).dec();
                if let Some(ms) = event.duration_ms {
                    self.stream_duration
                        .with_label_values(&[direction, kind])
                        .observe(ms as f64 / 1000.0);
                }
                if let Some(n) = event.bytes_in {
                    self.stream_bytes
                        .with_label_values(&[direction, "in"])
                        .inc_by(n);
                }
                if let Some(n) = event.bytes_out {
                    self.stream_bytes
                        .with_label_values(&[direction, "out"])
                        .inc_by(n);
                }
            }
            Event::Revoke => {}
        }
    }

    /// Reads the audit log's writes, failures and health (both binaries,
    /// at each scrape).
    pub fn read_audit(&self, log: &crate::audit::AuditLog) {
        let stats = log.stats();
        catch_up(&self.audit_records, stats.records_written);
        catch_up(&self.audit_failures, stats.failures);
        self.audit_healthy.set(i64::from(log.healthy()));
    }

    /// Reads the reload counts of the ingress and egress policies and the
    /// credentials (both binaries, at each scrape).
    pub fn read_reloads(
        &self,
        policy: &crate::policy::PolicyHandle,
        egress_policy: &crate::policy::PolicyHandle,
        credentials: &crate::credentials::Credentials,
    ) {
        for (what, ok, failed) in [
            ("policy", policy.reloads(), policy.failures()),
            (
                "egress_policy",
                egress_policy.reloads(),
                egress_policy.failures(),
            ),
            ("credentials", credentials.reloads(), credentials.failures()),
        ] {
            catch_up(&self.reloads.with_label_values(&[what, "ok"]), ok);
            catch_up(&self.reloads.with_label_values(&[what, "error"]), failed);
        }
    }

    /// Sets the QUIC gauges of `peer` from its live connections.
    pub fn set_quic<'c>(&self, peer: &str, conns: impl IntoIterator<Item = &'c quinn::Connection>) {
        let (mut rtt, mut cwnd, mut lost) = (0f64, 0u64, 0u64);
        for c in conns {
            let stats = c.stats();
            rtt = rtt.max(stats.path.rtt.as_secs_f64());
            cwnd = cwnd.saturating_add(stats.path.cwnd);
            lost = lost.saturating_add(stats.path.lost_packets);
        }
        self.quic_rtt.with_label_values(&[peer]).set(rtt);
        self.quic_cwnd
            .with_label_values(&[peer])
            .set(i64::try_from(cwnd).unwrap_or(i64::MAX));
        self.quic_lost
            .with_label_values(&[peer])
            .set(i64::try_from(lost).unwrap_or(i64::MAX));
    }

    /// Forgets every per-peer gauge, before a refresh sets the live ones
    /// (a peer that left must not linger at its last value).
    pub fn reset_peers(&self) {
        self.connections.reset();
        self.quic_rtt.reset();
        self.quic_cwnd.reset();
        self.quic_lost.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditDecision, Direction};

    #[test]
    fn a_stream_is_counted_at_open_and_close_and_rendered() {
        let m = Metrics::new("edge").unwrap();
        let mut e = AuditEvent {
            direction: Direction::Ingress,
            tunnel: "demo".into(),
            service: "echo".into(),
            method: "POST".into(),
            decision: Some(AuditDecision::Allow),
            rule: Some("dev".into()),
            ..AuditEvent::default()
        };
        m.observe(&e);
        assert_eq!(m.streams_in_flight.with_label_values(&["ingress"]).get(), 1);
        e.event = Event::Close;
        e.http_status = Some(200);
        e.duration_ms = Some(3);
        e.bytes_in = Some(100);
        e.bytes_out = Some(120);
        m.observe(&e);
        assert_eq!(m.streams_in_flight.with_label_values(&["ingress"]).get(), 0);
        let text = m.render();
        for line in [
            r#"tether_streams_opened_total{decision="allow",direction="ingress",kind="http",service="echo",tunnel="demo",side="edge"} 1"#,
            r#"tether_streams_closed_total{direction="ingress",kind="http",outcome="ok",service="echo",tunnel="demo",side="edge"} 1"#,
            r#"tether_policy_decisions_total{decision="allow",direction="ingress",rule="dev",side="edge"} 1"#,
            r#"tether_stream_bytes_total{direction="ingress",way="in",side="edge"} 100"#,
            r#"tether_stream_duration_seconds_count{direction="ingress",kind="http",side="edge"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn a_refusal_counts_its_cause_not_its_names() {
        let m = Metrics::new("edge").unwrap();
        let e = AuditEvent {
            tunnel: "typo-of-a-tunnel".into(),
            decision: Some(AuditDecision::Refuse),
            reason: Some("unknown-tunnel".into()),
            ..AuditEvent::default()
        };
        m.observe(&e);
        let text = m.render();
        assert!(text.contains(
            r#"tether_refusals_total{cause="unknown-tunnel",direction="ingress",side="edge"} 1"#
        ));
        assert!(!text.contains("typo-of-a-tunnel"));
    }

    #[test]
    fn a_counter_catches_up_and_never_goes_down() {
        let m = Metrics::new("edge").unwrap();
        catch_up(&m.audit_records, 5);
        catch_up(&m.audit_records, 3);
        assert_eq!(m.audit_records.get(), 5);
    }

    #[test]
    fn every_family_is_named() {
        let m = Metrics::new("edge").unwrap();
        let names = m.names();
        assert_eq!(names.len(), 21, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("tether_")));
        assert!(names.contains(&"tether_audit_flush_duration_seconds".to_string()));
    }

    #[test]
    fn refreshers_run_at_each_scrape() {
        let m = Metrics::new("client").unwrap();
        m.on_scrape(Box::new(|m: &Metrics| m.audit_healthy.set(1)));
        assert!(m
            .render()
            .contains("tether_audit_healthy{side=\"client\"} 1"));
    }
}
