//! Lambda runtime glue shared by the five functions: logging, SDK loading, the adapter from the
//! runtime's event and context to the handlers in `ebs_snapper_aws::functions`, and errors as
//! function errors with one clear message.

use std::future::Future;

use ebs_snapper_aws::functions::{Environment, FunctionError, Invocation};
use ebs_snapper_aws::Aws;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

/// Runs `handler` for every invocation until the runtime stops the process.
pub async fn serve<H, F>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Aws, Environment, Invocation) -> F,
    F: Future<Output = Result<Value, FunctionError>>,
{
    // JSON logs when AWS_LAMBDA_LOG_FORMAT=JSON, text otherwise; level from AWS_LAMBDA_LOG_LEVEL/RUST_LOG.
    lambda_runtime::tracing::init_default_subscriber();
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
