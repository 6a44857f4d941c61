//! A minimal Lambda for tests: each function binary runs as Lambda runs it (the `bootstrap`
//! process polling the Runtime API over HTTP), and a Lambda service endpoint accepts `Invoke`
//! (`AWS_ENDPOINT_URL_LAMBDA`) and hands each invocation to the named function's process. So a
//! fanout's asynchronous invokes really run the worker binary.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::http::{read_request, respond, serve_each, Request};
use super::Account;

/// How a finished invocation ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub function: String,
    pub request_id: String,
    pub payload: Value,
    /// The response, or the error document (`errorType`, `errorMessage`).
    pub result: Result<Value, Value>,
}

/// An `Invoke` call the service endpoint received.
#[derive(Debug, Clone)]
pub struct InvokeCall {
    pub function: String,
    pub invocation_type: String,
    pub payload: Value,
}

struct Pending {
    request_id: String,
    payload: Value,
    deadline_ms: u64,
}

/// How to start a function's process again (Lambda starts a new execution environment after it
/// killed one at its deadline).
#[derive(Clone)]
struct Launch {
    program: std::path::PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

#[derive(Default)]
struct Shared {
    queues: Mutex<HashMap<String, VecDeque<Pending>>>,
    /// Request id -> (function, payload, deadline in ms since the epoch).
    in_flight: Mutex<HashMap<String, (String, Value, u64)>>,
    /// Each function's process, and how to start it again.
    processes: Mutex<HashMap<String, (tokio::process::Child, Launch)>>,
    finished: Mutex<Vec<Finished>>,
    invokes: Mutex<Vec<InvokeCall>>,
    logs: Mutex<HashMap<String, Vec<String>>>,
    init_errors: Mutex<Vec<(String, String)>>,
    /// Deadline given to invocations that arrive through `Invoke`.
    invoke_timeout: Mutex<Duration>,
    /// Function name -> ARN, for the functions started.
    arns: Mutex<HashMap<String, String>>,
    work: Notify,
    done: Notify,
    next_id: Mutex<u64>,
}

pub struct LambdaHarness {
    shared: Arc<Shared>,
    invoke_addr: SocketAddr,
    account: String,
    /// Each function's IAM gate: its requests are evaluated against its role (SPEC §15).
    gates: HashMap<String, super::iam::IamGate>,
    /// Function names as the tests give them -> as the stack names them.
    aliases: super::iam::Aliases,
    /// The stack's parameters the functions' roles are rendered with (`VaultAccountIds`...).
    parameters: Vec<(String, String)>,
}

impl LambdaHarness {
    /// Starts the Lambda service endpoint.
    pub async fn new(account: &Account) -> LambdaHarness {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let invoke_addr = serve_each(move |conn| serve_connection(conn, s.clone(), None)).await;
        *shared.invoke_timeout.lock().unwrap() = Duration::from_secs(900);
        tokio::spawn(enforce_deadlines(Arc::downgrade(&shared)));
        LambdaHarness {
            shared,
            invoke_addr,
            account: account.id.clone(),
            gates: HashMap::new(),
            aliases: Arc::new(Mutex::new(HashMap::new())),
            parameters: Vec::new(),
        }
    }

    /// Renders the roles of the functions started from now on with these stack parameters.
    pub fn parameters(&mut self, given: &[(&str, &str)]) {
        self.parameters = given.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// The endpoint to give functions as `AWS_ENDPOINT_URL_LAMBDA`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.invoke_addr)
    }

    pub fn function_arn(&self, name: &str) -> String {
        format!("arn:aws:lambda:us-east-1:{}:function:{name}", self.account)
    }

