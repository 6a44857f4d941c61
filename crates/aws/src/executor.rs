//! Carrying out plans: `CreateSnapshot` with its tags applied atomically, with bounded
//! concurrency; each outcome reported, none stopping the others.
//!
//! **No blind repeat of a mutation whose answer was lost** (SPEC §10.9). `CreateSnapshot` and
//! `CopySnapshot` take no idempotency token, so the SDK's retry of a call that reached AWS but
//! whose answer was lost (a timeout, a dropped connection, a 500 after the work was done) would
//! make a second snapshot. The SDK retries these calls only on errors that prove nothing was
//! done (throttling: AWS refused before acting); any other failure is *verified*: the snapshot
//! the call would have made is looked for (for up to the listing lag, since listings are
//! eventually consistent) and only when it is not there is the call tried again.

use std::sync::Arc;

use aws_sdk_ec2::types::{InstanceSpecification, ResourceType, Tag, TagSpecification, TargetStorageTier};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::ErrorKind;
use ebs_snapper_core::lock_plan::LockRequest;
use ebs_snapper_core::snapshot_plan::{SetExecuted, SetRequest};
use ebs_snapper_core::tags::{TAG_CONFIG, TAG_SET};
use ebs_snapper_core::{Executed, LockMode, SnapshotRequest};
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::budget::TimeBudget;
use crate::error::AwsError;
use crate::inventory::{describe_own_snapshots, ec2_filter, until_listed, SnapshotDetail};
use crate::pace::Paced;

/// Tries of one create or copy whose earlier tries were verified not to have happened.
const VERIFIED_TRIES: u32 = 3;

/// The last say on whether a failed create or copy is retried by the SDK: only when the error
/// proves AWS did nothing (throttling). A transient or server error may come after the work was
/// done, so it is not retried blindly; the executor verifies instead.
#[derive(Debug)]
struct OnlyThrottlesRetried;

impl ClassifyRetry for OnlyThrottlesRetried {
    fn classify_retry(&self, _: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, _: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        match previous {
            RetryAction::RetryIndicated(RetryReason::RetryableError { kind: ErrorKind::ThrottlingError, .. }) => {
                RetryAction::NoActionIndicated
            }
            RetryAction::RetryIndicated(_) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "OnlyThrottlesRetried"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// Error codes with which AWS refuses a call before doing anything, for its rate.
const THROTTLED: [&str; 4] = ["RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled"];

/// The configuration of a create or copy call: [`OnlyThrottlesRetried`] has the last say.
fn only_throttles_retried() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_classifier(OnlyThrottlesRetried)
}

/// Whether a failed call may have been carried out by AWS: anything but a refusal AWS answered
/// with a 4xx (throttling included), or an attempt stopped before it was sent.
fn outcome_unknown<E: std::error::Error + ProvideErrorMetadata + 'static>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        // Throttling (EC2 answers it with a 503) is a refusal before anything was done.
        SdkError::ServiceError(s) if s.err().code().is_some_and(|c| THROTTLED.contains(&c)) => false,
        SdkError::ServiceError(s) => s.raw().status().is_server_error(),
        SdkError::ConstructionFailure(_) => false,
        _ => !not_sent(e),
    }
}

/// Mutations in flight at once per region.
pub const MUTATION_CONCURRENCY: usize = 8;

/// The tags of a new snapshot or copy, applied in the same call that makes it.
fn snapshot_tags(tags: &[(String, String)]) -> TagSpecification {
    let tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
    TagSpecification::builder().resource_type(ResourceType::Snapshot).set_tags(Some(tags)).build()
}

/// Deletion errors that are logged and skipped: the snapshot backs an AMI, is already gone, or
/// was locked after it was listed (EC2's `SnapshotLocked`; SPEC §16: a lock is never a failure).
const DELETE_SKIPPABLE: [&str; 3] = ["InvalidSnapshot.InUse", "InvalidSnapshot.NotFound", "SnapshotLocked"];

/// Snapshot-creation errors that leave the volume due for the next run (a warning, not a failure).
const CREATE_SKIPPABLE: [&str; 2] = ["ConcurrentSnapshotLimitExceeded", "SnapshotCreationPerVolumeRateExceeded"];

