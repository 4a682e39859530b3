//! The `bulk` scenario's raw figures: bytes moved, transfers, time to
//! first byte, CPU and RSS of one measurement (or several merged).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::measure::measurement;
use crate::measure::usage::{self, ProcessUsage};

/// The figures of one bulk measurement (or several of the same direction
/// and path merged).
#[derive(Clone)]
pub struct BulkMeasurement {
    /// Payload bytes moved and verified.
    pub bytes: u64,
    /// Transfers completed (one per stream per measurement).
    pub transfers: u64,
    /// Wall-clock time of the measurements, first request to last byte.
    pub elapsed: Duration,
    /// Time to first byte of each transfer, µs.
    pub ttfb: Histogram<u64>,
    /// CPU of every measured process together over the window(s).
    pub cpu: Duration,
    /// Resident set size of the bench process at the end, KiB.
    pub rss_kib: u64,
    /// Each measured process's CPU and RSS over the window(s).
    pub processes: Vec<ProcessUsage>,
}

impl BulkMeasurement {
    /// An empty measurement.
    pub fn new() -> Self {
        Self {
            bytes: 0,
            transfers: 0,
            elapsed: Duration::ZERO,
            ttfb: measurement::latency_histogram(),
            cpu: Duration::ZERO,
            rss_kib: 0,
            processes: Vec::new(),
        }
    }

    /// Adds `other` (another round of the same direction and path).
    pub fn merge(&mut self, other: &BulkMeasurement) {
        self.bytes += other.bytes;
        self.transfers += other.transfers;
        self.elapsed += other.elapsed;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.ttfb.add(&other.ttfb);
        self.cpu += other.cpu;
        self.rss_kib = self.rss_kib.max(other.rss_kib);
        usage::merge(&mut self.processes, &other.processes);
    }
}

impl Default for BulkMeasurement {
    fn default() -> Self {
        Self::new()
    }
}
