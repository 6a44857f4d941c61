//! A fault-injecting proxy between the SDK and the emulator.
//!
//! Tests point `AWS_ENDPOINT_URL` at it. For each request it names the operation (the `Action` of
//! EC2 and STS, the `X-Amz-Target` of DynamoDB and EventBridge, `Invoke` for Lambda) and the
//! region (from the SigV4 credential scope), then decides from a fixed seed, the operation and
//! how many calls of that operation it has seen whether to fault the request. A faulted request
//! never reaches the emulator: it is answered with the service's own throttling error (EC2
//! `RequestLimitExceeded` 503, DynamoDB `ProvisionedThroughputExceededException`, ...), an
//! internal error (EC2 `InternalError` 500, ...), or its connection is dropped unanswered. The
//! rest are forwarded and their answers relayed.
//!
//! The proxy runs on the test's tokio runtime: tests that wait on a child process while it
//! serves must use a multi-threaded runtime (`#[tokio::test(flavor = "multi_thread")]`).
//!
//! The decision for the n-th call of an operation depends only on the seed, the operation and
//! n, so a scenario faults the same calls of each operation on every run.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::http::{read_request, respond, serve_each, Request};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The service's throttling error.
    Throttle,
    /// The service's internal error (HTTP 500).
    Internal,
    /// The connection is closed without an answer.
    Drop,
    /// EC2's request token bucket of the operation was empty: `RequestLimitExceeded`, as a
    /// throttle, but from [`Strict::buckets`], not from the plan.
    Bucket,
    /// The request is carried out, then the connection is closed without its answer (a
    /// timeout or a lost connection after AWS did the work).
    LostAnswer,
    /// A `CreateSnapshot` is lost before AWS carries it out, and at that moment someone else
    /// (a DLM policy on the same hour, a person) snapshots the same volume: an own snapshot of
    /// it, without this tool's tags.
    LostBesideAnother,
    /// The resource the request names vanished since it was listed (a volume deleted, an
    /// instance terminated, by autoscaling say): EC2's refusal for it, `InvalidVolume.NotFound`
    /// to `CreateSnapshot`, `InvalidInstanceID.NotFound` to `CreateSnapshots`,
    /// `InvalidSnapshot.NotFound` to the rest.
    Gone,
}

/// What AWS does and the emulator does not, switchable per test (SPEC §15). The rest of the
/// stricter AWS (filter names refused, copies reporting `vol-ffffffff`) is always on, in the
/// emulator itself (`scripts/testbed/strict_moto.py`).
#[derive(Debug, Clone, Default)]
pub struct Strict {
    /// A filtered `DescribeInstances`, `DescribeSnapshots` or `DescribeVolumes` is first answered
    /// with an empty page and a `NextToken`; the request with that token gets the real answer.
    pub empty_first_pages: bool,
    /// A snapshot made by `CreateSnapshot` or `CopySnapshot` is missing from `DescribeSnapshots`
    /// for this long (EC2 is eventually consistent).
    pub unlisted_for: std::time::Duration,
    /// ... and reported `pending` for this long after that.
    pub pending_for: std::time::Duration,
    /// After a Lambda function's code is updated, the update is in progress for this long:
    /// its configuration says `LastUpdateStatus: InProgress`, and `PublishVersion` or another
    /// update of it is refused with `ResourceConflictException` (409).
    pub lambda_update_for: std::time::Duration,
    /// S3 answers with an ETag that is not the object's MD5 (as under SSE-KMS).
    pub s3_etag_not_md5: bool,
    /// Another account's snapshot, shared with this one: `DescribeSnapshots` lists it unless
    /// the request asks for own snapshots only (`OwnerIds=self`). It carries `DeleteOn` long
    /// past and replication tags, so any job that saw it would act on it.
    pub foreign_snapshot: Option<String>,
    /// EC2's request token buckets (`None`: unlimited, as the emulator is).
    pub buckets: Option<Buckets>,
    /// Snapshots that AWS accepts and then fails (SPEC §10.11): a `CreateSnapshot`,
    /// `CreateSnapshots` or `CopySnapshot` whose request names one of these (a volume, an
    /// instance, a source snapshot or a KMS key) makes snapshots that `DescribeSnapshots` lists
    /// in state `error` with this `StateMessage` (after the pending period).
    pub end_in_error: Vec<(String, String)>,
    /// An archival takes this long (SPEC §15): after `ModifySnapshotTier`, the snapshot still
    /// reads `standard`, and a second request for it is refused with `IncorrectState`.
    pub archival_for: std::time::Duration,
    /// At most this many copies in progress per destination account and region (AWS: 20); a
    /// `CopySnapshot` past it is refused with `ResourceLimitExceeded`. A copy is in progress
    /// until its unlisted and pending periods have passed. `None`: no limit.
    pub copies_in_progress: Option<usize>,
    /// A volume made by `CreateVolume` reads `creating` in `DescribeVolumes` for this long
    /// (EBS takes a while; `Duration::MAX`: it never becomes available).
    pub volumes_creating_for: std::time::Duration,
    /// Snapshots whose volumes end in `error` (a key or grant that does not allow the restore):
    /// a volume `CreateVolume` makes from one of them reads `error` once it is no longer
    /// `creating`.
    pub volumes_fail_from: Vec<String>,
}

