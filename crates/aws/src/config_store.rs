//! Configurations in DynamoDB, in the table layout of the Python tool: key `aws_account_id` (S,
//! hash) + `id` (S, range), the configuration JSON text in the string attribute `configuration`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use ebs_snapper_core::StoredConfiguration;
use tracing::{debug, warn};

use crate::error::AwsError;
use crate::sdk::Aws;

/// The table name when `EBS_SNAPPER_TABLE` is not set.
pub const DEFAULT_TABLE: &str = "ebs_snapshot_configuration";
pub const TABLE_ENV: &str = "EBS_SNAPPER_TABLE";

pub(crate) const ACCOUNT_KEY: &str = "aws_account_id";
pub(crate) const ID_KEY: &str = "id";
const CONFIGURATION_ATTR: &str = "configuration";

/// What begins the partition key of every lease item (no account id does: leases share the
/// table with configurations and are told apart by it).
pub const LEASE_PREFIX: &str = "lease#";

/// The table name from `EBS_SNAPPER_TABLE`, else the default.
pub fn table_name() -> String {
    std::env::var(TABLE_ENV).ok().filter(|t| !t.trim().is_empty()).unwrap_or_else(|| DEFAULT_TABLE.to_string())
}

pub struct ConfigStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    region: String,
}

impl ConfigStore {
    /// A store over `table` in `region` (the tool region).
    pub fn new(aws: &Aws, region: &str, table: String) -> ConfigStore {
        ConfigStore { client: aws_sdk_dynamodb::Client::new(&aws.in_region(region)), table, region: region.to_string() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    fn error<E>(
        &self,
        operation: &'static str,
        err: aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> AwsError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let e = AwsError::call(operation, &self.region, err);
        if e.code() == Some("ResourceNotFoundException") {
            AwsError::NotDeployed { table: self.table.clone(), region: self.region.clone() }
        } else {
            e
        }
    }

    /// Every configuration of the account (one paginated query), in `id` order.
    pub async fn list(&self, account: &str) -> Result<Vec<StoredConfiguration>, AwsError> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#a = :a")
            .expression_attribute_names("#a", ACCOUNT_KEY)
            .expression_attribute_values(":a", AttributeValue::S(account.to_string()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error("Query", e))?;
        debug!(table = %self.table, region = %self.region, count = items.len(), "loaded configurations");
        let mut out: Vec<StoredConfiguration> = items.iter().filter_map(stored).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The accounts that have configurations (SPEC §13) and `own` (the deployment's, always),
    /// sorted: one paginated `Scan` reading only the key. Lease items (`lease#...`) are not
    /// accounts; an item under any other key that is not an account id is logged and left out.
    pub async fn accounts(&self, own: &str) -> Result<Vec<String>, AwsError> {
        let items = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("#a")
            .expression_attribute_names("#a", ACCOUNT_KEY)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| self.error("Scan", e))?;
        let mut accounts = std::collections::BTreeSet::from([own.to_string()]);
        let mut odd = std::collections::BTreeSet::new();
        for item in &items {
            let Some(key) = item.get(ACCOUNT_KEY).and_then(|a| a.as_s().ok()) else { continue };
            if ebs_snapper_core::is_account_id(key) {
                accounts.insert(key.clone());
            } else if !key.starts_with(LEASE_PREFIX) {
                odd.insert(key.clone());
            }
        }
        for key in odd {
            warn!(key = %key, "table items under {key:?}, which is not an account id: left out");
        }
        Ok(accounts.into_iter().collect())
    }

    /// One configuration, or `None` when the account has no such id.
    pub async fn get(&self, account: &str, id: &str) -> Result<Option<StoredConfiguration>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ACCOUNT_KEY, AttributeValue::S(account.to_string()))
            .key(ID_KEY, AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", e))?;
        Ok(out.item().and_then(stored))
    }

    /// Stores configuration text under the account and id (replacing any previous one).
    pub async fn put(&self, account: &str, id: &str, text: &str) -> Result<(), AwsError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(ACCOUNT_KEY, AttributeValue::S(account.to_string()))
            .item(ID_KEY, AttributeValue::S(id.to_string()))
            .item(CONFIGURATION_ATTR, AttributeValue::S(text.to_string()))
            .send()
            .await
            .map_err(|e| self.error("PutItem", e))?;
        Ok(())
    }

    /// Deletes a configuration; returns whether it existed.
    pub async fn delete(&self, account: &str, id: &str) -> Result<bool, AwsError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(ACCOUNT_KEY, AttributeValue::S(account.to_string()))
            .key(ID_KEY, AttributeValue::S(id.to_string()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}

/// An item as a stored configuration. An item whose `configuration` attribute is missing or not
/// a string yields empty text, which validation reports as missing.
fn stored(item: &HashMap<String, AttributeValue>) -> Option<StoredConfiguration> {
    let id = item.get(ID_KEY)?.as_s().ok()?.clone();
    let text = match item.get(CONFIGURATION_ATTR) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => {
            warn!(id = %id, "configuration item has no string attribute `configuration`");
            String::new()
        }
    };
    Some(StoredConfiguration { id, text })
}
