//! The CloudFormation template: least-privilege IAM, and agreement with lambda.json (the one
//! source of truth for the function list).

use std::collections::BTreeSet;

use ebs_snapper_core::deploy_plan::FunctionList;
use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("cloudformation/ebs-snapper.json")).unwrap()).unwrap()
}

fn functions() -> FunctionList {
    FunctionList::parse(&std::fs::read_to_string(root().join("lambda.json")).unwrap()).unwrap()
}

fn resources_of(t: &Value, kind: &str) -> Vec<(String, Value)> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect()
}

fn statements(t: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, role) in resources_of(t, "AWS::IAM::Role") {
        for policy in role["Properties"]["Policies"].as_array().unwrap() {
            out.extend(policy["PolicyDocument"]["Statement"].as_array().unwrap().iter().cloned());
        }
    }
    out
}

fn actions(s: &Value) -> Vec<String> {
    match &s["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        _ => vec![],
    }
}

fn sub(v: &Value) -> String {
    v.get("Fn::Sub").and_then(|s| s.as_str()).map(str::to_string).unwrap_or_else(|| v.to_string())
}

#[test]
fn no_wildcard_actions_and_no_not_action() {
    for s in statements(&template()) {
        assert!(s.get("NotAction").is_none(), "{s}");
        for a in actions(&s) {
            assert!(!a.contains('*'), "wildcard action {a} in {s}");
        }
        assert_eq!(s["Effect"], "Allow");
    }
}

#[test]
fn delete_snapshot_only_on_dated_snapshots_or_replicas() {
    let deletes: Vec<Value> =
        statements(&template()).into_iter().filter(|s| actions(s).iter().any(|a| a == "ec2:DeleteSnapshot")).collect();
    assert_eq!(deletes.len(), 2);
    let mut tags = BTreeSet::new();
    for s in &deletes {
        assert_eq!(actions(s), vec!["ec2:DeleteSnapshot"], "DeleteSnapshot stands alone: {s}");
        let null = s["Condition"]["Null"].as_object().expect("a Null condition");
        assert_eq!(null.len(), 1);
        let (key, value) = null.iter().next().unwrap();
        assert_eq!(value, "false", "the tag must be present");
        tags.insert(key.clone());
        assert!(sub(&s["Resource"][0]).contains(":snapshot/"));
    }
    assert_eq!(
        tags,
        BTreeSet::from(["aws:ResourceTag/DeleteOn".to_string(), "aws:ResourceTag/replication_src_region".to_string()])
    );
}

#[test]
fn create_tags_only_while_creating_or_copying() {
    let s: Vec<Value> =
        statements(&template()).into_iter().filter(|s| actions(s).iter().any(|a| a == "ec2:CreateTags")).collect();
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0]["Condition"]["StringEquals"]["ec2:CreateAction"],
        serde_json::json!(["CreateSnapshot", "CopySnapshot"])
    );
}

