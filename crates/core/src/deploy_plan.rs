//! The pure rules of `ebs-snapper deploy`: the function list (`lambda.json`), names, which stack
//! parameters to send on create or update, and which function versions to remove.

use serde::Deserialize;

/// Versions of each function kept after a publish.
pub const VERSIONS_KEPT: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Schedule {
    /// Logical id of the schedule rule in the template.
    pub rule: String,
    /// Template parameter holding the schedule expression.
    pub parameter: String,
    pub default: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FunctionSpec {
    /// Logical id of the function in the template.
    pub logical_id: String,
    /// Cargo binary, and the name of its zip.
    pub binary: String,
    /// Default memory, MB: the template's default of `memory_parameter`.
    pub memory: u32,
    /// Template parameter holding this function's memory (the Python tool's names).
    pub memory_parameter: String,
    pub timeout: u32,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub environment: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<FunctionSpec>,
}

impl FunctionList {
    pub fn parse(text: &str) -> Result<FunctionList, String> {
        let list: FunctionList =
            serde_json::from_str(text).map_err(|e| format!("lambda.json is not a valid function list: {e}"))?;
        if list.functions.is_empty() {
            return Err("lambda.json lists no functions".to_string());
        }
        Ok(list)
    }
}

/// `ebs-snapper-{account}`, plus `-{region}` outside us-east-1 (S3 names are global).
pub fn bucket_name(account: &str, region: &str) -> String {
    if region == "us-east-1" {
        format!("ebs-snapper-{account}")
    } else {
        format!("ebs-snapper-{account}-{region}")
    }
}

pub fn stack_name(account: &str) -> String {
    format!("ebs-snapper-{account}")
}

/// A stack parameter to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackParameter {
    Value(String, String),
    /// Keep the value the stack has.
    UsePrevious(String),
}

/// Value CloudFormation shows for a `NoEcho` parameter.
pub const MASKED: &str = "****";

/// Parameters of an earlier template that were renamed, each with what replaces it: a value
/// the stack has, or one given with `--parameter`, carries over to every new name (unless that
/// name has its own value). This tool's first release had one `MemorySize` for every function;
/// the memory parameters now carry the Python tool's names, so its stacks keep their values too.
pub const RENAMED_PARAMETERS: &[(&str, &[&str])] =
    &[("MemorySize", &["LambdaMemoryFanout", "LambdaMemorySnapshot", "LambdaMemoryClean", "LambdaMemoryReplication"])];

