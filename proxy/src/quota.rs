//! Fair shares of an edge: how many calls one tunnel may have in flight,
//! how many one caller may have in flight, and how fast one caller may
//! start them (a token bucket). A call over any of them is refused at once
//! with a retry-after, before the policy is asked or a byte moves: a
//! flooding caller gets cheap refusals while everyone else's calls keep
//! their latency, and nothing queues without bound.
//!
//! Sans-IO: the clock is passed in, so the arithmetic is tested without
//! waiting. State is one small entry per tunnel with calls in flight and
//! per caller seen recently, bounded by [`QuotaLimits::max_callers`].

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The bounds, from `[limits]`. A zero turns that bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Calls in flight to one tunnel through this edge, over all its
    /// connections (`max_tunnel_streams`).
    pub max_tunnel_streams: u32,
    /// Calls in flight from one caller identity (`max_caller_calls`).
    pub max_caller_calls: u32,
    /// Calls per second one caller may start, on average (`caller_rate`).
    pub caller_rate: u32,
    /// Calls one caller may start at once above its rate (`caller_burst`).
    pub caller_burst: u32,
    /// Distinct callers tracked at once (`max_callers`): bounds the memory
    /// the per-caller state can take.
    pub max_callers: usize,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        Self {
            max_tunnel_streams: 4096,
            max_caller_calls: 1024,
            caller_rate: 0,
            caller_burst: 0,
            max_callers: 65_536,
        }
    }
}

impl QuotaLimits {
    /// The bucket's size: `caller_burst`, or one second of `caller_rate`
    /// when no burst is set.
    fn bucket(&self) -> f64 {
        f64::from(if self.caller_burst > 0 {
            self.caller_burst
        } else {
            self.caller_rate.max(1)
        })
    }

    /// Checks relations single values cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.caller_burst > 0 && self.caller_rate == 0 {
            return Err("caller_burst needs caller_rate (calls per second) above 0".into());
        }
        if self.max_callers == 0 {
            return Err("max_callers must be at least 1".into());
        }
        Ok(())
    }
}

/// Which bound a call went over, with what the caller should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Over {
    /// The tunnel has `limit` calls in flight through this edge.
    TunnelStreams {
        /// The limit.
        limit: u32,
    },
    /// The caller has `limit` calls in flight.
    CallerCalls {
        /// The limit.
        limit: u32,
    },
    /// The caller's bucket is empty; one token is back after `retry_after`.
    CallerRate {
        /// Calls per second.
        rate: u32,
        /// Until a call would be let through.
        retry_after: Duration,
    },
    /// The edge tracks `limit` callers already, all of them busy.
    Callers {
        /// The limit.
        limit: usize,
    },
}

/// Retry-after for bounds that free up as calls finish: calls last
/// milliseconds to seconds, so one second is soon enough to try again and
/// long enough not to spin.
const BUSY_RETRY: Duration = Duration::from_secs(1);

impl Over {
    /// When trying again may succeed.
    pub fn retry_after(&self) -> Duration {
        match self {
            Over::CallerRate { retry_after, .. } => *retry_after,
            _ => BUSY_RETRY,
        }
    }

    /// Stable short name of the bound, for logs and counters.
    pub fn limit_name(&self) -> &'static str {
        match self {
            Over::TunnelStreams { .. } => "max_tunnel_streams",
            Over::CallerCalls { .. } => "max_caller_calls",
            Over::CallerRate { .. } => "caller_rate",
            Over::Callers { .. } => "max_callers",
        }
    }
}

impl fmt::Display for Over {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Over::TunnelStreams { limit } => write!(
                f,
                "the tunnel has {limit} calls in flight through this edge, its limit ([limits] max_tunnel_streams); retry once some finish"
            ),
            Over::CallerCalls { limit } => write!(
                f,
                "this caller has {limit} calls in flight, the most one caller may have ([limits] max_caller_calls); retry once some finish"
            ),
            Over::CallerRate { rate, retry_after } => write!(
                f,
                "this caller starts calls faster than its rate of {rate} per second ([limits] caller_rate); retry in {} ms",
                retry_after.as_millis().max(1)
            ),
            Over::Callers { limit } => write!(
                f,
                "the edge is tracking {limit} busy callers, the most it may ([limits] max_callers); retry shortly"
            ),
        }
    }
}

/// How many calls each bound refused since start, for operators.
#[derive(Debug, Default)]
pub struct Refused {
    /// Over `max_tunnel_streams`.
    pub tunnel_streams: AtomicU64,
    /// Over `max_caller_calls`.
    pub caller_calls: AtomicU64,
    /// Over `caller_rate`.
    pub caller_rate: AtomicU64,
    /// Over `max_callers`.
    pub callers: AtomicU64,
}

