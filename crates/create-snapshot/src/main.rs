//! The `create-snapshot` Lambda function (see `ebs_snapper_aws::functions::create_snapshot`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ebs_snapper_lambda::serve(|aws, env, invocation| async move {
        ebs_snapper_aws::functions::create_snapshot(&aws, &env, invocation).await
    })
    .await
}
