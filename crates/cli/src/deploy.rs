//! `ebs-snapper deploy`: build (scripts/package.sh), then bucket, uploads, stack and function code.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ebs_snapper_aws::deploy::{deploy, DeployOptions};
use ebs_snapper_aws::{caller_account_id, is_account_id, Aws};
use ebs_snapper_core::deploy_plan::parse_parameter;

use crate::args::DeployArgs;
use crate::error::CliError;
use crate::output::line;

pub async fn run(aws: &Aws, tool_region: &str, args: &DeployArgs) -> Result<ExitCode, CliError> {
    let parameters =
        args.parameters.iter().map(|p| parse_parameter(p)).collect::<Result<Vec<_>, _>>().map_err(CliError::Usage)?;
    if let Some(account) = &args.account {
        if !is_account_id(account) {
            return Err(CliError::Usage(format!("-a {account:?} is not an AWS account id (12 digits)")));
        }
    }
    if !args.no_build {
        build(args.arm64)?;
    }
    let account = match &args.account {
        Some(a) => a.clone(),
        None => caller_account_id(aws).await?,
    };
    let opts = DeployOptions {
        account,
        region: tool_region.to_string(),
        upload: !args.no_upload,
        stack: !args.no_stack,
        parameters,
        template: args.template.clone(),
        functions: args.functions.clone(),
        artifacts: args.artifacts.clone(),
        poll: Duration::from_millis(args.poll_ms),
        replace_python_stack: args.replace_python_stack,
        bucket: args.bucket.clone(),
    };
    let mut out_err = None;
    let mut say = |text: String| {
        if out_err.is_none() {
            if let Err(e) = line(&text) {
                out_err = Some(e);
            }
        }
    };
    let mut progress = |text: String| eprintln!("{text}");
    deploy(aws, &opts, &mut say, &mut progress).await?;
    if let Some(e) = out_err {
        return Err(e);
    }
    Ok(ExitCode::SUCCESS)
}

/// Builds and zips the functions with the project's packaging script.
fn build(arm64: bool) -> Result<(), CliError> {
    let script = Path::new("scripts/package.sh");
    if !script.exists() {
        return Err(CliError::Usage(
            "no scripts/package.sh here: run deploy from a source checkout, or pass -n with the zips in --artifacts"
                .into(),
        ));
    }
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(script);
    if arm64 {
        cmd.arg("--arm64");
    }
    // The build's own output goes to stderr; stdout stays the deploy's report.
    let status = cmd
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|source| CliError::Read { what: "scripts/package.sh", source })?;
    if !status.success() {
        return Err(CliError::Build(format!("scripts/package.sh failed ({status})")));
    }
    Ok(())
}
