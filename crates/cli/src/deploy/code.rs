//! Function code: each function's code updated when its SHA-256 differs, a version published, the
//! newest two kept.

use super::*;

/// Updates the function's code when the zip's SHA-256 differs from the deployed code's, then
/// publishes a version and removes all but the newest two.
/// The longest a function update may take before deploy gives up on it.
pub(super) const MAX_UPDATE_WAIT: Duration = Duration::from_secs(600);

/// Waits (the SDK's waiter) until the function's `LastUpdateStatus` is `Successful`.
pub(super) async fn wait_until_updated(lambda: &aws_sdk_lambda::Client, name: &str) -> Result<(), DeployError> {
    lambda.wait_until_function_updated().function_name(name).wait(MAX_UPDATE_WAIT).await.map(|_| ()).map_err(|e| {
        DeployError::UpdateUnfinished {
            function: name.to_string(),
            reason: aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
        }
    })
}

pub(super) async fn update_code(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    bucket: &str,
    key: &str,
    zip: &[u8],
    region: &str,
    say: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let local = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip));
    let current =
        lambda.get_function().function_name(name).send().await.map_err(|e| AwsError::call("GetFunction", region, e))?;
    if current.configuration().and_then(|c| c.code_sha256()) == Some(local.as_str()) {
        say(format!("function {name}: code unchanged"));
        return Ok(());
    }
    // Lambda refuses a change (ResourceConflictException) while an earlier update of the
    // function is in progress: wait for it to finish, before the update and after it.
    wait_until_updated(lambda, name).await?;
    lambda
        .update_function_code()
        .function_name(name)
        .s3_bucket(bucket)
        .s3_key(key)
        .send()
        .await
        .map_err(|e| AwsError::call("UpdateFunctionCode", region, e))?;
    wait_until_updated(lambda, name).await?;
    let published = lambda
        .publish_version()
        .function_name(name)
        .send()
        .await
        .map_err(|e| AwsError::call("PublishVersion", region, e))?;
    let versions: Vec<String> = lambda
        .list_versions_by_function()
        .function_name(name)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::call("ListVersionsByFunction", region, e))?
        .iter()
        .filter_map(|v| v.version().map(str::to_string))
        .collect();
    let prune = versions_to_prune(&versions);
    for v in &prune {
        lambda
            .delete_function()
            .function_name(name)
            .qualifier(v)
            .send()
            .await
            .map_err(|e| AwsError::call("DeleteFunction", region, e))?;
    }
    say(format!(
        "function {name}: code updated, published version {}{}",
        published.version().unwrap_or("?"),
        if prune.is_empty() { String::new() } else { format!(", removed versions {}", prune.join(", ")) }
    ));
    Ok(())
}
