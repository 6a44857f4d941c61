//! The `fanout-snapshot` Lambda function (see `ebs_snapper_aws::functions::fanout_snapshot`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ebs_snapper_lambda::serve(|aws, env, invocation| async move {
        ebs_snapper_aws::functions::fanout_snapshot(&aws, &env, invocation).await
    })
    .await
}
