//! The calls of `ebs-snapper deploy`: the code bucket, uploads, the stack, and function code
//! updates. Only the CLI deploys, so this lives here and the Lambda functions never link the S3
//! or CloudFormation SDKs.
//!
//! The rules (names, parameters, pruning) are in `ebs_snapper_core::deploy_plan`; this module
//! makes the calls. Everything happens in the tool region.

use std::path::{Path, PathBuf};

use std::time::Duration;

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
    bucket_name, stack_name, stack_parameters, versions_to_prune, FunctionList, StackParameter,
};
use sha2::Digest as _;
use sha2::Sha256;

use ebs_snapper_aws::{Aws, AwsError};
use thiserror::Error;

/// Why a deploy stopped: an AWS call that failed, or a step refused for a reason of its own (a
/// missing file, a rolled-back stack, a bucket of another owner, the Python tool's stack).
#[derive(Debug, Error)]
pub enum DeployError {
    #[error("deploy: {0}")]
    Refused(String),
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
    /// The CloudFormation template.
    pub template: Document,
    /// The function list (`lambda.json`).
    pub functions: Document,
    /// Where the zips are: `{artifacts}/{binary}/bootstrap.zip`.
    pub artifacts: PathBuf,
    /// Time between stack status polls.
    pub poll: Duration,
    /// The stack may be the Python tool's: move from it (keeping its table) instead of refusing.
    pub replace_python_stack: bool,
    /// The code bucket, when not the default `ebs-snapper-ACCOUNT[-REGION]`.
    pub bucket: Option<String>,
}

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

fn fail(message: impl Into<String>) -> DeployError {
    DeployError::Refused(message.into())
}

fn read(path: &Path, hint: &str) -> Result<Vec<u8>, DeployError> {
    std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}{hint}", path.display())))
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

    // Everything local is read and checked before any AWS call.
    let functions = FunctionList::parse(&opts.functions.text).map_err(fail)?;
    let template_text = opts.template.text.clone();
    let template: serde_json::Value =
        serde_json::from_str(&template_text).map_err(|e| fail(format!("{} is not JSON: {e}", opts.template.name)))?;
    let template_parameters: Vec<String> =
        template["Parameters"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    stack_parameters(&template_parameters, None, &opts.parameters, &[]).map_err(fail)?;
    let mut zips = Vec::new();
    for f in &functions.functions {
        let path = opts.artifacts.join(&f.binary).join("bootstrap.zip");
        let bytes = read(
            &path,
            "; build the zips with scripts/package.sh (or leave out -n), or give their folder with --from",
        )?;
        zips.push((f, format!("{CODE_PREFIX}/{}.zip", f.binary), bytes));
    }

    zips_architecture(&opts.artifacts, &opts.parameters)?;
    let template_key = format!("{CODE_PREFIX}/{}", opts.template.name);

    let s3 = aws_sdk_s3::Client::new(&config);
    if opts.upload {
        let bucket = Bucket { name: &bucket, owner: &opts.account };
        ensure_bucket(&s3, bucket, region, say).await?;
        upload(&s3, bucket, region, &template_key, template_text.as_bytes(), say).await?;
        for (_, key, bytes) in &zips {
            upload(&s3, bucket, region, key, bytes, say).await?;
        }
    }

    let cfn = aws_sdk_cloudformation::Client::new(&config);
    if opts.stack {
        deploy_stack(&cfn, opts, &stack, &bucket, &template_key, &template_text, &template_parameters, say, progress)
            .await?;
    }
    // Code is updated only from what this deploy uploaded, so S3 and the zips agree.
    if opts.upload && stack_exists(&cfn, &stack, region).await? {
        let lambda = aws_sdk_lambda::Client::new(&config);
        let physical = physical_ids(&cfn, &stack, region).await?;
        for (f, key, bytes) in &zips {
            let name = physical.get(&f.logical_id).ok_or_else(|| {
                fail(format!("stack {stack} has no resource {}; deploy the stack first (leave out -o)", f.logical_id))
            })?;
            update_code(&lambda, name, &bucket, key, bytes, region, say).await?;
        }
    }
    Ok(())
}

