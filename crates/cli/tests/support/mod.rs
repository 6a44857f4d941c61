//! Test support for tests that run against the local AWS emulator started by `scripts/test.sh`.
//!
//! Each test gets a fresh AWS account: moto partitions all state by account, and credentials
//! from STS `AssumeRole` into `arn:aws:iam::<account>:role/...` act in that account. So tests
//! share one server without sharing state.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use assert_cmd::Command;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

pub const TABLE: &str = "ebs_snapshot_configuration";

/// The emulator endpoint; fails loudly when tests are run without it.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run these tests through scripts/test.sh, which starts the AWS emulator")
    })
}

/// A fresh AWS account in the emulator, with credentials that act in it.
pub struct Account {
    pub id: String,
    access_key: String,
    secret_key: String,
    session_token: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Account {
    /// A new account: a fresh id, and credentials for it from `AssumeRole`.
    pub async fn new() -> Account {
        let id = Self::fresh_id();
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(endpoint())
            .load()
            .await;
        let out = aws_sdk_sts::Client::new(&base)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{id}:role/ebs-snapper-test"))
            .role_session_name("test")
            .send()
            .await
            .expect("AssumeRole in the emulator");
        let c = out.credentials().expect("credentials");
        Account {
            id,
            access_key: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            session_token: c.session_token().to_string(),
        }
    }

    fn fresh_id() -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let seed = (nanos / 1000) ^ ((std::process::id() as u64) << 20) ^ (n << 40);
        // 12 digits, never starting with 0 and never the emulator's default account.
        format!("{}", 100_000_000_000 + seed % 800_000_000_000)
    }

    /// The SDK configuration for this account in `region`.
    pub async fn sdk(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint())
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                &self.access_key,
                &self.secret_key,
                Some(self.session_token.clone()),
                None,
                "test",
            ))
            .load()
            .await
    }

    pub async fn dynamodb(&self, region: &str) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk(region).await)
    }

    /// Creates the configuration table in `region`, as the stack does.
    pub async fn create_table(&self, region: &str) {
        self.dynamodb(region)
            .await
            .create_table()
            .table_name(TABLE)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("aws_account_id"))
            .attribute_definitions(attr("id"))
            .key_schema(key("aws_account_id", KeyType::Hash))
            .key_schema(key("id", KeyType::Range))
            .send()
            .await
            .expect("create table");
    }

    /// Writes an item directly, the way the Python tool did.
    pub async fn put_raw(&self, region: &str, id: &str, configuration: &str) {
        self.dynamodb(region)
            .await
            .put_item()
            .table_name(TABLE)
            .item("aws_account_id", AttributeValue::S(self.id.clone()))
            .item("id", AttributeValue::S(id.to_string()))
            .item("configuration", AttributeValue::S(configuration.to_string()))
            .send()
            .await
            .expect("put item");
    }

    /// All items of this account: (id, configuration text).
    pub async fn items(&self, region: &str) -> Vec<(String, String)> {
        let out = self
            .dynamodb(region)
            .await
            .scan()
            .table_name(TABLE)
            .send()
            .await
            .expect("scan");
        let mut items: Vec<(String, String)> = out
            .items()
            .iter()
            .map(|i| {
                (
                    i["id"].as_s().unwrap().clone(),
                    i.get("configuration").and_then(|c| c.as_s().ok()).cloned().unwrap_or_default(),
                )
            })
            .collect();
        items.sort();
        items
    }

    /// The `ebs-snapper` binary with this account's credentials and the emulator endpoint.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::cargo_bin("ebs-snapper").expect("binary built");
        cmd.env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_SESSION_TOKEN", &self.session_token)
            .env_remove("AWS_PROFILE")
            .env_remove("EBS_SNAPPER_TABLE")
            .env_remove("RUST_LOG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1");
        cmd
    }
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap()
}

/// stdout and stderr of an assert_cmd output as strings.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
