//! IAM as AWS evaluates it, for the functions (SPEC §15): a gate between a function and the
//! emulator that authorizes each request against the function's own role from the template,
//! with a maintained simulator (`scripts/testbed/iam/evaluator.mjs`, started by `scripts/test.sh`),
//! and refuses what the role does not allow as AWS refuses it (`UnauthorizedOperation` for EC2,
//! `AccessDeniedException` for DynamoDB, Lambda and EventBridge, `AccessDenied` for STS). The
//! emulator enforces no policy at all, so without this a worker calling an API its role lacks
//! would pass every test.
//!
//! Each request becomes the authorization requests AWS makes for it: the action on each
//! resource it names (the volume and the new snapshot of a `CreateSnapshot`, say), with the
//! condition keys the template uses (`aws:RequestTag/*`, `aws:TagKeys`, `ec2:CreateAction` for
//! tags applied at creation, `aws:ResourceTag/*` read from the emulator, `dynamodb:LeadingKeys`).
//! A request the gate has no mapping for is refused: unknown requests fail closed. A member
//! role assumed through the gate (`AssumeRole`) is tracked by its access key: requests signed
//! with it are evaluated against the member role of `cloudformation/member.json`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::fault_proxy::{access_key, classify, element, forward, query_value};
use super::http::{percent_decode, read_request, respond, serve_each, Request};

/// The stack name the gate renders roles with (function names, log groups).
pub const STACK: &str = "ebs-snapper";
const REGION: &str = "us-east-1";
const PARTITION: &str = "aws";

/// The role resource of the template that a function binary runs under.
fn role_of(binary: &str) -> &'static str {
    match binary {
        "fanout-snapshot" => "FanoutCreateSnapshotFunctionRole",
        "create-snapshot" => "CreateSnapshotFunctionRole",
        "fanout-clean" => "FanoutCleanSnapshotFunctionRole",
        "clean-snapshot" => "CleanSnapshotFunctionRole",
        "replication" => "ReplicationFunctionRole",
        other => panic!("no role in the template for {other}"),
    }
}

/// Resolves the intrinsic functions a role's policies use, with `params` (parameters,
/// pseudo parameters, and `Resource.Attribute` for `Fn::GetAtt`). `None`: `AWS::NoValue`.
fn resolve(v: &Value, t: &Value, params: &HashMap<String, String>) -> Option<Value> {
    match v {
        Value::Object(o) if o.len() == 1 => {
            let (k, x) = o.iter().next().unwrap();
            match k.as_str() {
                "Ref" if x == "AWS::NoValue" => None,
                "Ref" => Some(Value::String(param(params, x.as_str().unwrap()))),
                "Fn::Sub" => {
                    let text = x.as_str().expect("Fn::Sub with a string");
                    let mut out = String::new();
                    let mut rest = text;
                    while let Some(at) = rest.find("${") {
                        out.push_str(&rest[..at]);
                        let end = rest[at..].find('}').unwrap() + at;
                        out.push_str(&param(params, &rest[at + 2..end]));
                        rest = &rest[end + 1..];
                    }
                    out.push_str(rest);
                    Some(Value::String(out))
                }
                "Fn::GetAtt" => {
                    let parts: Vec<&str> = x.as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
                    Some(Value::String(param(params, &parts.join("."))))
                }
                "Fn::If" => {
                    let a = x.as_array().unwrap();
                    let branch = if condition(t, a[0].as_str().unwrap(), params) { &a[1] } else { &a[2] };
                    resolve(branch, t, params)
                }
                "Fn::Split" => {
                    let a = x.as_array().unwrap();
                    let text = resolve(&a[1], t, params)?;
                    let sep = a[0].as_str().unwrap();
                    Some(Value::Array(text.as_str().unwrap().split(sep).map(|s| Value::String(s.into())).collect()))
                }
                _ => Some(Value::Object(
                    o.iter().filter_map(|(k, x)| Some((k.clone(), resolve(x, t, params)?))).collect(),
                )),
            }
        }
        Value::Object(o) => {
            Some(Value::Object(o.iter().filter_map(|(k, x)| Some((k.clone(), resolve(x, t, params)?))).collect()))
        }
        Value::Array(a) => Some(Value::Array(a.iter().filter_map(|x| resolve(x, t, params)).collect())),
        other => Some(other.clone()),
    }
}

