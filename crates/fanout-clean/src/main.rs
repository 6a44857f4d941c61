//! The `fanout-clean` Lambda function (see `ebs_snapper_lambda::handlers::fanout_clean`).
// The handler's future nests the Lambda runtime's and the AWS SDK's futures deeply.
#![recursion_limit = "256"]

// One thread: at 128 MB a function has a fraction of a vCPU, and its work is waiting on AWS;
// one thread also means one allocator arena, which keeps the peak memory down.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    ebs_snapper_lambda::serve(|aws, env, invocation| async move {
        ebs_snapper_lambda::handlers::fanout_clean(&aws, &env, invocation).await
    })
    .await
}
