//! The stack: its status, create or update (previous parameter values kept), the wait for a final
//! status, and the failing resource's reason on a rollback.

use super::*;

/// What DescribeStacks says of a stack: its status, parameters and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub status: String,
    pub parameters: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

impl Described {
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The stack as DescribeStacks gives it, or None when there is no such stack.
pub(super) async fn describe_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
) -> Result<Option<Described>, DeployError> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().map(|s| Described {
            status: s.stack_status().map(|st| st.as_str().to_string()).unwrap_or_default(),
            parameters: s
                .parameters()
                .iter()
                .filter_map(|p| Some((p.parameter_key()?.to_string(), p.parameter_value().unwrap_or("").to_string())))
                .collect(),
            tags: s.tags().iter().filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string()))).collect(),
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

/// The stack's status and parameters (name, value), or None when there is no such stack.
pub(super) async fn stack_status(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
) -> Result<Option<(String, Vec<(String, String)>)>, DeployError> {
    Ok(describe_stack(cfn, stack, region).await?.map(|d| (d.status, d.parameters)))
}

pub(super) async fn stack_exists(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
) -> Result<bool, DeployError> {
    Ok(stack_status(cfn, stack, region).await?.is_some_and(|(status, _)| status != "DELETE_COMPLETE"))
}

pub(super) fn to_cfn(params: Vec<StackParameter>) -> Vec<Parameter> {
    params
        .into_iter()
        .map(|p| match p {
            StackParameter::Value(k, v) => Parameter::builder().parameter_key(k).parameter_value(v).build(),
            StackParameter::UsePrevious(k) => Parameter::builder().parameter_key(k).use_previous_value(true).build(),
        })
        .collect()
}

/// The stack a deploy creates or updates, the bucket of its code, and its template's key there.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub(super) stack: &'a str,
    pub(super) bucket: &'a str,
    pub(super) template_key: &'a str,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn deploy_stack(
    cfn: &aws_sdk_cloudformation::Client,
    opts: &DeployOptions,
    code: &Code,
    target: Target<'_>,
    deployed: Option<Described>,
    template_text: &str,
    template_parameters: &[String],
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let Target { stack, bucket, template_key } = target;
    let region = opts.region.as_str();
    let mut fixed =
        vec![("CodeBucket".to_string(), bucket.to_string()), (VERSION_PARAMETER.to_string(), opts.version.clone())];
    // The stack runs the functions on the architecture the zips were built for.
    if let Some(arch) = &code.architecture {
        fixed.push(("Architecture".to_string(), arch.clone()));
    }
    let tags = [(VERSION_TAG.to_string(), opts.version.clone())];
    let template_url = template_url(bucket, region, template_key);
    let use_body = template_text.len() <= MAX_TEMPLATE_BODY;
    let template = if use_body { TemplateSource::Body(template_text) } else { TemplateSource::Url(&template_url) };
    let status = deployed.map(|d| (d.status, d.parameters));
    match status {
        None => {
            let params = stack_parameters(template_parameters, None, &opts.parameters, &fixed)
                .map_err(DeployError::Parameters)?;
            create_stack(cfn, stack, region, params, template, Capability::CapabilityIam, &tags).await?;
            progress(format!("stack {stack}: creating"));
        }
        Some((_, existing)) if physical_ids(cfn, stack, region).await?.contains_key(PYTHON_TABLE) => {
            if !opts.replace_python_stack {
                return Err(DeployError::PythonStack { stack: stack.to_string() });
            }
            replace_python_stack(cfn, stack, region, &existing, opts.poll, say, progress).await?;
            // The table stays, outside any stack: this stack uses it and does not create it.
            let mut overrides = opts.parameters.clone();
            overrides.retain(|(k, _)| k != "CreateTable");
            overrides.push(("CreateTable".to_string(), "false".to_string()));
            // The parameters both templates have (schedules, CostCenter, the memory of each
            // function) keep the values the Python stack had.
            let params = stack_parameters(template_parameters, Some(&existing), &overrides, &fixed)
                .map_err(DeployError::Parameters)?;
            create_stack(cfn, stack, region, params, template, Capability::CapabilityIam, &tags).await?;
            progress(format!("stack {stack}: creating on the Python tool's table"));
        }
        Some((_, existing)) => {
            let params = stack_parameters(template_parameters, Some(&existing), &opts.parameters, &fixed)
                .map_err(DeployError::Parameters)?;
            let change = Change { params, template, template_text, existing: &existing, tags: &tags };
            if !update_stack(cfn, stack, region, change, Capability::CapabilityIam, say, progress).await? {
                return Ok(());
            }
        }
    }
    settle(cfn, stack, region, opts.poll, say, progress).await
}

