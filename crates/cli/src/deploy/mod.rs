//! `ebs-snapper deploy`: build (scripts/package.sh), then bucket, uploads, stack and function code.
//!
//! The calls of `ebs-snapper deploy`: the code bucket, uploads, the stack, and function code
//! updates. Only the CLI deploys, so this lives here and the Lambda functions never link the S3
//! or CloudFormation SDKs.
//!
//! The rules (names, parameters, pruning) are in `ebs_snapper_core::deploy_plan`; this module
//! makes the calls. Everything happens in the tool region.

mod bucket;
mod code;
mod member;
mod python_stack;
mod release;
#[cfg(test)]
mod replay;
mod stack;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use ebs_snapper_aws::{caller_account_id, Aws};
use ebs_snapper_core::deploy_plan::parse_parameter;

use crate::args::DeployArgs;
use crate::error::{check_account, CliError};
use crate::output::line;

pub async fn run(aws: &Aws, tool_region: &str, args: &DeployArgs) -> Result<ExitCode, CliError> {
    let parameters =
        args.parameters.iter().map(|p| parse_parameter(p)).collect::<Result<Vec<_>, _>>().map_err(CliError::Usage)?;
    if let Some(deployment) = &args.member {
        return member(aws, tool_region, deployment, args, parameters, MEMBER_STACK).await;
    }
    if let Some(deployment) = &args.vault {
        return member(aws, tool_region, deployment, args, parameters, VAULT_STACK).await;
    }
    if let Some(account) = &args.account {
        check_account("-a", account)?;
    }
    if parameters.iter().any(|(k, _)| k == VERSION_PARAMETER) {
        return Err(CliError::Usage(format!(
            "--parameter {VERSION_PARAMETER}: deploy sets it to the version it deploys"
        )));
    }
    // A release is verified before anything else is done; one built from source is built first.
    let source = match &args.release {
        Some(dir) => Source::Release(Release::open(dir, ebs_snapper_version::VERSION)?),
        None => {
            if !args.no_build {
                build(args.arm64)?;
            }
            let artifacts = match &args.artifacts {
                Some(dir) => dir.clone(),
                None => checkout().ok_or_else(|| CliError::Usage(NO_CHECKOUT.to_string()))?.join("target/lambda"),
            };
            Source::Built(Code {
                architecture: zips_architecture(&artifacts)?,
                artifacts,
                template: document(args.template.as_deref(), "ebs-snapper.json", TEMPLATE)?,
                functions: document(args.functions.as_deref(), "lambda.json", FUNCTIONS)?,
                zip_sums: Default::default(),
            })
        }
    };
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
        source,
        version: ebs_snapper_version::VERSION.to_string(),
        allow_downgrade: args.allow_downgrade,
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

/// `deploy --member DEPLOYMENT` or `deploy --vault DEPLOYMENT`: the member or vault role's stack
/// in the caller's account.
async fn member(
    aws: &Aws,
    tool_region: &str,
    deployment: &str,
    args: &DeployArgs,
    parameters: Vec<(String, String)>,
    stack: &'static str,
) -> Result<ExitCode, CliError> {
    let (flag, name, built_in) = match stack {
        VAULT_STACK => ("--vault", "vault.json", VAULT_TEMPLATE),
        _ => ("--member", "member.json", MEMBER_TEMPLATE),
    };
    check_account(flag, deployment)?;
    if parameters.iter().any(|(k, _)| k == "DeploymentAccountId") {
        return Err(CliError::Usage(format!("--parameter DeploymentAccountId: given by {flag}")));
    }
    let opts = MemberOptions {
        stack,
        region: tool_region.to_string(),
        deployment_account: deployment.to_string(),
        template: document(args.template.as_deref(), name, built_in)?,
        parameters,
        poll: Duration::from_millis(args.poll_ms),
    };
    let mut report = Report::default();
    deploy_member(aws, &opts, &mut |text| report.say(text), &mut progress).await?;
    report.finish()
}

/// The template and the function list this binary was built with: deploy works from any
/// directory, and deploys what matches its own code. `crates/cli/templates` links to the
/// project's `cloudformation/` and `lambda.json`, so the published crate carries them too.
const TEMPLATE: &str = include_str!("../../templates/ebs-snapper.json");
const FUNCTIONS: &str = include_str!("../../templates/lambda.json");
const MEMBER_TEMPLATE: &str = include_str!("../../templates/member.json");
const VAULT_TEMPLATE: &str = include_str!("../../templates/vault.json");

/// The source checkout this binary was built in (where the zips are built): found from where the
/// binary lies (`CHECKOUT/target/[TRIPLE/]PROFILE/ebs-snapper`), else the current directory when
/// it is one. Not the build's own path (`CARGO_MANIFEST_DIR`): a release's CLI would carry the
/// build machine's directory, and two builds of one commit in two places would differ.
fn checkout() -> Option<PathBuf> {
    let is_checkout = |d: &Path| d.join("scripts/package.sh").is_file() && d.join("lambda.json").is_file();
    let exe = std::env::current_exe().ok().and_then(|e| e.canonicalize().ok());
    exe.iter()
        .flat_map(|e| e.ancestors().skip(1).take(4))
        .find(|d| is_checkout(d))
        .map(Path::to_path_buf)
        .or_else(|| std::env::current_dir().ok().filter(|d| is_checkout(d)))
}

/// Why there is nothing to build from, and what to do instead.
const NO_CHECKOUT: &str = "this ebs-snapper is not in a source checkout (it finds one from where it lies, or the \
     current directory): deploy a release with --from DIR, or pass -n and --artifacts DIR, the folder of the zips";

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
    let checkout = checkout().ok_or_else(|| CliError::Usage(NO_CHECKOUT.to_string()))?;
    let script = checkout.join("scripts/package.sh");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(&script).current_dir(&checkout);
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

use aws_sdk_cloudformation::types::{Capability, Parameter};
use aws_sdk_lambda::client::Waiters as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use base64::Engine;
use ebs_snapper_core::deploy_plan::{
    bucket_name, stack_name, stack_parameters, versions_to_prune, FunctionList, FunctionSpec, StackParameter,
};
use ebs_snapper_core::release::{check_downgrade, VERSION_TAG};
use sha2::Digest as _;
use sha2::Sha256;

use ebs_snapper_aws::AwsError;
use thiserror::Error;

/// Why a deploy stopped: an AWS call that failed, or a step refused for a reason of its own. Each
/// refusal is a variant with what it is about, so a caller (or a test) can tell them apart
/// without reading the message; every message starts with `deploy:` and names the fix.
#[derive(Debug, Error)]
pub enum DeployError {
    /// A local file deploy needs (a zip, a template) could not be read.
    #[error("deploy: cannot read {}: {source}{hint}", path.display())]
    Read { path: PathBuf, hint: &'static str, source: std::io::Error },
    /// A template that is not JSON.
    #[error("deploy: {name} is not JSON: {source}")]
    NotJson { name: String, source: serde_json::Error },
    /// The function list (`lambda.json`) is not usable.
    #[error("deploy: {0}")]
    FunctionList(String),
    /// A `--parameter` the template does not have, or one deploy sets itself.
    #[error("deploy: {0}")]
    Parameters(String),
    /// The code bucket exists and is another account's, or denies this one.
    #[error(
        "deploy: bucket {bucket} exists but is not this account's ({owner}), or denies it access; nothing was \
         uploaded. Choose another with --bucket NAME"
    )]
    BucketDenied { bucket: String, owner: String },
    /// The code bucket's name is taken by another account.
    #[error("deploy: bucket {bucket} is another account's; nothing was uploaded. Choose another with --bucket NAME")]
    ForeignBucket { bucket: String },
    /// The bucket's encryption settings could not be built (the SDK refused them).
    #[error("deploy: the code bucket's encryption settings: {0}")]
    BucketSettings(String),
    /// The stack is the Python tool's, and `--replace-python-stack` was not given.
    #[error(
        "deploy: stack {stack} is the Python tool's: updating it would delete its table {PYTHON_TABLE} and every \
         configuration in it, so nothing was changed. Run `ebs-snapper deploy --replace-python-stack` to move: it \
         sets DeletionPolicy Retain on that table, deletes the Python stack (the table and its items stay), then \
         creates this tool's stack on the same table"
    )]
    PythonStack { stack: String },
    /// The Python tool's deployed template cannot be changed to retain its table.
    #[error(
        "deploy: the template of stack {stack} is not JSON, so it was not changed; set DeletionPolicy Retain on \
         {PYTHON_TABLE} by hand, delete the stack, then deploy with --parameter CreateTable=false"
    )]
    PythonTemplateNotJson { stack: String },
    #[error("deploy: {PYTHON_TABLE} is not in the template of {stack}")]
    PythonTableMissing { stack: String },
    /// Retaining the Python tool's table did not complete, so its stack was left alone.
    #[error("deploy: stack {stack} ended {status} while retaining its table, so it was not deleted: {reason}")]
    TableNotRetained { stack: String, status: String, reason: String },
    /// A stack create, update or delete ended other than complete.
    #[error("deploy: stack {stack} ended {status}: {reason}")]
    StackEnded { stack: String, status: String, reason: String },
    /// A failed create left the stack in `ROLLBACK_COMPLETE`: only deleting it helps.
    #[error(
        "deploy: stack {stack} is in ROLLBACK_COMPLETE after a failed create; delete it (aws cloudformation \
         delete-stack --stack-name {stack} --region {region}) and deploy again"
    )]
    RolledBack { stack: String, region: String },
    /// The stack is in the middle of an operation.
    #[error("deploy: stack {stack} is busy ({status}); try again when it has finished")]
    Busy { stack: String, status: String },
    /// `--from DIR` is not a whole, unchanged release of this CLI's version for this stack.
    #[error("deploy: {}: {reason}; nothing was uploaded", dir.display())]
    Release { dir: PathBuf, reason: String },
    /// The stack runs a newer version and `--allow-downgrade` was not given.
    #[error("deploy: stack {stack}: {reason}; nothing was uploaded")]
    Downgrade { stack: String, reason: String },
    /// The zips' `ARCH` file names no architecture Lambda runs.
    #[error("deploy: {}: {found:?} is not x86_64 or arm64", path.display())]
    UnknownArchitecture { path: PathBuf, found: String },
    /// `--parameter Architecture` disagrees with the zips.
    #[error(
        "deploy: --parameter Architecture={asked}, but the zips in {} are built for {built}; leave the parameter \
         out (the stack follows the zips) or build for {asked}",
        artifacts.display()
    )]
    ArchitectureMismatch { asked: String, built: String, artifacts: PathBuf },
    /// Code upload without the stack (`-o`) into a stack that lacks a function.
    #[error("deploy: stack {stack} has no resource {logical_id}; deploy the stack first (leave out -o)")]
    MissingResource { stack: String, logical_id: String },
    /// A function's code update did not reach `Successful`.
    #[error("deploy: function {function}: its update did not finish: {reason}")]
    UpdateUnfinished { function: String, reason: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The key prefix of everything deploy uploads (the template's `CodePrefix` default).
pub const CODE_PREFIX: &str = "ebs-snapper";
/// Templates up to this size go in the request body; larger ones by S3 URL.
const MAX_TEMPLATE_BODY: usize = 51_200;

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub account: String,
    pub region: String,
    pub upload: bool,
    pub stack: bool,
    pub parameters: Vec<(String, String)>,
    /// What is deployed: zips built from source, or a verified release.
    pub source: Source,
    /// The version deployed (the CLI's): the stack's `ToolVersion` and `ebs-snapper:version` tag.
    pub version: String,
    /// Deploy even over a stack that runs a newer version.
    pub allow_downgrade: bool,
    /// Time between stack status polls.
    pub poll: Duration,
    /// The stack may be the Python tool's: move from it (keeping its table) instead of refusing.
    pub replace_python_stack: bool,
    /// The code bucket, when not the default `ebs-snapper-ACCOUNT[-REGION]`.
    pub bucket: Option<String>,
}

/// What deploy uploads: zips built from source (their template and function list the CLI's own,
/// or files given instead), or a release, whose tree is chosen by the stack's architecture.
#[derive(Debug, Clone)]
pub enum Source {
    Built(Code),
    Release(Release),
}

/// The template parameter that records the deployed version (the `Version` output).
pub const VERSION_PARAMETER: &str = "ToolVersion";

/// The logical id of the Python tool's configuration table. Its template gives the table no
/// `DeletionPolicy`, so any update of its stack whose template lacks this logical id deletes the
/// table and every configuration in it.
pub const PYTHON_TABLE: &str = "EbsSnapshotConfigurationTable";

/// A text deploy reads: the one built into the binary, or a file given instead.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its file name (the template's is also its key in the bucket).
    pub name: String,
    pub text: String,
}