fn param(params: &HashMap<String, String>, name: &str) -> String {
    params.get(name).cloned().unwrap_or_else(|| panic!("the gate has no value for {name}"))
}

fn condition(t: &Value, name: &str, params: &HashMap<String, String>) -> bool {
    fn eval(c: &Value, t: &Value, params: &HashMap<String, String>) -> bool {
        let (k, x) = c.as_object().unwrap().iter().next().unwrap();
        match k.as_str() {
            "Fn::Not" => !eval(&x[0], t, params),
            "Fn::And" => x.as_array().unwrap().iter().all(|c| eval(c, t, params)),
            "Fn::Or" => x.as_array().unwrap().iter().any(|c| eval(c, t, params)),
            "Fn::Equals" => resolve(&x[0], t, params) == resolve(&x[1], t, params),
            "Condition" => condition(t, x.as_str().unwrap(), params),
            other => panic!("condition {other}"),
        }
    }
    eval(&t["Conditions"][name], t, params)
}

/// A template's parameters at their defaults, with `given` over them, and the pseudo
/// parameters of `account`.
fn parameters(t: &Value, account: &str, given: &[(&str, &str)]) -> HashMap<String, String> {
    let mut params: HashMap<String, String> = t["Parameters"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, p)| (k.clone(), p["Default"].as_str().map(str::to_string).unwrap_or_default()))
        .collect();
    for (k, v) in given {
        params.insert(k.to_string(), v.to_string());
    }
    params.insert("AWS::Partition".into(), PARTITION.into());
    params.insert("AWS::Region".into(), REGION.into());
    params.insert("AWS::AccountId".into(), account.into());
    params.insert("AWS::StackName".into(), STACK.into());
    params.insert("AWS::URLSuffix".into(), "amazonaws.com".into());
    params
}

/// The policy documents of `role` in template `t`: its inline policies, and the
/// `AWS::IAM::Policy` resources attached to it whose condition holds.
fn role_policies(t: &Value, role: &str, params: &HashMap<String, String>) -> Vec<Value> {
    let mut out: Vec<Value> = t["Resources"][role]["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| resolve(&p["PolicyDocument"], t, params))
        .collect();
    for (_, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] != "AWS::IAM::Policy" || !r["Properties"]["Roles"].to_string().contains(&format!("\"{role}\"")) {
            continue;
        }
        if r["Condition"].as_str().is_none_or(|c| condition(t, c, params)) {
            out.extend(resolve(&r["Properties"]["PolicyDocument"], t, params));
        }
    }
    out
}

/// Who signs a request, and what they may do.
#[derive(Clone, Debug)]
struct Principal {
    arn: String,
    account: String,
    policies: Vec<Value>,
}

impl Principal {
    /// The role of function `binary` in `account`'s deployment.
    fn function(binary: &str, account: &str, given: &[(&str, &str)]) -> Principal {
        let t = super::cloudformation("ebs-snapper.json");
        let mut params = parameters(&t, account, given);
        params.insert(
            "FailedInvocationsQueue.Arn".into(),
            format!("arn:{PARTITION}:sqs:{REGION}:{account}:{STACK}-FailedInvocationsQueue"),
        );
        let role = role_of(binary);
        Principal {
            arn: format!("arn:{PARTITION}:sts::{account}:assumed-role/{STACK}-{role}/{binary}"),
            account: account.to_string(),
            policies: role_policies(&t, role, &params),
        }
    }

    /// An operator running the CLI with the managed policy of `cloudformation/operator.json`.
    fn operator(account: &str) -> Principal {
        let t = super::cloudformation("operator.json");
        let params = parameters(&t, account, &[]);
        let policies = vec![resolve(&t["Resources"]["OperatorPolicy"]["Properties"]["PolicyDocument"], &t, &params)
            .expect("the operator policy")];
        Principal {
            arn: format!("arn:{PARTITION}:sts::{account}:assumed-role/operator/cli"),
            account: account.into(),
            policies,
        }
    }

    /// The vault role (`cloudformation/vault.json`) in `account`, trusting `deployment`.
    fn vault(role_arn: &str, account: &str, deployment: &str) -> Principal {
        let t = super::cloudformation("vault.json");
        let name = role_arn.rsplit('/').next().unwrap_or_default();
        let params = parameters(&t, account, &[("DeploymentAccountId", deployment), ("VaultRoleName", name)]);
        Principal {
            arn: format!("arn:{PARTITION}:sts::{account}:assumed-role/{name}/vault"),
            account: account.into(),
            policies: role_policies(&t, "VaultRole", &params),
        }
    }