/// The tags of a create or update: None leaves an updated stack's tags as they are.
fn cfn_tags(tags: &[(String, String)]) -> Option<Vec<aws_sdk_cloudformation::types::Tag>> {
    (!tags.is_empty()).then(|| {
        tags.iter().map(|(k, v)| aws_sdk_cloudformation::types::Tag::builder().key(k).value(v).build()).collect()
    })
}

/// Why a stack in `status` cannot be deployed over, if it cannot: a failed create, or busy.
pub(super) fn unusable(stack: &str, region: &str, status: &str) -> Option<DeployError> {
    if status == "ROLLBACK_COMPLETE" {
        return Some(DeployError::RolledBack { stack: stack.to_string(), region: region.to_string() });
    }
    status.ends_with("_IN_PROGRESS").then(|| DeployError::Busy { stack: stack.to_string(), status: status.to_string() })
}

/// An update of a stack: its parameters, its template, and what it has now.
pub(super) struct Change<'a> {
    pub(super) params: Vec<StackParameter>,
    pub(super) template: TemplateSource<'a>,
    pub(super) template_text: &'a str,
    pub(super) existing: &'a [(String, String)],
    /// The stack's tags after the update (none: left as they are).
    pub(super) tags: &'a [(String, String)],
}

/// Starts an update of `stack`; false (said as "no changes") when it would change nothing.
pub(super) async fn update_stack(
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
    let mut req = cfn
        .update_stack()
        .stack_name(stack)
        .set_parameters(Some(to_cfn(change.params)))
        .set_tags(cfn_tags(change.tags))
        .capabilities(capability);
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
pub(super) async fn settle(
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
        let reason = failure_reason(cfn, stack, region).await;
        Err(DeployError::StackEnded { stack: stack.to_string(), status: final_status, reason })
    }
}

