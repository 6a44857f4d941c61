//! Test support for tests that run against the local AWS emulator started by `scripts/test.sh`.
//!
//! Each test gets a fresh AWS account: moto partitions all state by account, and credentials
//! from STS `AssumeRole` into `arn:aws:iam::<account>:role/...` act in that account. So tests
//! share one server without sharing state.

use std::sync::atomic::{AtomicU64, Ordering};

use assert_cmd::Command;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

pub mod fault_proxy;
pub mod http;
pub mod iam;
pub mod lambda;
pub mod scenes;

pub const TABLE: &str = "ebs_snapshot_configuration";

/// How long the product waits for EC2's listings to catch up with a mutation, in every process
/// the tests start: longer than the stricter AWS keeps a new snapshot unlisted
/// (`fault_proxy::Strict::on`), far shorter than on AWS so that tests stay quick.
pub const LISTING_LAG: (&str, &str) = ("EBS_SNAPPER_LISTING_LAG_SECONDS", "4");

/// The project's root (the checkout).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The template `cloudformation/NAME`, parsed.
pub fn cloudformation(name: &str) -> serde_json::Value {
    let path = root().join("cloudformation").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The emulator endpoint; fails loudly when tests are run without it.
/// The text of the first `<tag>` element of an XML answer (AWS's query APIs), unescaped.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    let text = &xml[start..end];
    Some(text.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
}

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
        Self::as_role(Self::fresh_id(), "ebs-snapper-test").await
    }

    /// A new account whose credentials are those of a role under the IAM path the deployment's
    /// function roles have (`/ebs-snapper-ID/`, the default stack's name): what a member role
    /// trusts (SPEC §13).
    pub async fn deployment() -> Account {
        let id = Self::fresh_id();
        let role = format!("ebs-snapper-{id}/create-snapshot-role");
        Self::as_role(id, &role).await
    }

    /// Other credentials in this same account: those of role `name` (`PATH/NAME` or `NAME`).
    pub async fn other_role(&self, name: &str) -> Account {
        Self::as_role(self.id.clone(), name).await
    }

    /// The ARN of this account's role `name`.
    pub fn role_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:role/{name}", self.id)
    }

    /// Installs the member role in this account with `ebs-snapper deploy --member DEPLOYMENT`
    /// (stack parameters `KEY=VALUE` in `parameters`), as an operator of the member would.
    pub fn install_member_role(&self, deployment: &str, parameters: &[&str]) {
        let mut cmd = self.cli();
        cmd.args(["-t", "us-east-1", "deploy", "--poll-ms", "100", "--member", deployment]);
        for p in parameters {
            cmd.args(["--parameter", p]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "deploy --member: {}", text(&out.stderr));
    }

    /// Credentials for `account` from `AssumeRole` into its role `role` by the test bed's root.
    async fn as_role(id: String, role: &str) -> Account {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "test"))
            .endpoint_url(endpoint())
            .load()
            .await;
        let out = aws_sdk_sts::Client::new(&base)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{id}:role/{role}"))
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
        self.sdk_via(region, &endpoint(), aws_config::retry::RetryConfig::standard()).await
    }

    /// The same, through another endpoint (a fault proxy) and with the given retries.
    pub async fn sdk_via(
        &self,
        region: &str,
        endpoint: &str,
        retry: aws_config::retry::RetryConfig,
    ) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .retry_config(retry)
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

    /// A fresh account with the table in `region` holding `configs` (id, JSON text) as stored.
    pub async fn with_configs(region: &str, configs: &[(&str, &str)]) -> Account {
        let acct = Account::new().await;
        acct.create_table(region).await;
        for (id, json) in configs {
            acct.put_raw(region, id, json).await;
        }
        acct
    }

    pub async fn dynamodb(&self, region: &str) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk(region).await)
    }

    /// Creates the configuration table in `region`, as the stack does (once: a table that is
    /// already there is kept).
    pub async fn create_table(&self, region: &str) {
        let client = self.dynamodb(region).await;
        if client.describe_table().table_name(TABLE).send().await.is_ok() {
            return;
        }
        client
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
        self.put_raw_for(region, &self.id.clone(), id, configuration).await
    }

    /// Writes an item for `account` (a member) into this account's table.
    pub async fn put_raw_for(&self, region: &str, account: &str, id: &str, configuration: &str) {
        self.dynamodb(region)
            .await
            .put_item()
            .table_name(TABLE)
            .item("aws_account_id", AttributeValue::S(account.to_string()))
            .item("id", AttributeValue::S(id.to_string()))
            .item("configuration", AttributeValue::S(configuration.to_string()))
            .send()
            .await
            .expect("put item");
    }

    /// All items of this account: (id, configuration text).
    pub async fn items(&self, region: &str) -> Vec<(String, String)> {
        let out = self.dynamodb(region).await.scan().table_name(TABLE).send().await.expect("scan");
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

    /// The environment variables carrying this account's credentials.
    pub fn credential_env(&self) -> [(&'static str, String); 3] {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_SESSION_TOKEN", self.session_token.clone()),
        ]
    }

    /// The `ebs-snapper` binary with this account's credentials and the emulator endpoint.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::cargo_bin("ebs-snapper").expect("binary built");
        self.apply_env(&mut cmd);
        cmd
    }

    /// `configure -s bad JSON` is refused as bad input: exit 2, one line on stderr containing
    /// `expected` (field: problem), no panic, nothing on stdout.
    pub fn assert_refused(&self, json: &str, expected: &str) {
        let out = self.cli().args(["configure", "-s", "bad", json]).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{json}: {err}");
        assert_eq!(err.lines().count(), 1, "one line for {json}: {err}");
        assert!(err.contains(expected), "{json}\n  stderr: {err}\n  expected: {expected}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(text(&out.stdout).is_empty(), "{json}: nothing on stdout");
    }

    /// Any command with the same environment as [`Account::cli`].
    pub fn cli_env(&self, mut cmd: std::process::Command) -> std::process::Command {
        for (k, v) in self.credential_env() {
            cmd.env(k, v);
        }
        cmd.env("AWS_ENDPOINT_URL", endpoint())
            .env_remove("AWS_PROFILE")
            .env_remove("EBS_SNAPPER_TABLE")
            .env_remove("RUST_LOG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env(LISTING_LAG.0, LISTING_LAG.1);
        cmd
    }

    fn apply_env(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_SESSION_TOKEN", &self.session_token)
            .env_remove("AWS_PROFILE")
            .env_remove("EBS_SNAPPER_TABLE")
            .env_remove("RUST_LOG")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env(LISTING_LAG.0, LISTING_LAG.1);
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

// ---- EC2 fleet helpers ----

pub type Tags<'a> = &'a [(&'a str, &'a str)];

fn ec2_tags(resource: aws_sdk_ec2::types::ResourceType, tags: Tags) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            tags.iter().map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(*k).value(*v).build()).collect(),
        ))
        .build()
}

