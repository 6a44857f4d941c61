//! The pure core of ebs-snapper: configuration parsing and validation, durations, schedules,
//! tag rules and the planners that turn an inventory into actions.
//!
//! Nothing here performs I/O or knows the AWS SDK; the `ebs-snapper-aws` crate gathers
//! inventories and executes plans.

pub mod config;
pub mod configurations;
pub mod duration;
pub mod error;
pub mod schedule;

pub use config::{Configuration, Consistency, CopyDestination, Filter, Strictness, TagValues, Tier};
pub use configurations::{ConfigurationSet, InvalidConfiguration, NamedConfiguration, StoredConfiguration};
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, DurationError, ScheduleError};
pub use schedule::{due, CronSchedule, Due, Schedule};
pub mod instance_filters;
pub mod inventory;
pub mod snapshot_plan;
pub mod status;
pub mod tags;
pub mod tiers;

pub use inventory::{Attachment, Instance, Inventory, Snapshot, SnapshotState, Tags, Volume};
pub use snapshot_plan::{plan_snapshots, SnapshotPlan, SnapshotRequest, VolumeAction, VolumeDecision};

/// The version written into snapshot descriptions.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod fleet;
pub mod job;
pub mod report;
pub use job::Job;
pub use report::{Action, ActionReport, Executed, Outcome, RegionReport, ReportOptions};
pub mod event;
pub use event::{is_scheduled_event, EventError, WorkerEvent, MAX_CONTINUATIONS};
pub mod ids;
pub use ids::{is_account_id, is_region_name};
pub mod retention_plan;
pub use retention_plan::{
    parse_delete_on, plan_retention, Delete, Keep, RetentionAction, RetentionDecision, RetentionPlan,
};
pub mod replication_plan;
pub use replication_plan::{
    copy_request, peer_regions, plan_replication, CopyRequest, InSync, PeerIndex, PeerListing, ReplicationAction,
    ReplicationDecision, ReplicationPlan, MAX_IN_FLIGHT,
};
pub mod deploy_plan;
pub mod metrics;
pub mod pace;