/// EC2's request rate limiting: one token bucket per API, per account and region, shared by
/// every caller in the account (the CLI, each worker, each session of a member role). Each request takes a token; an empty bucket answers `RequestLimitExceeded`
/// (HTTP 503) and takes none; a bucket refills at a fixed rate up to its size. The sizes are
/// AWS's published request token limits ("Request throttling for the Amazon EC2 API"):
/// mutating actions 200 tokens refilled at 5 per second, non-mutating (`Describe*`) 100 at 20.
#[derive(Debug, Clone)]
pub struct Buckets {
    /// Size and refill per second of the mutating actions' buckets.
    pub mutating: (f64, f64),
    /// ... and of the non-mutating ones (`Describe*`).
    pub non_mutating: (f64, f64),
    /// Other figures for some APIs (a test can make one small).
    pub overrides: HashMap<String, (f64, f64)>,
}

impl Buckets {
    /// AWS's published defaults.
    pub fn aws() -> Buckets {
        Buckets { mutating: (200.0, 5.0), non_mutating: (100.0, 20.0), overrides: HashMap::new() }
    }

    /// `operation`'s bucket holds `size` tokens, refilled at `refill` per second.
    pub fn with(mut self, operation: &str, size: f64, refill: f64) -> Buckets {
        self.overrides.insert(operation.to_string(), (size, refill));
        self
    }

    fn limits(&self, operation: &str) -> (f64, f64) {
        if let Some(l) = self.overrides.get(operation) {
            return *l;
        }
        if operation.starts_with("Describe") {
            self.non_mutating
        } else {
            self.mutating
        }
    }
}

/// One bucket's tokens, as of when.
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

/// The account that owns [`Strict::foreign_snapshot`].
pub const FOREIGN_ACCOUNT: &str = "999988887777";

impl Strict {
    /// Every behaviour on, with short delays.
    pub fn on() -> Strict {
        Strict {
            empty_first_pages: true,
            unlisted_for: std::time::Duration::from_millis(1500),
            pending_for: std::time::Duration::from_millis(1500),
            lambda_update_for: std::time::Duration::from_secs(2),
            s3_etag_not_md5: true,
            foreign_snapshot: Some("snap-0f0f0f0f0f0f0f0f0".to_string()),
            buckets: Some(Buckets::aws()),
            end_in_error: Vec::new(),
            archival_for: std::time::Duration::from_secs(2),
            copies_in_progress: Some(20),
            volumes_creating_for: std::time::Duration::from_secs(3),
            volumes_fail_from: Vec::new(),
        }
    }
}

/// Which requests to fault, and how often.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    seed: u64,
    /// Fraction of matching requests faulted, in 1/10,000.
    per_10k: u64,
    operations: Option<BTreeSet<String>>,
    region: Option<String>,
    /// Only requests whose body contains one of these (a volume or snapshot id).
    needles: Option<Vec<String>>,
    kinds: Vec<Fault>,
    /// At most this many requests are faulted; the rest are forwarded.
    limit: Option<u64>,
    faulted: u64,
}

impl FaultPlan {
    /// Faults `rate` (0.0 to 1.0) of every call, with every kind of fault.
    pub fn every_call(seed: u64, rate: f64) -> FaultPlan {
        FaultPlan {
            seed,
            per_10k: (rate * 10_000.0).round() as u64,
            operations: None,
            region: None,
            needles: None,
            kinds: vec![Fault::Throttle, Fault::Internal, Fault::Drop, Fault::LostAnswer],
            limit: None,
            faulted: 0,
        }
    }

    /// No faults: every request is forwarded.
    pub fn none() -> FaultPlan {
        FaultPlan::every_call(0, 0.0)
    }

    /// Only these operations are faulted.
    pub fn only_operations(mut self, ops: &[&str]) -> FaultPlan {
        self.operations = Some(ops.iter().map(|o| o.to_string()).collect());
        self
    }

    /// Only requests to this region are faulted.
    pub fn only_region(mut self, region: &str) -> FaultPlan {
        self.region = Some(region.to_string());
        self
    }

    /// Only requests whose body names one of `ids`.
    pub fn only_naming(mut self, ids: &[&str]) -> FaultPlan {
        self.needles = Some(ids.iter().map(|i| i.to_string()).collect());
        self
    }

    /// Only these kinds of fault.
    pub fn kinds(mut self, kinds: &[Fault]) -> FaultPlan {
        self.kinds = kinds.to_vec();
        self
    }

    /// Only the first `n` requests the plan would fault are faulted.
    pub fn at_most(mut self, n: u64) -> FaultPlan {
        self.limit = Some(n);
        self
    }

    fn decide(&mut self, operation: &str, region: &str, body: &str, n: u64) -> Option<Fault> {
        let fault = self.pick(operation, region, body, n)?;
        if self.limit.is_some_and(|limit| self.faulted >= limit) {
            return None;
        }
        self.faulted += 1;
        Some(fault)
    }

