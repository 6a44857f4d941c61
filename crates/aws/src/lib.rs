//! Everything in ebs-snapper that talks to AWS: SDK loading, the account id, the configuration
//! store, region discovery, inventory, executors, the replication rule, the dispatcher that
//! invokes workers, and the jobs built from them. The Lambda handlers are in `crates/lambda`,
//! deploy (which only the CLI does) in the CLI crate.

pub mod account;
pub mod budget;
pub mod config_store;
pub mod dispatcher;
pub mod drill;
pub mod error;
pub mod executor;
pub mod fleet_check;
pub mod inventory;
pub mod jobs;
pub mod lease;
pub mod pace;
pub mod regions;
pub mod replication_rule;
pub mod sdk;
pub mod status;
pub mod vault;

pub use account::{account_from_arn, caller_account_id, is_account_id};
pub use budget::TimeBudget;
pub use config_store::{table_name, ConfigStore, DEFAULT_TABLE, TABLE_ENV};
pub use error::AwsError;
pub use jobs::{
    clean_region, drill_region, load_configurations, replication_region, run_region, snapshot_region, JobOptions,
};
pub use lease::{LeaseScope, LEASE_ENV};
pub use sdk::Aws;