#[test]
fn invoke_only_the_workers_and_switch_only_the_replication_rule() {
    let st = statements(&template());
    let invoke: Vec<&Value> = st.iter().filter(|s| actions(s).iter().any(|a| a == "lambda:InvokeFunction")).collect();
    assert_eq!(invoke.len(), 1);
    let resources: Vec<String> = invoke[0]["Resource"].as_array().unwrap().iter().map(sub).collect();
    assert_eq!(resources.len(), 3);
    assert!(resources.iter().any(|r| r.ends_with("${AWS::StackName}-create-snapshot")));
    assert!(resources.iter().any(|r| r.ends_with("${AWS::StackName}-clean-snapshot")));
    assert!(resources.iter().any(|r| r.ends_with("${AWS::StackName}-replication")));
    let rules: Vec<&Value> = st.iter().filter(|s| actions(s).iter().any(|a| a.starts_with("events:"))).collect();
    assert_eq!(rules.len(), 1);
    assert!(sub(&rules[0]["Resource"]).ends_with(":rule/${AWS::StackName}-replication"));
    // Configurations are read-only to the functions; they write only their region leases, whose
    // partition key no configuration can have.
    let dynamo: Vec<&Value> = st.iter().filter(|s| actions(s).iter().any(|a| a.starts_with("dynamodb:"))).collect();
    assert_eq!(dynamo.len(), 2);
    assert_eq!(actions(dynamo[0]), vec!["dynamodb:Query", "dynamodb:GetItem"], "configurations: read-only");
    assert_eq!(actions(dynamo[1]), vec!["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]);
    let leading = &dynamo[1]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"];
    assert_eq!(
        leading.as_array().map(|a| a.iter().map(sub).collect::<Vec<_>>()),
        Some(vec!["lease#${AWS::AccountId}".to_string()])
    );
}

#[test]
fn table_is_retained_on_demand_recoverable_and_encrypted() {
    let t = template();
    let tables = resources_of(&t, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1);
    let table = &tables[0].1;
    assert_eq!(table["DeletionPolicy"], "Retain");
    assert_eq!(table["UpdateReplacePolicy"], "Retain");
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"], true, "no one deletes it by mistake either");
    assert_eq!(table["Properties"]["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true);
    assert_eq!(table["Properties"]["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(t["Parameters"]["TableName"]["Default"], "ebs_snapshot_configuration");
}

#[test]
fn functions_agree_with_lambda_json() {
    let t = template();
    let list = functions();
    let in_template: BTreeSet<String> = resources_of(&t, "AWS::Lambda::Function").into_iter().map(|(k, _)| k).collect();
    let in_list: BTreeSet<String> = list.functions.iter().map(|f| f.logical_id.clone()).collect();
    assert_eq!(in_template, in_list);
    assert_eq!(t["Parameters"]["MemorySize"]["Default"], 128);
    for f in &list.functions {
        let r = &t["Resources"][&f.logical_id]["Properties"];
        assert_eq!(r["Runtime"], "provided.al2023");
        assert_eq!(r["Handler"], "bootstrap");
        assert_eq!(r["Timeout"], f.timeout);
        assert_eq!(f.memory, 128, "lambda.json memory is the MemorySize default");
        assert!(sub(&r["Code"]["S3Key"]).ends_with(&format!("/{}.zip", f.binary)));
        assert!(sub(&r["FunctionName"]).ends_with(&format!("-{}", f.binary)));
        let env: BTreeSet<String> = r["Environment"]["Variables"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(env, f.environment.iter().cloned().collect::<BTreeSet<_>>(), "{}", f.logical_id);
        // A log group with retention, and an error alarm, per function.
        let logs = &t["Resources"][format!("{}Logs", f.logical_id)];
        assert_eq!(logs["Type"], "AWS::Logs::LogGroup");
        assert_eq!(logs["Properties"]["RetentionInDays"]["Ref"], "LogRetentionDays");
        let alarm = &t["Resources"][format!("{}Errors", f.logical_id)];
        assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm");
        assert_eq!(alarm["Properties"]["MetricName"], "Errors");
        assert_eq!(alarm["Properties"]["AlarmActions"]["Fn::If"][0], "HasAlarmTopic");
        match &f.schedule {
            Some(s) => {
                let rule = &t["Resources"][&s.rule];
                assert_eq!(rule["Type"], "AWS::Events::Rule");
                assert_eq!(rule["Properties"]["ScheduleExpression"]["Ref"], s.parameter);
                assert_eq!(t["Parameters"][&s.parameter]["Default"], s.default);
                assert_eq!(rule["Properties"]["State"], if s.enabled { "ENABLED" } else { "DISABLED" });
                assert_eq!(rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0], f.logical_id);
                let permission = &t["Resources"][format!("{}Permission", s.rule)];
                assert_eq!(permission["Properties"]["Principal"], "events.amazonaws.com");
            }
            None => assert!(resources_of(&t, "AWS::Events::Rule")
                .iter()
                .all(|(_, r)| r["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0] != f.logical_id.as_str())),
        }
    }
    // Schedules of SPEC §9: snapshot every 30 minutes, clean every 6 hours, replication every 30 minutes and off.
    assert_eq!(t["Parameters"]["CreateScheduleExpression"]["Default"], "rate(30 minutes)");
    assert_eq!(t["Parameters"]["CleanScheduleExpression"]["Default"], "rate(6 hours)");
    assert_eq!(t["Resources"]["ReplicationSchedule"]["Properties"]["State"], "DISABLED");
}

#[test]
fn optional_alarm_topic_and_cost_center() {
    let t = template();
    assert_eq!(t["Parameters"]["AlarmTopicArn"]["Default"], "");
    assert_eq!(t["Parameters"]["CostCenter"]["Default"], "");
    assert!(t["Conditions"]["HasCostCenter"].is_object());
    for (_, f) in resources_of(&t, "AWS::Lambda::Function") {
        assert_eq!(f["Properties"]["Tags"]["Fn::If"][0], "HasCostCenter");
    }
    assert!(t["Parameters"]["Architecture"]["AllowedValues"].as_array().unwrap().contains(&Value::from("arm64")));
}

#[test]
fn alarms_say_when_they_clear_and_functions_log_json_to_their_own_group() {
    let t = template();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    assert!(!alarms.is_empty());
    for (id, alarm) in &alarms {
        assert!(alarm["Properties"]["AlarmActions"].is_object(), "{id}");
        assert_eq!(alarm["Properties"]["OKActions"], alarm["Properties"]["AlarmActions"], "{id}: OK actions as the Python tool had");
    }
    for (id, function) in resources_of(&t, "AWS::Lambda::Function") {
        let logging = &function["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"], "JSON", "{id}");
        assert_eq!(logging["LogGroup"]["Ref"], format!("{id}Logs"), "{id}");
    }
}
