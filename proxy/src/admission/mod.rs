//! The one admission path every stream takes, at both ends and in all four
//! flows (ingress HTTP/gRPC, ingress raw TCP, egress HTTP/gRPC, egress
//! CONNECT), so "no byte is forwarded without a decision and a durable open
//! record" is kept by the types instead of by each flow's discipline:
//!
//! ```text
//! Pending ──refuse(error)──────────────────────────────▶ Refusal (audited)
//!    │
//!    └─decide(policy, subject)─▶ Permit ─(open record durable)─▶ Admitted
//!                                  │                               │
//!                                  └─ denied ──────────────▶ Refusal (audited)
//! ```
//!
//! - A [`Pending`] is a stream that has been parsed but not decided; the
//!   flow routes it (its own business) and either refuses it or has it
//!   decided. Every refusal is audited (an `open` record with decision
//!   `refuse`/`deny`, then its `close`) and carries its [`CallError`], the
//!   one table of statuses.
//! - Deciding evaluates the policy ([`crate::policy::authorize`], the only
//!   maker of a [`Permit`]); opening the audit record consumes the permit
//!   and, once the record is durable, yields [`Admitted`], which owns the
//!   stream's close record. The opening end takes the [`Recording`] in
//!   between ([`Pending::decide_early`]): it may send OPEN while its
//!   record is made durable, and nothing else.
//! - Every forwarding primitive — opening the tunnel stream
//!   ([`crate::forward::open::open_call`], [`crate::forward::open::open_tcp`]),
//!   sending to an upstream ([`crate::upstream::Upstream::send`],
//!   [`crate::upstream::Upstream::connect_tcp`]), bridging TCP
//!   ([`crate::forward::tcp::bridge`]), pumping a body
//!   ([`crate::forward::pump_body`], which takes only bodies made from an
//!   `Admitted`) — requires an `Admitted`. `tests/compile_fail` shows that
//!   skipping it does not compile.
//!
//! Audit fields are built in one place ([`fields`]), bounded alike.

pub mod fields;
pub mod validate;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::Response;

pub use fields::StreamFields;

use crate::audit::stream::{OpenTrail, Trail};
use crate::audit::writer::Receipt;
use crate::audit::{AuditDecision, AuditLog, Direction, Ending};
use crate::forward::{CallError, HttpBody};
use crate::lifecycle::Lifecycle;
use crate::policy::{authorize, Decision, Outcome, Permit, PolicyHandle, Subject};
use crate::probes::stages::{Role, StageClock, Step};

/// Whose policy decides, for the words of a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOwner {
    /// The edge's ingress policy.
    Edge,
    /// The tunnel client's own policy (the data-plane owner's veto).
    Tunnel,
    /// The edge's egress policy.
    EdgeEgress,
    /// The tunnel client's egress policy.
    TunnelEgress,
}

impl PolicyOwner {
    /// The refusal a call gets once this side is shutting down.
    fn draining(self) -> CallError {
        let reason = match self {
            PolicyOwner::Edge | PolicyOwner::EdgeEgress => {
                "the edge is shutting down and takes no new calls; retry (another edge, or this one once restarted, takes the call)"
            }
            PolicyOwner::Tunnel | PolicyOwner::TunnelEgress => {
                "the tunnel client is shutting down and takes no new calls; retry (another connection of the tunnel, or this client once restarted, takes the call)"
            }
        };
        CallError::Draining {
            reason: reason.to_string(),
        }
    }

    fn possessive(self) -> &'static str {
        match self {
            PolicyOwner::Edge => "the edge's policy",
            PolicyOwner::Tunnel => "the tunnel's policy",
            PolicyOwner::EdgeEgress => "the edge's egress policy",
            PolicyOwner::TunnelEgress => "this tunnel's egress policy",
        }
    }

    /// The reason a denial gives: the rule, or the default deny. Names
    /// nothing internal beyond the rule id.
    pub fn denial(self, decision: &Decision) -> String {
        match decision.rule() {
            Some(rule) => format!("{} rule '{rule}' denies this call", self.possessive()),
            None => format!("{} allows no such call (default deny)", self.possessive()),
        }
    }
}