/// `CreateSnapshot` refusals meaning the volume is gone since it was listed (deleted, say, by
/// autoscaling during a long paced run): nothing to snapshot, a skip with the reason (SPEC
/// §10.12).
const CREATE_VANISHED: [&str; 1] = ["InvalidVolume.NotFound"];

/// `CreateSnapshots` refusals meaning the instance is gone, or going, since it was listed
/// (terminated): a skip with the reason (SPEC §10.12).
const SET_VANISHED: [&str; 2] = ["InvalidInstanceID.NotFound", "IncorrectState"];

/// The error [`Attempts`] stops an attempt with.
#[derive(Debug, thiserror::Error)]
#[error("not sent: the run's time or its region lease ran out before this attempt")]
struct NotSent;

/// Watches each attempt of a mutation, retries included. Before it goes out, the budget: a
/// retry held back by the SDK's backoff or rate limiter must not reach AWS after the region lease
/// may have passed to another run (or after the Lambda time is up). When it is answered, the
/// pace: a 503 (EC2's `RequestLimitExceeded`, or `Unavailable`) slows the run's starts of that
/// kind of mutation, any other answer lets them speed up.
#[derive(Debug, Clone)]
struct Attempts {
    budget: TimeBudget,
    pace: Arc<Paced>,
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "Attempts"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.budget.allows_mutation() {
            Ok(())
        } else {
            Err(Box::new(NotSent))
        }
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.pace.answered(context.response().status().as_u16() == 503);
        Ok(())
    }
}

