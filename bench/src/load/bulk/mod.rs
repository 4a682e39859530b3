//! The `bulk` scenario's transfers: [`caller`]s move HTTP/2 bodies
//! ([`http`]) or raw QUIC streams for the ceiling ([`quic`]).

pub mod caller;
pub mod http;
pub mod quic;
