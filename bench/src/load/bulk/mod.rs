//! The `bulk` scenario's transfers: [`caller`]s move HTTP/2 bodies
//! ([`http`]) or raw QUIC streams for the ceiling ([`quic`]); what every
//! transfer shares is in [`transfer`].

pub mod caller;
pub mod http;
pub mod quic;
pub mod transfer;