/// The code bucket, and the account that must own it. Its default name is predictable, so
/// every S3 call says whose bucket it expects (`ExpectedBucketOwner`): a bucket of that name in
/// another account is refused by S3 itself, never written to.
#[derive(Debug, Clone, Copy)]
struct Bucket<'a> {
    name: &'a str,
    owner: &'a str,
}

async fn ensure_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: Bucket<'_>,
    region: &str,
    say: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let name = bucket.name;
    match s3.head_bucket().bucket(name).expected_bucket_owner(bucket.owner).send().await {
        Ok(_) => {
            say(format!("bucket {name} exists"));
            check_bucket(s3, bucket, say).await;
            return Ok(());
        }
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(404) => {}
            Some(403) => {
                return Err(fail(format!(
                    "bucket {name} exists but is not this account's ({}), or denies it access; nothing was \
                     uploaded. Choose another with --bucket NAME",
                    bucket.owner
                )))
            }
            _ => return Err(AwsError::call("HeadBucket", region, e).into()),
        },
    }
    let mut create = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    create.send().await.map_err(|e| match e.as_service_error() {
        Some(se) if se.is_bucket_already_exists() => {
            fail(format!("bucket {name} is another account's; nothing was uploaded. Choose another with --bucket NAME"))
        }
        _ => AwsError::call("CreateBucket", region, e).into(),
    })?;
    s3.put_public_access_block()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::call("PutPublicAccessBlock", region, e))?;
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build())
        .build()
        .map_err(|e| fail(e.to_string()))?;
    s3.put_bucket_encryption()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(|e| AwsError::call("PutBucketEncryption", region, e))?;
    s3.put_bucket_versioning()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|e| AwsError::call("PutBucketVersioning", region, e))?;
    s3.put_bucket_policy()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .policy(tls_only_policy(name, region))
        .send()
        .await
        .map_err(|e| AwsError::call("PutBucketPolicy", region, e))?;
    say(format!("bucket {name} created (private, encrypted, versioned, TLS only)"));
    Ok(())
}

/// A bucket policy refusing every request not made over TLS (ARNs in the region's partition).
fn tls_only_policy(bucket: &str, region: &str) -> String {
    let arn = format!("arn:{}:s3:::{bucket}", ebs_snapper_aws::account::partition(region));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
    .to_string()
}

/// Says what an existing bucket lacks of what deploy would have set (it is not changed: it may
/// be shared, with settings of its own).
async fn check_bucket(s3: &aws_sdk_s3::Client, bucket: Bucket<'_>, say: &mut dyn FnMut(String)) {
    let name = bucket.name;
    let versioning = s3.get_bucket_versioning().bucket(name).expected_bucket_owner(bucket.owner).send().await;
    if !versioning.is_ok_and(|v| v.status() == Some(&BucketVersioningStatus::Enabled)) {
        say(format!("bucket {name}: versioning is not enabled (deploy enables it on the buckets it creates)"));
    }
    if s3.get_bucket_encryption().bucket(name).expected_bucket_owner(bucket.owner).send().await.is_err() {
        say(format!("bucket {name}: no default encryption could be read"));
    }
}

/// Uploads unless the object already holds these bytes, by S3's SHA-256 checksum of the object
/// (an ETag is the MD5 only for some objects: not under SSE-KMS, not for multipart uploads).
async fn upload(
    s3: &aws_sdk_s3::Client,
    bucket: Bucket<'_>,
    region: &str,
    key: &str,
    bytes: &[u8],
    say: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let (owner, bucket) = (bucket.owner, bucket.name);
    let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes));
    let head =
        s3.head_object().bucket(bucket).key(key).expected_bucket_owner(owner).checksum_mode(ChecksumMode::Enabled);
    if let Ok(head) = head.send().await {
        if head.checksum_sha256() == Some(sha256.as_str()) {
            say(format!("unchanged s3://{bucket}/{key}"));
            return Ok(());
        }
    }
    s3.put_object()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await
        .map_err(|e| AwsError::call("PutObject", region, e))?;
    say(format!("uploaded s3://{bucket}/{key}"));
    Ok(())
}

