//! A lease per job and region, so that two runs at once (the schedule and an operator, or an
//! invocation delivered twice) never both create snapshots in one region: the second waits for
//! the first, then plans from what the first left, and finds those volumes not due (SPEC §10.7).
//!
//! The lease is one item in the configuration table, under a partition key that no account id
//! can take, so configuration listings never see it:
//! `{aws_account_id: "lease#<account>", id: "<job>/<region>", owner, holder, version, hold_ms,
//! expires_at}`.
//!
//! **No two clocks are compared.** Each write of the item (take, renewal) gives it a new
//! `version`. A run that finds the item held notes the version and *its own* monotonic time, and
//! takes the lease over only after the same version has stood for `hold_ms` by its own clock
//! (with a conditional write on that version). The holder, for its part, starts mutations only
//! until two thirds of the period after it *sent* its last successful write. So a taker whose
//! clock is minutes off still never overlaps the holder. `expires_at` is written for people.
//!
//! A run killed while holding the lease keeps others out for one period. A run that could not
//! write the lease because the table refuses it (no `PutItem` on an older role, no table) goes
//! on without it and says so: a snapshot not taken is worse than a duplicate. Any other error
//! (throttling, a 500, a timeout) is retried; if the lease still cannot be written, the region
//! is not worked this run and that is reported as a failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use ebs_snapper_core::Job;
use tracing::{debug, warn};

use crate::budget::{epoch_ms, TimeBudget};
use crate::config_store::{table_name, ACCOUNT_KEY, ID_KEY};
use crate::error::AwsError;
use crate::sdk::Aws;

/// Times a lease write or read that failed for a transient reason is tried again (each try
/// already includes the SDK's own retries).
const LEASE_ATTEMPTS: u32 = 3;

/// Lease period when `EBS_SNAPPER_LEASE_SECONDS` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
pub const LEASE_ENV: &str = "EBS_SNAPPER_LEASE_SECONDS";

pub use crate::config_store::LEASE_PREFIX;

/// The partition key of an account's leases.
pub fn lease_partition(account: &str) -> String {
    format!("{LEASE_PREFIX}{account}")
}

/// The lease period: `EBS_SNAPPER_LEASE_SECONDS` (1 to 900), else two minutes.
pub fn lease_period() -> Duration {
    std::env::var(LEASE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=900).contains(s))
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LEASE)
}

/// Where leases are kept, and who asks for them.
#[derive(Debug, Clone)]
pub struct LeaseScope {
    /// The deployment account's SDK configuration: the table is always the deployment's, also
    /// when the run works in a member account.
    pub table: Aws,
    /// The tool region (where the configuration table is).
    pub table_region: String,
    /// The account worked in (leases are per account, job and region).
    pub account: String,
    /// Who holds the lease, for people: `cli`, or the function's request id.
    pub holder: String,
}

/// How taking the lease ended.
#[derive(Debug)]
pub enum Taken {
    Held(Lease),
    /// Another run held it for the whole wait.
    Busy {
        holder: String,
    },
    /// The table refuses the lease (access denied, no table); the run goes on without it.
    Unavailable(AwsError),
    /// The lease could not be written for another reason (throttling, a 500, a timeout), even
    /// after retries; the region is not worked this run.
    Failed(AwsError),
}

/// Errors meaning the table will never take the lease, so waiting or retrying is useless.
const LEASE_REFUSED: [&str; 2] = ["AccessDeniedException", "ResourceNotFoundException"];

/// What a run saw of another run's lease: its version, since when (by this run's own clock),
/// and for how long that version must stand before it may be taken over.
struct Observed {
    version: String,
    since: tokio::time::Instant,
    hold: Duration,
    holder: String,
}

/// The lease item of one job and region, as one run sees it: where it is, and who this run is.
#[derive(Debug, Clone)]
struct LeaseItem {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The tool region, for messages.
    region: String,
    partition: String,
    id: String,
    owner: String,
}