/// Whether a failed mutation was stopped by [`Attempts`] (so never reached AWS): its
/// [`NotSent`] is somewhere in the error's chain of causes.
fn not_sent<E: std::error::Error + 'static>(e: &SdkError<E, HttpResponse>) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<NotSent>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Runs `mutate` on every item, at most [`MUTATION_CONCURRENCY`] at once and paced to EC2's token
/// bucket (one [`Paced`] for these items, told of every attempt's answer by [`Attempts`]),
/// starting none after the budget ends (those are `deferred`); outcomes in item order.
async fn bounded<'a, T, O, F, Fut>(items: &'a [T], budget: &TimeBudget, deferred: O, mutate: F) -> Vec<O>
where
    O: Clone,
    F: Fn(&'a T, Attempts) -> Fut,
    Fut: std::future::Future<Output = O>,
{
    let pace = Arc::new(Paced::new());
    let mut outcomes: Vec<(usize, O)> = stream::iter(items.iter().enumerate())
        .map(|(i, item)| {
            // The future does nothing until polled, and it is polled only when a slot is free.
            let work = mutate(item, Attempts { budget: budget.clone(), pace: pace.clone() });
            let deferred = deferred.clone();
            let pace = pace.clone();
            async move {
                if !pace.admit_within(budget).await {
                    return (i, deferred);
                }
                (i, work.await)
            }
        })
        .buffer_unordered(MUTATION_CONCURRENCY)
        .collect()
        .await;
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// Creates the snapshots, at most [`MUTATION_CONCURRENCY`] at once; outcomes in request order.
pub async fn create_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    requests: &[&SnapshotRequest],
    budget: &TimeBudget,
) -> Vec<Executed> {
    bounded(requests, budget, Executed::Deferred, |request, attempts| {
        create_snapshot(client, region, request, budget, attempts)
    })
    .await
}

async fn create_snapshot(
    client: &aws_sdk_ec2::Client,
    region: &str,
    request: &SnapshotRequest,
    budget: &TimeBudget,
    attempts: Attempts,
) -> Executed {
    // A snapshot of the volume started after this (less a margin for AWS's clock), after every
    // snapshot of it the plan listed (a frequent cron schedule's previous one can be inside the
    // margin), and tagged with the request's configuration is one a lost answer made: the
    // region's lease keeps other runs of this tool out. Untagged, it is someone else's taken at
    // the same moment (a DLM policy on the same hour, a person), and the volume still lacks
    // this tool's.
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let config = request.tags.iter().find(|(k, _)| k == TAG_CONFIG).map(|(_, v)| v.as_str());
    let send = || async {
        let out = client
            .create_snapshot()
            .volume_id(&request.volume_id)
            .description(&request.description)
            .tag_specifications(snapshot_tags(&request.tags))
            .customize()
            .config_override(only_throttles_retried())
            .interceptor(attempts.clone())
            .send()
            .await;
        out.map(|out| out.snapshot_id().map(str::to_string))
    };
    let find = || async {
        let found = own_snapshots_of(client, region, &request.volume_id, config).await?;
        Ok(made_by_a_lost_create(found, since, request.newer_than).map(Some))
    };
    match send_verified("CreateSnapshot", region, budget, send, find).await {
        Sent::Done(id) => {
            info!(region = %region, volume_id = %request.volume_id, snapshot_id = %id.as_deref().unwrap_or("?"), "created snapshot");
            Executed::Done(id)
        }
        Sent::Held => Executed::Deferred,
        Sent::Refused(e) if e.code().is_some_and(|c| CREATE_SKIPPABLE.contains(&c)) => {
            warn!(region, volume_id = %request.volume_id, error = %e, "snapshot not created now; the volume stays due");
            Executed::Skipped(e.to_string())
        }
        Sent::Refused(e) if e.code().is_some_and(|c| CREATE_VANISHED.contains(&c)) => {
            warn!(region, volume_id = %request.volume_id, error = %e, "the volume is gone since it was listed");
            Executed::Skipped(format!("the volume is gone since it was listed: {e}"))
        }
        Sent::Refused(e) | Sent::Lost(e) => {
            warn!(region, volume_id = %request.volume_id, error = %e, "snapshot creation failed");
            Executed::Failed(e.to_string())
        }
    }
}

/// How a mutation whose answer may be lost ended.
enum Sent<T> {
    /// Done: its answer, or what a lost answer was found to have made.
    Done(T),
    /// Never sent: the run's time or its region lease ran out first.
    Held,
    /// Refused by AWS, so nothing was done.
    Refused(AwsError),
    /// Its answer was lost and it was not found (after the last try), or could not be looked for.
    Lost(AwsError),
}

/// Sends a create or copy (`send`) whose answer may be lost. A lost answer (a server error, a
/// timeout, no answer) is settled by looking for what it would have made (`find`, for up to the
/// listing lag), never by sending again blindly; only when that is verified absent is it sent
/// again, at most [`VERIFIED_TRIES`] times in all.
async fn send_verified<T, E, S, SF, F, FF>(
    operation: &'static str,
    region: &str,
    budget: &TimeBudget,
    mut send: S,
    mut find: F,
) -> Sent<T>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    S: FnMut() -> SF,
    SF: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    F: FnMut() -> FF,
    FF: std::future::Future<Output = Result<Option<T>, AwsError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let e = match send().await {
            Ok(done) => return Sent::Done(done),
            Err(e) if not_sent(&e) => return Sent::Held,
            Err(e) => e,
        };
        let unknown = outcome_unknown(&e);
        let e = AwsError::call(operation, region, e);
        if !unknown {
            return Sent::Refused(e);
        }
        warn!(operation, region, error = %e, "the answer was lost; looking for what it made");
        match after_lost_answer(operation, e, tries, budget, &mut find).await {
            AfterLoss::Found(done) => {
                info!(operation, region, "done after all (found after a lost answer)");
                return Sent::Done(done);
            }
            AfterLoss::TryAgain => continue,
            AfterLoss::GiveUp(e) => return Sent::Lost(e),
        }
    }
}

/// What follows a create or copy whose answer was lost.
enum AfterLoss<T = String> {
    /// It was done: the snapshot (or snapshots) it made.
    Found(T),
    /// Verified not done: it may be tried again.
    TryAgain,
    /// Not found after the last try, or not verifiable: reported, never repeated blindly.
    GiveUp(AwsError),
}