    fn pick(&self, operation: &str, region: &str, body: &str, n: u64) -> Option<Fault> {
        if self.per_10k == 0
            || self.operations.as_ref().is_some_and(|ops| !ops.contains(operation))
            || self.region.as_ref().is_some_and(|r| r != region)
            || self.needles.as_ref().is_some_and(|ids| !ids.iter().any(|id| body.contains(id.as_str())))
        {
            return None;
        }
        let op_hash =
            operation.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x1_0000_01b3));
        let x = splitmix(self.seed ^ op_hash ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        ((x % 10_000) < self.per_10k).then(|| self.kinds[((x >> 32) % self.kinds.len() as u64) as usize])
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub operation: String,
    /// `None` when forwarded.
    pub fault: Option<Fault>,
    /// When it arrived, from the proxy's start.
    pub at: std::time::Duration,
}

struct State {
    plan: Mutex<FaultPlan>,
    strict: Mutex<Strict>,
    /// Snapshots made through the proxy, and when.
    made: Mutex<HashMap<String, std::time::Instant>>,
    /// Snapshots that end in `error` ([`Strict::end_in_error`]), with their `StateMessage`.
    errored: Mutex<HashMap<String, String>>,
    /// Snapshots whose archival started ([`Strict::archival_for`]), and when.
    archiving: Mutex<HashMap<String, std::time::Instant>>,
    /// Copies started through the proxy: (account, region, when).
    copies: Mutex<Vec<(String, String, std::time::Instant)>>,
    /// Volumes made through the proxy: when, and whether they end in `error`.
    volumes: Mutex<HashMap<String, (std::time::Instant, bool)>>,
    /// Lambda functions whose code update is in progress, and since when.
    updating: Mutex<HashMap<String, std::time::Instant>>,
    /// `NextToken`s of the empty first pages handed out.
    tokens: Mutex<BTreeSet<String>>,
    upstream: String,
    calls: Mutex<HashMap<String, u64>>,
    /// EC2's token buckets, by (account, region, operation).
    buckets: Mutex<HashMap<(String, String, String), Bucket>>,
    /// The account of each access key seen (asked of the emulator once).
    accounts: Mutex<HashMap<String, String>>,
    seen: Mutex<Vec<Seen>>,
    started: std::time::Instant,
}

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FaultProxy {
    /// Starts a proxy in front of the emulator.
    pub async fn start(plan: FaultPlan) -> FaultProxy {
        let upstream = super::endpoint().trim_start_matches("http://").trim_end_matches('/').to_string();
        let state = Arc::new(State {
            plan: Mutex::new(plan),
            strict: Mutex::new(Strict::default()),
            made: Mutex::new(HashMap::new()),
            errored: Mutex::new(HashMap::new()),
            archiving: Mutex::new(HashMap::new()),
            copies: Mutex::new(Vec::new()),
            volumes: Mutex::new(HashMap::new()),
            updating: Mutex::new(HashMap::new()),
            tokens: Mutex::new(BTreeSet::new()),
            upstream,
            calls: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
        });
        let s = state.clone();
        let addr = serve_each(move |conn| serve(conn, s.clone())).await;
        FaultProxy { addr, state }
    }

    /// The endpoint to give the SDK (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the plan (`FaultPlan::none()` turns faults off).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.state.plan.lock().unwrap() = plan;
    }

    /// Turns the stricter AWS on (or, with `Strict::default()`, off).
    pub fn set_strict(&self, strict: Strict) {
        *self.state.strict.lock().unwrap() = strict;
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// How many requests were faulted.
    pub fn faulted(&self) -> usize {
        self.seen().iter().filter(|s| s.fault.is_some()).count()
    }

    /// How many requests of `operation` an empty token bucket refused.
    pub fn bucket_refusals(&self, operation: &str) -> usize {
        self.seen().iter().filter(|s| s.fault == Some(Fault::Bucket) && s.operation == operation).count()
    }
}

/// The access key a request is signed with (SigV4 credential scope).
pub(crate) fn access_key(req: &Request) -> String {
    let auth = req.headers.get("authorization").map(String::as_str).unwrap_or("");
    auth.split("Credential=").nth(1).and_then(|c| c.split('/').next()).unwrap_or("").to_string()
}

/// The account a request is signed for: asked of the emulator (`GetCallerIdentity` with the
/// request's credentials) once per access key.
async fn account_of(s: &State, req: &Request) -> String {
    let auth = req.headers.get("authorization").cloned().unwrap_or_default();
    let key = access_key(req);
    if let Some(account) = s.accounts.lock().unwrap().get(&key) {
        return account.clone();
    }
    let scope = auth.split("Credential=").nth(1).and_then(|c| c.split([',', ' ']).next()).unwrap_or("");
    let service = scope.split('/').nth(3).unwrap_or("");
    let mut headers = req.headers.clone();
    headers.insert("authorization".into(), auth.replace(&format!("/{service}/aws4_request"), "/sts/aws4_request"));
    headers.insert("content-type".into(), "application/x-www-form-urlencoded".into());
    headers.remove("x-amz-target");
    let ask = Request {
        method: "POST".into(),
        path: "/".into(),
        headers,
        body: b"Action=GetCallerIdentity&Version=2011-06-15".to_vec(),
    };
    let account = match forward(&s.upstream, &ask).await {
        Ok((200, _, body)) => element(&String::from_utf8_lossy(&body), "Account").unwrap_or_else(|| key.clone()),
        _ => key.clone(),
    };
    s.accounts.lock().unwrap().insert(key, account.clone());
    account
}