/// A snapshot as the tests look at it.
#[derive(Debug, Clone)]
pub struct Snap {
    pub id: String,
    pub volume_id: String,
    pub description: String,
    pub tags: std::collections::BTreeMap<String, String>,
    /// In the archive storage tier.
    pub archived: bool,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
}

impl Snap {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

/// One request the emulator recorded for this account.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `DescribeInstances`, `Query`, `Invoke`...
    pub action: String,
    pub url: String,
    pub headers: serde_json::Value,
    pub body: String,
}

impl Account {
    pub async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk(region).await)
    }

    /// Launches one running instance (with its root volume at /dev/sda1) carrying `tags`.
    pub async fn launch(&self, region: &str, tags: Tags<'_>) -> String {
        self.launch_count(region, 1, tags).await.remove(0)
    }

    /// Launches `count` instances tagged `tags` with one RunInstances call; their ids.
    pub async fn launch_count(&self, region: &str, count: i32, tags: Tags<'_>) -> Vec<String> {
        let mut req = self
            .ec2(region)
            .await
            .run_instances()
            .image_id("ami-12345678")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(count)
            .max_count(count);
        if !tags.is_empty() {
            req = req.tag_specifications(ec2_tags(aws_sdk_ec2::types::ResourceType::Instance, tags));
        }
        let out = req.send().await.expect("run instances");
        out.instances().iter().map(|i| i.instance_id().unwrap().to_string()).collect()
    }

    /// Creates a volume tagged `tags` and attaches it to `instance` at `device`.
    pub async fn attach_volume(&self, region: &str, instance: &str, device: &str, tags: Tags<'_>) -> String {
        let ec2 = self.ec2(region).await;
        let mut req = ec2.create_volume().availability_zone(format!("{region}a")).size(1);
        if !tags.is_empty() {
            req = req.tag_specifications(ec2_tags(aws_sdk_ec2::types::ResourceType::Volume, tags));
        }
        let vol = req.send().await.expect("create volume").volume_id().unwrap().to_string();
        self.attach(region, &vol, instance, device).await;
        vol
    }

    /// Attaches `volume` to `instance` at `device`.
    pub async fn attach(&self, region: &str, volume: &str, instance: &str, device: &str) {
        let ec2 = self.ec2(region).await;
        ec2.attach_volume().volume_id(volume).instance_id(instance).device(device).send().await.expect("attach volume");
    }

    /// A new encrypted volume (not attached) under `key`, else the account's default key
    /// (`aws/ebs`); its id.
    pub async fn encrypted_volume(&self, region: &str, key: Option<&str>) -> String {
        let ec2 = self.ec2(region).await;
        let req = ec2.create_volume().availability_zone(format!("{region}a")).size(1).encrypted(true);
        let out = req.set_kms_key_id(key.map(str::to_string)).send().await.expect("create volume");
        out.volume_id().unwrap().to_string()
    }

    /// The accounts `snapshot` is shared with (its `createVolumePermission` user ids).
    pub async fn shared_with(&self, region: &str, snapshot: &str) -> Vec<String> {
        let out = self
            .ec2(region)
            .await
            .describe_snapshot_attribute()
            .snapshot_id(snapshot)
            .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
            .send()
            .await
            .expect("describe snapshot attribute");
        out.create_volume_permissions().iter().filter_map(|p| p.user_id().map(str::to_string)).collect()
    }

    /// The volume ids attached to an instance, in device order.
    pub async fn volumes_of(&self, region: &str, instance: &str) -> Vec<String> {
        let out = self.ec2(region).await.describe_instances().instance_ids(instance).send().await.unwrap();
        let i = &out.reservations()[0].instances()[0];
        i.block_device_mappings().iter().filter_map(|m| m.ebs()?.volume_id().map(str::to_string)).collect()
    }

    pub async fn stop(&self, region: &str, instance: &str) {
        self.ec2(region).await.stop_instances().instance_ids(instance).send().await.expect("stop");
    }

    pub async fn terminate(&self, region: &str, instance: &str) {
        self.ec2(region).await.terminate_instances().instance_ids(instance).send().await.expect("terminate");
    }

    /// The account's own snapshots in `region`, by id.
    pub async fn snapshots(&self, region: &str) -> Vec<Snap> {
        let out =
            self.ec2(region).await.describe_snapshots().owner_ids("self").send().await.expect("describe snapshots");
        let mut snaps: Vec<Snap> = out
            .snapshots()
            .iter()
            .map(|s| Snap {
                id: s.snapshot_id().unwrap().to_string(),
                volume_id: s.volume_id().unwrap_or("").to_string(),
                description: s.description().unwrap_or("").to_string(),
                tags: s
                    .tags()
                    .iter()
                    .map(|t| (t.key().unwrap().to_string(), t.value().unwrap_or("").to_string()))
                    .collect(),
                archived: s.storage_tier() == Some(&aws_sdk_ec2::types::StorageTier::Archive),
                encrypted: s.encrypted() == Some(true),
                kms_key_id: s.kms_key_id().map(str::to_string),
            })
            .collect();
        snaps.sort_by(|a, b| a.id.cmp(&b.id));
        snaps
    }

    /// Creates a snapshot directly (as another tool or an earlier run would have).
    pub async fn make_snapshot(&self, region: &str, volume: &str, tags: Tags<'_>) -> String {
        let ec2 = self.ec2(region).await;
        let mut req = ec2.create_snapshot().volume_id(volume).description("planted");
        if !tags.is_empty() {
            req = req.tag_specifications(ec2_tags(aws_sdk_ec2::types::ResourceType::Snapshot, tags));
        }
        req.send().await.expect("create snapshot").snapshot_id().unwrap().to_string()
    }

    /// Copies `source` (in `from`) into `region` with `tags`, as replication or an operator
    /// would; EC2 reports the copy's volume as `vol-ffffffff`.
    pub async fn make_copy(&self, region: &str, from: &str, source: &str, tags: Tags<'_>) -> String {
        let ec2 = self.ec2(region).await;
        let mut req = ec2.copy_snapshot().source_region(from).source_snapshot_id(source).description("copied");
        if !tags.is_empty() {
            req = req.tag_specifications(ec2_tags(aws_sdk_ec2::types::ResourceType::Snapshot, tags));
        }
        req.send().await.expect("copy snapshot").snapshot_id().unwrap().to_string()
    }

    /// Every request the emulator recorded with this account's credentials.
    ///
    /// Panics when the emulator is not recording (`MOTO_RECORD=0`) or recorded nothing of this
    /// account: every count would then be zero, and "made no such call" would pass vacuously.
    pub fn recorded(&self) -> Vec<Recorded> {
        let needle = format!("Credential={}/", self.access_key);
        let out: Vec<Recorded> = all_recorded()
            .into_iter()
            .filter(|r| r.headers.get("Authorization").and_then(|a| a.as_str()).unwrap_or("").contains(&needle))
            .collect();
        assert!(!out.is_empty(), "the emulator recorded no request of account {}: is recording on?", self.id);
        out
    }

    /// How many recorded requests of this account had `action` (and, if given, a body containing
    /// `needle`, e.g. the region in the signing scope is in the Authorization header instead).
    pub fn count(&self, action: &str, region: Option<&str>) -> usize {
        self.recorded()
            .iter()
            .filter(|r| r.action == action)
            .filter(|r| {
                region.is_none_or(|reg| {
                    r.headers
                        .get("Authorization")
                        .and_then(|a| a.as_str())
                        .is_some_and(|a| a.contains(&format!("/{reg}/")))
                })
            })
            .count()
    }
}