impl Refused {
    fn count(&self, over: &Over) {
        let counter = match over {
            Over::TunnelStreams { .. } => &self.tunnel_streams,
            Over::CallerCalls { .. } => &self.caller_calls,
            Over::CallerRate { .. } => &self.caller_rate,
            Over::Callers { .. } => &self.callers,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct CallerState {
    in_flight: u32,
    tokens: f64,
    at: Instant,
}

impl CallerState {
    fn refill(&mut self, limits: &QuotaLimits, now: Instant) {
        if limits.caller_rate == 0 {
            return;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(limits.caller_rate)).min(limits.bucket());
        self.at = now;
    }

    /// Nothing in flight and a full bucket: forgetting it changes nothing.
    fn idle(&self, limits: &QuotaLimits) -> bool {
        self.in_flight == 0 && (limits.caller_rate == 0 || self.tokens >= limits.bucket())
    }
}

/// The shares of one process. Cheap to share (`Arc`); each call takes two
/// short lock holds, one to acquire and one to release.
#[derive(Debug)]
pub struct Quotas {
    limits: QuotaLimits,
    tunnels: Mutex<HashMap<Box<str>, u32>>,
    callers: Mutex<HashMap<Box<str>, CallerState>>,
    refused: Refused,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them: each
    // update is a single counter change.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Quotas {
    /// Shares under `limits`.
    pub fn new(limits: QuotaLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            tunnels: Mutex::default(),
            callers: Mutex::default(),
            refused: Refused::default(),
        })
    }

    /// The bounds in force.
    pub fn limits(&self) -> &QuotaLimits {
        &self.limits
    }

    /// Refusals so far, by bound.
    pub fn refused(&self) -> &Refused {
        &self.refused
    }

    /// Takes one call's share for `caller` to `tunnel` at `now`, or says
    /// which bound it is over (counted). The share is given back when the
    /// guard drops. A refused call takes nothing.
    pub fn acquire(
        self: &Arc<Self>,
        tunnel: &str,
        caller: &str,
        now: Instant,
    ) -> Result<QuotaGuard, Over> {
        let result = self.try_acquire(tunnel, caller, now);
        if let Err(over) = &result {
            self.refused.count(over);
        }
        result
    }

    fn try_acquire(
        self: &Arc<Self>,
        tunnel: &str,
        caller: &str,
        now: Instant,
    ) -> Result<QuotaGuard, Over> {
        let limits = &self.limits;
        let mut tunnels = lock(&self.tunnels);
        let tunnel_in_flight = tunnels.get(tunnel).copied().unwrap_or(0);
        if limits.max_tunnel_streams > 0 && tunnel_in_flight >= limits.max_tunnel_streams {
            return Err(Over::TunnelStreams {
                limit: limits.max_tunnel_streams,
            });
        }
        {
            let mut callers = lock(&self.callers);
            if !callers.contains_key(caller) && callers.len() >= limits.max_callers {
                callers.retain(|_, c| {
                    c.refill(limits, now);
                    !c.idle(limits)
                });
                if callers.len() >= limits.max_callers {
                    return Err(Over::Callers {
                        limit: limits.max_callers,
                    });
                }
            }
            let state = callers
                .entry(Box::from(caller))
                .or_insert_with(|| CallerState {
                    in_flight: 0,
                    tokens: limits.bucket(),
                    at: now,
                });
            state.refill(limits, now);
            if limits.max_caller_calls > 0 && state.in_flight >= limits.max_caller_calls {
                return Err(Over::CallerCalls {
                    limit: limits.max_caller_calls,
                });
            }
            if limits.caller_rate > 0 {
                if state.tokens < 1.0 {
                    let missing = 1.0 - state.tokens;
                    let wait = Duration::from_secs_f64(missing / f64::from(limits.caller_rate));
                    return Err(Over::CallerRate {
                        rate: limits.caller_rate,
                        retry_after: wait.max(Duration::from_millis(1)),
                    });
                }
                state.tokens -= 1.0;
            }
            state.in_flight += 1;
        }
        *tunnels.entry(Box::from(tunnel)).or_insert(0) += 1;
        Ok(QuotaGuard {
            quotas: self.clone(),
            tunnel: Box::from(tunnel),
            caller: Box::from(caller),
        })
    }

    /// Calls in flight to `tunnel`, as counted here.
    pub fn tunnel_in_flight(&self, tunnel: &str) -> u32 {
        lock(&self.tunnels).get(tunnel).copied().unwrap_or(0)
    }

    /// Callers with state held (busy, or refilling their bucket).
    pub fn callers_tracked(&self) -> usize {
        lock(&self.callers).len()
    }

    fn release(&self, tunnel: &str, caller: &str) {
        {
            let mut tunnels = lock(&self.tunnels);
            if let Some(n) = tunnels.get_mut(tunnel) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    tunnels.remove(tunnel);
                }
            }
        }
        let mut callers = lock(&self.callers);
        if let Some(state) = callers.get_mut(caller) {
            state.in_flight = state.in_flight.saturating_sub(1);
            // Without a rate there is nothing to remember about an idle
            // caller; with one, its bucket is forgotten once full again
            // (when the map is next full, see `try_acquire`).
            if state.in_flight == 0 && self.limits.caller_rate == 0 {
                callers.remove(caller);
            }
        }
    }
}

/// One call's share; given back on drop, when the call ends.
#[derive(Debug)]
pub struct QuotaGuard {
    quotas: Arc<Quotas>,
    tunnel: Box<str>,
    caller: Box<str>,
}

impl Drop for QuotaGuard {
    fn drop(&mut self) {
        self.quotas.release(&self.tunnel, &self.caller);
    }
}