/// Takes a token from the request's bucket (that of `account`); `false` when it is empty (the
/// request is refused).
fn take_token(s: &State, buckets: &Buckets, account: &str, region: &str, operation: &str) -> bool {
    let (size, refill) = buckets.limits(operation);
    let key = account.to_string();
    let now = std::time::Instant::now();
    let mut all = s.buckets.lock().unwrap();
    let bucket =
        all.entry((key, region.to_string(), operation.to_string())).or_insert(Bucket { tokens: size, at: now });
    bucket.tokens = (bucket.tokens + refill * now.duration_since(bucket.at).as_secs_f64()).min(size);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        true
    } else {
        false
    }
}

/// The service (SigV4 scope), region and operation of a request.
pub(crate) fn classify(req: &Request) -> (String, String, String) {
    let auth = req.headers.get("authorization").map(String::as_str).unwrap_or("");
    let scope: Vec<&str> = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split([',', ' ']).next())
        .map(|c| c.split('/').collect())
        .unwrap_or_default();
    let region = scope.get(2).unwrap_or(&"").to_string();
    let service = scope.get(3).unwrap_or(&"").to_string();
    let operation = if let Some(target) = req.headers.get("x-amz-target") {
        target.rsplit('.').next().unwrap_or(target).to_string()
    } else if req.path.starts_with("/2015-03-31/functions/") && req.path.ends_with("/invocations") {
        "Invoke".to_string()
    } else if service == "ebs" {
        // The EBS direct APIs are REST: the operation is in the path.
        let path = req.path.split('?').next().unwrap_or("");
        match path.split('/').collect::<Vec<_>>().as_slice() {
            ["", "snapshots", _, "blocks"] => "ListSnapshotBlocks".to_string(),
            ["", "snapshots", _, "blocks", _] => "GetSnapshotBlock".to_string(),
            ["", "snapshots", _, "changedblocks"] => "ListChangedBlocks".to_string(),
            _ => format!("{} {path}", req.method),
        }
    } else if let Some(action) =
        String::from_utf8_lossy(&req.body).split('&').find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
    {
        action
    } else {
        format!("{} {}", req.method, req.path.split('?').next().unwrap_or(""))
    };
    (service, region, operation)
}

/// EC2's refusal of a request (HTTP 400) with `code`.
fn ec2_refusal(code: &str, message: &str, n: usize) -> (u16, Vec<(&'static str, String)>, String) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>refusal-{n}</RequestID></Response>"
    );
    (400, vec![("content-type", "text/xml;charset=UTF-8".into())], body)
}

