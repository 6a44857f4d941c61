//! `ebs-snapper deploy`: build (scripts/package.sh), then bucket, uploads, stack and function code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::deployment::{deploy, deploy_member, DeployOptions, Document, MemberOptions};
use ebs_snapper_aws::{caller_account_id, Aws};
use ebs_snapper_core::deploy_plan::parse_parameter;

use crate::args::DeployArgs;
use crate::error::{check_account, CliError};
use crate::output::line;

pub async fn run(aws: &Aws, tool_region: &str, args: &DeployArgs) -> Result<ExitCode, CliError> {
    let parameters =
        args.parameters.iter().map(|p| parse_parameter(p)).collect::<Result<Vec<_>, _>>().map_err(CliError::Usage)?;
    if let Some(deployment) = &args.member {
        return member(aws, tool_region, deployment, args, parameters).await;
    }
    if let Some(account) = &args.account {
        check_account("-a", account)?;
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
        template: document(args.template.as_deref(), "ebs-snapper.json", TEMPLATE)?,
        functions: document(args.functions.as_deref(), "lambda.json", FUNCTIONS)?,
        artifacts: args.artifacts.clone().unwrap_or_else(|| checkout().join("target/lambda")),
        poll: Duration::from_millis(args.poll_ms),
        replace_python_stack: args.replace_python_stack,
        bucket: args.bucket.clone(),
    };
    let mut report = Report::default();
    deploy(aws, &opts, &mut |text| report.say(text), &mut progress).await?;
    report.finish()
}

/// Deploy's report: one line on stdout per step done; the first failed write is kept.
#[derive(Default)]
struct Report {
    failed: Option<CliError>,
}

impl Report {
    fn say(&mut self, text: String) {
        if self.failed.is_none() {
            if let Err(e) = line(&text) {
                self.failed = Some(e);
            }
        }
    }

    fn finish(self) -> Result<ExitCode, CliError> {
        self.failed.map_or(Ok(ExitCode::SUCCESS), Err)
    }
}

/// The waiting goes to stderr, so stdout stays the report.
fn progress(text: String) {
    eprintln!("{text}");
}

/// `deploy --member DEPLOYMENT`: the member role's stack in the caller's account.
async fn member(
    aws: &Aws,
    tool_region: &str,
    deployment: &str,
    args: &DeployArgs,
    parameters: Vec<(String, String)>,
) -> Result<ExitCode, CliError> {
    check_account("--member", deployment)?;
    if parameters.iter().any(|(k, _)| k == "DeploymentAccountId") {
        return Err(CliError::Usage("--parameter DeploymentAccountId: given by --member".to_string()));
    }
    let opts = MemberOptions {
        region: tool_region.to_string(),
        deployment_account: deployment.to_string(),
        template: document(args.template.as_deref(), "member.json", MEMBER_TEMPLATE)?,
        parameters,
        poll: Duration::from_millis(args.poll_ms),
    };
    let mut report = Report::default();
    deploy_member(aws, &opts, &mut |text| report.say(text), &mut progress).await?;
    report.finish()
}

/// The template and the function list this binary was built with: deploy works from any
/// directory, and deploys what matches its own code.
const TEMPLATE: &str = include_str!("../../../cloudformation/ebs-snapper.json");
const FUNCTIONS: &str = include_str!("../../../lambda.json");
const MEMBER_TEMPLATE: &str = include_str!("../../../cloudformation/member.json");

/// The source checkout this binary was built from (where the zips are built).
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file given on the command line, or the text built in.
fn document(path: Option<&Path>, name: &str, built_in: &str) -> Result<Document, CliError> {
    match path {
        None => Ok(Document { name: name.to_string(), text: built_in.to_string() }),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(name).to_string();
            Ok(Document { name, text })
        }
    }
}

/// Builds and zips the functions with the packaging script of the checkout this binary was
/// built from.
fn build(arm64: bool) -> Result<(), CliError> {
    let script = checkout().join("scripts/package.sh");
    if !script.exists() {
        return Err(CliError::Usage(format!(
            "{} is not there (this binary was moved from its checkout): pass -n and --from DIR, the folder of the release zips",
            script.display()
        )));
    }
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script).current_dir(checkout());
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