/// Looks for the effect of a mutation whose answer was lost (`find`, for up to the listing lag)
/// and says whether it was done, may be tried again, or must be given up.
async fn after_lost_answer<T, F, Fut>(
    operation: &'static str,
    error: AwsError,
    tries: u32,
    budget: &TimeBudget,
    find: F,
) -> AfterLoss<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, AwsError>>,
{
    match until_listed(find).await {
        Ok(Some(id)) => AfterLoss::Found(id),
        Ok(None) if tries < VERIFIED_TRIES && budget.mutation_may_start().await => AfterLoss::TryAgain,
        Ok(None) => AfterLoss::GiveUp(error),
        Err(verify) => {
            warn!(operation, error = %verify, "could not verify whether it was done; not trying again");
            AfterLoss::GiveUp(AwsError::Unverified { operation, first: Box::new(error), verify: Box::new(verify) })
        }
    }
}

/// Takes the crash-consistent sets, one `CreateSnapshots` each, at most
/// [`MUTATION_CONCURRENCY`] at once; outcomes in set order. As for one snapshot, a lost answer
/// is never repeated blindly: the set is looked for by its `ebs-snapper:set` tag.
pub async fn create_snapshot_sets(
    client: &aws_sdk_ec2::Client,
    region: &str,
    sets: &[&SetRequest],
    budget: &TimeBudget,
) -> Vec<SetExecuted> {
    let deferred = SetExecuted { outcome: Executed::Deferred, snapshots: Vec::new() };
    bounded(sets, budget, deferred, |set, attempts| create_snapshot_set(client, region, set, budget, attempts)).await
}

async fn create_snapshot_set(
    client: &aws_sdk_ec2::Client,
    region: &str,
    set: &SetRequest,
    budget: &TimeBudget,
    attempts: Attempts,
) -> SetExecuted {
    let only = |outcome: Executed| SetExecuted { outcome, snapshots: Vec::new() };
    let send = || async {
        let spec = InstanceSpecification::builder()
            .instance_id(&set.instance_id)
            .exclude_boot_volume(set.exclude_boot)
            .set_exclude_data_volume_ids(
                (!set.exclude_data_volumes.is_empty()).then(|| set.exclude_data_volumes.clone()),
            )
            .build();
        let out = client
            .create_snapshots()
            .instance_specification(spec)
            .description(&set.description)
            .tag_specifications(snapshot_tags(&set.tags))
            .customize()
            .config_override(only_throttles_retried())
            .interceptor(attempts.clone())
            .send()
            .await;
        out.map(|out| {
            out.snapshots()
                .iter()
                .filter_map(|s| Some((s.volume_id()?.to_string(), s.snapshot_id()?.to_string())))
                .collect::<Vec<_>>()
        })
    };
    let find = || set_snapshots(client, region, &set.set_id);
    match send_verified("CreateSnapshots", region, budget, send, find).await {
        Sent::Done(snapshots) => {
            info!(region = %region, instance_id = %set.instance_id, set = %set.set_id, snapshots = snapshots.len(), "created a crash-consistent set");
            SetExecuted { outcome: Executed::Done(None), snapshots }
        }
        Sent::Held => only(Executed::Deferred),
        Sent::Refused(e) if e.code().is_some_and(|c| CREATE_SKIPPABLE.contains(&c)) => {
            warn!(region, instance_id = %set.instance_id, error = %e, "set not created now; the instance stays due");
            only(Executed::Skipped(e.to_string()))
        }
        Sent::Refused(e) if e.code().is_some_and(|c| SET_VANISHED.contains(&c)) => {
            warn!(region, instance_id = %set.instance_id, error = %e, "the instance is gone since it was listed");
            only(Executed::Skipped(format!("the instance is gone since it was listed: {e}")))
        }
        Sent::Refused(e) | Sent::Lost(e) => {
            warn!(region, instance_id = %set.instance_id, error = %e, "set creation failed");
            only(Executed::Failed(e.to_string()))
        }
    }
}

/// The (volume, snapshot) pairs of the set tagged `set_id`, if it is listed.
async fn set_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    set_id: &str,
) -> Result<Option<Vec<(String, String)>>, AwsError> {
    let filters = vec![ec2_filter(&format!("tag:{TAG_SET}"), [set_id.to_string()])];
    let found = describe_own_snapshots(client, region, filters, SnapshotDetail::Bare).await?;
    let pairs: Vec<(String, String)> = found.into_iter().filter_map(|s| Some((s.volume_id?, s.id))).collect();
    Ok((!pairs.is_empty()).then_some(pairs))
}

