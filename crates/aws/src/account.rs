//! Accounts: the caller's id (STS `GetCallerIdentity`) or a Lambda function ARN's, and the way
//! into a member account (SPEC §13): its role `MemberRoleName`, assumed with the deployment's
//! account id as `ExternalId`.

use std::sync::Mutex;

use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::{self, future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

use crate::error::AwsError;
use crate::sdk::Aws;

/// The member role's name when none is configured (the templates' `MemberRoleName` default).
pub const DEFAULT_MEMBER_ROLE: &str = "ebs-snapper-member";
/// The functions' environment variable carrying the stack's `MemberRoleName`.
pub const MEMBER_ROLE_ENV: &str = "MEMBER_ROLE_NAME";

/// A member role session lasts this long; the credentials are renewed (one more `AssumeRole`)
/// when a run outlasts it. One hour is the longest a role allows unless its owner raised it.
const SESSION: std::time::Duration = std::time::Duration::from_secs(3600);

/// The member role's name from `MEMBER_ROLE_NAME`, else the default.
pub fn member_role_name() -> String {
    std::env::var(MEMBER_ROLE_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_MEMBER_ROLE.to_string())
}

/// The environment variable naming the vault role (the deployment's `VaultRoleName`).
pub const VAULT_ROLE_ENV: &str = "VAULT_ROLE_NAME";
/// The vault role's name when none is set (SPEC §16).
pub const DEFAULT_VAULT_ROLE: &str = "ebs-snapper-vault";

/// The vault role's name: `VAULT_ROLE_NAME`, else [`DEFAULT_VAULT_ROLE`].
pub fn vault_role_name() -> String {
    std::env::var(VAULT_ROLE_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_VAULT_ROLE.to_string())
}

/// The partition of a region (`aws`, `aws-cn`, `aws-us-gov`), for ARNs.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The DNS suffix of a region's service endpoints (`amazonaws.com`; in China
/// `amazonaws.com.cn`), for URLs such as a template's in S3.
pub fn dns_suffix(region: &str) -> &'static str {
    if partition(region) == "aws-cn" {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The ARN of the member role `role_name` in `account`.
pub fn member_role_arn(region: &str, account: &str, role_name: &str) -> String {
    format!("arn:{}:iam::{account}:role/{role_name}", partition(region))
}

/// The way to one account a run works in: its id, and the SDK configuration acting in it.
#[derive(Debug, Clone)]
pub struct Reached {
    pub account: String,
    pub aws: Aws,
}

/// Reaches `account` from the deployment (`home`, whose id is `home_account`): the deployment's
/// own account is `home` itself; a member is reached by assuming its role `role_name` with the
/// deployment's account id as `ExternalId`. The role is assumed once here, so that an account
/// that cannot be reached says so now, in one line, and not at its first EC2 call; later
/// renewals go through the SDK's assume-role provider.
pub async fn reach(
    home: &Aws,
    home_account: &str,
    account: &str,
    role_name: &str,
    session: &str,
) -> Result<Reached, AwsError> {
    if account == home_account {
        return Ok(Reached { account: account.to_string(), aws: home.clone() });
    }
    let region = home.region().unwrap_or("us-east-1").to_string();
    let role = member_role_arn(&region, account, role_name);
    let session = session_name(session);
    let unreachable = |message: String| AwsError::Member { account: account.to_string(), role: role.clone(), message };
    let out = aws_sdk_sts::Client::new(home.config())
        .assume_role()
        .role_arn(&role)
        .role_session_name(&session)
        .external_id(home_account)
        .duration_seconds(SESSION.as_secs() as i32)
        .send()
        .await
        .map_err(|e| unreachable(AwsError::call("AssumeRole", &region, e).to_string()))?;
    let c = out.credentials().ok_or_else(|| unreachable("AssumeRole returned no credentials".to_string()))?;
    let expiry = std::time::SystemTime::try_from(*c.expiration()).ok();
    let first = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        expiry,
        "ebs-snapper member role",
    );
    let renew = AssumeRoleProvider::builder(role.clone())
        .external_id(home_account)
        .session_name(session)
        .session_length(SESSION)
        .configure(home.config())
        .build()
        .await;
    let provider = MemberCredentials { first: Mutex::new(Some(first)), renew };
    let config = home.config().to_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build();
    Ok(Reached { account: account.to_string(), aws: Aws::from_config(config) })
}

/// A role session name AWS accepts: `[\w+=,.@-]`, at most 64 characters.
fn session_name(wanted: &str) -> String {
    let name: String = wanted
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    if name.len() < 2 {
        "ebs-snapper".to_string()
    } else {
        name
    }
}

/// The member role's credentials: those `reach` got first, then the assume-role provider's.
#[derive(Debug)]
struct MemberCredentials {
    first: Mutex<Option<Credentials>>,
    renew: AssumeRoleProvider,
}

impl ProvideCredentials for MemberCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let first = self.first.lock().map(|mut f| f.take()).unwrap_or(None);
        match first {
            Some(c) => future::ProvideCredentials::ready(Ok::<_, provider::error::CredentialsError>(c)),
            None => self.renew.provide_credentials(),
        }
    }
}

/// Asks STS who the caller is.
pub async fn caller_account_id(aws: &Aws) -> Result<String, AwsError> {
    let client = aws_sdk_sts::Client::new(aws.config());
    let out = client.get_caller_identity().send().await.map_err(|e| AwsError::Account {
        message: AwsError::call("GetCallerIdentity", aws.region().unwrap_or("?"), e).to_string(),
    })?;
    out.account()
        .map(str::to_string)
        .ok_or_else(|| AwsError::Account { message: "GetCallerIdentity returned no account".to_string() })
}

/// The account id inside an ARN (`arn:aws:lambda:us-east-1:123456789012:function:name`).
pub fn account_from_arn(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    is_account_id(account).then_some(account)
}

pub use ebs_snapper_core::is_account_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_from_function_arn() {
        assert_eq!(account_from_arn("arn:aws:lambda:us-east-1:123456789012:function:f"), Some("123456789012"));
        assert_eq!(account_from_arn("arn:aws:lambda:us-east-1:12345:function:f"), None);
        assert_eq!(account_from_arn("nonsense"), None);
    }

    #[test]
    fn endpoints_follow_the_partition() {
        assert_eq!(dns_suffix("eu-west-1"), "amazonaws.com");
        assert_eq!(dns_suffix("cn-northwest-1"), "amazonaws.com.cn");
        assert_eq!(dns_suffix("us-gov-east-1"), "amazonaws.com");
    }

    #[test]
    fn member_role_arns_follow_the_partition() {
        assert_eq!(member_role_arn("eu-west-1", "111122223333", "r"), "arn:aws:iam::111122223333:role/r");
        assert_eq!(member_role_arn("cn-north-1", "111122223333", "r"), "arn:aws-cn:iam::111122223333:role/r");
        assert_eq!(member_role_arn("us-gov-west-1", "111122223333", "r"), "arn:aws-us-gov:iam::111122223333:role/r");
    }

    #[test]
    fn session_names_are_what_aws_accepts() {
        assert_eq!(session_name("function ebs-snapper-1 (x)"), "function-ebs-snapper-1--x-");
        assert_eq!(session_name(&"a".repeat(100)).len(), 64);
        assert_eq!(session_name(""), "ebs-snapper");
    }
}