    /// Starts `binary` (a workspace binary) as function `name`, with the account's credentials,
    /// the emulator for AWS (`AWS_ENDPOINT_URL` in `env` for another, a fault proxy say), this
    /// harness for Lambda, and `env`. Every request it makes goes through an IAM gate that
    /// evaluates it against the binary's role from the template, as Lambda runs it under that
    /// role.
    pub async fn start(&mut self, account: &Account, name: &str, binary: &str, env: &[(&str, &str)]) {
        self.aliases.lock().unwrap().insert(name.to_string(), format!("{}-{binary}", super::iam::STACK));
        let upstream = env
            .iter()
            .find(|(k, _)| *k == "AWS_ENDPOINT_URL")
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(super::endpoint);
        let given: Vec<(&str, &str)> = self.parameters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let gate = super::iam::IamGate::start_with(
            binary,
            &account.id,
            &given,
            &upstream,
            Some(&self.endpoint()),
            self.aliases.clone(),
        )
        .await;
        let gate_endpoint = gate.endpoint();
        self.gates.insert(name.to_string(), gate);
        let runtime_addr = self.runtime_api(name).await;
        let path = assert_cmd::cargo::cargo_bin(binary);
        assert!(path.exists(), "{} is not built: scripts/test.sh builds every binary first", path.display());
        let mut vars: Vec<(String, String)> = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("AWS_LAMBDA_RUNTIME_API", runtime_addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.to_string()),
            (super::LISTING_LAG.0, super::LISTING_LAG.1.to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", gate_endpoint.clone()),
            ("AWS_ENDPOINT_URL_LAMBDA", gate_endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ("RUST_LOG", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        vars.extend(account.credential_env().into_iter().map(|(k, v)| (k.to_string(), v)));
        vars.extend(
            env.iter().filter(|(k, _)| !k.starts_with("AWS_ENDPOINT_URL")).map(|(k, v)| (k.to_string(), v.to_string())),
        );
        launch(&self.shared, name, Launch { program: path, args: Vec::new(), env: vars });
    }

    /// Registers function `name` and serves its Runtime API; the address to give its process.
    async fn runtime_api(&self, name: &str) -> SocketAddr {
        self.shared.arns.lock().unwrap().insert(name.to_string(), self.function_arn(name));
        let s = self.shared.clone();
        let function = name.to_string();
        serve_each(move |conn| serve_connection(conn, s.clone(), Some(function.clone()))).await
    }

    /// Starts `program` with `args` as function `name`, with only the Runtime API's address
    /// (for a stand-in function, such as one that never answers).
    pub async fn start_program(&mut self, name: &str, program: &str, args: &[&str]) {
        let runtime_addr = self.runtime_api(name).await;
        let env = vec![
            ("PATH".to_string(), std::env::var("PATH").unwrap_or_default()),
            ("AWS_LAMBDA_RUNTIME_API".to_string(), runtime_addr.to_string()),
        ];
        let launch_spec = Launch { program: program.into(), args: args.iter().map(|a| a.to_string()).collect(), env };
        launch(&self.shared, name, launch_spec);
    }

    /// How many times function `name`'s process was started (more than once when Lambda killed
    /// it at a deadline).
    pub fn starts(&self, name: &str) -> usize {
        self.shared.logs.lock().unwrap().get(name).map_or(0, |l| l.iter().filter(|l| *l == STARTED).count())
    }
}

/// The line the harness logs each time it starts a function's process.
const STARTED: &str = "[harness] process started";

/// Starts (or starts again) function `name`'s process, its output collected in the logs.
fn launch(shared: &Arc<Shared>, name: &str, spec: Launch) {
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args).env_clear().envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().expect("start function binary");
    shared.logs.lock().unwrap().entry(name.to_string()).or_default().push(STARTED.to_string());
    {
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ] {
            let Some(stream) = stream else { continue };
            let s = shared.clone();
            let function = name.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    s.logs.lock().unwrap().entry(function.clone()).or_default().push(line);
                }
            });
        }
    }
    shared.processes.lock().unwrap().insert(name.to_string(), (child, spec));
}

