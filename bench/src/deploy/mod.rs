//! Where the components under load run.
//!
//! - [`deployment`]: one interface over the three deployments:
//!   [`processes`] (children started from [`child`]), in process, or a
//!   [`target`] edge; [`deploy_args`] are the flags that choose one.
//! - [`audit`]: the audit durability modes bench configures.
//! - [`upstream`]: the `bench upstream` subcommand, the example upstream
//!   as a process of its own.
//! - [`nofile`]: checks `ulimit -n` before a scenario opens many sockets.

pub mod audit;
pub mod child;
pub mod deploy_args;
pub mod deployment;
pub mod nofile;
pub mod processes;
pub mod target;
pub mod upstream;