/// EC2's refusal of a request naming a resource that no longer exists.
fn gone_response(operation: &str, req: &Request, n: usize) -> (u16, Vec<(&'static str, String)>, String) {
    let (code, what) = match operation {
        "CreateSnapshot" => ("InvalidVolume.NotFound", query_value(&req.body, "VolumeId")),
        "CreateSnapshots" => ("InvalidInstanceID.NotFound", query_value(&req.body, "InstanceSpecification.InstanceId")),
        _ => ("InvalidSnapshot.NotFound", query_value(&req.body, "SnapshotId")),
    };
    ec2_refusal(code, &format!("The resource '{}' does not exist.", what.unwrap_or_default()), n)
}

/// The answer a service gives for `fault`: status, headers, body.
fn fault_response(service: &str, fault: Fault, n: usize) -> (u16, Vec<(&'static str, String)>, String) {
    let throttle = matches!(fault, Fault::Throttle | Fault::Bucket);
    match service {
        "ec2" => {
            let (status, code, message) = if throttle {
                (503, "RequestLimitExceeded", "Request limit exceeded.")
            } else {
                (500, "InternalError", "An internal error has occurred.")
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-{n}</RequestID></Response>"
            );
            (status, vec![("content-type", "text/xml;charset=UTF-8".into())], body)
        }
        "dynamodb" => {
            let (status, kind, message) = if throttle {
                (
                    400,
                    "ProvisionedThroughputExceededException",
                    "The level of configured provisioned throughput for the table was exceeded.",
                )
            } else {
                (500, "InternalServerError", "Internal server error")
            };
            let body = format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"{message}"}}"#);
            (status, vec![("content-type", "application/x-amz-json-1.0".into())], body)
        }
        "lambda" => {
            let (status, kind) = if throttle { (429, "TooManyRequestsException") } else { (500, "ServiceException") };
            let body = format!(r#"{{"Type":"Service","message":"injected {kind}"}}"#);
            (status, vec![("content-type", "application/json".into()), ("x-amzn-errortype", kind.into())], body)
        }
        "ebs" => {
            let (status, kind) =
                if throttle { (400, "RequestThrottledException") } else { (500, "InternalServerException") };
            let body = format!(r#"{{"message":"injected {kind}"}}"#);
            (status, vec![("content-type", "application/json".into()), ("x-amzn-errortype", kind.into())], body)
        }
        "events" => {
            let (status, kind) = if throttle { (400, "ThrottlingException") } else { (500, "InternalException") };
            let body = format!(r#"{{"__type":"{kind}","message":"injected {kind}"}}"#);
            (status, vec![("content-type", "application/x-amz-json-1.1".into())], body)
        }
        _ => {
            let (status, kind, code) =
                if throttle { (400, "Sender", "Throttling") } else { (500, "Receiver", "InternalFailure") };
            let body = format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>injected {code}</Message></Error><RequestId>fault-{n}</RequestId></ErrorResponse>"
            );
            (status, vec![("content-type", "text/xml".into())], body)
        }
    }
}

async fn serve(conn: TcpStream, s: Arc<State>) {
    let (r, mut w) = conn.into_split();
    let mut reader = BufReader::new(r);
    while let Some(mut req) = read_request(&mut reader).await {
        // Answered on this connection, then closed when asked (the IAM gate reads to the end).
        let close = req.wants_close();
        let (service, region, operation) = classify(&req);
        let strict = s.strict.lock().unwrap().clone();
        let mut fault = {
            let mut calls = s.calls.lock().unwrap();
            let n = calls.entry(operation.clone()).or_default();
            *n += 1;
            s.plan.lock().unwrap().decide(&operation, &region, &String::from_utf8_lossy(&req.body), *n)
        };
        if let (None, Some(buckets), "ec2") = (fault, &strict.buckets, service.as_str()) {
            let account = account_of(&s, &req).await;
            if !take_token(&s, buckets, &account, &region, &operation) {
                fault = Some(Fault::Bucket);
            }
        }
        let index = {
            let mut seen = s.seen.lock().unwrap();
            seen.push(Seen { operation: operation.clone(), fault, at: s.started.elapsed() });
            seen.len()
        };
        // A faulted request gets its fault, not the empty page (AWS throttles before it pages).
        if service == "ec2" && strict.empty_first_pages && fault.is_none() {
            if let Some(page) = empty_first_page(&s, &mut req, &operation) {
                if respond(&mut w, 200, &[("content-type", "text/xml;charset=UTF-8".into())], page.as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                if close {
                    return;
                }
                continue;
            }
        }
        if service == "lambda" {
            if let Some(refusal) = lambda_update_in_progress(&s, &strict, &req) {
                let headers = [
                    ("content-type", "application/json".to_string()),
                    ("x-amzn-errortype", "ResourceConflictException".to_string()),
                ];
                if respond(&mut w, 409, &headers, refusal.as_bytes()).await.is_err() {
                    return;
                }
                if close {
                    return;
                }
                continue;
            }
        }
        let result = match fault {
            Some(Fault::Drop) => return,
            Some(Fault::LostAnswer) => {
                if let Ok((status, _, body)) = forward(&s.upstream, &req).await {
                    note_made(&s, &operation, status, &body);
                }
                return;
            }
            Some(Fault::LostBesideAnother) => {
                if let Some(volume) = query_value(&req.body, "VolumeId") {
                    let other = Request {
                        method: req.method.clone(),
                        path: req.path.clone(),
                        headers: req.headers.clone(),
                        body: format!("Action=CreateSnapshot&Version=2016-11-15&VolumeId={volume}").into_bytes(),
                    };
                    if let Ok((status, _, body)) = forward(&s.upstream, &other).await {
                        note_made(&s, &operation, status, &body);
                    }
                }
                return;
            }
            Some(Fault::Gone) => {
                let (status, headers, body) = gone_response(&operation, &req, index);
                respond(&mut w, status, &headers, body.as_bytes()).await
            }
            Some(f) => {
                let (status, headers, body) = fault_response(&service, f, index);
                respond(&mut w, status, &headers, body.as_bytes()).await
            }
            None if operation == "CopySnapshot" && copies_full(&s, &strict, &account_of(&s, &req).await, &region) => {
                let (status, headers, body) = ec2_refusal(
                    "ResourceLimitExceeded",
                    "You have exceeded the maximum number of concurrent snapshot copy operations.",
                    index,
                );
                respond(&mut w, status, &headers, body.as_bytes()).await
            }
            None if operation == "ModifySnapshotTier" && archival_in_progress(&s, &strict, &req) => {
                let (status, headers, body) =
                    ec2_refusal("IncorrectState", "The snapshot is already being archived or restored.", index);
                respond(&mut w, status, &headers, body.as_bytes()).await
            }
            None => match forward(&s.upstream, &req).await {
                Ok((status, mut headers, mut body)) => {
                    note_made(&s, &operation, status, &body);
                    if operation == "CopySnapshot" && status == 200 && strict.copies_in_progress.is_some() {
                        let account = account_of(&s, &req).await;
                        s.copies.lock().unwrap().push((account, region.clone(), std::time::Instant::now()));
                    }
                    note_fate(&s, &strict, &operation, &req, status, &body);
                    if operation == "CreateVolume" && status == 200 {
                        note_volume(&s, &strict, &req, &body);
                    }
                    if operation == "DescribeVolumes" && status == 200 {
                        body = as_aws_volumes(&s, &strict, &body);
                    }
                    if operation == "DescribeSnapshots" && status == 200 {
                        body = as_aws_lists(&s, &strict, &body);
                        body = with_shared(&strict, &req, body);
                    }
                    if service == "lambda" && status < 300 {
                        body = as_aws_lambda(&s, &strict, &req, body);
                    }
                    if service == "s3" && strict.s3_etag_not_md5 {
                        for (k, v) in headers.iter_mut() {
                            if k == "etag" {
                                // Opaque, as under SSE-KMS: not the MD5 of the content.
                                *v = format!("\"{}\"", v.trim_matches('"').chars().rev().collect::<String>());
                            }
                        }
                    }
                    let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                    respond(&mut w, status, &headers, &body).await
                }
                Err(_) => return,
            },
        };
        if result.is_err() || close {
            return;
        }
    }
}

/// The function a Lambda control-plane request names, and what it does to it.
fn lambda_request(req: &Request) -> Option<(String, &'static str)> {
    let path = req.path.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let (name, what) = rest.split_once('/').unwrap_or((rest, ""));
    let name = name.rsplit(':').next().unwrap_or(name).to_string();
    let kind = match (req.method.as_str(), what) {
        ("PUT", "code") | ("PUT", "configuration") => "update",
        ("POST", "versions") => "publish",
        ("GET", "configuration") | ("GET", "") => "read",
        _ => return None,
    };
    Some((name, kind))
}

/// Lambda's refusal of a change while the function's last update is in progress.
fn lambda_update_in_progress(s: &State, strict: &Strict, req: &Request) -> Option<String> {
    let (name, kind) = lambda_request(req)?;
    let since = *s.updating.lock().unwrap().get(&name)?;
    (matches!(kind, "update" | "publish") && since.elapsed() < strict.lambda_update_for).then(|| {
        format!(r#"{{"Type":"User","message":"The operation cannot be performed at this time. An update is in progress for resource: {name}"}}"#)
    })
}

/// A Lambda answer as AWS gives it while an update is in progress: a code update starts one,
/// and the function's configuration says so until it is done.
fn as_aws_lambda(s: &State, strict: &Strict, req: &Request, body: Vec<u8>) -> Vec<u8> {
    if strict.lambda_update_for.is_zero() {
        return body;
    }
    let Some((name, kind)) = lambda_request(req) else { return body };
    if kind == "update" {
        s.updating.lock().unwrap().insert(name.clone(), std::time::Instant::now());
    }
    let in_progress = s.updating.lock().unwrap().get(&name).is_some_and(|t| t.elapsed() < strict.lambda_update_for);
    if !in_progress || kind == "publish" {
        return body;
    }
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&body) else { return body };
    // GetFunction nests the configuration; GetFunctionConfiguration and UpdateFunctionCode do not.
    let config = if doc.get("Configuration").is_some() { &mut doc["Configuration"] } else { &mut doc };
    if config.get("LastUpdateStatus").is_some() {
        config["LastUpdateStatus"] = "InProgress".into();
    }
    serde_json::to_vec(&doc).unwrap_or(body)
}

/// Whether `account` has [`Strict::copies_in_progress`] copies in progress into `region`.
fn copies_full(s: &State, strict: &Strict, account: &str, region: &str) -> bool {
    let Some(limit) = strict.copies_in_progress else { return false };
    let in_progress = strict.unlisted_for + strict.pending_for;
    let copies = s.copies.lock().unwrap();
    copies.iter().filter(|(a, r, at)| a == account && r == region && at.elapsed() < in_progress).count() >= limit
}

/// Remembers the snapshots a `CreateSnapshot`, `CreateSnapshots` (every one of the set) or
/// `CopySnapshot` made.
fn note_made(s: &State, operation: &str, status: u16, body: &[u8]) {
    if status != 200 || !matches!(operation, "CreateSnapshot" | "CreateSnapshots" | "CopySnapshot") {
        return;
    }
    let now = std::time::Instant::now();
    let mut made = s.made.lock().unwrap();
    for id in snapshot_ids(&String::from_utf8_lossy(body)) {
        made.insert(id.to_string(), now);
    }
}

/// The ids of the snapshots an answer names (`<snapshotId>` elements), in order.
fn snapshot_ids(xml: &str) -> impl Iterator<Item = &str> {
    xml.split("<snapshotId>").skip(1).filter_map(|rest| rest.split('<').next())
}

/// Remembers what [`Strict`] makes of a request carried out: the snapshots it made that end in
/// `error`, and the start of an archival.
fn note_fate(s: &State, strict: &Strict, operation: &str, req: &Request, status: u16, body: &[u8]) {
    if status != 200 {
        return;
    }
    // Decoded, so that a key ARN's colons match.
    let query = super::http::percent_decode(&String::from_utf8_lossy(&req.body));
    match operation {
        "CreateSnapshot" | "CreateSnapshots" | "CopySnapshot" => {
            let Some((_, message)) = strict.end_in_error.iter().find(|(needle, _)| query.contains(needle.as_str()))
            else {
                return;
            };
            let mut errored = s.errored.lock().unwrap();
            for id in snapshot_ids(&String::from_utf8_lossy(body)) {
                errored.insert(id.to_string(), message.clone());
            }
        }
        "ModifySnapshotTier" if !strict.archival_for.is_zero() => {
            if let Some(id) = query_value(&req.body, "SnapshotId") {
                s.archiving.lock().unwrap().entry(id).or_insert_with(std::time::Instant::now);
            }
        }
        _ => {}
    }
}

/// Whether the snapshot a `ModifySnapshotTier` names is still being archived.
fn archival_in_progress(s: &State, strict: &Strict, req: &Request) -> bool {
    let Some(id) = query_value(&req.body, "SnapshotId") else { return false };
    s.archiving.lock().unwrap().get(&id).is_some_and(|t| t.elapsed() < strict.archival_for)
}

/// The value of `name` in a query-protocol request body (`Name=value&...`); ids only, so
/// nothing to decode.
pub(crate) fn query_value(body: &[u8], name: &str) -> Option<String> {
    let body = String::from_utf8_lossy(body);
    body.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
}

/// The text of the first `<name>` element.
pub(crate) fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].to_string())
}