/// True when the stack already has this template and these parameter values, so an update
/// would change nothing (CloudFormation would answer "No updates are to be performed").
pub(super) async fn unchanged(
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

pub(super) async fn wait(
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
pub(super) async fn failure_reason(cfn: &aws_sdk_cloudformation::Client, stack: &str, region: &str) -> String {
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

/// The architecture the zips in `artifacts` were built for (`ARCH`, written by
/// scripts/package.sh after checking every binary), if known.
pub(super) fn zips_architecture(artifacts: &Path) -> Result<Option<String>, DeployError> {
    let Ok(text) = std::fs::read_to_string(artifacts.join("ARCH")) else { return Ok(None) };
    let arch = text.trim().to_string();
    if arch != "x86_64" && arch != "arm64" {
        return Err(DeployError::UnknownArchitecture { path: artifacts.join("ARCH"), found: arch });
    }
    Ok(Some(arch))
}

/// A `--parameter Architecture` that disagrees with the zips is refused: the stack's
/// architecture follows the zips, never a second flag.
pub(super) fn check_architecture_parameter(code: &Code, overrides: &[(String, String)]) -> Result<(), DeployError> {
    if let (Some(built), Some((_, asked))) =
        (&code.architecture, overrides.iter().rev().find(|(k, _)| k == "Architecture"))
    {
        if asked != built {
            return Err(DeployError::ArchitectureMismatch {
                asked: asked.clone(),
                built: built.clone(),
                artifacts: code.artifacts.clone(),
            });
        }
    }
    Ok(())
}

/// Where CloudFormation reads the template: the request body (up to 51,200 bytes), or S3.
#[derive(Debug, Clone, Copy)]
pub(super) enum TemplateSource<'a> {
    Body(&'a str),
    Url(&'a str),
}

pub(super) async fn create_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    params: Vec<StackParameter>,
    template: TemplateSource<'_>,
    capability: Capability,
    tags: &[(String, String)],
) -> Result<(), DeployError> {
    let req = cfn
        .create_stack()
        .stack_name(stack)
        .set_parameters(Some(to_cfn(params)))
        .set_tags(cfn_tags(tags))
        .capabilities(capability);
    let req = match template {
        TemplateSource::Body(body) => req.template_body(body),
        TemplateSource::Url(url) => req.template_url(url),
    };
    req.send().await.map(|_| ()).map_err(|e| AwsError::call("CreateStack", region, e).into())
}

/// The URL CloudFormation reads a template from in the code bucket (the region's S3 endpoint, in
/// its partition's domain).
pub(super) fn template_url(bucket: &str, region: &str, key: &str) -> String {
    format!("https://{bucket}.s3.{region}.{}/{key}", ebs_snapper_aws::account::dns_suffix(region))
}

#[cfg(test)]
mod tests {
    use super::super::replay::Replay;
    use super::*;

    const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
    }

    fn described(status: &str) -> String {
        format!(
            "<DescribeStacksResponse xmlns=\"{NS}\"><DescribeStacksResult><Stacks><member>\
             <StackName>s</StackName><StackStatus>{status}</StackStatus>\
             <CreationTime>2026-01-01T00:00:00Z</CreationTime><Parameters><member>\
             <ParameterKey>CodeBucket</ParameterKey><ParameterValue>b</ParameterValue></member></Parameters>\
             </member></Stacks></DescribeStacksResult></DescribeStacksResponse>"
        )
    }

    // CloudFormation answers ValidationError both for a stack that does not exist and for a bad
    // request: only the first means "no stack".
    #[test]
    fn a_stack_that_does_not_exist_is_none_and_other_validation_errors_fail() {
        let replay = Replay::default()
            .error("DescribeStacks", "ValidationError", "Stack with id ebs-snapper-1 does not exist")
            .error("DescribeStacks", "ValidationError", "1 validation error detected: Value at 'stackName' failed")
            .answer("DescribeStacks", 200, described("UPDATE_COMPLETE"));
        let cfn = replay.cloudformation();
        assert_eq!(run(stack_status(&cfn, "ebs-snapper-1", "us-east-1")).unwrap(), None);
        match run(stack_status(&cfn, "ebs-snapper-1", "us-east-1")) {
            Err(DeployError::Aws(e)) => {
                assert_eq!(e.code(), Some("ValidationError"));
                assert!(e.to_string().contains("DescribeStacks"), "{e}");
            }
            other => panic!("a bad request is not a missing stack: {other:?}"),
        }
        assert_eq!(
            run(stack_status(&cfn, "ebs-snapper-1", "us-east-1")).unwrap(),
            Some(("UPDATE_COMPLETE".to_string(), vec![("CodeBucket".to_string(), "b".to_string())]))
        );
        assert_eq!(replay.asked(), ["DescribeStacks"; 3]);
    }

    #[test]
    fn an_update_that_changes_nothing_is_no_changes_and_other_validation_errors_fail() {
        let replay = Replay::default()
            .error("UpdateStack", "ValidationError", "No updates are to be performed.")
            .error("UpdateStack", "ValidationError", "Template format error: unsupported structure.");
        let cfn = replay.cloudformation();
        // Parameters that differ from the stack's: deploy asks CloudFormation, which decides.
        let change = || Change {
            params: vec![StackParameter::Value("CodeBucket".into(), "new".into())],
            template: TemplateSource::Body("{}"),
            template_text: "{}",
            existing: &[],
            tags: &[],
        };
        let (mut said, mut progress) = (Vec::new(), Vec::new());
        let updated = run(update_stack(
            &cfn,
            "s",
            "us-east-1",
            change(),
            Capability::CapabilityIam,
            &mut |l| said.push(l),
            &mut |l| progress.push(l),
        ));
        assert!(!updated.unwrap(), "nothing to update is not an update");
        assert_eq!(said, ["stack s: no changes"]);
        let failed = run(update_stack(
            &cfn,
            "s",
            "us-east-1",
            change(),
            Capability::CapabilityIam,
            &mut |l| said.push(l),
            &mut |l| progress.push(l),
        ));
        match failed {
            Err(DeployError::Aws(e)) => assert!(e.to_string().contains("Template format error"), "{e}"),
            other => panic!("a bad template is not \"no changes\": {other:?}"),
        }
        assert_eq!(said.len(), 1);
        assert!(progress.is_empty());
        assert_eq!(replay.asked(), ["UpdateStack"; 2]);
    }

    #[test]
    fn unusable_stacks_are_typed_refusals() {
        assert!(matches!(unusable("s", "r", "ROLLBACK_COMPLETE"), Some(DeployError::RolledBack { .. })));
        assert!(matches!(
            unusable("s", "r", "UPDATE_IN_PROGRESS"),
            Some(DeployError::Busy { status, .. }) if status == "UPDATE_IN_PROGRESS"
        ));
        assert!(unusable("s", "r", "UPDATE_COMPLETE").is_none());
    }

    #[test]
    fn the_template_url_follows_the_partition() {
        for (region, domain) in
            [("eu-west-1", "amazonaws.com"), ("cn-north-1", "amazonaws.com.cn"), ("us-gov-west-1", "amazonaws.com")]
        {
            assert_eq!(template_url("b", region, "t.json"), format!("https://b.s3.{region}.{domain}/t.json"));
        }
    }
}