    /// The member role (`cloudformation/member.json`) in `account`, trusting `deployment`.
    fn member(role_arn: &str, account: &str, deployment: &str) -> Principal {
        let t = super::cloudformation("member.json");
        let name = role_arn.rsplit('/').next().unwrap_or_default();
        let params = parameters(&t, account, &[("DeploymentAccountId", deployment), ("MemberRoleName", name)]);
        let policies = if name == params["MemberRoleName"] { role_policies(&t, "MemberRole", &params) } else { vec![] };
        Principal {
            arn: format!("arn:{PARTITION}:sts::{account}:assumed-role/{name}/member"),
            account: account.into(),
            policies,
        }
    }
}

/// One authorization AWS makes for a request.
#[derive(Debug, Clone)]
struct Authorization {
    action: String,
    resource: String,
    context: serde_json::Map<String, Value>,
    /// The resource's own policy, where AWS requires one (a KMS key's key policy).
    resource_policy: Option<Value>,
}

fn authz(action: &str, resource: String, context: serde_json::Map<String, Value>) -> Authorization {
    Authorization { action: action.to_string(), resource, context, resource_policy: None }
}

struct GateState {
    upstream: String,
    lambda_upstream: Option<String>,
    evaluator: String,
    home: Principal,
    sessions: Mutex<HashMap<String, Principal>>,
    /// Function names as a test names them -> as the stack would.
    aliases: Arc<Mutex<HashMap<String, String>>>,
    refused: Mutex<Vec<String>>,
    /// How many of `refused` a test has read (expected them).
    seen: Mutex<usize>,
}

/// A gate in front of the emulator for one function's requests.
pub struct IamGate {
    addr: SocketAddr,
    state: Arc<GateState>,
}

/// Function names as a test names them -> as the stack names them (`ebs-snapper-create-snapshot`).
pub type Aliases = Arc<Mutex<HashMap<String, String>>>;

impl IamGate {
    /// A gate for function `binary` of `account`'s deployment, in front of `upstream` (the
    /// emulator or a fault proxy); Lambda requests go to `lambda_upstream` when given.
    pub async fn start(
        binary: &str,
        account: &str,
        upstream: &str,
        lambda_upstream: Option<&str>,
        aliases: Aliases,
    ) -> IamGate {
        IamGate::start_with(binary, account, &[], upstream, lambda_upstream, aliases).await
    }

    /// [`IamGate::start`] with the function's role rendered with these stack parameters.
    pub async fn start_with(
        binary: &str,
        account: &str,
        given: &[(&str, &str)],
        upstream: &str,
        lambda_upstream: Option<&str>,
        aliases: Aliases,
    ) -> IamGate {
        IamGate::with(Principal::function(binary, account, given), upstream, lambda_upstream, aliases).await
    }

    /// A gate for an operator running the CLI in `account` with the managed policy README
    /// documents (`cloudformation/operator.json`), in front of the emulator.
    pub async fn operator(account: &str) -> IamGate {
        IamGate::with(Principal::operator(account), &super::endpoint(), None, Default::default()).await
    }