fn read(path: &Path, hint: &'static str) -> Result<Vec<u8>, DeployError> {
    std::fs::read(path).map_err(|source| DeployError::Read { path: path.to_path_buf(), hint, source })
}

/// Runs a deploy; `say` receives one line per step done (stdout), `progress` the waiting (stderr).
pub async fn deploy(
    aws: &Aws,
    opts: &DeployOptions,
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let region = opts.region.as_str();
    let config = aws.in_region(region);
    let bucket = opts.bucket.clone().unwrap_or_else(|| bucket_name(&opts.account, region));
    let stack = stack_name(&opts.account);

    // Zips built from source are read and checked before any AWS call; a release was verified
    // before deploy began, and which of its trees is read depends on the stack.
    let early = match &opts.source {
        Source::Built(code) => Ok((code.clone(), Prepared::read(code, opts)?)),
        Source::Release(release) => Err(release),
    };
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    // What the stack runs now decides a release's tree, and whether this is a downgrade; both
    // are settled before anything is uploaded.
    let deployed = describe_stack(&cfn, &stack, region).await?;
    if let Some(e) = deployed.as_ref().filter(|_| opts.stack).and_then(|d| unusable(&stack, region, &d.status)) {
        return Err(e);
    }
    let (code, prepared) = match early {
        Ok(built) => built,
        Err(release) => {
            let asked = opts.parameters.iter().rev().find(|(k, _)| k == "Architecture").map(|(_, v)| v.as_str());
            let code = release.code(asked, deployed.as_ref().and_then(|d| d.parameter("Architecture")))?;
            let prepared = Prepared::read(&code, opts)?;
            let profile =
                if release.profile == "release" { String::new() } else { format!(", {} build", release.profile) };
            say(format!(
                "release {} ({}{profile}) verified: {}",
                release.version,
                code.architecture.as_deref().unwrap_or("?"),
                release.dir.display()
            ));
            (code, prepared)
        }
    };
    let deployed_version = deployed.as_ref().and_then(|d| d.tag(VERSION_TAG));
    check_downgrade(deployed_version, &opts.version, opts.allow_downgrade)
        .map_err(|e| DeployError::Downgrade { stack: stack.clone(), reason: e.to_string() })?;
    // Code without the stack (-o) would put this version's functions under another version's
    // stack (its template, roles and recorded version).
    if !opts.stack && opts.upload && !opts.allow_downgrade {
        if let Some(other) = deployed_version.filter(|v| *v != opts.version) {
            return Err(DeployError::Downgrade {
                stack: stack.clone(),
                reason: format!(
                    "it runs version {other}: -o would update only the code to {}, under the stack of {other}; \
                     deploy the stack too (leave out -o)",
                    opts.version
                ),
            });
        }
    }
    let Prepared { functions, template_text, template_parameters, zips } = prepared;
    let zips: Vec<(&FunctionSpec, String, Vec<u8>)> =
        functions.functions.iter().zip(zips).map(|(f, (key, bytes))| (f, key, bytes)).collect();
    let template_key = format!("{CODE_PREFIX}/{}", code.template.name);

    let s3 = aws_sdk_s3::Client::new(&config);
    if opts.upload {
        let bucket = Bucket { name: &bucket, owner: &opts.account };
        ensure_bucket(&s3, bucket, region, say).await?;
        upload(&s3, bucket, region, &template_key, template_text.as_bytes(), say).await?;
        for (_, key, bytes) in &zips {
            upload(&s3, bucket, region, key, bytes, say).await?;
        }
    }

    if opts.stack {
        let target = Target { stack: &stack, bucket: &bucket, template_key: &template_key };
        deploy_stack(&cfn, opts, &code, target, deployed, &template_text, &template_parameters, say, progress).await?;
    }
    // Code is updated only from what this deploy uploaded, so S3 and the zips agree.
    if opts.upload && stack_exists(&cfn, &stack, region).await? {
        let lambda = aws_sdk_lambda::Client::new(&config);
        let physical = physical_ids(&cfn, &stack, region).await?;
        for (f, key, bytes) in &zips {
            let name = physical.get(&f.logical_id).ok_or_else(|| DeployError::MissingResource {
                stack: stack.clone(),
                logical_id: f.logical_id.clone(),
            })?;
            update_code(&lambda, name, &bucket, key, bytes, region, say).await?;
        }
    }
    Ok(())
}

