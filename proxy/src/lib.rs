//! Everything both ends of a Tether tunnel share.
//!
//! - [`admission`]: the one path every stream takes before a byte is
//!   forwarded: decided, audited, admitted or refused.
//! - [`wire`]: the sans-IO protocol codec (frames, limits, error codes).
//! - [`identity`]: SPIFFE IDs and how they are read from certificates.
//! - [`tls`]: rustls configurations and the verifiers that enforce identity.
//! - [`credentials`]: the live certificate, key and trust bundle, reloaded
//!   without dropping connections.
//! - [`forward`]: the HTTP ⇄ tunnel-stream bridge used by edge and client.
//! - [`limits`]: every bound, with its default and why.
//! - [`quota`]: fair shares of calls per tunnel and per caller.
//! - [`lifecycle`]: who owns every task, and shutdown in phases.
//! - [`telemetry`]: logging set-up.
//! - [`ready`]: the `--ready-file` report of bound addresses.

pub mod admin;
pub mod admission;
pub mod audit;
pub mod config;
pub mod credentials;
pub mod forward;
pub mod identity;
pub mod lifecycle;
pub mod limits;
pub mod liveness;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod probes;
pub mod quota;
pub mod ready;
pub mod reset_key;
pub mod revocation;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod udp;
pub mod upstream;
pub mod wire;

pub use identity::SpiffeId;
pub use limits::Limits;
