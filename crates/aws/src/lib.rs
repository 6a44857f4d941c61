//! Everything in ebs-snapper that talks to AWS: SDK loading, the account id and the
//! configuration store. Jobs, inventory and executors build on these.

pub mod account;
pub mod config_store;
pub mod error;
pub mod sdk;

pub use account::{account_from_arn, caller_account_id, is_account_id};
pub use config_store::{table_name, ConfigStore, DEFAULT_TABLE, TABLE_ENV};
pub use error::AwsError;
pub use sdk::Aws;
