//! One measurement's raw figures, and this process's CPU and memory (from
//! [`procfs`](crate::measure::procfs)).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::measure::procfs::Process;
use crate::measure::timeline::Timeline;
use crate::measure::usage::{self, ProcessUsage};

/// Highest latency the histograms hold: a call slower than this is recorded
/// as this (the per-call timeout is lower, so it does not happen).
const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in microseconds, 1 µs to 60 s, three significant
/// digits (0.1% relative error at every percentile).
pub fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, MAX_LATENCY_US, 3) {
        Ok(h) => h,
        // The bounds above are fixed and valid (low ≥ 1, high ≥ 2 × low,
        // sigfig ≤ 5), so this cannot fail; an auto-resizing histogram is
        // a safe fallback all the same.
        Err(_) => Histogram::new(3).unwrap_or_else(|_| unreachable!("sigfig 3 is valid")),
    }
}

/// Records one call's latency.
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Points of the latency distribution `hist` holds, `(quantile, µs)`, for
/// the percentile chart: quantiles spaced evenly in log10(1 / (1 − q)) (20
/// per decade: 0%, 11%, 21% … 90% … 99% …), up to 1 − 1/n for n calls,
/// where the slowest call sits, which ends the list. About 100 points for
/// 100,000 calls; empty for an empty histogram.
pub fn spectrum(hist: &Histogram<u64>) -> Vec<(f64, u64)> {
    const PER_DECADE: f64 = 20.0;
    if hist.is_empty() {
        return Vec::new();
    }
    let last = (hist.len() as f64).log10();
    let mut points: Vec<(f64, u64)> = (0..)
        .map(|i| f64::from(i) / PER_DECADE)
        .take_while(|x| *x < last)
        .map(|x| {
            let q = 1.0 - 10f64.powf(-x);
            (q, hist.value_at_quantile(q))
        })
        .collect();
    points.push((1.0 - 10f64.powf(-last), hist.max()));
    points
}

/// The figures of one measurement (or several merged).
#[derive(Clone)]
pub struct Measurement {
    /// Latency of successful calls, µs.
    pub hist: Histogram<u64>,
    /// Open loop only: how late each call was sent after it fell due, µs
    /// (timer granularity and a busy scheduler). It is part of every
    /// latency above, so it is reported to show the generator's own share.
    pub send_lag: Histogram<u64>,
    /// Calls that succeeded.
    pub calls: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Open loop only: calls that were due but could not start because
    /// `--max-in-flight` calls were already outstanding.
    pub missed: u64,
    /// Calls the open loop scheduled (started or missed).
    pub scheduled: u64,
    /// Wall-clock time of the measurement window.
    pub elapsed: Duration,
    /// CPU (user + system) of every measured process together, used in
    /// the window.
    pub cpu: Duration,
    /// Resident set size of the bench process at the end of the window,
    /// KiB.
    pub rss_kib: u64,
    /// Each measured process's CPU and RSS over the window.
    pub processes: Vec<ProcessUsage>,
    /// Successful calls per sampling interval, rounds back to back.
    pub timeline: Timeline,
}

impl Measurement {
    /// An empty measurement.
    pub fn new() -> Self {
        Self {
            hist: latency_histogram(),
            send_lag: latency_histogram(),
            calls: 0,
            errors: 0,
            missed: 0,
            scheduled: 0,
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            rss_kib: 0,
            processes: Vec::new(),
            timeline: Timeline::default(),
        }
    }

    /// Adds `other` (another round of the same path) to this one.
    pub fn merge(&mut self, other: &Measurement) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        let _ = self.send_lag.add(&other.send_lag);
        self.calls += other.calls;
        self.errors += other.errors;
        self.missed += other.missed;
        self.scheduled += other.scheduled;
        // Before `elapsed` grows: the next round starts where these ended.
        self.timeline.append(&other.timeline, self.elapsed);
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.rss_kib = self.rss_kib.max(other.rss_kib);
        usage::merge(&mut self.processes, &other.processes);
    }
}

impl Default for Measurement {
    fn default() -> Self {
        Self::new()
    }
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
/// Zero where `/proc` is missing.
pub fn process_cpu() -> Duration {
    Process::current("bench").cpu().unwrap_or(Duration::ZERO)
}

/// Current resident set size of this process, KiB.
pub fn rss_kib() -> u64 {
    Process::current("bench").rss_kib().unwrap_or(0)
}

/// Peak resident set size of this process so far (`VmHWM`), KiB.
pub fn peak_rss_kib() -> u64 {
    Process::current("bench").peak_rss_kib().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spectrum_rises_to_the_slowest_call() {
        assert!(spectrum(&latency_histogram()).is_empty());
        let mut hist = latency_histogram();
        for us in 1..=10_000 {
            hist.saturating_record(us);
        }
        let points = spectrum(&hist);
        // Four decades (10,000 calls) at 20 points each, then the max.
        assert_eq!(points.len(), 81);
        assert_eq!(points.first().map(|p| p.0), Some(0.0));
        assert_eq!(points.last().map(|p| p.1), Some(hist.max()));
        assert!(points
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let mut one = latency_histogram();
        one.saturating_record(42);
        assert_eq!(spectrum(&one), [(0.0, 42)]);
    }
}
