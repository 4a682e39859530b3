//! The emulated tunnels of `bench tunnels`: a [`fleet`] of
//! [`registration`]s with identities from [`identities`], beside a bare
//! [`handshake_ceiling`].

pub mod fleet;
pub mod handshake_ceiling;
pub mod identities;
pub mod registration;
