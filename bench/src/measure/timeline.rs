//! Throughput over time: a [`Sampler`] reads the successful-call counter
//! every [`INTERVAL`] while a measurement runs and keeps one [`Timeline`]
//! sample per interval, so the report can chart whether a path held its
//! rate or stalled part-way (which the summary's one average hides).
//!
//! Samples carry the time they were actually taken, not the nominal tick:
//! on a saturated machine the sampler's own wake-ups are late too, and a
//! rate divided by the nominal interval would then be wrong.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::measure::progress::Counters;

/// How often the sampler reads the counter: fine enough to show a stall of
/// a second, coarse enough that an hour-long run keeps 14,400 samples per
/// path (memory grows by one sample per interval, nothing per call).
pub const INTERVAL: Duration = Duration::from_millis(250);

/// Successful calls per sampling interval over one measurement, or over
/// several measurements of the same path placed back to back.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timeline {
    /// End of each interval, ms since the start of the (first)
    /// measurement; a later round starts where the previous one ended.
    pub end_ms: Vec<u64>,
    /// Calls that succeeded in each interval.
    pub count: Vec<u64>,
}

impl Timeline {
    /// Records `count` calls in the interval ending at `end`.
    pub fn push(&mut self, end: Duration, count: u64) {
        self.end_ms.push(duration_ms(end));
        self.count.push(count);
    }

    /// Records the last, usually partial, interval ending at `end`. One much
    /// shorter than [`INTERVAL`] is folded into the previous sample: its
    /// rate, a handful of calls over a few milliseconds, would be noise.
    pub fn push_last(&mut self, end: Duration, count: u64) {
        let end_ms = duration_ms(end);
        let start_ms = self.end_ms.last().copied().unwrap_or(0);
        let short = end_ms.saturating_sub(start_ms) < duration_ms(INTERVAL) / 2;
        match (self.end_ms.last_mut(), self.count.last_mut()) {
            (Some(last_end), Some(last_count)) if short => {
                *last_end = end_ms;
                *last_count += count;
            }
            _ => self.push(end, count),
        }
    }

    /// Appends `other`, shifted to start at `offset` (where this timeline's
    /// measurements ended), so rounds of one path read as one run.
    pub fn append(&mut self, other: &Timeline, offset: Duration) {
        let offset = duration_ms(offset);
        self.end_ms
            .extend(other.end_ms.iter().map(|t| t.saturating_add(offset)));
        self.count.extend_from_slice(&other.count);
    }

    /// True when no interval was recorded.
    pub fn is_empty(&self) -> bool {
        self.count.is_empty()
    }

    /// `(end of interval in s, calls per second in it)` for each interval;
    /// an interval of zero length (clock granularity) is skipped.
    pub fn rates(&self) -> Vec<(f64, f64)> {
        let mut start = 0u64;
        let mut out = Vec::with_capacity(self.count.len());
        for (&end, &count) in self.end_ms.iter().zip(&self.count) {
            // Appended rounds restart from their own offset, never earlier.
            let length = end.saturating_sub(start);
            if length > 0 {
                out.push((end as f64 / 1e3, count as f64 * 1e3 / length as f64));
            }
            start = end;
        }
        out
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A running sampler; [`Sampler::finish`] stops it and returns the
/// timeline. Dropping it without finishing (a failed measurement) stops the
/// task too.
pub struct Sampler {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Timeline>,
}

impl Sampler {
    /// Starts sampling `counters.done` every [`INTERVAL`]. It runs whatever
    /// the progress line does (`--quiet` included): the report needs it.
    pub fn start(counters: Arc<Counters>) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        // Owned by the handle: finished or aborted by it.
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval_at(started + INTERVAL, INTERVAL);
            // After a late wake-up, keep the spacing rather than catching up
            // with a burst of near-empty samples.
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut timeline = Timeline::default();
            let mut seen = 0;
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                let done = Counters::get(&counters.done);
                let count = done.saturating_sub(seen);
                seen = done;
                if last {
                    timeline.push_last(started.elapsed(), count);
                    return timeline;
                }
                timeline.push(started.elapsed(), count);
            }
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops sampling, records the last partial interval and returns the
    /// timeline (empty if the task failed, which only a panic could cause).
    pub async fn finish(mut self) -> Timeline {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_last_interval_is_folded_into_the_previous_one() {
        let mut t = Timeline::default();
        t.push(Duration::from_millis(250), 100);
        t.push_last(Duration::from_millis(260), 4);
        assert_eq!(t.end_ms, [260]);
        assert_eq!(t.count, [104]);
        t.push_last(Duration::from_millis(500), 90);
        assert_eq!(t.end_ms, [260, 500]);
    }

    #[test]
    fn a_lone_short_interval_is_kept() {
        let mut t = Timeline::default();
        t.push_last(Duration::from_millis(40), 7);
        assert_eq!(t.count, [7]);
        assert_eq!(t.rates(), [(0.04, 175.0)]);
    }

    #[test]
    fn rounds_append_back_to_back_and_rates_are_per_second() {
        let mut round = Timeline::default();
        round.push(Duration::from_millis(250), 50);
        round.push(Duration::from_millis(500), 25);
        let mut all = Timeline::default();
        all.append(&round, Duration::ZERO);
        all.append(&round, Duration::from_millis(500));
        assert_eq!(all.end_ms, [250, 500, 750, 1000]);
        assert_eq!(
            all.rates(),
            [(0.25, 200.0), (0.5, 100.0), (0.75, 200.0), (1.0, 100.0)]
        );
    }

    #[test]
    fn zero_length_intervals_give_no_rate() {
        let t = Timeline {
            end_ms: vec![0, 0, 10],
            count: vec![3, 1, 1],
        };
        assert_eq!(t.rates(), [(0.01, 100.0)]);
    }

    #[tokio::test]
    async fn the_sampler_counts_every_call_once() {
        let counters = Arc::new(Counters::default());
        let sampler = Sampler::start(counters.clone());
        // Spread over more than one interval; how the calls fall into
        // intervals depends on the clock, their sum does not.
        for _ in 0..10 {
            Counters::bump(&counters.done);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        let t = sampler.finish().await;
        assert_eq!(t.count.iter().sum::<u64>(), 10, "{t:?}");
        assert!(t.count.len() >= 2, "more than one interval: {t:?}");
        assert!(t.end_ms.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    }
}