/// What became of a snapshot mutation that is harmless to repeat (delete, archive, lock): not
/// sent (its time ran out: deferred), done (`done` is logged), refused with a code of
/// `skippable` (a skip with the reason), or failed.
fn settled<O, E>(
    operation: &'static str,
    region: &str,
    id: &str,
    sent: Result<O, SdkError<E, HttpResponse>>,
    skippable: &[&str],
    done: &str,
) -> Executed
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match sent {
        Err(e) if not_sent(&e) => Executed::Deferred,
        Ok(_) => {
            info!(region = %region, snapshot_id = %id, "{done}");
            Executed::Done(None)
        }
        Err(e) => {
            let e = AwsError::call(operation, region, e);
            if e.code().is_some_and(|c| skippable.contains(&c)) {
                warn!(region, snapshot_id = %id, error = %e, "{operation} refused; skipped");
                Executed::Skipped(e.to_string())
            } else {
                warn!(region, snapshot_id = %id, error = %e, "{operation} failed");
                Executed::Failed(e.to_string())
            }
        }
    }
}

/// Archive errors that are logged and skipped (SPEC §10.12): the snapshot is gone, is being
/// archived or restored already (an archival in progress still reads `standard`), or backs an
/// image (EC2 does not archive a snapshot an AMI uses).
const ARCHIVE_SKIPPABLE: [&str; 3] = ["InvalidSnapshot.NotFound", "IncorrectState", "InvalidSnapshot.InUse"];

/// Moves the snapshots to the archive storage tier (`ModifySnapshotTier`), at most
/// [`MUTATION_CONCURRENCY`] at once; outcomes in input order. Asking twice is harmless, so the
/// SDK's retries stand.
pub async fn archive_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    ids: &[&str],
    budget: &TimeBudget,
) -> Vec<Executed> {
    bounded(ids, budget, Executed::Deferred, |id, attempts| async move {
        let sent = client
            .modify_snapshot_tier()
            .snapshot_id(*id)
            .storage_tier(TargetStorageTier::Archive)
            .customize()
            .interceptor(attempts)
            .send()
            .await;
        settled("ModifySnapshotTier", region, id, sent, &ARCHIVE_SKIPPABLE, "moved snapshot to the archive tier")
    })
    .await
}

/// The own snapshots of `volume` tagged with configuration `config` (every request of the
/// planner carries it).
async fn own_snapshots_of(
    client: &aws_sdk_ec2::Client,
    region: &str,
    volume: &str,
    config: Option<&str>,
) -> Result<Vec<ebs_snapper_core::Snapshot>, AwsError> {
    let mut filters = vec![ec2_filter("volume-id", [volume.to_string()])];
    if let Some(config) = config {
        filters.push(ec2_filter(&format!("tag:{TAG_CONFIG}"), [config.to_string()]));
    }
    describe_own_snapshots(client, region, filters, SnapshotDetail::Bare).await
}

/// Of a volume's snapshots, the newest that a `CreateSnapshot` whose answer was lost could have
/// made: started at or after `since` (our clock, less a margin for AWS's) and after every
/// snapshot the plan listed (`newer_than`, AWS's clock), not failed.
fn made_by_a_lost_create(
    found: Vec<ebs_snapper_core::Snapshot>,
    since: chrono::DateTime<chrono::Utc>,
    newer_than: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<String> {
    found
        .into_iter()
        .filter(|s| s.start_time >= since && newer_than.is_none_or(|t| s.start_time > t))
        .filter(|s| s.state != ebs_snapper_core::SnapshotState::Error)
        .max_by_key(|s| s.start_time)
        .map(|s| s.id)
}

/// The own copy in the client's region named by `identity` (a tag and its value, as
/// [`CopyRequest::identity`](ebs_snapper_core::CopyRequest::identity) gives), if any, that is
/// not in state `error`: an errored copy is no copy (SPEC §10.11).
async fn copy_of(
    client: &aws_sdk_ec2::Client,
    region: &str,
    (tag, value): (&str, &str),
) -> Result<Option<String>, AwsError> {
    let filters = vec![ec2_filter(&format!("tag:{tag}"), [value.to_string()])];
    let found = describe_own_snapshots(client, region, filters, SnapshotDetail::Bare).await?;
    Ok(found.into_iter().find(|s| s.state != ebs_snapper_core::SnapshotState::Error).map(|s| s.id))
}

/// Deletes the snapshots, at most [`MUTATION_CONCURRENCY`] at once; outcomes in input order.
pub async fn delete_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    ids: &[&str],
    budget: &TimeBudget,
) -> Vec<Executed> {
    bounded(ids, budget, Executed::Deferred, |id, attempts| delete_one(client, region, id, attempts)).await
}

