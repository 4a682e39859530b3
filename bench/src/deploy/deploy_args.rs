//! The command-line flags that choose the deployment (every scenario takes
//! them), and their check: a `--target` missing one of its companions is
//! refused with what to pass, all missing flags at once.

use std::path::PathBuf;

use clap::Args;

use crate::deploy::deployment::Spec;
use crate::deploy::target::TargetSpec;

/// Where the components under load run.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Deployment (default: edge, client and upstream as processes)")]
pub struct DeployArgs {
    /// Run every component in this process, on the test topology, instead
    /// of as separate processes: for machines without the release
    /// binaries. CPU and memory are then the one process's.
    #[arg(long, conflicts_with_all = ["bin_dir", "target"])]
    pub in_process: bool,
    /// Directory holding the tunnel-server and tunnel-client binaries
    /// (default: the directory of this bench executable).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Measure an existing edge instead: HOST:PORT of its mTLS ingress.
    /// Needs --ca, --cert, --key and --authority; only the tunnel path is
    /// measured (and direct, with --direct), and only this process's CPU.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "bin_dir")]
    pub target: Option<String>,
    /// With --target: PEM CA bundle the edge's certificate chains to.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// With --target: PEM certificate of the caller identity to present.
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// With --target: PEM private key of --cert.
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// With --target: the host calls are routed by,
    /// `<service>.<tunnel>.<domain>` of an Echo service (e.g.
    /// echo.demo.tunnel.local).
    #[arg(long, value_name = "HOST")]
    pub authority: Option<String>,
    /// With --target: the name the edge's certificate is verified for
    /// (default: the --authority host, which an edge certificate for
    /// `*.<tunnel>.<domain>` covers).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// With --target: HOST:PORT of the Echo upstream itself, measured as
    /// the `direct` baseline.
    #[arg(long, value_name = "HOST:PORT")]
    pub direct: Option<String>,
}

impl DeployArgs {
    /// The deployment these flags choose.
    pub fn spec(&self) -> anyhow::Result<Spec> {
        let Some(target) = &self.target else {
            let stray: Vec<&str> = [
                ("--ca", self.ca.is_some()),
                ("--cert", self.cert.is_some()),
                ("--key", self.key.is_some()),
                ("--authority", self.authority.is_some()),
                ("--server-name", self.server_name.is_some()),
                ("--direct", self.direct.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, given)| given.then_some(flag))
            .collect();
            anyhow::ensure!(
                stray.is_empty(),
                "{}: only with --target HOST:PORT (an existing edge's mTLS ingress)",
                stray.join(", ")
            );
            return Ok(if self.in_process {
                Spec::InProcess
            } else {
                Spec::Processes {
                    bin_dir: self.bin_dir.clone(),
                }
            });
        };
        let mut missing = Vec::new();
        if self.ca.is_none() {
            missing.push("--ca PEM (the CA bundle the edge's certificate chains to)");
        }
        if self.cert.is_none() {
            missing.push("--cert PEM (a caller certificate of the edge's trust domain)");
        }
        if self.key.is_none() {
            missing.push("--key PEM (the caller certificate's private key)");
        }
        if self.authority.is_none() {
            missing.push("--authority HOST (e.g. echo.<tunnel>.<domain>)");
        }
        match (&self.ca, &self.cert, &self.key, &self.authority) {
            (Some(ca), Some(cert), Some(key), Some(authority)) => Ok(Spec::Target(TargetSpec {
                target: target.clone(),
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
                authority: authority.clone(),
                server_name: self.server_name.clone(),
                direct: self.direct.clone(),
            })),
            _ => anyhow::bail!("--target {target} also needs {}", missing.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_is_the_default() {
        let spec = DeployArgs::default().spec();
        assert!(matches!(spec, Ok(Spec::Processes { bin_dir: None })));
        let spec = DeployArgs {
            in_process: true,
            ..DeployArgs::default()
        }
        .spec();
        assert!(matches!(spec, Ok(Spec::InProcess)));
    }

    #[test]
    fn a_target_names_every_missing_flag() {
        let err = DeployArgs {
            target: Some("edge:8443".into()),
            cert: Some("caller.pem".into()),
            ..DeployArgs::default()
        }
        .spec()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        for flag in ["--ca PEM", "--key PEM", "--authority HOST"] {
            assert!(err.contains(flag), "{flag} missing from: {err}");
        }
        assert!(!err.contains("--cert PEM"), "{err}");
    }

    #[test]
    fn target_flags_without_a_target_are_refused() {
        let err = DeployArgs {
            direct: Some("127.0.0.1:9000".into()),
            ..DeployArgs::default()
        }
        .spec()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("--direct: only with --target"), "{err}");
    }
}