/// Every request the emulator recorded, of every account (the member roles' own credentials
/// included, which no `Account` holds).
pub fn all_recorded() -> Vec<Recorded> {
    use base64::Engine;
    assert_eq!(
        std::env::var("EBS_SNAPPER_TEST_RECORDING").as_deref(),
        Ok("1"),
        "the emulator is not recording requests (MOTO_RECORD=0?): call counts cannot be checked"
    );
    let path = std::env::var("MOTO_RECORDER_FILEPATH").expect("MOTO_RECORDER_FILEPATH is set by scripts/test.sh");
    let text = std::fs::read_to_string(path).expect("read the emulator's recording");
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let headers = entry["headers"].clone();
        let raw = entry["body"].as_str().unwrap_or("");
        let body = if entry["body_encoded"].as_bool().unwrap_or(false) {
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(raw).unwrap_or_default())
                .into_owned()
        } else {
            raw.to_string()
        };
        let url = entry["url"].as_str().unwrap_or("").to_string();
        let action = if let Some(target) = headers.get("X-Amz-Target").and_then(|t| t.as_str()) {
            target.rsplit('.').next().unwrap_or(target).to_string()
        } else if let Some(a) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
            a.to_string()
        } else if url.contains("/invocations") {
            "Invoke".to_string()
        } else {
            format!("{} {}", entry["method"].as_str().unwrap_or(""), url)
        };
        out.push(Recorded { action, url, headers, body });
    }
    out
}