/// For a filtered describe without a token: the empty first page AWS may send, with a token
/// of ours. For a request carrying one of our tokens: the token is taken out, so the emulator
/// answers the first real page.
fn empty_first_page(s: &State, req: &mut Request, operation: &str) -> Option<String> {
    let set = match operation {
        "DescribeInstances" => "reservationSet",
        "DescribeSnapshots" => "snapshotSet",
        "DescribeVolumes" => "volumeSet",
        _ => return None,
    };
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let ours = body.split('&').find_map(|kv| kv.strip_prefix("NextToken=")).filter(|t| t.starts_with("strict-page-"));
    if let Some(token) = ours {
        // (The token stays valid: a retried request carries it again.)
        if s.tokens.lock().unwrap().contains(token) {
            let rest: Vec<&str> = body.split('&').filter(|kv| !kv.starts_with("NextToken=")).collect();
            req.body = rest.join("&").into_bytes();
        }
        return None;
    }
    if !body.contains("Filter.1.Name=") || body.contains("NextToken=") {
        return None;
    }
    let token = {
        let mut tokens = s.tokens.lock().unwrap();
        let token = format!("strict-page-{}", tokens.len() + s.seen.lock().unwrap().len());
        tokens.insert(token.clone());
        token
    };
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{operation}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>strict</requestId><{set}/><nextToken>{token}</nextToken></{operation}Response>"
    ))
}