    async fn with(home: Principal, upstream: &str, lambda_upstream: Option<&str>, aliases: Aliases) -> IamGate {
        let evaluator = std::env::var("EBS_SNAPPER_TEST_IAM").unwrap_or_else(|_| {
            panic!("EBS_SNAPPER_TEST_IAM is not set: run these tests through scripts/test.sh, which starts the IAM evaluator")
        });
        let host = |u: &str| u.trim_start_matches("http://").trim_end_matches('/').to_string();
        let state = Arc::new(GateState {
            upstream: host(upstream),
            lambda_upstream: lambda_upstream.map(host),
            evaluator: host(&evaluator),
            home,
            sessions: Mutex::new(HashMap::new()),
            aliases,
            refused: Mutex::new(Vec::new()),
            seen: Mutex::new(0),
        });
        let s = state.clone();
        let addr = serve_each(move |conn| serve(conn, s.clone())).await;
        IamGate { addr, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests refused so far: "action on resource" each. Reading them expects them: a
    /// gate dropped with refusals no test read fails the test (a role that lacks a permission
    /// must not pass unnoticed when the product goes on without it, as it does without a lease).
    pub fn refused(&self) -> Vec<String> {
        let refused = self.state.refused.lock().unwrap().clone();
        *self.state.seen.lock().unwrap() = refused.len();
        refused
    }
}

impl Drop for IamGate {
    fn drop(&mut self) {
        let refused = self.state.refused.lock().unwrap().clone();
        let seen = *self.state.seen.lock().unwrap();
        if refused.len() > seen && !std::thread::panicking() {
            panic!("the role {} was refused what the function asked: {:#?}", self.state.home.arn, &refused[seen..]);
        }
    }
}

/// Form fields of a query-protocol body, decoded.
fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The tags a request applies, as the request-tag condition keys: the fields under `prefix`
/// (`TagSpecification.` for tags at creation, `TagSpecification.N.Tag.M.Key/Value`; `Tag.` for
/// `CreateTags`).
fn request_tags(fields: &[(String, String)], prefix: &str) -> serde_json::Map<String, Value> {
    let mut keys = Vec::new();
    let mut ctx = serde_json::Map::new();
    for (k, v) in fields {
        if k.starts_with(prefix) && k.ends_with(".Key") {
            let value = field(fields, &format!("{}.Value", k.trim_end_matches(".Key"))).unwrap_or("");
            ctx.insert(format!("aws:RequestTag/{v}"), Value::String(value.to_string()));
            keys.push(Value::String(v.clone()));
        }
    }
    if !keys.is_empty() {
        ctx.insert("aws:TagKeys".into(), Value::Array(keys));
    }
    ctx
}

fn snapshot_arn(region: &str, id: &str) -> String {
    format!("arn:{PARTITION}:ec2:{region}::snapshot/{id}")
}

/// A snapshot's tags, read from the emulator as the request's signer (`None`: not found).
async fn snapshot_tags(s: &GateState, req: &Request, id: &str) -> Option<serde_json::Map<String, Value>> {
    let lookup = Request {
        method: "POST".into(),
        path: "/".into(),
        headers: req.headers.clone(),
        body: format!("Action=DescribeSnapshots&Version=2016-11-15&SnapshotId.1={id}").into_bytes(),
    };
    let (status, _, body) = forward(&s.upstream, &lookup).await.ok()?;
    let xml = String::from_utf8_lossy(&body).into_owned();
    if status != 200 || !xml.contains("<snapshotId>") {
        return None;
    }
    let mut ctx = serde_json::Map::new();
    if let Some(at) = xml.find("<tagSet>") {
        let tags = &xml[at..xml[at..].find("</tagSet>").map_or(xml.len(), |e| at + e)];
        for item in tags.split("<item>").skip(1) {
            if let (Some(k), Some(v)) = (element(item, "key"), element(item, "value")) {
                ctx.insert(format!("aws:ResourceTag/{k}"), Value::String(v));
            }
        }
    }
    Some(ctx)
}

fn volume_arn(region: &str, account: &str, id: &str) -> String {
    format!("arn:{PARTITION}:ec2:{region}:{account}:volume/{id}")
}

/// `req`'s signature headers, as an EC2 query request of the same signer (the emulator routes
/// by the credential scope's service).
fn as_ec2_lookup(req: &Request, body: String) -> Request {
    let mut headers = req.headers.clone();
    if let Some(auth) = headers.get_mut("authorization") {
        *auth = auth.replace("/ebs/aws4_request", "/ec2/aws4_request");
    }
    headers.insert("content-type".into(), "application/x-www-form-urlencoded; charset=utf-8".into());
    headers.remove("content-length");
    Request { method: "POST".into(), path: "/".into(), headers, body: body.into_bytes() }
}

/// A volume's tags, read from the emulator as the request's signer (`None`: not found).
async fn volume_tags(s: &GateState, req: &Request, id: &str) -> Option<serde_json::Map<String, Value>> {
    let lookup = as_ec2_lookup(req, format!("Action=DescribeVolumes&Version=2016-11-15&VolumeId.1={id}"));
    let (status, _, body) = forward(&s.upstream, &lookup).await.ok()?;
    let xml = String::from_utf8_lossy(&body).into_owned();
    if status != 200 || !xml.contains("<volumeId>") {
        return None;
    }
    let mut ctx = serde_json::Map::new();
    if let Some(at) = xml.find("<tagSet>") {
        let tags = &xml[at..xml[at..].find("</tagSet>").map_or(xml.len(), |e| at + e)];
        for item in tags.split("<item>").skip(1) {
            if let (Some(k), Some(v)) = (element(item, "key"), element(item, "value")) {
                ctx.insert(format!("aws:ResourceTag/{k}"), Value::String(v));
            }
        }
    }
    Some(ctx)
}

/// What AWS authorizes for an EBS direct API request: the action on the snapshot the path
/// names, with its tags.
async fn ebs(s: &GateState, req: &Request, region: &str, op: &str) -> Result<Vec<Authorization>, String> {
    if !matches!(op, "ListSnapshotBlocks" | "GetSnapshotBlock") {
        return Err(format!("the test bed has no IAM mapping for ebs:{op}"));
    }
    let path = req.path.split('?').next().unwrap_or("");
    let id = path.split('/').nth(2).ok_or_else(|| format!("ebs:{op} without a snapshot"))?;
    let lookup = as_ec2_lookup(req, String::new());
    let ctx = snapshot_tags(s, &lookup, id).await.unwrap_or_default();
    Ok(vec![authz(&format!("ebs:{op}"), snapshot_arn(region, id), ctx)])
}

/// What AWS authorizes for an EC2 request, or why the gate cannot say (fail closed).
async fn ec2(
    s: &GateState,
    req: &Request,
    region: &str,
    op: &str,
    account: &str,
) -> Result<Vec<Authorization>, String> {
    let f = form(&req.body);
    let tags = request_tags(&f, "TagSpecification.");
    let none = serde_json::Map::new;
    let with_create_tags = |mut out: Vec<Authorization>, action: &str| {
        if !tags.is_empty() {
            let mut ctx = tags.clone();
            ctx.insert("ec2:CreateAction".into(), Value::String(action.to_string()));
            out.push(authz("ec2:CreateTags", snapshot_arn(region, "*"), ctx));
        }
        out
    };
    Ok(match op {
        "DescribeRegions"
        | "DescribeInstances"
        | "DescribeVolumes"
        | "DescribeSnapshots"
        | "DescribeImages"
        | "DescribeAvailabilityZones"
        | "DescribeLockedSnapshots" => vec![authz(&format!("ec2:{op}"), "*".into(), none())],
        "CreateSnapshot" => {
            let volume = field(&f, "VolumeId").ok_or("CreateSnapshot without VolumeId")?;
            with_create_tags(
                vec![
                    authz(
                        "ec2:CreateSnapshot",
                        format!("arn:{PARTITION}:ec2:{region}:{account}:volume/{volume}"),
                        none(),
                    ),
                    authz("ec2:CreateSnapshot", snapshot_arn(region, "*"), tags.clone()),
                ],
                "CreateSnapshot",
            )
        }
        "CreateSnapshots" => {
            let instance =
                field(&f, "InstanceSpecification.InstanceId").ok_or("CreateSnapshots without an instance")?;
            with_create_tags(
                vec![
                    authz(
                        "ec2:CreateSnapshots",
                        format!("arn:{PARTITION}:ec2:{region}:{account}:instance/{instance}"),
                        none(),
                    ),
                    authz("ec2:CreateSnapshots", snapshot_arn(region, "*"), tags.clone()),
                ],
                "CreateSnapshots",
            )
        }
        "CopySnapshot" => {
            let source = field(&f, "SourceSnapshotId").ok_or("CopySnapshot without a source")?;
            let from = field(&f, "SourceRegion").unwrap_or(region);
            with_create_tags(
                vec![
                    authz("ec2:CopySnapshot", snapshot_arn(from, source), none()),
                    authz("ec2:CopySnapshot", snapshot_arn(region, "*"), tags.clone()),
                ],
                "CopySnapshot",
            )
        }
        "CreateVolume" => {
            // The new volume (with the tags it is made with) and the snapshot it is made from.
            let mut ctx = tags.clone();
            // The volume type asked for (EC2's default is gp2).
            ctx.insert("ec2:VolumeType".into(), Value::String(field(&f, "VolumeType").unwrap_or("gp2").to_string()));
            let mut out = vec![authz("ec2:CreateVolume", volume_arn(region, account, "*"), ctx)];
            if let Some(snapshot) = field(&f, "SnapshotId") {
                let ctx = snapshot_tags(s, req, snapshot).await.unwrap_or_default();
                out.push(authz("ec2:CreateVolume", snapshot_arn(region, snapshot), ctx));
            }
            if !tags.is_empty() {
                let mut ctx = tags.clone();
                ctx.insert("ec2:CreateAction".into(), Value::String("CreateVolume".into()));
                out.push(authz("ec2:CreateTags", volume_arn(region, account, "*"), ctx));
            }
            out
        }
        "DeleteVolume" => {
            let id = field(&f, "VolumeId").ok_or("DeleteVolume without VolumeId")?;
            match volume_tags(s, req, id).await {
                None => vec![],
                Some(ctx) => vec![authz("ec2:DeleteVolume", volume_arn(region, account, id), ctx)],
            }
        }
        "DeleteSnapshot" | "ModifySnapshotTier" | "LockSnapshot" | "UnlockSnapshot" | "ModifySnapshotAttribute" => {
            let id = field(&f, "SnapshotId").ok_or_else(|| format!("{op} without SnapshotId"))?;
            match snapshot_tags(s, req, id).await {
                // Not there: the emulator answers InvalidSnapshot.NotFound, as AWS does.
                None => vec![],
                Some(mut ctx) => {
                    if op == "ModifySnapshotAttribute" {
                        // Who is added or removed: ec2:Add/userId, ec2:Remove/group...
                        let verb = match field(&f, "OperationType") {
                            Some("remove") => "Remove",
                            _ => "Add",
                        };
                        let values = |prefix: &str| -> Vec<Value> {
                            f.iter()
                                .filter(|(k, _)| k.starts_with(prefix))
                                .map(|(_, v)| Value::String(v.clone()))
                                .collect()
                        };
                        let users = values("UserId.");
                        let groups = values("UserGroup.");
                        if !users.is_empty() {
                            ctx.insert(format!("ec2:{verb}/userId"), Value::Array(users));
                        }
                        if !groups.is_empty() {
                            ctx.insert(format!("ec2:{verb}/group"), Value::Array(groups));
                        }
                        if let Some(a) = field(&f, "Attribute") {
                            ctx.insert("ec2:Attribute".into(), Value::String(a.to_string()));
                        }
                    }
                    vec![authz(&format!("ec2:{op}"), snapshot_arn(region, id), ctx)]
                }
            }
        }
        "CreateTags" => {
            let mut out = Vec::new();
            let ctx = request_tags(&f, "Tag.");
            for (_, id) in f.iter().filter(|(k, _)| k.starts_with("ResourceId.")) {
                let resource = match id.split('-').next() {
                    Some("snap") => snapshot_arn(region, id),
                    Some("vol") => format!("arn:{PARTITION}:ec2:{region}:{account}:volume/{id}"),
                    Some("i") => format!("arn:{PARTITION}:ec2:{region}:{account}:instance/{id}"),
                    _ => return Err(format!("the test bed has no IAM mapping for tagging {id}")),
                };
                let mut with = ctx.clone();
                if id.starts_with("snap-") {
                    with.extend(snapshot_tags(s, req, id).await.unwrap_or_default());
                }
                out.push(authz("ec2:CreateTags", resource, with));
            }
            out
        }
        other => return Err(format!("the test bed has no IAM mapping for ec2:{other}")),
    })
}

/// The partition key values a DynamoDB request names (`dynamodb:LeadingKeys`).
fn leading_keys(body: &Value) -> Vec<Value> {
    const KEY: &str = "aws_account_id";
    let of = |item: &Value| item[KEY]["S"].as_str().map(|s| Value::String(s.to_string()));
    if let Some(k) = of(&body["Key"]).or_else(|| of(&body["Item"])) {
        return vec![k];
    }
    let Some(expr) = body["KeyConditionExpression"].as_str() else { return vec![] };
    let names = &body["ExpressionAttributeNames"];
    for part in expr.split(" AND ").chain(expr.split(" and ")) {
        let Some((lhs, rhs)) = part.split_once('=') else { continue };
        let lhs = lhs.trim().trim_start_matches('(');
        let lhs = names[lhs].as_str().unwrap_or(lhs);
        if lhs == KEY {
            if let Some(v) = body["ExpressionAttributeValues"][rhs.trim().trim_end_matches(')')]["S"].as_str() {
                return vec![Value::String(v.to_string())];
            }
        }
    }
    vec![]
}

/// What AWS authorizes for a request, or why the gate cannot say.
async fn authorizations(
    s: &GateState,
    req: &Request,
    service: &str,
    region: &str,
    op: &str,
    account: &str,
) -> Result<Vec<Authorization>, String> {
    let none = serde_json::Map::new;
    match service {
        "ec2" => ec2(s, req, region, op, account).await,
        "ebs" => ebs(s, req, region, op).await,
        "dynamodb" => {
            let body: Value = serde_json::from_slice(&req.body).map_err(|e| e.to_string())?;
            let table = body["TableName"].as_str().ok_or("a DynamoDB request without TableName")?;
            let mut ctx = serde_json::Map::new();
            let keys = leading_keys(&body);
            if !keys.is_empty() {
                ctx.insert("dynamodb:LeadingKeys".into(), Value::Array(keys));
            }
            Ok(vec![authz(
                &format!("dynamodb:{op}"),
                format!("arn:{PARTITION}:dynamodb:{region}:{account}:table/{table}"),
                ctx,
            )])
        }
        "lambda" if op == "Invoke" => {
            let name = req.path.trim_start_matches("/2015-03-31/functions/").split('/').next().unwrap_or("");
            let name = percent_decode(name);
            let short = name.rsplit(':').next().unwrap_or(&name).to_string();
            let deployed = s.aliases.lock().unwrap().get(&short).cloned().unwrap_or(short);
            Ok(vec![authz(
                "lambda:InvokeFunction",
                format!("arn:{PARTITION}:lambda:{region}:{account}:function:{deployed}"),
                none(),
            )])
        }
        "kms" if op == "DescribeKey" => {
            let body: Value = serde_json::from_slice(&req.body).map_err(|e| e.to_string())?;
            let key = body["KeyId"].as_str().ok_or("DescribeKey without KeyId")?;
            // A key ARN names itself; a bare key id is one of the caller's in this region.
            let arn = if key.starts_with("arn:") {
                key.to_string()
            } else {
                format!("arn:{PARTITION}:kms:{region}:{account}:key/{key}")
            };
            // KMS authorizes by the key policy first: the default one (and that of aws/ebs, for
            // describing) delegates to the account's IAM policies, so those decide.
            let account_of_key = arn.split(':').nth(4).unwrap_or(account).to_string();
            let key_policy = json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": format!("arn:{PARTITION}:iam::{account_of_key}:root")},
                "Action": "kms:*", "Resource": "*"}]});
            Ok(vec![Authorization { resource_policy: Some(key_policy), ..authz("kms:DescribeKey", arn, none()) }])
        }
        "sts" if op == "GetCallerIdentity" => Ok(vec![]),
        "sts" if op == "AssumeRole" => {
            let role = query_value(&req.body, "RoleArn").map(|r| percent_decode(&r));
            Ok(vec![authz("sts:AssumeRole", role.ok_or("AssumeRole without RoleArn")?, none())])
        }
        "events" if matches!(op, "DescribeRule" | "EnableRule" | "DisableRule") => {
            let body: Value = serde_json::from_slice(&req.body).map_err(|e| e.to_string())?;
            let name = body["Name"].as_str().ok_or("a rule request without Name")?;
            let name = s.aliases.lock().unwrap().get(name).cloned().unwrap_or_else(|| name.to_string());
            Ok(vec![authz(
                &format!("events:{op}"),
                format!("arn:{PARTITION}:events:{region}:{account}:rule/{name}"),
                none(),
            )])
        }
        _ => Err(format!("the test bed has no IAM mapping for {service}:{op}")),
    }
}