/// Deletes one snapshot, on its own (no pace shared with others).
pub async fn delete_snapshot(client: &aws_sdk_ec2::Client, region: &str, id: &str, budget: &TimeBudget) -> Executed {
    delete_one(client, region, id, Attempts { budget: budget.clone(), pace: Arc::new(Paced::new()) }).await
}

/// Deletes one snapshot. Used by the clean job and for replicas whose source is gone.
async fn delete_one(client: &aws_sdk_ec2::Client, region: &str, id: &str, attempts: Attempts) -> Executed {
    let sent = client.delete_snapshot().snapshot_id(id).customize().interceptor(attempts).send().await;
    settled("DeleteSnapshot", region, id, sent, &DELETE_SKIPPABLE, "deleted snapshot")
}

/// Copies snapshots into their destination regions (a client per destination), one at a time per
/// run. `ResourceLimitExceeded` stops copies to that destination for the rest of the run.
pub async fn copy_snapshots(
    aws: &crate::sdk::Aws,
    requests: &[&ebs_snapper_core::CopyRequest],
    budget: &TimeBudget,
) -> Vec<Executed> {
    let mut clients: std::collections::BTreeMap<&str, aws_sdk_ec2::Client> = std::collections::BTreeMap::new();
    let mut stopped: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    let pace = Arc::new(Paced::new());
    for request in requests {
        let dst = request.destination_region.as_str();
        if let Some(why) = stopped.get(dst) {
            outcomes.push(Executed::Skipped(format!("copies to {dst} stopped for this run: {why}")));
            continue;
        }
        if !pace.admit_within(budget).await {
            outcomes.push(Executed::Deferred);
            continue;
        }
        let attempts = Attempts { budget: budget.clone(), pace: pace.clone() };
        let client = clients.entry(dst).or_insert_with(|| aws_sdk_ec2::Client::new(&aws.in_region(dst)));
        let send = || async {
            let out = client
                .copy_snapshot()
                .source_region(&request.source_region)
                .source_snapshot_id(&request.source_id)
                .description(&request.description)
                .tag_specifications(snapshot_tags(&request.tags))
                // A disaster-recovery copy under its destination's key (EC2 requires Encrypted
                // with a KmsKeyId).
                .set_encrypted(request.kms_key.is_some().then_some(true))
                .set_kms_key_id(request.kms_key.clone())
                .customize()
                .config_override(only_throttles_retried())
                .interceptor(attempts.clone())
                .send()
                .await;
            out.map(|out| out.snapshot_id().map(str::to_string))
        };
        let find = || async { Ok(copy_of(client, dst, request.identity()).await?.map(Some)) };
        outcomes.push(match send_verified("CopySnapshot", dst, budget, send, find).await {
            Sent::Done(id) => {
                info!(region = %request.source_region, destination = dst, source_id = %request.source_id, copy_id = id.as_deref().unwrap_or("?"), "copied snapshot");
                Executed::Done(id)
            }
            Sent::Held => Executed::Deferred,
            Sent::Refused(e) if e.code() == Some("ResourceLimitExceeded") => {
                warn!(destination = dst, error = %e, "stopping copies to this region for this run");
                stopped.insert(dst, e.to_string());
                Executed::Skipped(e.to_string())
            }
            Sent::Refused(e) | Sent::Lost(e) => {
                warn!(destination = dst, source_id = %request.source_id, error = %e, "copy failed");
                Executed::Failed(e.to_string())
            }
        });
    }
    outcomes
}