/// The stack's status and parameters (name, value), or None when there is no such stack.
async fn stack_status(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
) -> Result<Option<(String, Vec<(String, String)>)>, DeployError> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().map(|s| {
            (
                s.stack_status().map(|st| st.as_str().to_string()).unwrap_or_default(),
                s.parameters()
                    .iter()
                    .filter_map(|p| {
                        Some((p.parameter_key()?.to_string(), p.parameter_value().unwrap_or("").to_string()))
                    })
                    .collect(),
            )
        })),
        Err(e) => {
            let e = AwsError::call("DescribeStacks", region, e);
            // CloudFormation answers ValidationError for both a missing stack and a bad request;
            // only the message tells them apart.
            if e.code() == Some("ValidationError") && e.to_string().contains("does not exist") {
                Ok(None)
            } else {
                Err(e.into())
            }
        }
    }
}

async fn stack_exists(cfn: &aws_sdk_cloudformation::Client, stack: &str, region: &str) -> Result<bool, DeployError> {
    Ok(stack_status(cfn, stack, region).await?.is_some_and(|(status, _)| status != "DELETE_COMPLETE"))
}

fn to_cfn(params: Vec<StackParameter>) -> Vec<Parameter> {
    params
        .into_iter()
        .map(|p| match p {
            StackParameter::Value(k, v) => Parameter::builder().parameter_key(k).parameter_value(v).build(),
            StackParameter::UsePrevious(k) => Parameter::builder().parameter_key(k).use_previous_value(true).build(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn deploy_stack(
    cfn: &aws_sdk_cloudformation::Client,
    opts: &DeployOptions,
    stack: &str,
    bucket: &str,
    template_key: &str,
    template_text: &str,
    template_parameters: &[String],
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let region = opts.region.as_str();
    let mut fixed = vec![("CodeBucket".to_string(), bucket.to_string())];
    // The stack runs the functions on the architecture the zips were built for.
    if let Some(arch) = zips_architecture(&opts.artifacts, &opts.parameters)? {
        fixed.push(("Architecture".to_string(), arch));
    }
    let template_url = template_url(bucket, region, template_key);
    let use_body = template_text.len() <= MAX_TEMPLATE_BODY;
    let template = if use_body { TemplateSource::Body(template_text) } else { TemplateSource::Url(&template_url) };
    let status = stack_status(cfn, stack, region).await?;
    if let Some(e) = status.as_ref().and_then(|(status, _)| unusable(stack, region, status)) {
        return Err(e);
    }
    match status {
        None => {
            let params = stack_parameters(template_parameters, None, &opts.parameters, &fixed).map_err(fail)?;
            create_stack(cfn, stack, region, params, template, Capability::CapabilityIam).await?;
            progress(format!("stack {stack}: creating"));
        }
        Some((_, existing)) if physical_ids(cfn, stack, region).await?.contains_key(PYTHON_TABLE) => {
            if !opts.replace_python_stack {
                return Err(fail(format!(
                    "stack {stack} is the Python tool's: updating it would delete its table {PYTHON_TABLE} and every \
                     configuration in it, so nothing was changed. Run `ebs-snapper deploy --replace-python-stack` to \
                     move: it sets DeletionPolicy Retain on that table, deletes the Python stack (the table and its items \
                     stay), then creates this tool's stack on the same table"
                )));
            }
            replace_python_stack(cfn, stack, region, &existing, opts.poll, say, progress).await?;
            // The table stays, outside any stack: this stack uses it and does not create it.
            let mut overrides = opts.parameters.clone();
            overrides.retain(|(k, _)| k != "CreateTable");
            overrides.push(("CreateTable".to_string(), "false".to_string()));
            // The parameters both templates have (schedules, CostCenter, the memory of each
            // function) keep the values the Python stack had.
            let params = stack_parameters(template_parameters, Some(&existing), &overrides, &fixed).map_err(fail)?;
            create_stack(cfn, stack, region, params, template, Capability::CapabilityIam).await?;
            progress(format!("stack {stack}: creating on the Python tool's table"));
        }
        Some((_, existing)) => {
            let params =
                stack_parameters(template_parameters, Some(&existing), &opts.parameters, &fixed).map_err(fail)?;
            let change = Change { params, template, template_text, existing: &existing };
            if !update_stack(cfn, stack, region, change, Capability::CapabilityIam, say, progress).await? {
                return Ok(());
            }
        }
    }
    settle(cfn, stack, region, opts.poll, say, progress).await
}

/// Why a stack in `status` cannot be deployed over, if it cannot: a failed create, or busy.
fn unusable(stack: &str, region: &str, status: &str) -> Option<DeployError> {
    if status == "ROLLBACK_COMPLETE" {
        return Some(fail(format!(
            "stack {stack} is in ROLLBACK_COMPLETE after a failed create; delete it (aws cloudformation delete-stack --stack-name {stack} --region {region}) and deploy again"
        )));
    }
    status
        .ends_with("_IN_PROGRESS")
        .then(|| fail(format!("stack {stack} is busy ({status}); try again when it has finished")))
}

/// An update of a stack: its parameters, its template, and what it has now.
struct Change<'a> {
    params: Vec<StackParameter>,
    template: TemplateSource<'a>,
    template_text: &'a str,
    existing: &'a [(String, String)],
}

/// Starts an update of `stack`; false (said as "no changes") when it would change nothing.
async fn update_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    change: Change<'_>,
    capability: Capability,
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<bool, DeployError> {
    if unchanged(cfn, stack, region, change.template_text, &change.params, change.existing).await? {
        say(format!("stack {stack}: no changes"));
        return Ok(false);
    }
    let mut req =
        cfn.update_stack().stack_name(stack).set_parameters(Some(to_cfn(change.params))).capabilities(capability);
    req = match change.template {
        TemplateSource::Body(body) => req.template_body(body),
        TemplateSource::Url(url) => req.template_url(url),
    };
    match req.send().await {
        Ok(_) => {
            progress(format!("stack {stack}: updating"));
            Ok(true)
        }
        Err(e) => {
            let e = AwsError::call("UpdateStack", region, e);
            if e.code() == Some("ValidationError") && e.to_string().contains("No updates are to be performed") {
                say(format!("stack {stack}: no changes"));
                return Ok(false);
            }
            Err(e.into())
        }
    }
}

/// Waits for a create or update to end; an end other than complete is an error with its cause.
async fn settle(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    poll: Duration,
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let final_status = wait(cfn, stack, region, poll, progress).await?;
    if final_status == "CREATE_COMPLETE" || final_status == "UPDATE_COMPLETE" {
        say(format!("stack {stack}: {final_status}"));
        Ok(())
    } else {
        Err(fail(format!("stack {stack} ended {final_status}: {}", failure_reason(cfn, stack, region).await)))
    }
}

/// The stack `deploy --member` creates in a member account (SPEC §13).
pub const MEMBER_STACK: &str = "ebs-snapper-member";

/// What `deploy --member` deploys, and where.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// The tool region: where the member stack goes.
    pub region: String,
    /// The account whose function roles the member role trusts (and its `ExternalId`).
    pub deployment_account: String,
    /// `cloudformation/member.json`, or a file given instead.
    pub template: Document,
    pub parameters: Vec<(String, String)>,
    /// Time between stack status polls.
    pub poll: Duration,
}

/// Creates or updates the member stack with the caller's credentials, trusting the deployment
/// account; nothing is built or uploaded.
pub async fn deploy_member(
    aws: &Aws,
    opts: &MemberOptions,
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let MemberOptions { region, deployment_account, template, parameters: overrides, poll } = opts;
    let (region, poll) = (region.as_str(), *poll);
    let parsed: serde_json::Value =
        serde_json::from_str(&template.text).map_err(|e| fail(format!("{} is not JSON: {e}", template.name)))?;
    let names: Vec<String> = parsed["Parameters"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let fixed = [("DeploymentAccountId".to_string(), deployment_account.to_string())];
    stack_parameters(&names, None, overrides, &fixed).map_err(fail)?;
    let cfn = aws_sdk_cloudformation::Client::new(&aws.in_region(region));
    let stack = MEMBER_STACK;
    let source = TemplateSource::Body(&template.text);
    // The role has a name (MemberRoleName), which CloudFormation only creates when told.
    let capability = Capability::CapabilityNamedIam;
    match stack_status(&cfn, stack, region).await? {
        None => {
            let params = stack_parameters(&names, None, overrides, &fixed).map_err(fail)?;
            create_stack(&cfn, stack, region, params, source, capability).await?;
            progress(format!("stack {stack}: creating"));
        }
        Some((status, existing)) => {
            if let Some(e) = unusable(stack, region, &status) {
                return Err(e);
            }
            let params = stack_parameters(&names, Some(&existing), overrides, &fixed).map_err(fail)?;
            let change = Change { params, template: source, template_text: &template.text, existing: &existing };
            if !update_stack(&cfn, stack, region, change, capability, say, progress).await? {
                return Ok(());
            }
        }
    }
    settle(&cfn, stack, region, poll, say, progress).await
}

/// True when the stack already has this template and these parameter values, so an update
/// would change nothing (CloudFormation would answer "No updates are to be performed").
async fn unchanged(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    template_text: &str,
    params: &[StackParameter],
    existing: &[(String, String)],
) -> Result<bool, DeployError> {
    let same_values = existing.len() == params.len()
        && params.iter().all(|p| match p {
            StackParameter::Value(k, v) => existing.iter().any(|(ek, ev)| ek == k && ev == v),
            StackParameter::UsePrevious(_) => true,
        });
    if !same_values {
        return Ok(false);
    }
    let deployed =
        cfn.get_template().stack_name(stack).send().await.map_err(|e| AwsError::call("GetTemplate", region, e))?;
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
    Ok(deployed.template_body().and_then(parse).is_some_and(|d| Some(d) == parse(template_text)))
}

async fn wait(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    poll: Duration,
    progress: &mut dyn FnMut(String),
) -> Result<String, DeployError> {
    let mut last = String::new();
    loop {
        let status =
            stack_status(cfn, stack, region).await?.map(|(s, _)| s).unwrap_or_else(|| "DELETE_COMPLETE".to_string());
        if status != last {
            progress(format!("stack {stack}: {status}"));
            last = status.clone();
        }
        if !status.ends_with("_IN_PROGRESS") {
            return Ok(status);
        }
        tokio::time::sleep(poll).await;
    }
}

/// The first failed resource and its reason, from the stack's events.
async fn failure_reason(cfn: &aws_sdk_cloudformation::Client, stack: &str, region: &str) -> String {
    let Ok(out) = cfn.describe_stack_events().stack_name(stack).send().await else {
        return format!("see the stack's events in {region}");
    };
    // Events come newest first; the first failure is the last one listed.
    out.stack_events()
        .iter()
        .rev()
        .find(|e| e.resource_status().is_some_and(|s| s.as_str().ends_with("_FAILED")))
        .map(|e| {
            format!(
                "{} ({}) {}: {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_type().unwrap_or("?"),
                e.resource_status().map(|s| s.as_str()).unwrap_or("?"),
                e.resource_status_reason().unwrap_or("no reason given")
            )
        })
        .unwrap_or_else(|| format!("no failed resource reported; see the stack's events in {region}"))
}

/// Logical id -> physical id of every resource of the stack (one paginated listing).
/// The architecture the zips in `artifacts` were built for (`ARCH`, written by
/// scripts/package.sh after checking every binary), if known. A `--parameter Architecture` that
/// disagrees is refused: the stack's architecture follows the zips, never a second flag.
fn zips_architecture(artifacts: &Path, overrides: &[(String, String)]) -> Result<Option<String>, DeployError> {
    let Ok(text) = std::fs::read_to_string(artifacts.join("ARCH")) else { return Ok(None) };
    let arch = text.trim().to_string();
    if arch != "x86_64" && arch != "arm64" {
        return Err(fail(format!("{}: {arch:?} is not x86_64 or arm64", artifacts.join("ARCH").display())));
    }
    if let Some((_, asked)) = overrides.iter().rev().find(|(k, _)| k == "Architecture") {
        if *asked != arch {
            return Err(fail(format!(
                "--parameter Architecture={asked}, but the zips in {} are built for {arch}; leave the parameter \
                 out (the stack follows the zips) or build for {asked}",
                artifacts.display()
            )));
        }
    }
    Ok(Some(arch))
}

/// Where CloudFormation reads the template: the request body (up to 51,200 bytes), or S3.
#[derive(Debug, Clone, Copy)]
enum TemplateSource<'a> {
    Body(&'a str),
    Url(&'a str),
}

async fn create_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    params: Vec<StackParameter>,
    template: TemplateSource<'_>,
    capability: Capability,
) -> Result<(), DeployError> {
    let req = cfn.create_stack().stack_name(stack).set_parameters(Some(to_cfn(params))).capabilities(capability);
    let req = match template {
        TemplateSource::Body(body) => req.template_body(body),
        TemplateSource::Url(url) => req.template_url(url),
    };
    req.send().await.map(|_| ()).map_err(|e| AwsError::call("CreateStack", region, e).into())
}

/// Moves off the Python tool's stack without touching its data: its template is updated to
/// retain the configuration table (every parameter keeps its value), then the stack is deleted.
async fn replace_python_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    existing: &[(String, String)],
    poll: Duration,
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let physical = physical_ids(cfn, stack, region).await?;
    let table = physical.get(PYTHON_TABLE).cloned().unwrap_or_default();
    let body = cfn
        .get_template()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| AwsError::call("GetTemplate", region, e))?
        .template_body
        .unwrap_or_default();
    let mut template: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
        fail(format!(
            "the template of stack {stack} is not JSON, so it was not changed; set DeletionPolicy Retain on \
             {PYTHON_TABLE} by hand, delete the stack, then deploy with --parameter CreateTable=false"
        ))
    })?;
    let resource = template["Resources"]
        .get_mut(PYTHON_TABLE)
        .ok_or_else(|| fail(format!("{PYTHON_TABLE} is not in the template of {stack}")))?;
    let retained = resource.get("DeletionPolicy").and_then(|p| p.as_str()) == Some("Retain");
    if !retained {
        resource["DeletionPolicy"] = "Retain".into();
        resource["UpdateReplacePolicy"] = "Retain".into();
        // Every parameter keeps its value: given as it is shown, or, for a NoEcho one (shown as
        // `****`), as the previous value.
        let previous: Vec<Parameter> = existing
            .iter()
            .map(|(k, v)| match v.as_str() {
                "****" => Parameter::builder().parameter_key(k).use_previous_value(true).build(),
                _ => Parameter::builder().parameter_key(k).parameter_value(v).build(),
            })
            .collect();
        cfn.update_stack()
            .stack_name(stack)
            .template_body(template.to_string())
            .set_parameters(Some(previous))
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .map_err(|e| AwsError::call("UpdateStack", region, e))?;
        progress(format!("stack {stack}: retaining table {table}"));
        let status = wait(cfn, stack, region, poll, progress).await?;
        if status != "UPDATE_COMPLETE" {
            return Err(fail(format!(
                "stack {stack} ended {status} while retaining its table, so it was not deleted: {}",
                failure_reason(cfn, stack, region).await
            )));
        }
    }
    say(format!("stack {stack}: table {table} retained"));
    cfn.delete_stack().stack_name(stack).send().await.map_err(|e| AwsError::call("DeleteStack", region, e))?;
    progress(format!("stack {stack}: deleting the Python tool's stack"));
    let status = wait(cfn, stack, region, poll, progress).await?;
    if status != "DELETE_COMPLETE" {
        return Err(fail(format!("stack {stack} ended {status}: {}", failure_reason(cfn, stack, region).await)));
    }
    say(format!("stack {stack}: the Python tool's stack deleted; table {table} kept"));
    Ok(())
}

