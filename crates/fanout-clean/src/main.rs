//! The `fanout-clean` Lambda function (see `ebs_snapper_aws::functions::fanout_clean`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ebs_snapper_lambda::serve(|aws, env, invocation| async move {
        ebs_snapper_aws::functions::fanout_clean(&aws, &env, invocation).await
    })
    .await
}
