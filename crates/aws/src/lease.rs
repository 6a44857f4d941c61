//! A lease per job and region, so that two runs at once (the schedule and an operator, or an
//! invocation delivered twice) never both create snapshots in one region: the second waits for
//! the first, then plans from what the first left, and finds those volumes not due (SPEC §10.7).
//!
//! The lease is one item in the configuration table, under a partition key that no account id
//! can take, so configuration listings never see it:
//! `{aws_account_id: "lease#<account>", id: "<job>/<region>", owner, holder, expires_at}`.
//! It is taken with a conditional write (no item, or an expired one), renewed while the run
//! works, and released with a conditional delete (only by its owner). A run killed while holding
//! it keeps others out for at most one lease period.
//!
//! When the table cannot be written at all (an older role without `PutItem`, say), the run goes
//! on without the lease and says so: a snapshot not taken is worse than a duplicate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use tracing::{debug, warn};

use crate::budget::{epoch_ms, TimeBudget};
use crate::config_store::{table_name, ACCOUNT_KEY, ID_KEY};
use crate::error::AwsError;
use crate::sdk::Aws;

/// Lease period when `EBS_SNAPPER_LEASE_SECONDS` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
pub const LEASE_ENV: &str = "EBS_SNAPPER_LEASE_SECONDS";

/// The partition key of an account's leases.
pub fn lease_partition(account: &str) -> String {
    format!("lease#{account}")
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
    /// The tool region (where the configuration table is).
    pub table_region: String,
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
    /// The lease could not be written; the run goes on without it.
    Unavailable(AwsError),
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

    /// Writes the lease for this run until `now + period` (seconds since the epoch), if it is
    /// free or expired.
    async fn put(&self, holder: &str, now: u64, period: Duration) -> Result<(), SdkError<PutItemError, HttpResponse>> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.key()))
            .item("owner", AttributeValue::S(self.owner.clone()))
            .item("holder", AttributeValue::S(holder.to_string()))
            .item("expires_at", AttributeValue::N((now + period.as_secs()).to_string()))
            .condition_expression("attribute_not_exists(#id) OR expires_at < :now")
            .expression_attribute_names("#id", ID_KEY)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await
            .map(|_| ())
    }

    /// Moves this run's lease on to `until` (seconds since the epoch), if it still owns it.
    async fn extend(&self, until: u64) -> Result<(), String> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key()))
            .update_expression("SET expires_at = :t")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":t", AttributeValue::N(until.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::call("UpdateItem", &self.region, e).to_string())
    }

    /// Deletes this run's lease, if it still owns it.
    async fn delete(&self) -> Result<(), String> {
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
            .map_err(|e| AwsError::call("DeleteItem", &self.region, e).to_string())
    }

    /// Who holds the lease now, for people.
    async fn holder(&self) -> String {
        let item =
            self.client.get_item().table_name(&self.table).set_key(Some(self.key())).consistent_read(true).send().await;
        item.ok()
            .and_then(|o| o.item)
            .and_then(|i| i.get("holder").and_then(|h| h.as_s().ok()).cloned())
            .unwrap_or_else(|| "another run".to_string())
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

fn new_owner(holder: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{holder}:{}:{nanos:x}", std::process::id())
}

impl Lease {
    /// Takes the lease of `job` in `region`, waiting up to `wait` while another run holds it.
    pub async fn take(aws: &Aws, scope: &LeaseScope, job: &str, region: &str, wait: Duration) -> Taken {
        let item = LeaseItem {
            client: aws_sdk_dynamodb::Client::new(&aws.in_region(&scope.table_region)),
            table: table_name(),
            region: scope.table_region.clone(),
            partition: lease_partition(&scope.account),
            id: format!("{job}/{region}"),
            owner: new_owner(&scope.holder),
        };
        let period = lease_period();
        let give_up = tokio::time::Instant::now() + wait;
        let poll = (period / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            let now = epoch_ms() / 1000;
            match item.put(&scope.holder, now, period).await {
                Ok(()) => {
                    debug!(region, job, owner = %item.owner, "took the lease");
                    let safe_until = Arc::new(AtomicU64::new(safe_until(now * 1000, period)));
                    let renewer = tokio::spawn(renew(item.clone(), period, safe_until.clone()));
                    return Taken::Held(Lease { item, period, safe_until, renewer });
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                    if tokio::time::Instant::now() + poll > give_up {
                        return Taken::Busy { holder: item.holder().await };
                    }
                    debug!(region, job, "another run holds the lease; waiting");
                    tokio::time::sleep(poll).await;
                }
                Err(e) => return Taken::Unavailable(AwsError::call("PutItem", &scope.table_region, e)),
            }
        }
    }

    /// `budget`, also bounded by this lease: mutations start only while the lease is safely
    /// ours (its expiry less a third of the period, moved on by renewals); a late renewal is
    /// waited for up to a sixth of the period, which still leaves a sixth before the expiry.
    pub fn bound(&self, budget: &TimeBudget) -> TimeBudget {
        budget.with_lease(self.safe_until.clone(), self.period / 6)
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

/// Mutations stop a third of the period before the lease's expiry (written at `from_ms`): time
/// for one in flight to finish, and for clocks that disagree a little.
fn safe_until(from_ms: u64, period: Duration) -> u64 {
    from_ms + (period.as_millis() as u64) * 2 / 3
}

/// Extends the lease every third of its period while the run works.
async fn renew(item: LeaseItem, period: Duration, safe: Arc<AtomicU64>) {
    loop {
        tokio::time::sleep(period / 3).await;
        let now = epoch_ms() / 1000;
        match item.extend(now + period.as_secs()).await {
            Ok(()) => safe.store(safe_until(now * 1000, period), Ordering::Release),
            Err(e) => warn!(lease = %item.id, error = %e, "could not renew the lease"),
        }
    }
}