async fn physical_ids(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
) -> Result<std::collections::BTreeMap<String, String>, DeployError> {
    let summaries: Vec<_> = cfn
        .list_stack_resources()
        .stack_name(stack)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::call("ListStackResources", region, e))?;
    Ok(summaries
        .iter()
        .filter_map(|r| Some((r.logical_resource_id()?.to_string(), r.physical_resource_id()?.to_string())))
        .collect())
}

/// Updates the function's code when the zip's SHA-256 differs from the deployed code's, then
/// publishes a version and removes all but the newest two.
/// The longest a function update may take before deploy gives up on it.
const MAX_UPDATE_WAIT: Duration = Duration::from_secs(600);

/// Waits (the SDK's waiter) until the function's `LastUpdateStatus` is `Successful`.
async fn wait_until_updated(lambda: &aws_sdk_lambda::Client, name: &str) -> Result<(), DeployError> {
    lambda.wait_until_function_updated().function_name(name).wait(MAX_UPDATE_WAIT).await.map(|_| ()).map_err(|e| {
        fail(format!("function {name}: its update did not finish: {}", aws_sdk_lambda::error::DisplayErrorContext(&e)))
    })
}

async fn update_code(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    bucket: &str,
    key: &str,
    zip: &[u8],
    region: &str,
    say: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let local = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip));
    let current =
        lambda.get_function().function_name(name).send().await.map_err(|e| AwsError::call("GetFunction", region, e))?;
    if current.configuration().and_then(|c| c.code_sha256()) == Some(local.as_str()) {
        say(format!("function {name}: code unchanged"));
        return Ok(());
    }
    // Lambda refuses a change (ResourceConflictException) while an earlier update of the
    // function is in progress: wait for it to finish, before the update and after it.
    wait_until_updated(lambda, name).await?;
    lambda
        .update_function_code()
        .function_name(name)
        .s3_bucket(bucket)
        .s3_key(key)
        .send()
        .await
        .map_err(|e| AwsError::call("UpdateFunctionCode", region, e))?;
    wait_until_updated(lambda, name).await?;
    let published = lambda
        .publish_version()
        .function_name(name)
        .send()
        .await
        .map_err(|e| AwsError::call("PublishVersion", region, e))?;
    let versions: Vec<String> = lambda
        .list_versions_by_function()
        .function_name(name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::call("ListVersionsByFunction", region, e))?
        .iter()
        .filter_map(|v| v.version().map(str::to_string))
        .collect();
    let prune = versions_to_prune(&versions);
    for v in &prune {
        lambda
            .delete_function()
            .function_name(name)
            .qualifier(v)
            .send()
            .await
            .map_err(|e| AwsError::call("DeleteFunction", region, e))?;
    }
    say(format!(
        "function {name}: code updated, published version {}{}",
        published.version().unwrap_or("?"),
        if prune.is_empty() { String::new() } else { format!(", removed versions {}", prune.join(", ")) }
    ));
    Ok(())
}

/// The URL CloudFormation reads a template from in the code bucket (the region's S3 endpoint, in
/// its partition's domain).
fn template_url(bucket: &str, region: &str, key: &str) -> String {
    format!("https://{bucket}.s3.{region}.{}/{key}", ebs_snapper_aws::account::dns_suffix(region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_policy_and_the_template_url_follow_the_partition() {
        for (region, partition, domain) in [
            ("eu-west-1", "aws", "amazonaws.com"),
            ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
            ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
        ] {
            let policy: serde_json::Value = serde_json::from_str(&tls_only_policy("b", region)).unwrap();
            assert_eq!(
                policy["Statement"][0]["Resource"],
                serde_json::json!([format!("arn:{partition}:s3:::b"), format!("arn:{partition}:s3:::b/*")]),
                "{region}"
            );
            assert_eq!(template_url("b", region, "t.json"), format!("https://b.s3.{region}.{domain}/t.json"));
        }
    }
}
