//! The `replication` Lambda function (see `ebs_snapper_aws::functions::replication`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ebs_snapper_lambda::serve(|aws, env, invocation| async move {
        ebs_snapper_aws::functions::replication(&aws, &env, invocation).await
    })
    .await
}
