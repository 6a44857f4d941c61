//! The pure core of ebs-snapper: configuration parsing and validation, durations, schedules,
//! tag rules and the planners that turn an inventory into actions.
//!
//! Nothing here performs I/O or knows the AWS SDK; the `ebs-snapper-aws` crate gathers
//! inventories and executes plans.

// What a configuration is, and the rules it carries (durations, schedules, tiers, filters).
pub mod config;
// The planners.
pub mod plan;
// What a run reports: summaries, metrics, the status report.
pub mod report;

pub mod deploy_plan;
pub mod error;
pub mod event;
pub mod ids;
pub mod inventory;
pub mod job;
pub mod pace;
pub mod release;
pub mod tags;
// Builders for tests and benchmarks (core's own tests, or the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

// The modules by their short paths (`ebs_snapper_core::snapshot_plan`, ...).
pub use config::{configuration_set, duration, instance_filters, schedule, tiers};
pub use plan::{drill_plan, fleet, lock_plan, replication_plan, retention_plan, snapshot_plan, vault_plan};
pub use report::{metrics, status};

pub use config::{
    Configuration, Consistency, CopyDestination, Drill, Filter, Lock, LockMode, Strictness, TagValues, Tier,
};
pub use configuration_set::{ConfigurationSet, InvalidConfiguration, NamedConfiguration, StoredConfiguration};
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, DurationError, ScheduleError};
pub use event::{is_scheduled_event, EventError, WorkerEvent, MAX_CONTINUATIONS};
pub use ids::{is_account_id, is_region_name};
pub use inventory::{
    Attachment, Encryption, Instance, Inventory, LockState, Locks, Snapshot, SnapshotLock, SnapshotState, Tags, Volume,
};
pub use job::Job;
pub use replication_plan::{
    copy_request, peer_regions, plan_replication, CopyRequest, InSync, PeerIndex, PeerListing, ReplicationAction,
    ReplicationDecision, ReplicationPlan, MAX_IN_FLIGHT,
};
pub use report::{Action, ActionReport, Executed, Outcome, RegionReport, ReportOptions};
pub use retention_plan::{
    parse_delete_on, plan_retention, Delete, Keep, RetentionAction, RetentionDecision, RetentionPlan,
};
pub use schedule::{due, CronSchedule, Due, Schedule};
pub use snapshot_plan::{plan_snapshots, SnapshotPlan, SnapshotRequest, VolumeAction, VolumeDecision};

/// The version written into snapshot descriptions.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
