//! `deploy --replace-python-stack`: moving over from the Python tool's stack, keeping its table.

use super::*;

/// Moves off the Python tool's stack without touching its data: its template is updated to
/// retain the configuration table (every parameter keeps its value), then the stack is deleted.
pub(super) async fn replace_python_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
    existing: &[(String, String)],
    poll: Duration,
    say: &mut dyn FnMut(String),
    progress: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let physical = physical_ids(cfn, stack, region).await?;
    let table = physical.get(PYTHON_TABLE).cloned().unwrap_or_default();
    let body = cfn
        .get_template()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| AwsError::call("GetTemplate", region, e))?
        .template_body
        .unwrap_or_default();
    let mut template: serde_json::Value = serde_json::from_str(&body).map_err(|_| {
        fail(format!(
            "the template of stack {stack} is not JSON, so it was not changed; set DeletionPolicy Retain on \
             {PYTHON_TABLE} by hand, delete the stack, then deploy with --parameter CreateTable=false"
        ))
    })?;
    let resource = template["Resources"]
        .get_mut(PYTHON_TABLE)
        .ok_or_else(|| fail(format!("{PYTHON_TABLE} is not in the template of {stack}")))?;
    let retained = resource.get("DeletionPolicy").and_then(|p| p.as_str()) == Some("Retain");
    if !retained {
        resource["DeletionPolicy"] = "Retain".into();
        resource["UpdateReplacePolicy"] = "Retain".into();
        // Every parameter keeps its value: given as it is shown, or, for a NoEcho one (shown as
        // `****`), as the previous value.
        let previous: Vec<Parameter> = existing
            .iter()
            .map(|(k, v)| match v.as_str() {
                "****" => Parameter::builder().parameter_key(k).use_previous_value(true).build(),
                _ => Parameter::builder().parameter_key(k).parameter_value(v).build(),
            })
            .collect();
        cfn.update_stack()
            .stack_name(stack)
            .template_body(template.to_string())
            .set_parameters(Some(previous))
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .map_err(|e| AwsError::call("UpdateStack", region, e))?;
        progress(format!("stack {stack}: retaining table {table}"));
        let status = wait(cfn, stack, region, poll, progress).await?;
        if status != "UPDATE_COMPLETE" {
            return Err(fail(format!(
                "stack {stack} ended {status} while retaining its table, so it was not deleted: {}",
                failure_reason(cfn, stack, region).await
            )));
        }
    }
    say(format!("stack {stack}: table {table} retained"));
    cfn.delete_stack().stack_name(stack).send().await.map_err(|e| AwsError::call("DeleteStack", region, e))?;
    progress(format!("stack {stack}: deleting the Python tool's stack"));
    let status = wait(cfn, stack, region, poll, progress).await?;
    if status != "DELETE_COMPLETE" {
        return Err(fail(format!("stack {stack} ended {status}: {}", failure_reason(cfn, stack, region).await)));
    }
    say(format!("stack {stack}: the Python tool's stack deleted; table {table} kept"));
    Ok(())
}

pub(super) async fn physical_ids(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    region: &str,
) -> Result<std::collections::BTreeMap<String, String>, DeployError> {
    let summaries: Vec<_> = cfn
        .list_stack_resources()
        .stack_name(stack)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::call("ListStackResources", region, e))?;
    Ok(summaries
        .iter()
        .filter_map(|r| Some((r.logical_resource_id()?.to_string(), r.physical_resource_id()?.to_string())))
        .collect())
}
