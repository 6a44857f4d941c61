//! Carrying out plans: `CreateSnapshot` with its tags applied atomically, with bounded
//! concurrency; each outcome reported, none stopping the others.

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use ebs_snapper_core::SnapshotRequest;
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::budget::TimeBudget;
use crate::error::AwsError;

/// Mutations in flight at once per region.
pub const MUTATION_CONCURRENCY: usize = 8;

/// Deletion errors that are logged and skipped: the snapshot backs an AMI, or is already gone.
const DELETE_SKIPPABLE: [&str; 2] = ["InvalidSnapshot.InUse", "InvalidSnapshot.NotFound"];

/// Snapshot-creation errors that leave the volume due for the next run (a warning, not a failure).
const CREATE_SKIPPABLE: [&str; 2] = ["ConcurrentSnapshotLimitExceeded", "SnapshotCreationPerVolumeRateExceeded"];

/// The outcome of one mutation.
#[derive(Debug)]
pub enum Outcome {
    /// Done; the id of the snapshot created, when there is one.
    Done(Option<String>),
    /// Not done for a known, harmless reason.
    Skipped(String),
    Failed(AwsError),
    /// Not started: the time budget ran out.
    Deferred,
}

/// Creates the snapshots, at most [`MUTATION_CONCURRENCY`] at once; outcomes in request order.
pub async fn create_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    requests: &[&SnapshotRequest],
    budget: &TimeBudget,
) -> Vec<Outcome> {
    let mut outcomes: Vec<(usize, Outcome)> = stream::iter(requests.iter().enumerate())
        .map(|(i, request)| async move {
            if !budget.allows_mutation() {
                return (i, Outcome::Deferred);
            }
            (i, create_snapshot(client, region, request).await)
        })
        .buffer_unordered(MUTATION_CONCURRENCY)
        .collect()
        .await;
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

async fn create_snapshot(client: &aws_sdk_ec2::Client, region: &str, request: &SnapshotRequest) -> Outcome {
    let tags: Vec<Tag> = request.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    let result = client
        .create_snapshot()
        .volume_id(&request.volume_id)
        .description(&request.description)
        .tag_specifications(
            TagSpecification::builder().resource_type(ResourceType::Snapshot).set_tags(Some(tags)).build(),
        )
        .send()
        .await;
    match result {
        Ok(out) => {
            let id = out.snapshot_id().map(str::to_string);
            info!(region, volume_id = %request.volume_id, snapshot_id = id.as_deref().unwrap_or("?"), "created snapshot");
            Outcome::Done(id)
        }
        Err(e) => {
            let e = AwsError::call("CreateSnapshot", region, e);
            if e.code().is_some_and(|c| CREATE_SKIPPABLE.contains(&c)) {
                warn!(region, volume_id = %request.volume_id, error = %e, "snapshot not created now; the volume stays due");
                Outcome::Skipped(e.to_string())
            } else {
                warn!(region, volume_id = %request.volume_id, error = %e, "snapshot creation failed");
                Outcome::Failed(e)
            }
        }
    }
}

/// Deletes the snapshots, at most [`MUTATION_CONCURRENCY`] at once; outcomes in input order.
pub async fn delete_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    ids: &[&str],
    budget: &TimeBudget,
) -> Vec<Outcome> {
    let mut outcomes: Vec<(usize, Outcome)> = stream::iter(ids.iter().enumerate())
        .map(|(i, id)| async move {
            if !budget.allows_mutation() {
                return (i, Outcome::Deferred);
            }
            (i, delete_snapshot(client, region, id).await)
        })
        .buffer_unordered(MUTATION_CONCURRENCY)
        .collect()
        .await;
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// Deletes one snapshot. Used by the clean job and for replicas whose source is gone.
pub async fn delete_snapshot(client: &aws_sdk_ec2::Client, region: &str, id: &str) -> Outcome {
    match client.delete_snapshot().snapshot_id(id).send().await {
        Ok(_) => {
            info!(region, snapshot_id = id, "deleted snapshot");
            Outcome::Done(None)
        }
        Err(e) => {
            let e = AwsError::call("DeleteSnapshot", region, e);
            if e.code().is_some_and(|c| DELETE_SKIPPABLE.contains(&c)) {
                warn!(region, snapshot_id = id, error = %e, "snapshot not deleted");
                Outcome::Skipped(e.to_string())
            } else {
                warn!(region, snapshot_id = id, error = %e, "snapshot deletion failed");
                Outcome::Failed(e)
            }
        }
    }
}
