//! Measurements for bench that production does not need: per-stage call
//! timing ([`stages`], `--stage-timing`) and heap allocation counts
//! ([`allocations`], the `count-allocations` build feature). Both are
//! served at `/metrics` only when on, so bench can tell from a scrape
//! whether a process measures them (docs/performance.md).

pub mod allocations;
pub mod stages;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, IntCounter, IntCounterVec, Opts};

/// Serves the probes' totals at each scrape, read from the process-wide
/// counters they keep (nothing is registered per call).
#[derive(Debug, Default)]
pub struct ProbeCollector;

impl Collector for ProbeCollector {
    fn desc(&self) -> Vec<&Desc> {
        // Families appear and disappear with the probes being on; an
        // unchecked collector (no descriptors) is what allows that.
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        if stages::enabled() {
            out.extend(stage_families());
        }
        if let Some(a) = allocations::counts() {
            out.extend(allocation_families(a));
        }
        out
    }
}

fn stage_families() -> Vec<MetricFamily> {
    let seconds = CounterVec::new(
        Opts::new(
            "tether_stage_seconds_total",
            "Time calls spent in each stage at this end (--stage-timing).",
        ),
        &["stage"],
    );
    let marks = IntCounterVec::new(
        Opts::new(
            "tether_stage_calls_total",
            "Calls that passed through each stage at this end (--stage-timing).",
        ),
        &["stage"],
    );
    let (Ok(seconds), Ok(marks)) = (seconds, marks) else {
        return Vec::new();
    };
    for t in stages::totals().into_iter().filter(|t| t.marks > 0) {
        let stage = format!("{}.{}", t.role.name(), t.step.name());
        seconds
            .with_label_values(&[&stage])
            .inc_by(t.nanos as f64 / 1e9);
        marks.with_label_values(&[&stage]).inc_by(t.marks);
    }
    let mut out = seconds.collect();
    out.extend(marks.collect());
    out
}

fn allocation_families(a: allocations::Allocations) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    for (name, help, value) in [
        (
            "tether_allocations_total",
            "Heap allocations since start (count-allocations build).",
            a.allocations,
        ),
        (
            "tether_reallocations_total",
            "Heap reallocations since start (count-allocations build).",
            a.reallocations,
        ),
        (
            "tether_allocated_bytes_total",
            "Bytes allocated since start (count-allocations build).",
            a.bytes,
        ),
    ] {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(value);
            out.extend(c.collect());
        }
    }
    out
}
