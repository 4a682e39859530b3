//! Measurements turned into figures, and figures into documents.
//!
//! - [`model`]: the figures of `unary`, `rate`, `audit` and the rows of
//!   `tunnels`, and their JSON document; [`table`] is their summary table
//!   for the terminal.
//! - [`bulk`]: the `bulk` scenario's figures.
//! - [`tunnels`]: the `tunnels` scenario's document; its table is
//!   [`tunnels_table`].
//! - [`dir`]: `--report DIR`, every scenario's report as files: [`markdown`]
//!   (`report.md`, the one markdown renderer, with the machine from
//!   [`provenance`]), the JSON, and [`charts`] drawn by the hand-written
//!   [`svg`] line chart.

pub mod bulk;
pub mod charts;
pub mod dir;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod markdown;
pub mod model;
pub mod provenance;
pub mod svg;
pub mod table;
pub mod tunnels;
pub mod tunnels_table;