/// A stream parsed but not yet decided. Its audit trail has written
/// nothing; it ends as a [`Refusal`] or an [`Admitted`].
pub struct Pending {
    trail: Trail,
    life: Lifecycle,
    grpc: bool,
    direction: Direction,
    kept: Option<Kept>,
    clock: StageClock,
}

/// Something a stream holds for its whole life (a fair share of the
/// edge, see [`crate::quota`]).
type Kept = Box<dyn Send + Sync>;

impl Pending {
    /// Starts a stream's admission. `grpc` decides how its refusals are
    /// answered (trailers-only status or plain HTTP status); `life` is the
    /// process's lifecycle: once it drains, deciding refuses.
    pub fn new(log: &AuditLog, life: &Lifecycle, grpc: bool, fields: StreamFields<'_>) -> Self {
        Self {
            trail: Trail::new(log.clone(), fields.event()),
            life: life.clone(),
            grpc,
            direction: fields.direction,
            kept: None,
            clock: StageClock::start(Role::Opener),
        }
    }

    /// Keeps `value` until the stream ends, refused or admitted: the edge
    /// holds the call's fair share ([`crate::quota::QuotaGuard`]) here.
    pub fn keep(&mut self, value: impl Send + Sync + 'static) {
        self.kept = Some(Box::new(value));
    }

    /// Records the service (or upstream) once the flow has routed.
    pub fn set_service(&mut self, service: &str) {
        let service = fields::bounded_name(service);
        tracing::Span::current().record("service", service.as_str());
        self.trail.base_mut().service = service;
    }

    /// Records the tunnel (a SPIFFE ID) once the flow has routed.
    pub fn set_tunnel(&mut self, tunnel: &str) {
        let tunnel = fields::bounded_name(tunnel);
        tracing::Span::current().record("tunnel", tunnel.as_str());
        self.trail.base_mut().tunnel = tunnel;
    }

    /// Replaces the recorded path (raw TCP has none of its own).
    pub fn set_path(&mut self, path: &str) {
        self.trail.base_mut().path = fields::bounded(path, fields::MAX_AUDIT_PATH);
    }

    /// Refuses the stream before any policy decided: an `open` record with
    /// decision `refuse` and the error's code as reason, then its `close`.
    pub async fn refuse(self, error: CallError) -> Refusal {
        let grpc = self.grpc;
        let opened = self
            .trail
            .open(AuditDecision::Refuse, None, Some(error.code().to_string()))
            .await;
        finish_refusal(opened.ok(), error, grpc).await
    }

    /// Decides the stream with `policy` on `subject`; if allowed, writes
    /// its open record and returns [`Admitted`] once it is durable. A
    /// denial is audited (`deny` or the rule) and refused with 403 /
    /// PERMISSION_DENIED; an open record that cannot be written refuses
    /// with 503 / UNAVAILABLE (fail closed). Once the process drains,
    /// every stream is refused here with the retryable `draining`
    /// (503 / UNAVAILABLE) before any policy is asked.
    pub async fn decide(
        mut self,
        policy: &PolicyHandle,
        subject: &Subject<'_>,
        owner: PolicyOwner,
    ) -> Result<Admitted, Refusal> {
        // Only the accepting end decides and waits in one step.
        self.clock.set_role(Role::Acceptor);
        self.decide_early(policy, subject, owner)
            .await?
            .durable()
            .await
    }

    /// [`Pending::decide`] for the end that opens the tunnel stream: an
    /// allowed stream comes back as soon as its open record is queued, as
    /// a [`Recording`], so the opener can send OPEN while the record is
    /// made durable and the far end makes its own durable at the same
    /// time. Nothing of the caller's reaches the far end before
    /// [`Recording::durable`].
    pub async fn decide_early(
        mut self,
        policy: &PolicyHandle,
        subject: &Subject<'_>,
        owner: PolicyOwner,
    ) -> Result<Recording, Refusal> {
        if self.life.is_draining() {
            return Err(self.refuse(owner.draining()).await);
        }
        let decision = authorize(policy, subject);
        self.clock.mark(Step::Decided);
        match decision {
            Ok(permit) => self.admit(permit).await,
            Err(decision) => {
                let error = CallError::Denied {
                    reason: owner.denial(&decision),
                };
                let grpc = self.grpc;
                let opened = self
                    .trail
                    .open(
                        AuditDecision::Deny,
                        decision.rule(),
                        Some(error.to_string()),
                    )
                    .await;
                Err(finish_refusal(opened.ok(), error, grpc).await)
            }
        }
    }