impl LeaseItem {
    /// The item's key (partition and id).
    fn key(&self) -> std::collections::HashMap<String, AttributeValue> {
        [(ACCOUNT_KEY, &self.partition), (ID_KEY, &self.id)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::S(v.clone())))
            .collect()
    }

    /// Writes the lease for this run: `condition` decides over what (no item, or the version a
    /// taker saw stand for its hold). Returns the new version.
    async fn write(
        &self,
        holder: &str,
        period: Duration,
        seen: Option<&str>,
    ) -> Result<String, SdkError<PutItemError, HttpResponse>> {
        let version = new_version();
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.key()))
            .item("owner", AttributeValue::S(self.owner.clone()))
            .item("holder", AttributeValue::S(holder.to_string()))
            .item("version", AttributeValue::S(version.clone()))
            .item("hold_ms", AttributeValue::N(period.as_millis().to_string()))
            .item("expires_at", AttributeValue::N((epoch_ms() / 1000 + period.as_secs()).to_string()));
        put = match seen {
            None => put.condition_expression("attribute_not_exists(#id)").expression_attribute_names("#id", ID_KEY),
            Some(seen) => put
                .condition_expression("#version = :seen OR (attribute_not_exists(#version) AND #owner = :seen)")
                .expression_attribute_names("#version", "version")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":seen", AttributeValue::S(seen.to_string())),
        };
        put.send().await.map(|_| version)
    }

    /// The item as it stands (a consistent read): who holds it, its version and hold. An item
    /// written before versions existed is identified by its owner and held for one period.
    async fn observe(&self, period: Duration) -> Result<Option<(String, Duration, String)>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::call("GetItem", &self.region, e))?;
        let Some(item) = out.item else { return Ok(None) };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let version = text("version").or_else(|| text("owner")).unwrap_or_default();
        let hold = item
            .get("hold_ms")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(period);
        let holder = text("holder").unwrap_or_else(|| "another run".to_string());
        Ok(Some((version, hold, holder)))
    }

    /// Moves this run's lease on to `until` (seconds since the epoch), if it still owns it.
    async fn extend(&self, until: u64) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .update_expression("SET expires_at = :t, #version = :v")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":owner", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":t", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":v", AttributeValue::S(new_version()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::call("UpdateItem", &self.region, e))
    }

    /// Deletes this run's lease, if it still owns it.
    async fn delete(&self) -> Result<(), AwsError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(self.owner.clone()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::call("DeleteItem", &self.region, e))
    }

    /// Hands this run's lease over to whoever comes next, but only after `hold` by the taker's
    /// own clock: a new version with that hold, which a taker must see stand that long.
    async fn hand_over(&self, holder: &str, hold: Duration) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .update_expression("SET #version = :v, hold_ms = :h, holder = :holder")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":owner", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":v", AttributeValue::S(new_version()))
            .expression_attribute_values(":h", AttributeValue::N(hold.as_millis().to_string()))
            .expression_attribute_values(":holder", AttributeValue::S(format!("{holder} (settling)")))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::call("UpdateItem", &self.region, e))
    }
}

/// A held lease; renewed in the background until released (or dropped).
#[derive(Debug)]
pub struct Lease {
    item: LeaseItem,
    period: Duration,
    /// Until when (ms since the epoch) mutations are safe under this lease: its expiry less a
    /// third of the period, moved on by each renewal.
    safe_until: Arc<AtomicU64>,
    renewer: tokio::task::JoinHandle<()>,
}

/// A value no other write of the item will carry.
fn new_version() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}:{nanos:x}:{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed))
}

fn new_owner(holder: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{holder}:{}:{nanos:x}", std::process::id())
}