/// The evaluator's decision on each authorization: the first refused, if any.
async fn first_refused(s: &GateState, who: &Principal, wanted: &[Authorization]) -> Option<String> {
    if wanted.is_empty() {
        return None;
    }
    let body = json!({
        "policies": who.policies,
        "principal": who.arn,
        "account": who.account,
        "requests": wanted
            .iter()
            .map(|a| json!({"action": a.action, "resource": a.resource, "context": a.context, "resourcePolicy": a.resource_policy}))
            .collect::<Vec<_>>(),
    });
    let ask = Request {
        method: "POST".into(),
        path: "/simulate".into(),
        headers: HashMap::from([
            ("content-type".to_string(), "application/json".to_string()),
            ("host".to_string(), s.evaluator.clone()),
        ]),
        body: body.to_string().into_bytes(),
    };
    let (status, _, answer) = match forward(&s.evaluator, &ask).await {
        Ok(a) => a,
        Err(e) => return Some(format!("the IAM evaluator did not answer: {e}")),
    };
    let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if status != 200 {
        return Some(format!("the IAM evaluator refused the question: {answer}"));
    }
    answer["results"].as_array().into_iter().flatten().find(|r| r["decision"] != "Allowed").map(|r| {
        format!(
            "{} on resource {} ({}{})",
            r["action"].as_str().unwrap_or(""),
            r["resource"].as_str().unwrap_or(""),
            r["decision"].as_str().unwrap_or(""),
            r["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default()
        )
    })
}

/// AWS's refusal of a request the signer may not make.
fn refusal(service: &str, who: &Principal, why: &str) -> (u16, Vec<(&'static str, String)>, String) {
    let message = format!("User: {} is not authorized to perform: {why}", who.arn);
    match service {
        "ec2" => (
            403,
            vec![("content-type", "text/xml;charset=UTF-8".into())],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. {message}</Message></Error></Errors><RequestID>iam</RequestID></Response>"
            ),
        ),
        "sts" => (
            403,
            vec![("content-type", "text/xml".into())],
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>iam</RequestId></ErrorResponse>"),
        ),
        "lambda" => (
            403,
            vec![("content-type", "application/json".into()), ("x-amzn-errortype", "AccessDeniedException".into())],
            json!({"Type": "User", "message": message}).to_string(),
        ),
        // The EBS direct APIs (REST-JSON): AccessDeniedException, HTTP 403.
        "ebs" => (
            403,
            vec![("content-type", "application/json".into()), ("x-amzn-errortype", "AccessDeniedException".into())],
            json!({"message": message, "Reason": "UNAUTHORIZED_ACCOUNT"}).to_string(),
        ),
        "dynamodb" => (
            400,
            vec![("content-type", "application/x-amz-json-1.0".into())],
            json!({"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException", "message": message}).to_string(),
        ),
        _ => (
            400,
            vec![("content-type", "application/x-amz-json-1.1".into())],
            json!({"__type": "AccessDeniedException", "message": message}).to_string(),
        ),
    }
}

async fn serve(conn: TcpStream, s: Arc<GateState>) {
    let (r, mut w) = conn.into_split();
    let mut reader = BufReader::new(r);
    while let Some(req) = read_request(&mut reader).await {
        let (service, region, op) = classify(&req);
        let key = access_key(&req);
        let who = s.sessions.lock().unwrap().get(&key).cloned().unwrap_or_else(|| s.home.clone());
        let refused = match authorizations(&s, &req, &service, &region, &op, &who.account).await {
            Ok(wanted) => first_refused(&s, &who, &wanted).await,
            Err(e) => Some(e),
        };
        if let Some(why) = refused {
            eprintln!("IAM gate: refused {service}:{op} for {}: {why}", who.arn);
            s.refused.lock().unwrap().push(why.clone());
            let (status, headers, body) = refusal(&service, &who, &why);
            if respond(&mut w, status, &headers, body.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let upstream = match (&s.lambda_upstream, service.as_str()) {
            (Some(l), "lambda") => l.clone(),
            _ => s.upstream.clone(),
        };
        let Ok((status, headers, body)) = forward(&upstream, &req).await else { return };
        if service == "sts" && op == "AssumeRole" && status == 200 {
            let answer = String::from_utf8_lossy(&body);
            let role = query_value(&req.body, "RoleArn").map(|r| percent_decode(&r));
            if let (Some(new_key), Some(role)) = (element(&answer, "AccessKeyId"), role) {
                let account = role.split(':').nth(4).unwrap_or_default().to_string();
                // The vault role by its (default) name, else a member role.
                let assumed = if role.ends_with(":role/ebs-snapper-vault") {
                    Principal::vault(&role, &account, &who.account)
                } else {
                    Principal::member(&role, &account, &who.account)
                };
                s.sessions.lock().unwrap().insert(new_key, assumed);
            }
        }
        let headers: Vec<(&str, String)> = headers.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if respond(&mut w, status, &headers, &body).await.is_err() {
            return;
        }
    }
}