/// A `DescribeSnapshots` answer as AWS may give it just after a snapshot was made: the new
/// snapshot missing for a while, then `pending` for a while.
fn as_aws_lists(s: &State, strict: &Strict, body: &[u8]) -> Vec<u8> {
    // (Snapshots that ended in error stay so once the switch is off: AWS does not mend them.)
    if strict.unlisted_for.is_zero()
        && strict.pending_for.is_zero()
        && strict.archival_for.is_zero()
        && s.errored.lock().unwrap().is_empty()
    {
        return body.to_vec();
    }
    let xml = String::from_utf8_lossy(body).into_owned();
    let (Some(open), Some(close)) = (xml.find("<snapshotSet>"), xml.rfind("</snapshotSet>")) else {
        return body.to_vec();
    };
    let inner = &xml[open + "<snapshotSet>".len()..close];
    let made = s.made.lock().unwrap().clone();
    let errored = s.errored.lock().unwrap().clone();
    let archiving = s.archiving.lock().unwrap().clone();
    let mut out = String::new();
    for item in top_level_items(inner) {
        let id = element(item, "snapshotId").unwrap_or_default();
        let age = made.get(&id).map(|t| t.elapsed());
        let item = match archiving.get(&id) {
            // Still being archived: it reads `standard` until the archival is done.
            Some(t) if t.elapsed() < strict.archival_for => {
                item.replacen("<storageTier>archive</storageTier>", "<storageTier>standard</storageTier>", 1)
            }
            _ => item.to_string(),
        };
        match age {
            Some(age) if age < strict.unlisted_for => {}
            Some(age) if age < strict.unlisted_for + strict.pending_for => {
                out.push_str(&item.replacen("<status>completed</status>", "<status>pending</status>", 1));
            }
            _ => match errored.get(&id) {
                Some(message) => out.push_str(&item.replacen(
                    "<status>completed</status>",
                    &format!("<status>error</status><statusMessage>{message}</statusMessage>"),
                    1,
                )),
                None => out.push_str(&item),
            },
        }
    }
    format!("{}<snapshotSet>{out}{}", &xml[..open], &xml[close..]).into_bytes()
}

