//! A small report with made-up figures, for the unit tests of the modules
//! that draw and write reports (charts, markdown, the report directory),
//! so each test does not build one of its own.

use std::time::Duration;

use crate::measure::measurement::{self, Measurement};
use crate::report::model::{Report, Row};

/// A `unary`-like report of three rows (`direct`, `tunnel`, `ceiling`),
/// two rounds each, with a ceiling and one warning (the tunnel had errors).
pub(crate) fn report() -> Report {
    let rows = [
        ("direct", 1_000u64, 0u64),
        ("tunnel", 8_000, 3),
        ("ceiling", 600, 0),
    ]
    .into_iter()
    .map(|(label, median_us, errors)| {
        let mut merged = Measurement::new();
        for _ in 0..2 {
            let mut m = Measurement::new();
            for i in 0..5_000 {
                let us = median_us / 2 + (i % 100) * median_us / 100 + i / 4_999 * 40_000;
                measurement::record(&mut m.hist, Duration::from_micros(us));
            }
            m.calls = 5_000;
            m.errors = errors;
            m.elapsed = Duration::from_secs(1);
            m.cpu = Duration::from_millis(200);
            for t in 1..=4 {
                m.timeline
                    .push(Duration::from_millis(250 * t), 1_250 - t * 10);
            }
            merged.merge(&m);
        }
        Row::new(label, &merged)
    })
    .collect();
    let settings = serde_json::json!({ "paths": ["direct", "tunnel", "ceiling"], "rounds": 2 });
    Report::new("unary", settings, rows).with_ceiling("ceiling")
}
