//! The command line, compatible with the Python tool's: `ebs-snapper [-V|-VV] [-t REGION] COMMAND`.

use std::path::PathBuf;

use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ebs-snapper",
    version = ebs_snapper_version::DESCRIBED,
    disable_version_flag = true,
    about = "Scheduled EBS snapshots, retention clean-up and cross-region replication for an AWS account"
)]
pub struct Cli {
    /// Log more to stderr: -V for info, -VV for debug.
    #[arg(short = 'V', action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Region where the tool is deployed (its DynamoDB table and stack).
    #[arg(
        short = 't',
        long = "tool_region",
        visible_alias = "tool-region",
        default_value = "us-east-1",
        global = true
    )]
    pub tool_region: String,

    /// Print the version.
    #[arg(long, action = ArgAction::Version)]
    pub version: Option<bool>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take the snapshots that are due, in every region with instances (or those given).
    Snapshot(JobArgs),
    /// Delete the snapshots whose DeleteOn date has come, keeping each volume's minimum.
    Clean(JobArgs),
    /// Copy snapshots tagged replication_dst_region to that region; delete copies whose source is gone.
    Replication(JobArgs),
    /// Deploy the tool (or update it) in the tool region: bucket, uploads, stack, function code.
    Deploy(DeployArgs),
    /// Get, set, delete, list or check the configurations stored for an account.
    Configure(ConfigureArgs),
    /// Show what is protected: one row per selected volume with its newest snapshot and a verdict.
    Status(StatusArgs),
    /// Prove that snapshots restore: run the restore drills that are due now (the clean job runs
    /// them too), or drill one snapshot.
    Drill(DrillArgs),
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Drill this snapshot (one of the account's own), due or not.
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["list", "get", "set", "delete", "check"])))]
pub struct ConfigureArgs {
    /// List the configuration ids of the account.
    #[arg(short = 'l', long = "list")]
    pub list: bool,
    /// Print the configuration ID as one line of JSON.
    #[arg(short = 'g', long = "get")]
    pub get: bool,
    /// Validate and store JSON (or `-` to read it from stdin) under ID.
    #[arg(short = 's', long = "set")]
    pub set: bool,
    /// Delete the configuration ID.
    #[arg(short = 'd', long = "delete", visible_alias = "del")]
    pub delete: bool,
    /// Check the account's configurations and report each problem on its own line.
    #[arg(short = 'c', long = "check", visible_alias = "sanity_check")]
    pub check: bool,
    /// AWS account id (12 digits); default: the caller's account (STS).
    #[arg(short = 'a', long = "aws_account_id", visible_alias = "account")]
    pub account: Option<String>,
    /// The role assumed in member accounts (the stack's MemberRoleName), for -c.
    #[arg(long = "member-role", value_name = "NAME", default_value = ebs_snapper_aws::account::DEFAULT_MEMBER_ROLE)]
    pub member_role: String,
    /// With -c: text put before the account on every finding line (`EXTRA,ACCOUNT: ...`).
    #[arg(short = 'e', long = "extra")]
    pub extra: Option<String>,
    /// Configuration id (with -g, -s, -d).
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Configuration JSON, or `-` for stdin (with -s).
    #[arg(value_name = "JSON")]
    pub json: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// Only this region (repeatable); default: every enabled region with work.
    #[arg(short = 'r', long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    #[command(flatten)]
    pub accounts: AccountArgs,
    /// Print the plan, each action with its reason, and change nothing.
    #[arg(long = "dry-run", visible_alias = "dry_run")]
    pub dry_run: bool,
    /// Print one JSON document instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Which accounts a job or the status report covers (SPEC §13).
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// Only this account (repeatable): the caller's own, or a member reached through its member
    /// role; default: the caller's account.
    #[arg(short = 'a', long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Every account with configurations in the table (and the caller's own).
    #[arg(long = "all-accounts", conflicts_with = "accounts")]
    pub all_accounts: bool,
    /// The role assumed in member accounts (the stack's MemberRoleName).
    #[arg(long = "member-role", value_name = "NAME", default_value = ebs_snapper_aws::account::DEFAULT_MEMBER_ROLE)]
    pub member_role: String,
}