/// A configuration JSON text for tag `backup=yes`.
pub fn backup_config(frequency: &str, extra: &str) -> String {
    format!(
        r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": 5, "frequency": "{frequency}"}}{extra}}}"#
    )
}

// ---- Lambda and EventBridge helpers ----

/// The smallest valid zip archive (empty), enough for the emulator to accept a function.
const EMPTY_ZIP: [u8; 22] = [0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

impl Account {
    /// `ebs_snapper_aws::Aws` acting as this account in `region`.
    pub async fn aws(&self, region: &str) -> ebs_snapper_aws::Aws {
        ebs_snapper_aws::Aws::from_config(self.sdk(region).await)
    }

    /// `ebs_snapper_aws::Aws` acting as function `binary` of this account's deployment, under
    /// its role from the template: every request goes through an IAM gate that evaluates it
    /// against that role (keep the gate as long as the `Aws`). `names`: the names the test gives
    /// the stack's functions and rules (`create-worker`), each with the stack's own name for it
    /// less the stack prefix (`create-snapshot`).
    pub async fn aws_as(
        &self,
        region: &str,
        binary: &str,
        names: &[(&str, &str)],
    ) -> (ebs_snapper_aws::Aws, iam::IamGate) {
        let aliases: iam::Aliases = Default::default();
        for (name, deployed) in names {
            aliases.lock().unwrap().insert(name.to_string(), format!("{}-{deployed}", iam::STACK));
        }
        let gate = iam::IamGate::start(binary, &self.id, &endpoint(), None, aliases).await;
        let config = self.sdk_via(region, &gate.endpoint(), aws_config::retry::RetryConfig::standard()).await;
        (ebs_snapper_aws::Aws::from_config(config), gate)
    }

    /// One call of IAM's query API as this account, in the emulator: the answer's status and
    /// XML. The tests make and read a few roles; IAM's SDK crate, the second largest, would be
    /// compiled for nothing else.
    pub async fn iam(&self, action: &str, params: &[(&str, &str)]) -> (u16, String) {
        let mut body = format!("Action={action}&Version=2010-05-08");
        for (k, v) in params {
            body.push_str(&format!("&{k}={}", http::percent_encode(v)));
        }
        let scope = format!("{}/20260101/us-east-1/iam/aws4_request", self.access_key);
        let headers = [
            ("host", endpoint().trim_start_matches("http://").to_string()),
            ("content-type", "application/x-www-form-urlencoded".to_string()),
            ("authorization", format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0")),
            ("x-amz-security-token", self.session_token.clone()),
        ];
        let req = http::Request {
            method: "POST".into(),
            path: "/".into(),
            headers: headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            body: body.into_bytes(),
        };
        let upstream = endpoint().trim_start_matches("http://").to_string();
        let (status, _, body) = fault_proxy::forward(&upstream, &req).await.expect("IAM call");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// A role of this account: its ARN and its trust policy (JSON), or `None` if there is none.
    pub async fn role(&self, name: &str) -> Option<(String, serde_json::Value)> {
        let (status, xml) = self.iam("GetRole", &[("RoleName", name)]).await;
        if status != 200 {
            return None;
        }
        let trust = http::percent_decode(&xml_text(&xml, "AssumeRolePolicyDocument")?);
        let trust = serde_json::from_str(&trust).unwrap_or_else(|e| panic!("{e}: {trust}"));
        Some((xml_text(&xml, "Arn")?, trust))
    }

    /// Creates a role of this account trusting as `trust` (JSON) says, unless one of that name
    /// exists; returns its ARN.
    pub async fn create_role(&self, name: &str, trust: &str) -> String {
        let (status, xml) = self.iam("CreateRole", &[("RoleName", name), ("AssumeRolePolicyDocument", trust)]).await;
        match xml_text(&xml, "Arn") {
            Some(arn) if status == 200 => arn,
            _ => self.role(name).await.unwrap_or_else(|| panic!("CreateRole {name}: {status} {xml}")).0,
        }
    }

    /// Creates a Lambda function (and its role) in the emulator; returns its ARN.
    pub async fn create_function(&self, region: &str, name: &str) -> String {
        let role = self
            .create_role(
                "ebs-snapper-test",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .await;
        let lambda = aws_sdk_lambda::Client::new(&self.sdk(region).await);
        let out = lambda
            .create_function()
            .function_name(name)
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .handler("bootstrap")
            .role(role)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(EMPTY_ZIP.to_vec()))
                    .build(),
            )
            .send()
            .await
            .expect("create function");
        out.function_arn().unwrap().to_string()
    }

    /// Creates a schedule rule in the given state; returns nothing.
    pub async fn create_rule(&self, region: &str, name: &str, enabled: bool) {
        let events = aws_sdk_eventbridge::Client::new(&self.sdk(region).await);
        events
            .put_rule()
            .name(name)
            .schedule_expression("rate(30 minutes)")
            .state(if enabled {
                aws_sdk_eventbridge::types::RuleState::Enabled
            } else {
                aws_sdk_eventbridge::types::RuleState::Disabled
            })
            .send()
            .await
            .expect("put rule");
    }

    pub async fn rule_enabled(&self, region: &str, name: &str) -> bool {
        let events = aws_sdk_eventbridge::Client::new(&self.sdk(region).await);
        let out = events.describe_rule().name(name).send().await.expect("describe rule");
        matches!(out.state(), Some(aws_sdk_eventbridge::types::RuleState::Enabled))
    }

    /// A function ARN in this account, as the runtime's context carries it.
    pub fn function_arn(&self, name: &str) -> String {
        format!("arn:aws:lambda:us-east-1:{}:function:{name}", self.id)
    }
}

impl Account {
    /// Makes an AMI of the instance; returns the ids of the snapshots backing it.
    pub async fn create_image(&self, region: &str, instance: &str) -> Vec<String> {
        let ec2 = self.ec2(region).await;
        let image = ec2
            .create_image()
            .instance_id(instance)
            .name(format!("img-{instance}"))
            .send()
            .await
            .expect("create image");
        let out = ec2.describe_images().image_ids(image.image_id().unwrap()).send().await.expect("describe image");
        out.images()[0]
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_string))
            .collect()
    }

    /// Registers an AMI whose root device is restored from `snapshot` (the snapshot backs it).
    pub async fn register_image_of(&self, region: &str, snapshot: &str) -> String {
        let mapping = aws_sdk_ec2::types::BlockDeviceMapping::builder()
            .device_name("/dev/sda1")
            .ebs(aws_sdk_ec2::types::EbsBlockDevice::builder().snapshot_id(snapshot).build())
            .build();
        let out = self
            .ec2(region)
            .await
            .register_image()
            .name(format!("img-{snapshot}"))
            .root_device_name("/dev/sda1")
            .block_device_mappings(mapping)
            .send()
            .await
            .expect("register image");
        out.image_id().unwrap().to_string()
    }

    pub async fn tag(&self, region: &str, resource: &str, key: &str, value: &str) {
        self.ec2(region)
            .await
            .create_tags()
            .resources(resource)
            .tags(aws_sdk_ec2::types::Tag::builder().key(key).value(value).build())
            .send()
            .await
            .expect("create tags");
    }
}

/// Today's UTC date as `DeleteOn` writes it, shifted by `days`.
pub fn date(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days)).format("%Y-%m-%d").to_string()
}

/// Whether `value` is the date `days` after the day a run made it: today's, or yesterday's when
/// midnight UTC passed between the run and the check.
pub fn dated(value: Option<&str>, days: i64) -> bool {
    value.is_some_and(|v| v == date(days) || v == date(days - 1))
}