/// Remembers a volume `CreateVolume` made, and whether it ends in `error`.
fn note_volume(s: &State, strict: &Strict, req: &Request, body: &[u8]) {
    let Some(id) = element(&String::from_utf8_lossy(body), "volumeId") else { return };
    let fails = query_value(&req.body, "SnapshotId").is_some_and(|snap| strict.volumes_fail_from.contains(&snap));
    s.volumes.lock().unwrap().insert(id, (std::time::Instant::now(), fails));
}

/// A `DescribeVolumes` answer as AWS gives it: a new volume is `creating` for a while, and one
/// made from a snapshot of [`Strict::volumes_fail_from`] is `error` after that.
fn as_aws_volumes(s: &State, strict: &Strict, body: &[u8]) -> Vec<u8> {
    let volumes = s.volumes.lock().unwrap().clone();
    if volumes.is_empty() {
        return body.to_vec();
    }
    let xml = String::from_utf8_lossy(body).into_owned();
    let (Some(open), Some(close)) = (xml.find("<volumeSet>"), xml.rfind("</volumeSet>")) else {
        return body.to_vec();
    };
    let inner = &xml[open + "<volumeSet>".len()..close];
    let mut out = String::new();
    for item in top_level_items(inner) {
        let id = element(item, "volumeId").unwrap_or_default();
        let state = match volumes.get(&id) {
            Some((at, _)) if at.elapsed() < strict.volumes_creating_for => Some("creating"),
            Some((_, true)) => Some("error"),
            _ => None,
        };
        match state {
            Some(state) => {
                out.push_str(&item.replacen("<status>available</status>", &format!("<status>{state}</status>"), 1))
            }
            None => out.push_str(item),
        }
    }
    format!("{}<volumeSet>{out}{}", &xml[..open], &xml[close..]).into_bytes()
}

/// A `DescribeSnapshots` answer that also lists the snapshot another account shared with this
/// one, when the request did not ask for own snapshots only (nor for given ids or volumes).
fn with_shared(strict: &Strict, req: &Request, body: Vec<u8>) -> Vec<u8> {
    let Some(id) = &strict.foreign_snapshot else { return body };
    let query = String::from_utf8_lossy(&req.body);
    let narrowed = ["Owner.1=self", "SnapshotId.1=", "=volume-id", "=snapshot-id"].iter().any(|k| query.contains(k));
    let xml = String::from_utf8_lossy(&body).into_owned();
    let Some(at) = xml.find("<snapshotSet>").map(|i| i + "<snapshotSet>".len()) else { return body };
    if narrowed || query.contains("NextToken=") {
        return body;
    }
    let item = format!(
        "<item><snapshotId>{id}</snapshotId><volumeId>vol-0f0f0f0f0f0f0f0f0</volumeId><status>completed</status>\
         <startTime>2020-01-01T00:00:00.000Z</startTime><progress>100%</progress><ownerId>{FOREIGN_ACCOUNT}</ownerId>\
         <volumeSize>8</volumeSize><description>shared with this account</description><encrypted>false</encrypted>\
         <tagSet><item><key>DeleteOn</key><value>2000-01-01</value></item>\
         <item><key>replication_dst_region</key><value>eu-west-1</value></item>\
         <item><key>replication_src_region</key><value>us-west-2</value></item>\
         <item><key>replication_snapshot_id</key><value>snap-00000000000000000</value></item></tagSet></item>"
    );
    format!("{}{item}{}", &xml[..at], &xml[at..]).into_bytes()
}

/// The `<item>...</item>` elements at the top level of `xml` (items nest: tags are items too).
fn top_level_items(xml: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, 0usize, 0usize);
    while i < xml.len() {
        let rest = &xml[i..];
        if rest.starts_with("<item>") {
            if depth == 0 {
                start = i;
            }
            depth += 1;
            i += "<item>".len();
        } else if rest.starts_with("</item>") {
            depth = depth.saturating_sub(1);
            i += "</item>".len();
            if depth == 0 {
                items.push(&xml[start..i]);
            }
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    items
}

type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// Sends `req` to the emulator on a new connection and reads the whole answer.
pub(crate) async fn forward(upstream: &str, req: &Request) -> std::io::Result<Response> {
    let mut conn = TcpStream::connect(upstream).await?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        if !matches!(k.as_str(), "connection" | "content-length" | "transfer-encoding") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", req.body.len()));
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(&req.body).await?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("unreadable answer from the emulator"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut chunked = false;
    for line in lines {
        let (k, v) = line.split_once(':')?;
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().to_string();
        if k == "transfer-encoding" {
            chunked = v.contains("chunked");
        }
        if !matches!(k.as_str(), "connection" | "content-length" | "transfer-encoding" | "keep-alive") {
            headers.push((k, v));
        }
    }
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Some((status, headers, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?.split(';').next()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        data = &data[line_end + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..n)?);
        data = data.get(n + 2..)?;
    }
}