    /// Queues the open record for a permitted stream, consuming the
    /// permit; `Admitted` comes from the [`Recording`] once the record is
    /// durable.
    async fn admit(mut self, permit: Permit) -> Result<Recording, Refusal> {
        let base = self.trail.base_mut();
        base.caller = fields::bounded_name(permit.caller());
        base.tunnel = fields::bounded_name(permit.tunnel());
        base.service = fields::bounded_name(permit.service());
        let decision = match permit.decision().outcome() {
            Outcome::WouldDeny => AuditDecision::WouldDeny,
            Outcome::Allow | Outcome::Deny => AuditDecision::Allow,
        };
        let Pending {
            trail,
            life,
            grpc,
            direction,
            kept,
            mut clock,
        } = self;
        match trail
            .open_queued(decision, permit.decision().rule(), None)
            .await
        {
            Ok((trail, receipt)) => {
                clock.mark(Step::Queued);
                Ok(Recording {
                    receipt: Some(receipt),
                    admitted: Admitted {
                        trail,
                        permit,
                        life,
                        grpc,
                        direction,
                        held: None,
                        _kept: kept,
                        clock,
                    },
                })
            }
            Err(e) => Err(audit_failed(&e, grpc)),
        }
    }
}

/// The refusal of a stream whose open record could not be written.
fn audit_failed(e: &crate::audit::AuditError, grpc: bool) -> Refusal {
    Refusal {
        error: CallError::Unavailable {
            reason: format!("the audit log cannot be written ({e}); refusing to forward unaudited"),
        },
        grpc,
    }
}

/// A stream allowed and its open record queued, not yet known durable:
/// what an opener holds while it sends OPEN (which carries nothing of the
/// caller's beyond what the record names). The far end reaches its
/// service only after the AUDITED frame, sent once [`Recording::durable`]
/// yields the [`Admitted`] every body byte requires. A call the edge
/// sends again on another connection is a `Recording` made from its
/// `Admitted`, already durable.
pub struct Recording {
    admitted: Admitted,
    /// `None` once the open record is known durable.
    receipt: Option<Receipt>,
}

impl From<Admitted> for Recording {
    fn from(admitted: Admitted) -> Self {
        Recording {
            admitted,
            receipt: None,
        }
    }
}

impl Recording {
    /// True once the open record is known durable: OPEN and AUDITED can
    /// then go together.
    pub fn is_durable(&self) -> bool {
        self.receipt.is_none()
    }

    /// What the policy allowed: the OPEN frame names exactly that.
    pub fn permit(&self) -> &Permit {
        self.admitted.permit()
    }

    /// Which way the stream goes.
    pub fn direction(&self) -> Direction {
        self.admitted.direction()
    }

    /// The stream id its audit records carry, for spans.
    pub fn stream_id(&self) -> u64 {
        self.admitted.stream_id()
    }

    /// The request id both ends' records carry.
    pub fn request_id(&self) -> &str {
        self.admitted.request_id()
    }

    /// See [`Admitted::hold`].
    pub fn hold(&mut self, value: impl Send + Sync + 'static) {
        self.admitted.hold(value);
    }

    /// Marks the end of an opening step ([`Admitted::mark`]).
    pub fn mark(&mut self, step: Step) {
        self.admitted.mark(step);
    }

    /// Waits until the open record is durable (per the log's mode). A
    /// record that could not be written refuses the stream with 503 /
    /// UNAVAILABLE, and the stream then has no close record either.
    pub async fn durable(self) -> Result<Admitted, Refusal> {
        let Recording {
            mut admitted,
            receipt,
        } = self;
        let Some(receipt) = receipt else {
            return Ok(admitted);
        };
        match admitted.trail.settle_open(receipt).await {
            Ok(_) => {
                admitted.clock.mark(Step::Durable);
                Ok(admitted)
            }
            Err(e) => Err(audit_failed(&e, admitted.grpc)),
        }
    }

    /// Refuses the stream before it was sent: once the open record is
    /// settled, its close record carries the refusal.
    pub async fn refuse(self, error: CallError) -> Refusal {
        match self.durable().await {
            Ok(admitted) => admitted.refuse(error).await,
            Err(refusal) => refusal,
        }
    }
}

