//! The five Lambda functions' handlers (`handlers`) and the runtime glue they share: logging,
//! SDK loading, the adapter from the runtime's event and context to a handler, and errors as
//! function errors with one clear message.

pub mod handlers;

use std::future::Future;

use ebs_snapper_aws::Aws;
use handlers::{Environment, FunctionError, Invocation};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

/// Runs `handler` for every invocation until the runtime stops the process. A start-up failure
/// is one line on stderr and exit status 1.
pub async fn serve<H, F>(handler: H) -> std::process::ExitCode
where
    H: Fn(Aws, Environment, Invocation) -> F,
    F: Future<Output = Result<Value, FunctionError>>,
{
    match run(handler).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run<H, F>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Aws, Environment, Invocation) -> F,
    F: Future<Output = Result<Value, FunctionError>>,
{
    // Outside Lambda the runtime would panic on a missing variable; say what is wrong instead.
    for var in [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
    ] {
        if std::env::var_os(var).is_none() {
            return Err(format!(
                "{var} is not set: this program is a Lambda function and runs under the Lambda runtime"
            )
            .into());
        }
    }
    init_logging();
    // The first line of every cold start: which build this is (a release's version and commit).
    tracing::info!(
        version = ebs_snapper_version::VERSION,
        commit = ebs_snapper_version::COMMIT,
        function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
        "ebs-snapper starting"
    );
    let aws = Aws::load(None).await;
    let env = Environment::from_process();
    let handler = &handler;
    let (aws, env) = (&aws, &env);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation {
            payload: event.payload,
            function_arn: event.context.invoked_function_arn.clone(),
            deadline: Some(event.context.deadline()),
        };
        handler(aws.clone(), env.clone(), invocation).await.map_err(|e| {
            tracing::error!(error = %e, "invocation failed");
            Diagnostic { error_type: e.kind().to_string(), error_message: e.to_string() }
        })
    }))
    .await
}

/// Logs to stdout, which Lambda sends to CloudWatch: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON`,
/// plain text otherwise (no colour codes, no timestamp: Lambda adds one). The level comes from
/// `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else info.
///
/// This is `lambda_runtime::tracing::init_default_subscriber` with two differences, which is why
/// it is not used: that one leaves ANSI colours on (the workspace's `tracing-subscriber` has the
/// `ansi` feature for the CLI, so the functions would write escape codes into CloudWatch), and it
/// reads the variable as one level only, so a directive list such as
/// `ebs_snapper_aws=debug,aws_smithy_runtime=warn` silently became `info`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let level =
        std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(level.to_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_target(false).without_time();
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