/// What deploy read of the code before calling AWS: the function list, the template and its
/// parameters, and each function's zip with its key in the bucket.
struct Prepared {
    functions: FunctionList,
    template_text: String,
    template_parameters: Vec<String>,
    zips: Vec<(String, Vec<u8>)>,
}

impl Prepared {
    fn read(code: &Code, opts: &DeployOptions) -> Result<Prepared, DeployError> {
        let functions = FunctionList::parse(&code.functions.text).map_err(DeployError::FunctionList)?;
        let template_text = code.template.text.clone();
        let template: serde_json::Value = serde_json::from_str(&template_text)
            .map_err(|source| DeployError::NotJson { name: code.template.name.clone(), source })?;
        let template_parameters: Vec<String> =
            template["Parameters"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
        stack_parameters(&template_parameters, None, &opts.parameters, &[]).map_err(DeployError::Parameters)?;
        let mut zips = Vec::new();
        for f in &functions.functions {
            let path = code.artifacts.join(&f.binary).join("bootstrap.zip");
            let bytes = read(
                &path,
                "; build the zips with scripts/package.sh (or leave out -n), or deploy a release with --from DIR",
            )?;
            // A release's zip is read after it was verified: the bytes uploaded must still be
            // the ones summed.
            if let Some(expected) = code.zip_sums.get(&f.binary) {
                if *expected != release::hex(&bytes) {
                    return Err(DeployError::Release {
                        dir: code.artifacts.clone(),
                        reason: format!("{}/bootstrap.zip changed after the release was verified", f.binary),
                    });
                }
            }
            zips.push((format!("{CODE_PREFIX}/{}.zip", f.binary), bytes));
        }
        check_architecture_parameter(code, &opts.parameters)?;
        Ok(Prepared { functions, template_text, template_parameters, zips })
    }
}

use bucket::*;
use code::*;
use member::*;
use python_stack::*;
pub use release::{Code, Release};
use stack::*;
