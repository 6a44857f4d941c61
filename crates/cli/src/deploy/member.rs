//! `deploy --member` and `deploy --vault`: a role's stack in another account, trusting the
//! deployment's function roles (SPEC §13, §16).

use super::*;

/// The stack `deploy --member` creates in a member account (SPEC §13).
pub const MEMBER_STACK: &str = "ebs-snapper-member";
/// The stack `deploy --vault` creates in the vault account (SPEC §16).
pub const VAULT_STACK: &str = "ebs-snapper-vault";

/// What `deploy --member` or `deploy --vault` deploys, and where.
#[derive(Debug, Clone)]
pub struct MemberOptions {
    /// [`MEMBER_STACK`] or [`VAULT_STACK`].
    pub stack: &'static str,
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

/// Creates or updates the member (or vault) stack with the caller's credentials, trusting the
/// deployment account; nothing is built or uploaded.
pub async fn deploy_member(
    aws: &Aws,
    opts: &MemberOptions,
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let MemberOptions { stack, region, deployment_account, template, parameters: overrides, poll } = opts;
    let (region, poll) = (region.as_str(), *poll);
    let parsed: serde_json::Value = serde_json::from_str(&template.text)
        .map_err(|source| DeployError::NotJson { name: template.name.clone(), source })?;
    let names: Vec<String> = parsed["Parameters"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let fixed = [("DeploymentAccountId".to_string(), deployment_account.to_string())];
    stack_parameters(&names, None, overrides, &fixed).map_err(DeployError::Parameters)?;
    let cfn = aws_sdk_cloudformation::Client::new(&aws.in_region(region));
    let stack = *stack;
    let source = TemplateSource::Body(&template.text);
    // The role has a name (MemberRoleName), which CloudFormation only creates when told.
    let capability = Capability::CapabilityNamedIam;
    match stack_status(&cfn, stack, region).await? {
        None => {
            let params = stack_parameters(&names, None, overrides, &fixed).map_err(DeployError::Parameters)?;
            create_stack(&cfn, stack, region, params, source, capability, &[]).await?;
            progress(format!("stack {stack}: creating"));
        }
        Some((status, existing)) => {
            if let Some(e) = unusable(stack, region, &status) {
                return Err(e);
            }
            let params =
                stack_parameters(&names, Some(&existing), overrides, &fixed).map_err(DeployError::Parameters)?;
            let change =
                Change { params, template: source, template_text: &template.text, existing: &existing, tags: &[] };
            if !update_stack(&cfn, stack, region, change, capability, say, progress).await? {
                return Ok(());
            }
        }
    }
    settle(&cfn, stack, region, poll, say, progress).await
}
