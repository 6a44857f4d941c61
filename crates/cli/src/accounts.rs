//! The accounts a job or the status report covers (SPEC §13): the caller's own by default, the
//! ones named with `--account`, or every account in the table with `--all-accounts`. A member
//! account is reached through its member role, assumed with the caller's account id as
//! `ExternalId`.

use ebs_snapper_aws::account::{reach, Reached};
use ebs_snapper_aws::{caller_account_id, table_name, Aws, AwsError, ConfigStore};

use crate::args::AccountArgs;
use crate::error::{check_account, CliError};

/// The accounts to cover, the caller's (the deployment's) first when it is among them.
pub struct Covered {
    /// The caller's account: the deployment, whose table and leases every account uses.
    pub home: String,
    pub accounts: Vec<String>,
}

/// Checks the arguments (before any AWS call), then lists the accounts to cover.
pub async fn covered(aws: &Aws, tool_region: &str, args: &AccountArgs) -> Result<Covered, CliError> {
    for a in &args.accounts {
        check_account("--account", a)?;
    }
    check_role_name(&args.member_role)?;
    let home = caller_account_id(aws).await?;
    let mut accounts: Vec<String> = if args.all_accounts {
        ConfigStore::new(aws, tool_region, table_name()).accounts(&home).await?
    } else if args.accounts.is_empty() {
        vec![home.clone()]
    } else {
        args.accounts.clone()
    };
    accounts.sort();
    accounts.dedup();
    if let Some(i) = accounts.iter().position(|a| *a == home) {
        let own = accounts.remove(i);
        accounts.insert(0, own);
    }
    Ok(Covered { home, accounts })
}

impl Covered {
    /// The way into `account`: the caller's own credentials, or the member role.
    pub async fn reach(&self, aws: &Aws, account: &str, role: &str, session: &str) -> Result<Reached, AwsError> {
        reach(aws, &self.home, account, role, session).await
    }
}

/// Refuses a role name IAM would not accept (`[\w+=,.@-]`, 1 to 64 characters).
pub fn check_role_name(name: &str) -> Result<(), CliError> {
    let valid =
        (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(CliError::Usage(format!("--member-role {name:?} is not an IAM role name")))
    }
}