impl Lease {
    /// Takes the lease of `job` in `region`, waiting up to `wait` while another run holds it.
    pub async fn take(scope: &LeaseScope, job: Job, region: &str, wait: Duration) -> Taken {
        let item = LeaseItem {
            client: aws_sdk_dynamodb::Client::new(&scope.table.in_region(&scope.table_region)),
            table: table_name(),
            region: scope.table_region.clone(),
            partition: lease_partition(&scope.account),
            id: format!("{job}/{region}"),
            owner: new_owner(&scope.holder),
        };
        let period = lease_period();
        let give_up = tokio::time::Instant::now() + wait;
        let poll = (period / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let mut observed: Option<Observed> = None;
        let mut errors = 0;
        loop {
            // Taken before the write is sent: the holder's safe window counts from here.
            let sent_at = epoch_ms();
            let seen = observed.as_ref().filter(|o| o.since.elapsed() >= o.hold).map(|o| o.version.clone());
            match item.write(&scope.holder, period, seen.as_deref()).await {
                Ok(_) => {
                    debug!(region, job = %job, owner = %item.owner, "took the lease");
                    let safe_until = Arc::new(AtomicU64::new(safe_until(sent_at, period)));
                    let renewer = tokio::spawn(renew(item.clone(), period, safe_until.clone()));
                    return Taken::Held(Lease { item, period, safe_until, renewer });
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                    match item.observe(period).await {
                        // Released meanwhile: try again at once, for a free item (the version
                        // seen is gone with it, and a write on it could never succeed).
                        Ok(None) => {
                            observed = None;
                            continue;
                        }
                        Ok(Some((version, hold, holder))) => {
                            if observed.as_ref().is_none_or(|o| o.version != version) {
                                observed = Some(Observed { version, since: tokio::time::Instant::now(), hold, holder });
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            if errors > LEASE_ATTEMPTS {
                                return Taken::Failed(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    let e = AwsError::call("PutItem", &scope.table_region, e);
                    if e.code().is_some_and(|c| LEASE_REFUSED.contains(&c)) {
                        return Taken::Unavailable(e);
                    }
                    errors += 1;
                    warn!(region, job = %job, error = %e, "could not write the lease; trying again");
                    if errors > LEASE_ATTEMPTS {
                        return Taken::Failed(e);
                    }
                }
            }
            if tokio::time::Instant::now() + poll > give_up {
                let holder = observed.map(|o| o.holder).unwrap_or_else(|| "another run".to_string());
                return Taken::Busy { holder };
            }
            debug!(region, job = %job, "another run holds the lease; waiting");
            tokio::time::sleep(poll).await;
        }
    }

    /// `budget`, also bounded by this lease: mutations start only while the lease is safely
    /// ours (its expiry less a third of the period, moved on by renewals); a late renewal is
    /// waited for up to a sixth of the period, which still leaves a sixth before the expiry.
    pub fn bound(&self, budget: &TimeBudget) -> TimeBudget {
        budget.with_lease(self.safe_until.clone(), self.period / 6)
    }

    /// Gives the lease back, but keeps the next run out for `hold` more (by its own clock): for
    /// mutations that EC2's listings may not show yet, so the next run does not make them again.
    pub async fn release_after(self, hold: Duration) {
        self.renewer.abort();
        if let Err(e) = self.item.hand_over(&self.item.id, hold).await {
            warn!(lease = %self.item.id, error = %e, "could not hand the lease over; it expires by itself");
        }
    }

    /// Gives the lease back (only if this run still owns it).
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.item.delete().await {
            warn!(lease = %self.item.id, error = %e, "could not release the lease; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Mutations stop a third of the period before a taker could take the lease over (one period
/// after the write sent at `from_ms`, by the taker's own clock): time for one in flight to land.
fn safe_until(from_ms: u64, period: Duration) -> u64 {
    from_ms + (period.as_millis() as u64) * 2 / 3
}

/// Extends the lease every third of its period while the run works.
async fn renew(item: LeaseItem, period: Duration, safe: Arc<AtomicU64>) {
    loop {
        tokio::time::sleep(period / 3).await;
        let sent_at = epoch_ms();
        match item.extend(sent_at / 1000 + period.as_secs()).await {
            Ok(()) => safe.store(safe_until(sent_at, period), Ordering::Release),
            Err(e) => warn!(lease = %item.id, error = %e, "could not renew the lease"),
        }
    }
}