/// Lambda's deadline (SPEC §15): an invocation still running at its deadline is failed
/// (`Sandbox.Timedout`), its process killed and a new one started for what comes next; an answer
/// it sends later is refused. Runs while the harness lives.
async fn enforce_deadlines(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(s) = shared.upgrade() else { return };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let late: Vec<(String, String, Value, u64)> = {
            let mut in_flight = s.in_flight.lock().unwrap();
            let ids: Vec<String> =
                in_flight.iter().filter(|(_, (_, _, deadline))| *deadline < now).map(|(id, _)| id.clone()).collect();
            ids.into_iter().filter_map(|id| in_flight.remove(&id).map(|(f, p, d)| (id, f, p, d))).collect()
        };
        for (request_id, function, payload, deadline) in late {
            let restart = {
                let mut processes = s.processes.lock().unwrap();
                processes.remove(&function).map(|(mut child, spec)| {
                    let _ = child.start_kill();
                    spec
                })
            };
            s.logs.lock().unwrap().entry(function.clone()).or_default().push(format!(
                "[harness] {request_id}: killed at its deadline ({} ms late)",
                now.saturating_sub(deadline)
            ));
            let error = serde_json::json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!("{request_id}: Task timed out: still running at its deadline"),
            });
            s.finished.lock().unwrap().push(Finished {
                function: function.clone(),
                request_id,
                payload,
                result: Err(error),
            });
            s.done.notify_waiters();
            if let Some(spec) = restart {
                launch(&s, &function, spec);
            }
        }
    }
}

impl LambdaHarness {
    /// The deadline given to invocations through the Invoke endpoint (continuations): 900 s
    /// unless set.
    pub fn set_invoke_timeout(&self, timeout: Duration) {
        *self.shared.invoke_timeout.lock().unwrap() = timeout;
    }

    /// Queues an invocation of `function` with a deadline `timeout` from now; returns its id.
    pub fn invoke(&self, function: &str, payload: Value, timeout: Duration) -> String {
        enqueue(&self.shared, function, payload, timeout)
    }

    /// Waits until `n` invocations of `function` have finished (or panics after `limit`).
    pub async fn wait_finished(&self, function: &str, n: usize, limit: Duration) -> Vec<Finished> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.done.notified();
            let done: Vec<Finished> =
                self.shared.finished.lock().unwrap().iter().filter(|f| f.function == function).cloned().collect();
            if done.len() >= n {
                return done;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                panic!(
                    "{function}: {} of {n} invocations finished in {limit:?}; init errors: {:?}; logs: {:#?}",
                    done.len(),
                    self.shared.init_errors.lock().unwrap(),
                    self.logs(function)
                );
            }
        }
    }

    /// Invokes and waits for that invocation's result.
    pub async fn call(&self, function: &str, payload: Value) -> Result<Value, Value> {
        let id = self.invoke(function, payload, Duration::from_secs(900));
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.shared.done.notified();
            if let Some(f) = self.shared.finished.lock().unwrap().iter().find(|f| f.request_id == id) {
                return f.result.clone();
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                panic!("{function} did not answer in 60 s; logs: {:#?}", self.logs(function));
            }
        }
    }

    pub fn invokes(&self) -> Vec<InvokeCall> {
        self.shared.invokes.lock().unwrap().clone()
    }

    pub fn logs(&self, function: &str) -> Vec<String> {
        self.shared.logs.lock().unwrap().get(function).cloned().unwrap_or_default()
    }
}

fn enqueue(shared: &Shared, function: &str, payload: Value, timeout: Duration) -> String {
    let request_id = {
        let mut n = shared.next_id.lock().unwrap();
        *n += 1;
        format!("req-{n}")
    };
    let deadline_ms = (SystemTime::now() + timeout).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    shared.queues.lock().unwrap().entry(function.to_string()).or_default().push_back(Pending {
        request_id: request_id.clone(),
        payload,
        deadline_ms,
    });
    shared.work.notify_waiters();
    request_id
}

