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
    let mut template: serde_json::Value =
        serde_json::from_str(&body).map_err(|_| DeployError::PythonTemplateNotJson { stack: stack.to_string() })?;
    let resource = template["Resources"]
        .get_mut(PYTHON_TABLE)
        .ok_or_else(|| DeployError::PythonTableMissing { stack: stack.to_string() })?;
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
            let reason = failure_reason(cfn, stack, region).await;
            return Err(DeployError::TableNotRetained { stack: stack.to_string(), status, reason });
        }
    }
    say(format!("stack {stack}: table {table} retained"));
    cfn.delete_stack().stack_name(stack).send().await.map_err(|e| AwsError::call("DeleteStack", region, e))?;
    progress(format!("stack {stack}: deleting the Python tool's stack"));
    let status = wait(cfn, stack, region, poll, progress).await?;
    if status != "DELETE_COMPLETE" {
        let reason = failure_reason(cfn, stack, region).await;
        return Err(DeployError::StackEnded { stack: stack.to_string(), status, reason });
    }
    say(format!("stack {stack}: the Python tool's stack deleted; table {table} kept"));
    Ok(())
}

/// Logical id -> physical id of every resource of the stack (one paginated listing).
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
