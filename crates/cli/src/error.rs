//! The CLI's one error boundary: every failure becomes one line on stderr and an exit status
//! (2 usage or validation, 1 runtime).

use std::process::ExitCode;

use ebs_snapper_aws::AwsError;
use ebs_snapper_core::ConfigError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    /// The command line itself is wrong.
    #[error("{0} (see 'ebs-snapper --help')")]
    Usage(String),
    /// A configuration given on the command line is invalid; nothing was stored.
    #[error("invalid configuration, nothing stored: {0}")]
    InvalidConfiguration(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Deploy(#[from] crate::deployment::DeployError),
    #[error("could not read {what}: {source}")]
    Read { what: &'static str, source: std::io::Error },
    #[error("build failed: {0}")]
    Build(String),
    #[error("could not write output: {0}")]
    Write(std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) | CliError::InvalidConfiguration(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}