/// Sets a refusal's ending on its trail (if its open record was written)
/// and closes it.
async fn finish_refusal(trail: Option<OpenTrail>, error: CallError, grpc: bool) -> Refusal {
    if let Some(mut trail) = trail {
        set_refused(trail.ending_mut(), &error, grpc);
        trail.close().await;
    }
    Refusal { error, grpc }
}

fn set_refused(ending: &mut Ending, error: &CallError, grpc: bool) {
    // The status of the outcome (a gRPC caller saw 200 carrying
    // grpc-status); both ends record the same value for one refusal.
    ending.http_status = Some(error.http_status().as_u16());
    ending.grpc_status = grpc.then(|| error.grpc_code());
    ending.error = Some(error.to_string());
}

/// A stream decided on, allowed, and recorded durably: what every
/// forwarding primitive requires. Owns the stream's close record, written
/// when this (or the body it moved into) ends. Made only by
/// [`Pending::decide`]; not `Clone`.
pub struct Admitted {
    trail: OpenTrail,
    permit: Permit,
    life: Lifecycle,
    grpc: bool,
    direction: Direction,
    held: Option<Box<dyn Send + Sync>>,
    _kept: Option<Kept>,
    clock: StageClock,
}

impl Admitted {
    /// Keeps `value` until the stream ends (this `Admitted` is dropped
    /// when its close record is written): the edge holds its choice of
    /// tunnel connection here, so the call counts as in flight on it for
    /// the call's whole life, response body included.
    pub fn hold(&mut self, value: impl Send + Sync + 'static) {
        self.held = Some(Box::new(value));
    }

    /// What the policy allowed: forwarding goes exactly there.
    pub fn permit(&self) -> &Permit {
        &self.permit
    }

    /// The lifecycle the stream belongs to: work it spawns (a request body
    /// pump, a TCP bridge) is one of its calls.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.life
    }

    /// Which way the stream goes.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// True for gRPC calls (refusals answer with a gRPC status).
    pub fn grpc(&self) -> bool {
        self.grpc
    }

    /// The stream id its audit records carry, for spans.
    pub fn stream_id(&self) -> u64 {
        self.trail.stream_id()
    }

    /// The request id both ends' records carry.
    pub fn request_id(&self) -> &str {
        self.trail.request_id()
    }

    /// Marks the end of a forwarding step, for bench's latency
    /// breakdown ([`crate::probes::stages`]; nothing unless it is on).
    pub fn mark(&mut self, step: Step) {
        self.clock.mark(step);
    }

    /// How the stream ended so far, for its close record.
    pub fn ending_mut(&mut self) -> &mut Ending {
        self.trail.ending_mut()
    }

    /// Refuses the stream after it was admitted (the service does not
    /// exist, is unreachable, timed out; the far end refused): the close
    /// record carries the refusal.
    pub async fn refuse(mut self, error: CallError) -> Refusal {
        set_refused(self.trail.ending_mut(), &error, self.grpc);
        self.trail.close().await;
        Refusal {
            error,
            grpc: self.grpc,
        }
    }

    /// Writes the close record now (with what [`Admitted::ending_mut`]
    /// set) and waits for it.
    pub async fn close(self) {
        self.trail.close().await;
    }

    /// Counts bytes from the caller (the request body; for TCP, the
    /// caller's side of the connection).
    pub(crate) fn count_in(&mut self, counter: Arc<AtomicU64>) {
        self.trail.count_in(counter);
    }

    /// Counts bytes towards the caller.
    pub(crate) fn count_out(&mut self, counter: Arc<AtomicU64>) {
        self.trail.count_out(counter);
    }
}

/// A refused stream, already audited: answer it with [`Refusal::to_response`]
/// (HTTP callers) or [`Refusal::error`]'s REFUSE frame (tunnel streams).
/// Made only by the admission path, so no refusal skips its record.
#[derive(Debug)]
pub struct Refusal {
    error: CallError,
    grpc: bool,
}

impl Refusal {
    /// Why, with its place in the one status table.
    pub fn error(&self) -> &CallError {
        &self.error
    }

    /// The response an HTTP caller gets, with its `tether-error`.
    pub fn to_response(&self) -> Response<HttpBody> {
        self.error.to_response(self.grpc)
    }
}
