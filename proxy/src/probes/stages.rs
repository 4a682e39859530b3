//! Where a call's time goes, stage by stage, at each end: bench's latency
//! breakdown (docs/performance.md, "Latency breakdown").
//!
//! A [`StageClock`] travels with the stream's admission (from
//! [`crate::admission::Pending`] to the [`crate::admission::Admitted`] the
//! response body owns); each [`Step`] adds the time since the previous one
//! to a process-wide sum. Off unless [`enable`]d at start
//! (`--stage-timing`): then every mark is one branch on a `None`, and no
//! clock is read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Which end of the tunnel stream a clock times: the steps differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that opens the tunnel stream for its caller (the edge for
    /// ingress, the client for egress).
    Opener,
    /// The end that accepts it and reaches the service.
    Acceptor,
}

/// One step of a call. Each is the time from the previous mark (or from
/// the start of admission) to this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Routing, validation, limits and the policy decision.
    Decided,
    /// The open record handed to the audit writer.
    Queued,
    /// A tunnel stream opened (opener; waits for stream credit).
    Stream,
    /// OPEN written while the record is still being made durable (opener).
    OpenSent,
    /// The open record durable.
    Durable,
    /// The opener's AUDITED received: both records durable (acceptor).
    PeerAudited,
    /// AUDITED, the request head and whatever body fitted written (opener).
    RequestSent,
    /// The response head back from the far end (opener): everything the
    /// far end and the hops between did.
    Response,
    /// The service's response head (acceptor): building the request,
    /// the upstream connection, the service's own time.
    Service,
    /// The response head and whatever body fitted written (acceptor),
    /// marked only when the body goes on past them: a response that ended
    /// with its head (a unary gRPC answer) counts all of it in
    /// [`Step::Finished`].
    ResponseSent,
    /// The rest of the response body, to the stream's end.
    Finished,
}

impl Step {
    /// Every step, in a call's order.
    pub const ALL: [Step; 11] = [
        Step::Decided,
        Step::Queued,
        Step::Stream,
        Step::OpenSent,
        Step::Durable,
        Step::PeerAudited,
        Step::RequestSent,
        Step::Response,
        Step::Service,
        Step::ResponseSent,
        Step::Finished,
    ];

    /// The step's name in the `stage` label.
    pub fn name(self) -> &'static str {
        match self {
            Step::Decided => "decided",
            Step::Queued => "queued",
            Step::Stream => "stream",
            Step::OpenSent => "open_sent",
            Step::Durable => "durable",
            Step::PeerAudited => "peer_audited",
            Step::RequestSent => "request_sent",
            Step::Response => "response",
            Step::Service => "service",
            Step::ResponseSent => "response_sent",
            Step::Finished => "finished",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Role {
    /// The role's prefix in the `stage` label.
    pub fn name(self) -> &'static str {
        match self {
            Role::Opener => "open",
            Role::Acceptor => "accept",
        }
    }

    fn index(self) -> usize {
        match self {
            Role::Opener => 0,
            Role::Acceptor => 1,
        }
    }
}

const SLOTS: usize = 2 * Step::ALL.len();

static ENABLED: AtomicBool = AtomicBool::new(false);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static NANOS: [AtomicU64; SLOTS] = [ZERO; SLOTS];
static MARKS: [AtomicU64; SLOTS] = [ZERO; SLOTS];

fn slot(role: Role, step: Step) -> usize {
    role.index() * Step::ALL.len() + step.index()
}

/// Turns stage timing on for this process (before any call starts).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// True once [`enable`]d: `/metrics` then carries the stage families.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The totals so far of one stage: nanoseconds spent in it and how many
/// calls passed through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Which end.
    pub role: Role,
    /// Which step.
    pub step: Step,
    /// Time spent in the step over all calls, in nanoseconds.
    pub nanos: u64,
    /// Calls that marked the step.
    pub marks: u64,
}

/// Every stage's totals (steps a role never marks stay at zero).
pub fn totals() -> Vec<Totals> {
    [Role::Opener, Role::Acceptor]
        .into_iter()
        .flat_map(|role| {
            Step::ALL.into_iter().map(move |step| {
                let i = slot(role, step);
                Totals {
                    role,
                    step,
                    nanos: NANOS[i].load(Ordering::Relaxed),
                    marks: MARKS[i].load(Ordering::Relaxed),
                }
            })
        })
        .collect()
}

/// One call's clock: the instant of its last mark, `None` when stage
/// timing is off.
#[derive(Debug)]
pub struct StageClock {
    role: Role,
    last: Option<Instant>,
}

impl StageClock {
    /// Starts timing a call at the start of its admission.
    pub fn start(role: Role) -> Self {
        StageClock {
            role,
            last: enabled().then(Instant::now),
        }
    }

    /// Says which end this call is at (admission starts before the
    /// acceptor path says so).
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    /// Adds the time since the last mark to `step`.
    pub fn mark(&mut self, step: Step) {
        if let Some(last) = self.last {
            let now = Instant::now();
            let nanos = u64::try_from(now.duration_since(last).as_nanos()).unwrap_or(u64::MAX);
            let i = slot(self.role, step);
            NANOS[i].fetch_add(nanos, Ordering::Relaxed);
            MARKS[i].fetch_add(1, Ordering::Relaxed);
            self.last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_that_is_off_adds_nothing() {
        // No unit test enables timing, so nothing else marks this slot.
        let i = slot(Role::Opener, Step::Decided);
        let before = MARKS[i].load(Ordering::Relaxed);
        let mut clock = StageClock::start(Role::Opener);
        assert!(clock.last.is_none(), "timing is off unless enabled");
        clock.mark(Step::Decided);
        assert_eq!(MARKS[i].load(Ordering::Relaxed), before);
    }

    #[test]
    fn marks_add_to_the_slot_of_their_role_and_step() {
        let i = slot(Role::Acceptor, Step::Service);
        let before = (
            NANOS[i].load(Ordering::Relaxed),
            MARKS[i].load(Ordering::Relaxed),
        );
        let start = Instant::now();
        let mut clock = StageClock {
            role: Role::Opener,
            last: Some(start),
        };
        clock.set_role(Role::Acceptor);
        std::thread::sleep(std::time::Duration::from_millis(2));
        clock.mark(Step::Service);
        let after = totals()
            .into_iter()
            .find(|t| t.role == Role::Acceptor && t.step == Step::Service)
            .unwrap_or(Totals {
                role: Role::Acceptor,
                step: Step::Service,
                nanos: 0,
                marks: 0,
            });
        assert_eq!(after.marks, before.1 + 1);
        assert!(after.nanos - before.0 >= 2_000_000, "{after:?}");
        let opener = slot(Role::Opener, Step::Service);
        assert_ne!(opener, i);
    }
}