/// `params` with every renamed parameter replaced by its new names (a value already given under
/// a new name wins over the old one), for the names the template has.
pub fn rename_parameters(template: &[String], params: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in params {
        match RENAMED_PARAMETERS.iter().find(|(old, _)| old == k && !template.contains(k)) {
            Some((_, new)) => {
                for n in new.iter().filter(|n| template.iter().any(|t| t == *n)) {
                    if !params.iter().any(|(pk, _)| pk == n) {
                        out.push((n.to_string(), v.clone()));
                    }
                }
            }
            None => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// The parameters of a create (`existing` = None) or an update (`existing` = the stack's current
/// parameters, name and value): overrides win; on update every other parameter the stack already
/// has keeps its value (sent explicitly, or as "use previous value" when the value is masked),
/// and new ones take their defaults (they are left out). `fixed` are set by deploy itself (the
/// code bucket). An override of a parameter the template does not have is an error.
pub fn stack_parameters(
    template: &[String],
    existing: Option<&[(String, String)]>,
    overrides: &[(String, String)],
    fixed: &[(String, String)],
) -> Result<Vec<StackParameter>, String> {
    let overrides = &rename_parameters(template, overrides);
    let existing = existing.map(|e| rename_parameters(template, e));
    let existing = existing.as_deref();
    for (k, _) in overrides {
        if !template.contains(k) {
            return Err(format!(
                "--parameter {k}: the template has no such parameter (it has: {})",
                template.join(", ")
            ));
        }
    }
    let mut out = Vec::new();
    for name in template {
        if let Some((_, v)) = overrides.iter().rev().find(|(k, _)| k == name) {
            out.push(StackParameter::Value(name.clone(), v.clone()));
        } else if let Some((_, v)) = fixed.iter().find(|(k, _)| k == name) {
            out.push(StackParameter::Value(name.clone(), v.clone()));
        } else if let Some((_, v)) = existing.and_then(|e| e.iter().find(|(k, _)| k == name)) {
            out.push(if v == MASKED {
                StackParameter::UsePrevious(name.clone())
            } else {
                StackParameter::Value(name.clone(), v.clone())
            });
        }
    }
    Ok(out)
}

/// Parses `K=V` (`--parameter`).
pub fn parse_parameter(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("--parameter {text:?} is not KEY=VALUE")),
    }
}

/// Published versions to delete so that the newest [`VERSIONS_KEPT`] remain (`$LATEST` and
/// anything not a number are never touched).
pub fn versions_to_prune(versions: &[String]) -> Vec<String> {
    let mut numbered: Vec<u64> = versions.iter().filter_map(|v| v.parse().ok()).collect();
    numbered.sort_unstable_by(|a, b| b.cmp(a));
    numbered.into_iter().skip(VERSIONS_KEPT).map(|v| v.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_follow_the_python_tool() {
        assert_eq!(bucket_name("112233445566", "us-east-1"), "ebs-snapper-112233445566");
        assert_eq!(bucket_name("112233445566", "eu-west-1"), "ebs-snapper-112233445566-eu-west-1");
        assert_eq!(stack_name("112233445566"), "ebs-snapper-112233445566");
    }

    #[test]
    fn create_update_and_override() {
        let template = names(&["CodeBucket", "MemorySize", "CreateScheduleExpression", "NewParam", "Secret"]);
        let fixed = vec![("CodeBucket".to_string(), "b".to_string())];
        let create = stack_parameters(&template, None, &[], &fixed).unwrap();
        assert_eq!(create, vec![StackParameter::Value("CodeBucket".into(), "b".into())]);

        let existing: Vec<(String, String)> =
            [("CodeBucket", "old"), ("MemorySize", "256"), ("CreateScheduleExpression", "x"), ("Secret", MASKED)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let overrides = vec![("CreateScheduleExpression".to_string(), "rate(1 hour)".to_string())];
        let update = stack_parameters(&template, Some(&existing), &overrides, &fixed).unwrap();
        assert_eq!(
            update,
            vec![
                StackParameter::Value("CodeBucket".into(), "b".into()),
                StackParameter::Value("MemorySize".into(), "256".into()),
                StackParameter::Value("CreateScheduleExpression".into(), "rate(1 hour)".into()),
                StackParameter::UsePrevious("Secret".into()),
            ],
            "NewParam is left out and takes its default"
        );
        let bad = stack_parameters(&template, None, &[("Nope".into(), "1".into())], &fixed).unwrap_err();
        assert!(bad.starts_with("--parameter Nope: the template has no such parameter"));
    }

    #[test]
    fn renamed_parameters_carry_their_values() {
        let template = names(&["CodeBucket", "LambdaMemoryFanout", "LambdaMemorySnapshot", "LambdaMemoryClean"]);
        let existing: Vec<(String, String)> =
            [("CodeBucket", "b"), ("MemorySize", "256")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // A stack of the first release: its MemorySize goes to every memory parameter.
        let update = stack_parameters(&template, Some(&existing), &[], &[]).unwrap();
        assert_eq!(
            update,
            vec![
                StackParameter::Value("CodeBucket".into(), "b".into()),
                StackParameter::Value("LambdaMemoryFanout".into(), "256".into()),
                StackParameter::Value("LambdaMemorySnapshot".into(), "256".into()),
                StackParameter::Value("LambdaMemoryClean".into(), "256".into()),
            ]
        );
        // `--parameter MemorySize=512` means every function; a new name given too wins for its own.
        let overrides =
            vec![("MemorySize".to_string(), "512".to_string()), ("LambdaMemoryClean".to_string(), "1024".to_string())];
        let update = stack_parameters(&template, Some(&existing), &overrides, &[]).unwrap();
        assert!(update.contains(&StackParameter::Value("LambdaMemoryFanout".into(), "512".into())), "{update:?}");
        assert!(update.contains(&StackParameter::Value("LambdaMemoryClean".into(), "1024".into())), "{update:?}");
        // A template that still has the old name keeps it as it is.
        let old = names(&["MemorySize"]);
        assert_eq!(rename_parameters(&old, &existing), existing);
    }

    #[test]
    fn parameters_parse() {
        assert_eq!(
            parse_parameter("CreateScheduleExpression=rate(1 hour)").unwrap(),
            ("CreateScheduleExpression".into(), "rate(1 hour)".into())
        );
        assert_eq!(parse_parameter("A=").unwrap(), ("A".into(), "".into()));
        assert!(parse_parameter("novalue").is_err());
        assert!(parse_parameter("=x").is_err());
    }

    #[test]
    fn prune_keeps_the_newest_two() {
        assert_eq!(versions_to_prune(&names(&["$LATEST", "1", "2", "10", "3"])), names(&["2", "1"]));
        assert!(versions_to_prune(&names(&["$LATEST", "1", "2"])).is_empty());
    }

    #[test]
    fn the_repository_function_list_parses() {
        let list = FunctionList::parse(include_str!("../../../lambda.json")).unwrap();
        assert_eq!(list.functions.len(), 5);
        assert!(FunctionList::parse("{}").is_err());
        assert!(FunctionList::parse(r#"{"functions": []}"#).is_err());
    }
}
