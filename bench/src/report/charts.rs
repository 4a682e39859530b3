//! The report's two charts, drawn from a [`Report`]'s rows with [`crate::report::svg`]:
//! latency across the whole percentile spectrum, where the paths differ
//! most in their tails, and throughput over time, which shows a stall or a
//! slow start that the run's average hides.

use crate::measure::timeline;
use crate::report::model::Report;
use crate::report::svg::{Axis, LineChart, Scale, Series};

/// Latency per row against percentile, on the HDR "percentile spectrum"
/// scale: x is log10(1 / (1 − q)), so 90%, 99%, 99.9% … are evenly spaced
/// and the tail gets as much room as the median. Latency is in ms on a log
/// axis, so a 1 ms median and a 100 ms tail both read.
pub fn latency(report: &Report) -> String {
    let series: Vec<Series> = report
        .rows
        .iter()
        .map(|r| Series {
            name: r.label.clone(),
            points: r
                .spectrum
                .iter()
                .map(|&(q, us)| (spectrum_x(q), us as f64 / 1e3))
                .collect(),
        })
        .collect();
    let widest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    // Whole "nines", at least up to 99%, so the familiar ticks show.
    let nines = widest.ceil().max(2.0);
    let mut x = Axis::new("percentile (log scale of 1/(1 − q))", Scale::Linear);
    x.range = Some((0.0, nines));
    x.ticks = Some(percentile_ticks(nines as u32));
    let subtitle = if report.scenario == "rate" {
        "HDR histograms of successful calls, rounds merged; from each call's intended start; each line ends at its slowest call"
    } else {
        "HDR histograms of successful calls, rounds merged; each line ends at its slowest call"
    };
    LineChart {
        title: format!("Latency by percentile: bench {}", report.scenario),
        subtitle: subtitle.to_string(),
        x,
        y: Axis::new("latency (ms, log scale)", Scale::Log),
        series,
    }
    .render()
}

/// Calls per second over time, one line per row, each row's rounds back to
/// back (x is seconds of that row's own measurement, not wall-clock time
/// of the run, since rows take turns).
pub fn throughput(report: &Report, unit: &str) -> String {
    let series = report
        .rows
        .iter()
        .map(|r| Series {
            name: r.label.clone(),
            points: r.timeline.rates(),
        })
        .collect();
    let rounds = report
        .settings
        .get("rounds")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    let subtitle = format!(
        "successful {unit} per {} ms interval, per second; x is each path's own measurement time{}",
        timeline::INTERVAL.as_millis(),
        if rounds > 1 {
            format!(", its {rounds} rounds back to back")
        } else {
            String::new()
        }
    );
    LineChart {
        title: format!("Throughput over time: bench {}", report.scenario),
        subtitle,
        x: Axis::new("seconds measured", Scale::Linear),
        y: Axis::new(format!("{unit}/s"), Scale::Linear),
        series,
    }
    .render()
}

/// A quantile's position on the spectrum axis; `q` = 1 is at infinity and
/// left out by the chart.
fn spectrum_x(q: f64) -> f64 {
    -(1.0 - q).log10()
}

/// Ticks 0%, 50%, 90%, 99%, 99.9% … up to `nines` nines.
fn percentile_ticks(nines: u32) -> Vec<(f64, String)> {
    let mut ticks = vec![
        (0.0, "0%".to_string()),
        (spectrum_x(0.5), "50%".to_string()),
    ];
    for k in 1..=nines {
        let decimals = k.saturating_sub(2) as usize;
        let percent = 100.0 - 10f64.powi(2 - k as i32);
        ticks.push((f64::from(k), format!("{percent:.decimals$}%")));
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::report;
    use crate::report::svg::tests::check_well_formed;

    #[test]
    fn percentile_ticks_read_as_nines() {
        let labels: Vec<String> = percentile_ticks(4).into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"]);
        assert!((spectrum_x(0.999) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn both_charts_have_a_line_per_row() {
        let report = report();
        for svg in [latency(&report), throughput(&report, "calls")] {
            let seen = check_well_formed(&svg);
            assert_eq!(seen.get("polyline"), Some(&report.rows.len()));
            for row in &report.rows {
                assert!(svg.contains(&format!(">{}</text>", row.label)));
            }
            assert!(!svg.contains("NaN") && !svg.contains("inf"));
        }
    }

    #[test]
    fn rows_without_calls_still_draw() {
        let mut report = report();
        for row in &mut report.rows {
            row.spectrum.clear();
            row.timeline = Default::default();
        }
        for svg in [latency(&report), throughput(&report, "calls")] {
            check_well_formed(&svg);
            assert!(svg.contains("no data"));
        }
    }
}