impl AccountArgs {
    /// Whether the command was given accounts at all (the output then names each one).
    pub fn named(&self) -> bool {
        self.all_accounts || !self.accounts.is_empty()
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this region (repeatable); default: every enabled region with instances.
    #[arg(short = 'r', long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    #[command(flatten)]
    pub accounts: AccountArgs,
    /// Print one JSON document `{"volumes": [...], "summary": {...}}` instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// AWS account id (12 digits); default: the caller's account (STS).
    #[arg(short = 'a', long = "aws_account_id", visible_alias = "account")]
    pub account: Option<String>,
    /// Do not build: use the zips already in --artifacts (--from never builds).
    #[arg(short = 'n', long = "no_build", visible_alias = "no-build")]
    pub no_build: bool,
    /// Do not upload to the bucket (and so do not update function code).
    #[arg(short = 'm', long = "no_upload", visible_alias = "no-upload")]
    pub no_upload: bool,
    /// Do not create or update the stack.
    #[arg(short = 'o', long = "no_stack", visible_alias = "no-stack")]
    pub no_stack: bool,
    /// Stack parameter KEY=VALUE (repeatable); others keep their values.
    #[arg(long = "parameter", value_name = "KEY=VALUE")]
    pub parameters: Vec<String>,
    /// Build for arm64 (the stack's Architecture follows the zips).
    #[arg(long)]
    pub arm64: bool,
    /// A CloudFormation template to deploy instead of the one built into this binary.
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// A function list to use instead of the one built into this binary.
    #[arg(long)]
    pub functions: Option<PathBuf>,
    /// Deploy a release: its directory, or an unpacked release tarball. Its SHA256SUMS and
    /// MANIFEST.json are checked before anything is uploaded; nothing is built.
    #[arg(long = "from", value_name = "DIR", conflicts_with_all = ["artifacts", "arm64", "template", "functions"])]
    pub release: Option<PathBuf>,
    /// The folder of zips built from source (DIR/<function>/bootstrap.zip, and ARCH); default:
    /// target/lambda of the checkout this binary was built from.
    #[arg(long = "artifacts", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Deploy even when the stack runs a newer version (a rollback).
    #[arg(long = "allow-downgrade")]
    pub allow_downgrade: bool,
    /// The code bucket (default: ebs-snapper-ACCOUNT, plus -REGION outside us-east-1).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Replace the Python tool's stack of the same name, keeping its configuration table and
    /// every item in it (see README, "Moving from the Python tool").
    #[arg(long = "replace-python-stack")]
    pub replace_python_stack: bool,
    /// Install the member role in this (member) account instead, trusting the ebs-snapper
    /// deployment of account DEPLOYMENT (stack ebs-snapper-member, from cloudformation/member.json);
    /// run with the member account's credentials. Nothing is built or uploaded.
    #[arg(
        long,
        value_name = "DEPLOYMENT",
        conflicts_with_all = ["account", "no_build", "no_upload", "no_stack", "arm64", "functions", "artifacts", "release", "bucket", "replace_python_stack", "allow_downgrade"]
    )]
    pub member: Option<String>,
    /// Install the vault role in this (vault) account instead (SPEC §16), trusting the function
    /// roles of the ebs-snapper deployment of account DEPLOYMENT (stack ebs-snapper-vault, from
    /// cloudformation/vault.json); run with the vault account's credentials. Nothing is built or
    /// uploaded.
    #[arg(
        long,
        value_name = "DEPLOYMENT",
        conflicts_with_all = ["member", "account", "no_build", "no_upload", "no_stack", "arm64", "functions", "artifacts", "release", "bucket", "replace_python_stack", "allow_downgrade"]
    )]
    pub vault: Option<String>,
    /// Milliseconds between stack status checks while waiting.
    #[arg(long, default_value_t = 5000, hide = true)]
    pub poll_ms: u64,
}