/// `LockSnapshot` refusals meaning there is nothing to lock: the snapshot is gone, or failed
/// (EC2 locks only pending and completed snapshots, and a failed one loses its lock).
const LOCK_SKIPPABLE: [&str; 2] = ["InvalidSnapshot.NotFound", "IncorrectState"];

/// Locks the snapshots (`LockSnapshot` with `ExpirationDate`, never `LockDuration`), at most
/// [`MUTATION_CONCURRENCY`] at once; outcomes in request order. Sending a lock again is harmless
/// (the same date and mode), so the SDK's retries stand; a lock whose answer was lost is found
/// missing, or short, by the next run's listing and sent again.
pub async fn lock_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    requests: &[&LockRequest],
    budget: &TimeBudget,
) -> Vec<Executed> {
    bounded(requests, budget, Executed::Deferred, |request, attempts| async move {
        let mode = match request.mode {
            LockMode::Governance => aws_sdk_ec2::types::LockMode::Governance,
            LockMode::Compliance => aws_sdk_ec2::types::LockMode::Compliance,
        };
        let sent = client
            .lock_snapshot()
            .snapshot_id(&request.snapshot_id)
            .lock_mode(mode)
            .expiration_date(aws_smithy_types::DateTime::from_secs(request.until.timestamp()))
            .set_cool_off_period(request.cool_off_hours.map(i32::from))
            .customize()
            .interceptor(attempts)
            .send()
            .await;
        settled("LockSnapshot", region, &request.snapshot_id, sent, &LOCK_SKIPPABLE, "locked snapshot")
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::create_snapshot::CreateSnapshotError;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn answered(status: u16, code: &str) -> SdkError<CreateSnapshotError, HttpResponse> {
        let err = CreateSnapshotError::generic(ErrorMetadata::builder().code(code).build());
        SdkError::service_error(err, HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()))
    }

    #[test]
    fn a_lost_create_is_found_only_among_snapshots_newer_than_those_listed() {
        use chrono::TimeZone;
        use ebs_snapper_core::{Snapshot, SnapshotState};
        let at = |m: u32| chrono::Utc.with_ymd_and_hms(2026, 12, 5, 3, m, 0).unwrap();
        let snap = |id: &str, m: u32, state: SnapshotState| Snapshot {
            id: id.into(),
            is_copy: false,
            volume_id: Some("vol-1".into()),
            start_time: at(m),
            state,
            tags: Default::default(),
            description: String::new(),
            archived: false,
            state_message: None,
        };
        let found = || {
            vec![
                snap("snap-listed", 11, SnapshotState::Completed),
                snap("snap-made", 12, SnapshotState::Pending),
                snap("snap-failed", 13, SnapshotState::Error),
            ]
        };
        // Since 10:xx less the margin: without a listed one, the newest that did not fail.
        assert_eq!(made_by_a_lost_create(found(), at(7), None).as_deref(), Some("snap-made"));
        // The one the plan listed (11) is never taken for the lost one.
        assert_eq!(made_by_a_lost_create(found()[..1].to_vec(), at(7), Some(at(11))), None);
        assert_eq!(made_by_a_lost_create(found(), at(7), Some(at(11))).as_deref(), Some("snap-made"));
        // Nothing since the attempt (less the margin).
        assert_eq!(made_by_a_lost_create(found(), at(14), None), None);
    }

    #[test]
    fn only_an_answer_that_proves_nothing_was_done_is_a_known_outcome() {
        // Refused before acting: throttling (a 503 on EC2) and client errors.
        assert!(!outcome_unknown(&answered(503, "RequestLimitExceeded")));
        assert!(!outcome_unknown(&answered(400, "InvalidVolume.NotFound")));
        // May have been done: a server error, or no answer at all.
        assert!(outcome_unknown(&answered(500, "InternalError")));
        assert!(outcome_unknown(&answered(503, "Unavailable")));
        let timeout: SdkError<CreateSnapshotError, HttpResponse> = SdkError::timeout_error("no answer in time");
        assert!(outcome_unknown(&timeout));
    }
}