/// One HTTP/1.1 connection: the Runtime API of `function`, or (None) the Lambda service API.
async fn serve_connection(conn: TcpStream, s: Arc<Shared>, function: Option<String>) {
    let (r, mut w) = conn.into_split();
    let mut reader = BufReader::new(r);
    while let Some(req) = read_request(&mut reader).await {
        let result = match &function {
            Some(f) => runtime_api(&s, f, &req, &mut w).await,
            None => service_api(&s, &req, &mut w).await,
        };
        if result.is_err() || req.wants_close() {
            return;
        }
    }
}

async fn runtime_api(
    s: &Arc<Shared>,
    function: &str,
    req: &Request,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<()> {
    let path = req.path.as_str();
    if req.method == "GET" && path.ends_with("/runtime/invocation/next") {
        let next = loop {
            let notified = s.work.notified();
            if let Some(p) = s.queues.lock().unwrap().get_mut(function).and_then(|q| q.pop_front()) {
                break p;
            }
            notified.await;
        };
        s.in_flight
            .lock()
            .unwrap()
            .insert(next.request_id.clone(), (function.to_string(), next.payload.clone(), next.deadline_ms));
        let arn = s.arns.lock().unwrap().get(function).cloned().unwrap_or_default();
        let headers = [
            ("lambda-runtime-aws-request-id", next.request_id.clone()),
            ("lambda-runtime-deadline-ms", next.deadline_ms.to_string()),
            ("lambda-runtime-invoked-function-arn", arn),
            ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".to_string()),
            ("content-type", "application/json".to_string()),
        ];
        return respond(w, 200, &headers, next.payload.to_string().as_bytes()).await;
    }
    if req.method == "POST"
        && path.contains("/runtime/invocation/")
        && (path.ends_with("/response") || path.ends_with("/error"))
    {
        let id = path.split('/').nth(4).unwrap_or("").to_string();
        let body: Value = serde_json::from_slice(&req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
        let Some((function, payload, _)) = s.in_flight.lock().unwrap().remove(&id) else {
            // Killed at its deadline already: Lambda takes no answer after it.
            return respond(w, 410, &[], b"{}").await;
        };
        let result = if path.ends_with("/response") { Ok(body) } else { Err(body) };
        s.finished.lock().unwrap().push(Finished { function, request_id: id, payload, result });
        s.done.notify_waiters();
        return respond(w, 202, &[], b"{}").await;
    }
    if req.method == "POST" && path.ends_with("/runtime/init/error") {
        s.init_errors.lock().unwrap().push((function.to_string(), String::from_utf8_lossy(&req.body).into_owned()));
        s.done.notify_waiters();
        return respond(w, 202, &[], b"{}").await;
    }
    respond(w, 404, &[], b"{}").await
}

async fn service_api(s: &Arc<Shared>, req: &Request, w: &mut tokio::net::tcp::OwnedWriteHalf) -> std::io::Result<()> {
    // POST /2015-03-31/functions/{name}/invocations
    let parts: Vec<&str> = req.path.split('?').next().unwrap_or("").split('/').collect();
    if req.method != "POST" || parts.len() < 5 || parts[2] != "functions" || parts[4] != "invocations" {
        return respond(w, 404, &[], b"{}").await;
    }
    let function = parts[3].rsplit(':').next().unwrap_or(parts[3]).to_string();
    let invocation_type =
        req.headers.get("x-amz-invocation-type").cloned().unwrap_or_else(|| "RequestResponse".to_string());
    let payload: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    s.invokes.lock().unwrap().push(InvokeCall {
        function: function.clone(),
        invocation_type: invocation_type.clone(),
        payload: payload.clone(),
    });
    if !s.arns.lock().unwrap().contains_key(&function) {
        let body = format!(r#"{{"Type":"User","Message":"Function not found: {function}"}}"#);
        return respond(
            w,
            404,
            &[
                ("x-amzn-errortype", "ResourceNotFoundException".to_string()),
                ("content-type", "application/json".to_string()),
            ],
            body.as_bytes(),
        )
        .await;
    }
    let timeout = *s.invoke_timeout.lock().unwrap();
    enqueue(s, &function, payload, timeout);
    respond(w, 202, &[("x-amzn-requestid", "harness".to_string())], b"").await
}
