//! The CloudFormation template: least-privilege IAM, and agreement with lambda.json (the one
//! source of truth for the function list).

use std::collections::BTreeSet;

use ebs_snapper_core::deploy_plan::FunctionList;
use serde_json::{json, Value};

use crate::support::{cloudformation, root};

fn template() -> Value {
    cloudformation("ebs-snapper.json")
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

/// Every statement of every role; a statement chosen by a condition (`Fn::If`) as the one it is
/// when the condition holds.
fn statements(t: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, role) in resources_of(t, "AWS::IAM::Role") {
        for policy in role["Properties"]["Policies"].as_array().unwrap() {
            for s in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                out.push(s.get("Fn::If").map(|f| f[1].clone()).unwrap_or_else(|| s.clone()));
            }
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

/// SPEC §16: `LockSnapshot` only on snapshots carrying the tool's tags (copies: a copy's), and
/// no role, policy or member role may `UnlockSnapshot` (nor any `ec2:*Lock*` action but these).
#[test]
fn lock_only_the_tools_snapshots_and_nobody_unlocks() {
    let member = member_template();
    let operator = crate::support::cloudformation("operator.json");
    let operator_statements: Vec<Value> = operator["Resources"]["OperatorPolicy"]["Properties"]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .unwrap()
        .clone();
    for (name, all) in [
        ("ebs-snapper.json", statements(&template())),
        ("member.json", statements(&member)),
        ("operator.json", operator_statements),
    ] {
        let locks: Vec<&Value> = all.iter().filter(|s| actions(s).iter().any(|a| a == "ec2:LockSnapshot")).collect();
        assert!(!locks.is_empty(), "{name}: something locks");
        for s in &locks {
            assert_eq!(actions(s), vec!["ec2:LockSnapshot"], "{name}: LockSnapshot stands alone: {s}");
            assert!(sub(&s["Resource"][0]).contains(":snapshot/"), "{name}: {s}");
            let null = s["Condition"]["Null"].as_object().expect("a Null condition");
            assert!(null.contains_key("aws:ResourceTag/ebs-snapper:config"), "{name}: only the tool's snapshots: {s}");
            assert!(null.values().all(|v| v == "false"), "{name}: {s}");
        }
        for s in &all {
            for a in actions(s) {
                assert!(
                    !a.to_ascii_lowercase().contains("unlock")
                        && (!a.contains("Lock") || a == "ec2:LockSnapshot" || a == "ec2:DescribeLockedSnapshots"),
                    "{name}: {a} in {s}"
                );
            }
        }
    }
    // The replication role locks copies only.
    let replication = role_statements(&template(), "ReplicationFunction");
    let lock = replication.iter().find(|s| actions(s) == ["ec2:LockSnapshot"]).expect("replication locks");
    assert_eq!(lock["Condition"]["Null"]["aws:ResourceTag/replication_src_region"], "false");
}

#[test]
fn archive_only_snapshots_this_tool_tagged_with_a_tier() {
    let archives: Vec<Value> = statements(&template())
        .into_iter()
        .filter(|s| actions(s).iter().any(|a| a == "ec2:ModifySnapshotTier"))
        .collect();
    let [s] = &archives[..] else { panic!("one statement allows ModifySnapshotTier: {archives:?}") };
    assert_eq!(actions(s), vec!["ec2:ModifySnapshotTier"]);
    assert_eq!(s["Condition"], serde_json::json!({"Null": {"aws:ResourceTag/ebs-snapper:tier": "false"}}));
    assert!(sub(&s["Resource"][0]).contains(":snapshot/"));
    let creates: Vec<Value> =
        statements(&template()).into_iter().filter(|s| actions(s).iter().any(|a| a == "ec2:CreateSnapshots")).collect();
    let [c] = &creates[..] else { panic!("{creates:?}") };
    assert_eq!(actions(c), vec!["ec2:CreateSnapshot", "ec2:CreateSnapshots"], "the same resources as CreateSnapshot");
}

#[test]
fn create_tags_only_while_creating_or_copying() {
    // (The drills' tags, on their volumes and results, are the drill test's.)
    let is_drill = |s: &Value| s["Sid"].as_str().is_some_and(|sid| sid.starts_with("Drill"));
    let s: Vec<Value> = statements(&template())
        .into_iter()
        .filter(|s| actions(s).iter().any(|a| a == "ec2:CreateTags") && !is_drill(s))
        .collect();
    // One per role that makes snapshots, each only for the call that role makes.
    let mut conditions: Vec<Value> =
        s.iter().map(|s| s["Condition"]["StringEquals"]["ec2:CreateAction"].clone()).collect();
    conditions.sort_by_key(|c| c.to_string());
    assert_eq!(
        conditions,
        vec![serde_json::json!(["CopySnapshot"]), serde_json::json!(["CreateSnapshot", "CreateSnapshots"])]
    );
    let t = template();
    let tags_of = |function: &str| -> Vec<Value> {
        role_statements(&t, function)
            .into_iter()
            .filter(|s| actions(s).iter().any(|a| a == "ec2:CreateTags" || a == "ec2:DeleteSnapshot") && !is_drill(s))
            .map(|s| s["Condition"].clone())
            .collect()
    };
    assert_eq!(
        tags_of("CreateSnapshotFunction"),
        vec![serde_json::json!({"StringEquals": {"ec2:CreateAction": ["CreateSnapshot", "CreateSnapshots"]}})]
    );
    assert_eq!(
        tags_of("CleanSnapshotFunction"),
        vec![serde_json::json!({"Null": {"aws:ResourceTag/DeleteOn": "false"}})]
    );
    assert_eq!(
        tags_of("ReplicationFunction"),
        vec![
            serde_json::json!({"StringEquals": {"ec2:CreateAction": ["CopySnapshot"]}}),
            serde_json::json!({"Null": {"aws:ResourceTag/replication_src_region": "false"}})
        ]
    );
}

/// The statements of one function's own role.
fn role_statements(t: &Value, function: &str) -> Vec<Value> {
    let role = t["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0].as_str().unwrap();
    assert_eq!(role, format!("{function}Role"), "{function} has a role of its own");
    let props = &t["Resources"][role]["Properties"];
    assert_eq!(props["PermissionsBoundary"]["Fn::If"][0], "HasPermissionsBoundary", "{role}: optional boundary");
    props["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn each_function_has_a_role_with_only_what_it_does() {
    let t = template();
    let expected: [(&str, &[&str], &str); 5] = [
        (
            "FanoutCreateSnapshotFunction",
            &[
                "dynamodb:Query",
                "dynamodb:Scan",
                "ec2:DescribeInstances",
                "ec2:DescribeRegions",
                "events:DescribeRule",
                "events:DisableRule",
                "events:EnableRule",
                "lambda:InvokeFunction",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "sqs:SendMessage",
                "sts:AssumeRole",
            ],
            "create-snapshot",
        ),
        (
            "CreateSnapshotFunction",
            &[
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:Scan",
                "dynamodb:UpdateItem",
                "ec2:CreateSnapshot",
                "ec2:CreateSnapshots",
                "ec2:CreateTags",
                "ec2:DescribeInstances",
                "ec2:DescribeLockedSnapshots",
                "ec2:DescribeRegions",
                "ec2:DescribeSnapshots",
                "ec2:DescribeVolumes",
                "ec2:LockSnapshot",
                "lambda:InvokeFunction",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "sqs:SendMessage",
                "sts:AssumeRole",
            ],
            "create-snapshot",
        ),
        (
            "FanoutCleanSnapshotFunction",
            &[
                "dynamodb:Query",
                "dynamodb:Scan",
                "ec2:DescribeInstances",
                "ec2:DescribeRegions",
                "ec2:DescribeSnapshots",
                "lambda:InvokeFunction",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "sqs:SendMessage",
                "sts:AssumeRole",
            ],
            "clean-snapshot",
        ),
        (
            "CleanSnapshotFunction",
            &[
                "dynamodb:Query",
                "dynamodb:Scan",
                // The restore drills (SPEC §17).
                "ebs:GetSnapshotBlock",
                "ebs:ListSnapshotBlocks",
                "ec2:CreateTags",
                "ec2:CreateVolume",
                "ec2:DeleteSnapshot",
                "ec2:DeleteVolume",
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeInstances",
                "ec2:DescribeLockedSnapshots",
                "ec2:DescribeRegions",
                "ec2:DescribeSnapshots",
                "ec2:DescribeVolumes",
                "ec2:LockSnapshot",
                "ec2:ModifySnapshotTier",
                "kms:CreateGrant",
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "lambda:InvokeFunction",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "sqs:SendMessage",
                "sts:AssumeRole",
            ],
            "clean-snapshot",
        ),
        (
            "ReplicationFunction",
            &[
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:Scan",
                "dynamodb:UpdateItem",
                "ec2:CopySnapshot",
                "ec2:CreateTags",
                "ec2:DeleteSnapshot",
                "ec2:DescribeLockedSnapshots",
                "ec2:DescribeRegions",
                "ec2:DescribeSnapshots",
                "ec2:LockSnapshot",
                "lambda:InvokeFunction",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "sqs:SendMessage",
                "sts:AssumeRole",
            ],
            "replication",
        ),
    ];
    assert_eq!(resources_of(&t, "AWS::IAM::Role").len(), 5, "one role per function, no shared role");
    for (function, allowed, invokes) in expected {
        let st = role_statements(&t, function);
        let mut got: Vec<String> = st.iter().flat_map(actions).collect();
        got.sort();
        got.dedup();
        assert_eq!(got, allowed.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "{function}");
        // It invokes only its worker (a fanout) or itself (continuations, scheduled fan-out).
        for s in st.iter().filter(|s| actions(s).iter().any(|a| a == "lambda:InvokeFunction")) {
            let targets: Vec<String> = s["Resource"].as_array().unwrap().iter().map(sub).collect();
            assert_eq!(targets.len(), 1, "{function}");
            assert!(
                targets[0].ends_with(&format!(":function:${{AWS::StackName}}-{invokes}")),
                "{function}: {targets:?}"
            );
        }
        // Reads and writes of the table are limited by partition key: configurations of any
        // account (a 12-character key: the deployment's own and its members', SPEC §13) are
        // read, and only lease items are written. Only the listing of accounts, a Scan (which
        // has no partition key), is not limited.
        for s in st.iter().filter(|s| actions(s).iter().any(|a| a.starts_with("dynamodb:"))) {
            if actions(s) == ["dynamodb:Scan"] {
                assert_eq!(s["Sid"], "ListAccounts", "{function}");
                continue;
            }
            let keys: Vec<String> = s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                .as_array()
                .unwrap_or_else(|| panic!("{function}: {s} is not limited by dynamodb:LeadingKeys"))
                .iter()
                .map(|k| k.as_str().unwrap_or_else(|| panic!("{function}: a literal key pattern, not {k}")).to_string())
                .collect();
            let writes = actions(s).iter().any(|a| a != "dynamodb:Query" && a != "dynamodb:GetItem");
            if writes {
                assert_eq!(keys, ["lease#????????????"], "{function}: writes only lease items");
            } else {
                assert_eq!(keys[0], "????????????", "{function}: {keys:?}");
                assert!(keys[1..].iter().all(|k| k == "lease#????????????"), "{function}: {keys:?}");
            }
        }
        // Member accounts are reached through their member role, vaults (by the replication and
        // clean functions) through the vault role, and nothing else is assumed.
        let assumes: Vec<&Value> = st.iter().filter(|s| actions(s).iter().any(|a| a.starts_with("sts:"))).collect();
        let vaults = ["ReplicationFunction", "CleanSnapshotFunction"].contains(&function);
        assert_eq!(assumes.len(), 1 + usize::from(vaults), "{function}");
        assert!(assumes.iter().all(|s| actions(s) == ["sts:AssumeRole"]), "{function}");
        assert_eq!(sub(&assumes[0]["Resource"]), "arn:${AWS::Partition}:iam::*:role/${MemberRoleName}", "{function}");
        if vaults {
            assert_eq!(
                sub(&assumes[1]["Resource"]),
                "arn:${AWS::Partition}:iam::*:role/${VaultRoleName}",
                "{function}"
            );
        }
        // The replication rule is switched by the snapshot fanout only, and only that rule.
        for s in st.iter().filter(|s| actions(s).iter().any(|a| a.starts_with("events:"))) {
            assert_eq!(function, "FanoutCreateSnapshotFunction");
            assert!(sub(&s["Resource"]).ends_with(":rule/${AWS::StackName}-replication"));
        }
    }
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
    assert!(t["Parameters"].get("MemorySize").is_none(), "renamed to the Python tool's LambdaMemory* names");
    for f in &list.functions {
        let r = &t["Resources"][&f.logical_id]["Properties"];
        assert_eq!(r["Runtime"], "provided.al2023");
        assert_eq!(r["Handler"], "bootstrap");
        assert_eq!(r["Timeout"], f.timeout);
        // Each function's memory is its own parameter, named as the Python tool named it, and
        // lambda.json's figure is that parameter's default.
        assert!(f.memory_parameter.starts_with("LambdaMemory"), "{}", f.memory_parameter);
        assert_eq!(r["MemorySize"]["Ref"], f.memory_parameter.as_str(), "{}", f.logical_id);
        assert_eq!(t["Parameters"][&f.memory_parameter]["Default"], f.memory, "{}", f.logical_id);
        assert_eq!(t["Parameters"][&f.memory_parameter]["MinValue"], 128);
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
        assert_eq!(alarm["Properties"]["AlarmActions"][0]["Fn::If"][0], "HasAlarmTopic");
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
        // The topic given, and the email topic when an address is given.
        assert_eq!(
            alarm["Properties"]["AlarmActions"],
            serde_json::json!([
                {"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AWS::NoValue"}]},
                {"Fn::If": ["HasAlarmEmail", {"Ref": "AlarmEmailTopic"}, {"Ref": "AWS::NoValue"}]}
            ]),
            "{id}"
        );
        assert_eq!(
            alarm["Properties"]["OKActions"], alarm["Properties"]["AlarmActions"],
            "{id}: OK actions as the Python tool had"
        );
    }
    for (id, function) in resources_of(&t, "AWS::Lambda::Function") {
        let logging = &function["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"], "JSON", "{id}");
        assert_eq!(logging["LogGroup"]["Ref"], format!("{id}Logs"), "{id}");
    }
}

#[test]
fn failed_worker_invocations_are_not_retried_blindly_and_land_in_a_watched_queue() {
    let t = template();
    let configs = resources_of(&t, "AWS::Lambda::EventInvokeConfig");
    let mut configured: Vec<String> =
        configs.iter().map(|(_, c)| c["Properties"]["FunctionName"]["Ref"].as_str().unwrap().to_string()).collect();
    configured.sort();
    assert_eq!(
        configured,
        [
            "CleanSnapshotFunction",
            "CreateSnapshotFunction",
            "FanoutCleanSnapshotFunction",
            "FanoutCreateSnapshotFunction",
            "ReplicationFunction"
        ]
    );
    for (id, c) in &configs {
        let p = &c["Properties"];
        // A region run that failed has reported its failures; running it again blindly would
        // only repeat them (the next schedule plans afresh). A fanout only lists regions and
        // invokes workers, which hold leases: it keeps Lambda's two retries, as the Python
        // tool's fanouts had, so one throttled listing does not skip a schedule.
        let fanout = p["FunctionName"]["Ref"].as_str().unwrap().starts_with("Fanout");
        assert_eq!(p["MaximumRetryAttempts"], if fanout { 2 } else { 0 }, "{id}");
        assert!(p["MaximumEventAgeInSeconds"].as_u64().unwrap() <= 3600, "{id}");
        assert_eq!(
            p["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0], "FailedInvocationsQueue",
            "{id}"
        );
        // The function's role may send there, and only there.
        let function = p["FunctionName"]["Ref"].as_str().unwrap();
        let sends: Vec<Value> = role_statements(&t, function)
            .into_iter()
            .filter(|s| actions(s).iter().any(|a| a.starts_with("sqs:")))
            .collect();
        assert_eq!(sends.len(), 1, "{function}");
        assert_eq!(actions(&sends[0]), ["sqs:SendMessage"]);
        assert_eq!(sends[0]["Resource"]["Fn::GetAtt"][0], "FailedInvocationsQueue");
    }
    let queue = &t["Resources"]["FailedInvocationsQueue"];
    assert_eq!(
        queue["Properties"]["SqsManagedSseEnabled"]["Fn::If"],
        json!(["HasKmsKey", {"Ref": "AWS::NoValue"}, true])
    );
    let alarm = &t["Resources"]["FailedInvocationsAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(alarm["Dimensions"][0]["Value"]["Fn::GetAtt"][0], "FailedInvocationsQueue");
    // An email address, when given, gets a topic and a subscription of its own.
    assert_eq!(t["Parameters"]["AlarmEmail"]["Default"], "");
    for id in ["AlarmEmailTopic", "AlarmEmailSubscription"] {
        assert_eq!(t["Resources"][id]["Condition"], "HasAlarmEmail", "{id}");
    }
    assert_eq!(t["Resources"]["AlarmEmailSubscription"]["Properties"]["Protocol"], "email");
}

/// SPEC §15: the templates deploy in every partition (`aws-cn`, `aws-us-gov`): no ARN is written
/// `arn:aws:` and no service endpoint `amazonaws.com` (China's is `amazonaws.com.cn`); they come
/// from `${AWS::Partition}` and `${AWS::URLSuffix}`. (Service principals such as
/// `lambda.amazonaws.com` are the same in every partition.)
#[test]
fn nothing_is_written_for_the_commercial_partition_only() {
    fn strings<'v>(v: &'v Value, key: &str, out: &mut Vec<(String, &'v str)>) {
        match v {
            Value::String(s) => out.push((key.to_string(), s)),
            Value::Array(a) => a.iter().for_each(|x| strings(x, key, out)),
            Value::Object(o) => o.iter().for_each(|(k, x)| strings(x, k, out)),
            _ => {}
        }
    }
    let operator = cloudformation("operator.json");
    for (name, t) in [("ebs-snapper.json", template()), ("member.json", member_template()), ("operator.json", operator)]
    {
        let mut all = Vec::new();
        strings(&t["Resources"], "", &mut all);
        assert!(all.len() > 20, "{name}: the walk found the strings ({})", all.len());
        for (key, text) in all {
            assert!(!text.contains("arn:aws:"), "{name}: {key} = {text}");
            if !matches!(key.as_str(), "Service" | "Principal" | "comment" | "Description" | "AlarmDescription") {
                assert!(!text.contains("amazonaws.com"), "{name}: {key} = {text}");
            }
        }
    }
}

/// SPEC §10.13: CloudWatch cannot publish to a topic encrypted with the AWS managed `aws/sns`
/// key (its key policy cannot be changed to let `cloudwatch.amazonaws.com` use it): the email
/// subscription is confirmed, then no alarm ever arrives. A topic alarms publish to is on the
/// stack's own key (`KmsKeyArn`, whose policy README says how to extend), else unencrypted.
#[test]
fn no_alarm_publishes_to_a_topic_cloudwatch_may_not_use() {
    let t = template();
    let mut topics = BTreeSet::new();
    for (_, alarm) in resources_of(&t, "AWS::CloudWatch::Alarm") {
        for action in alarm["Properties"]["AlarmActions"].as_array().into_iter().flatten() {
            if let Some(topic) = action["Fn::If"][1]["Ref"].as_str().filter(|r| t["Resources"].get(*r).is_some()) {
                topics.insert(topic.to_string());
            }
        }
    }
    assert_eq!(topics, BTreeSet::from(["AlarmEmailTopic".to_string()]), "the stack's own topics alarms publish to");
    for (id, topic) in resources_of(&t, "AWS::SNS::Topic") {
        let key = &topic["Properties"]["KmsMasterKeyId"];
        assert!(!key.to_string().contains("aws/sns"), "{id} is on aws/sns, which CloudWatch may not use: {key}");
        assert_eq!(
            key["Fn::If"],
            json!(["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]),
            "{id}: the stack's key, else none"
        );
    }
}

/// The optional `KmsKeyArn` encrypts everything the stack stores with that key, and the roles
/// get exactly what using it takes, only through the services that use it.
#[test]
fn an_optional_kms_key_reaches_everything_the_stack_stores() {
    let t = template();
    assert_eq!(t["Parameters"]["KmsKeyArn"]["Default"], "");
    let with_key = |v: &Value| v["Fn::If"] == json!(["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]);
    let table = &t["Resources"]["ConfigurationTable"]["Properties"]["SSESpecification"];
    assert!(with_key(&table["KMSMasterKeyId"]), "{table}");
    assert_eq!(table["SSEType"], "KMS");
    assert!(with_key(&t["Resources"]["FailedInvocationsQueue"]["Properties"]["KmsMasterKeyId"]));
    for (id, group) in resources_of(&t, "AWS::Logs::LogGroup") {
        assert!(with_key(&group["Properties"]["KmsKeyId"]), "{id}");
    }
    let functions = resources_of(&t, "AWS::Lambda::Function");
    for (id, f) in &functions {
        assert!(with_key(&f["Properties"]["KmsKeyArn"]), "{id}");
    }
    let policy = &t["Resources"]["KmsKeyPolicy"];
    assert_eq!(policy["Condition"], "HasKmsKey");
    let mut roles: Vec<String> = policy["Properties"]["Roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Ref"].as_str().unwrap().to_string())
        .collect();
    roles.sort();
    let mut expected: Vec<String> = functions.iter().map(|(id, _)| format!("{id}Role")).collect();
    expected.sort();
    assert_eq!(roles, expected, "every role, and only through the key policy");
    let statements = policy["Properties"]["PolicyDocument"]["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(actions(&statements[0]), ["kms:Decrypt", "kms:GenerateDataKey"]);
    assert_eq!(statements[0]["Resource"]["Ref"], "KmsKeyArn");
    let via: Vec<String> =
        statements[0]["Condition"]["StringEquals"]["kms:ViaService"].as_array().unwrap().iter().map(sub).collect();
    assert_eq!(
        via,
        [
            "lambda.${AWS::Region}.${AWS::URLSuffix}",
            "dynamodb.${AWS::Region}.${AWS::URLSuffix}",
            "sqs.${AWS::Region}.${AWS::URLSuffix}"
        ]
    );
}

/// `CopyKmsKeyArns` (SPEC §12): the replication role, and only it, may use exactly those keys,
/// and only through EC2; granting is only for an AWS resource. Without keys, no policy.
#[test]
fn copy_keys_are_granted_to_replication_only_through_ec2() {
    let t = template();
    let p = &t["Parameters"]["CopyKmsKeyArns"];
    assert_eq!(p["Default"], "");
    let pattern = regex::Regex::new(p["AllowedPattern"].as_str().unwrap()).unwrap();
    let key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    for ok in ["", key, &format!("{key},arn:aws:kms:us-west-2:111122223333:key/k2")] {
        assert!(pattern.is_match(ok), "{ok:?}");
    }
    for bad in ["alias/backup", "arn:aws:kms:eu-west-1:111122223333:alias/b", &format!("{key},"), "*"] {
        assert!(!pattern.is_match(bad), "{bad:?}");
    }
    let policy = &t["Resources"]["CopyKmsKeyPolicy"];
    assert_eq!(policy["Condition"], "HasCopyKmsKeys");
    assert_eq!(
        t["Conditions"]["HasCopyKmsKeys"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "CopyKmsKeyArns"}, ""]}]})
    );
    assert_eq!(policy["Properties"]["Roles"], json!([{"Ref": "ReplicationFunctionRole"}]));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"].as_array().unwrap();
    let keys = json!({"Fn::Split": [",", {"Ref": "CopyKmsKeyArns"}]});
    let mut granted = Vec::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(s["Resource"], keys, "only the listed keys");
        assert_eq!(sub(&s["Condition"]["StringLike"]["kms:ViaService"]), "ec2.*.${AWS::URLSuffix}", "only through EC2");
        granted.extend(actions(s));
    }
    granted.sort();
    assert_eq!(
        granted,
        [
            "kms:CreateGrant",
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo"
        ]
    );
    let grant = statements.iter().find(|s| actions(s) == ["kms:CreateGrant"]).unwrap();
    assert_eq!(grant["Condition"]["Bool"]["kms:GrantIsForAWSResource"], "true");
}

/// Reserved concurrency is optional and off by default; the scanner's exceptions are few, named
/// per resource, and each says why.
#[test]
fn reserved_concurrency_is_optional_and_scanner_exceptions_are_explained() {
    let t = template();
    assert_eq!(t["Parameters"]["ReservedConcurrency"]["Default"], "");
    for (id, f) in resources_of(&t, "AWS::Lambda::Function") {
        assert_eq!(
            f["Properties"]["ReservedConcurrentExecutions"]["Fn::If"],
            json!(["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]),
            "{id}"
        );
    }
    let mut skipped = BTreeSet::new();
    for (id, r) in t["Resources"].as_object().unwrap() {
        for skip in r["Metadata"]["checkov"]["skip"].as_array().into_iter().flatten() {
            let check = skip["id"].as_str().unwrap();
            assert!(skip["comment"].as_str().is_some_and(|c| c.len() > 40), "{id}: {check} has no reason");
            skipped.insert(check.to_string());
        }
    }
    let allowed: BTreeSet<String> =
        ["CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_26"].iter().map(|s| s.to_string()).collect();
    assert_eq!(skipped, allowed, "a new exception is argued in README's security section first");
}

#[test]
fn a_dashboard_of_the_metrics_and_an_alarm_when_snapshot_runs_stop() {
    let t = template();
    let dashboard = &t["Resources"]["Dashboard"];
    assert_eq!(dashboard["Type"], "AWS::CloudWatch::Dashboard");
    let body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"].as_str().expect("a body with the stack's names");
    let doc: Value = serde_json::from_str(body).expect("the body is JSON");
    let text = doc.to_string();
    for metric in [
        "SnapshotsCreated",
        "SnapshotsDeleted",
        "SnapshotsCopied",
        "SnapshotsArchived",
        "Failures",
        "VolumesOk",
        "VolumesNever",
        "VolumesOverdue",
        "SnapshotRunHeartbeat",
        "Invocations",
    ] {
        assert!(text.contains(metric), "the dashboard shows {metric}");
    }
    // Every metric the functions emit is on it (the names come from the code).
    let report = ebs_snapper_core::RegionReport::new(ebs_snapper_core::Job::Snapshot, "us-east-1", false);
    let emf = ebs_snapper_core::metrics::emf("f", "123456789012", &report, 0);
    for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap() {
        let name = m["Name"].as_str().unwrap();
        assert!(text.contains(name), "{name} is emitted but not on the dashboard");
    }

    let alarm = &t["Resources"]["SnapshotHeartbeatAlarm"]["Properties"];
    assert_eq!(alarm["Namespace"], ebs_snapper_core::metrics::NAMESPACE);
    assert_eq!(alarm["MetricName"], ebs_snapper_core::metrics::HEARTBEAT);
    // The workers' successful runs beat it (SPEC §10.13): one unreachable member fails the
    // fanout's share of the run, not the heartbeat of every account backed up.
    assert_eq!(alarm["Dimensions"][0]["Value"]["Ref"], "CreateSnapshotFunction");
    let window = alarm["Period"].as_u64().unwrap() * alarm["EvaluationPeriods"].as_u64().unwrap();
    assert_eq!(window, 24 * 3600, "24 hours without a heartbeat");
    assert_eq!(alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"]);
    assert_eq!(alarm["TreatMissingData"], "breaching", "silence is what it alarms on");
    assert_eq!(
        (alarm["ComparisonOperator"].as_str(), alarm["Threshold"].as_u64()),
        (Some("LessThanThreshold"), Some(1))
    );
    assert_eq!(alarm["AlarmActions"][0]["Fn::If"][1]["Ref"], "AlarmTopicArn", "wired to the alarm topic");

    // A fanout that invoked workers succeeds whatever it could not reach (Lambda would run it
    // and every worker again); what it could not hand on is its `Failures`, alarmed per fanout.
    // (The replication function is its own fanout; its workers' lines carry a region too.)
    for fanout in ["FanoutCreateSnapshotFunction", "FanoutCleanSnapshotFunction", "ReplicationFunction"] {
        let alarms: Vec<Value> = resources_of(&t, "AWS::CloudWatch::Alarm")
            .into_iter()
            .map(|(_, a)| a["Properties"].clone())
            .filter(|a| a["MetricName"] == "Failures" && a["Dimensions"][0]["Value"]["Ref"] == fanout)
            .collect();
        assert_eq!(alarms.len(), 1, "{fanout}: one alarm on its Failures");
        let a = &alarms[0];
        assert_eq!(a["Namespace"], ebs_snapper_core::metrics::NAMESPACE);
        assert_eq!(a["Dimensions"].as_array().unwrap().len(), 1, "{a}");
        assert_eq!((a["Statistic"].as_str(), a["Threshold"].as_u64()), (Some("Sum"), Some(1)));
        assert_eq!(a["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
        assert_eq!(a["TreatMissingData"], "notBreaching");
    }
}

fn member_template() -> Value {
    cloudformation("member.json")
}

/// `cloudformation/member.json` (SPEC §13): one role, named by `MemberRoleName`, that only the
/// deployment account's function roles may assume, with the deployment's account id as the
/// `ExternalId`; it may do in EC2 exactly what those roles may do, under the same resources and
/// conditions, and nothing else (the copy keys as in the deployment).
#[test]
fn the_member_role_trusts_only_the_deployments_function_roles_and_may_do_what_they_do() {
    let main = template();
    let member = member_template();
    assert_eq!(member["Parameters"]["MemberRoleName"]["Default"], "ebs-snapper-member");
    assert_eq!(member["Parameters"]["DeploymentAccountId"]["AllowedPattern"], "^[0-9]{12}$");
    let roles = resources_of(&member, "AWS::IAM::Role");
    assert_eq!(roles.len(), 1, "one member role");
    let role = &roles[0].1["Properties"];
    assert_eq!(role["RoleName"], json!({"Ref": "MemberRoleName"}));

    let trust = role["AssumeRolePolicyDocument"]["Statement"].as_array().unwrap();
    assert_eq!(trust.len(), 2, "{trust:?}");
    assert_eq!(trust[0]["Effect"], "Allow");
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    assert_eq!(sub(&trust[0]["Principal"]["AWS"]), "arn:${AWS::Partition}:iam::${DeploymentAccountId}:root");
    assert_eq!(trust[0]["Condition"]["StringEquals"]["sts:ExternalId"], json!({"Ref": "DeploymentAccountId"}));
    // The deployment's function roles, and only they, live under the IAM path of its stack
    // (generated role names are cut to 64 characters, so a name pattern could miss them).
    for (id, r) in resources_of(&main, "AWS::IAM::Role") {
        assert_eq!(sub(&r["Properties"]["Path"]), "/${AWS::StackName}/", "{id}");
    }
    let trusted = &trust[0]["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::If"];
    assert_eq!(trusted[0], "DefaultDeploymentStackName");
    assert_eq!(
        sub(&trusted[1]),
        "arn:${AWS::Partition}:iam::${DeploymentAccountId}:role/ebs-snapper-${DeploymentAccountId}/*",
        "the stack deploy names"
    );
    assert_eq!(sub(&trusted[2]), "arn:${AWS::Partition}:iam::${DeploymentAccountId}:role/${DeploymentStackName}/*");
    assert_eq!(
        member["Conditions"]["DefaultDeploymentStackName"],
        json!({"Fn::Equals": [{"Ref": "DeploymentStackName"}, ""]})
    );
    // Operators' roles (for `--account` from the command line) only when named, each exactly,
    // in the deployment account and with the same ExternalId.
    let operators = &trust[1]["Fn::If"];
    assert_eq!(operators[0], "HasOperators");
    assert_eq!(operators[2], json!({"Ref": "AWS::NoValue"}));
    let operators = &operators[1];
    assert_eq!(operators["Action"], "sts:AssumeRole");
    assert_eq!(sub(&operators["Principal"]["AWS"]), "arn:${AWS::Partition}:iam::${DeploymentAccountId}:root");
    assert_eq!(operators["Condition"]["StringEquals"]["sts:ExternalId"], json!({"Ref": "DeploymentAccountId"}));
    assert_eq!(
        operators["Condition"]["ArnEquals"]["aws:PrincipalArn"],
        json!({"Fn::Split": [",", {"Ref": "OperatorRoleArns"}]})
    );
    assert_eq!(member["Parameters"]["OperatorRoleArns"]["Default"], "");

    // What the member role may do: each action with its resource and condition, as the
    // deployment's roles grant it (the tag-on-create condition is the union of theirs).
    let granted = |statements: Vec<Value>| -> BTreeSet<(String, String, String)> {
        let mut out = BTreeSet::new();
        for s in statements {
            for a in actions(&s).into_iter().filter(|a| a.starts_with("ec2:")) {
                let mut condition = s["Condition"].clone();
                if let Some(create) = condition.pointer_mut("/StringEquals/ec2:CreateAction") {
                    for c in create.as_array().unwrap().clone() {
                        out.insert((a.clone(), s["Resource"].to_string(), c.as_str().unwrap().to_string()));
                    }
                    continue;
                }
                out.insert((a, s["Resource"].to_string(), condition.take().to_string()));
            }
        }
        out
    };
    let member_statements: Vec<Value> = role["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap().clone())
        .map(|s| s.get("Fn::If").map(|f| f[1].clone()).unwrap_or(s))
        .collect();
    for s in &member_statements {
        assert_eq!(s["Effect"], "Allow");
        // The drills' (SPEC §17) are checked statement by statement in their own test.
        if s["Sid"].as_str().is_some_and(|sid| sid.starts_with("Drill")) {
            continue;
        }
        for a in actions(s) {
            // And describing the account's keys, for configure -c's vault check (SPEC §16).
            if a == "kms:DescribeKey" {
                assert_eq!(sub(&s["Resource"]), "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*");
                continue;
            }
            assert!(a.starts_with("ec2:"), "only EC2 in the role's own policy: {a}");
        }
    }
    assert_eq!(granted(member_statements), granted(statements(&main)));

    let keys = &member["Resources"]["CopyKmsKeyPolicy"];
    assert_eq!(keys["Condition"], "HasCopyKmsKeys");
    assert_eq!(keys["Properties"]["Roles"], json!([{"Ref": "MemberRole"}]));
    assert_eq!(
        keys["Properties"]["PolicyDocument"], main["Resources"]["CopyKmsKeyPolicy"]["Properties"]["PolicyDocument"],
        "the copy keys, only through EC2, as in the deployment"
    );
    assert_eq!(
        member["Resources"]["VaultSharePolicy"]["Properties"]["PolicyDocument"],
        main["Resources"]["VaultSharePolicy"]["Properties"]["PolicyDocument"],
        "sharing with the vaults, as in the deployment"
    );
    assert_eq!(resources_of(&member, "AWS::IAM::Policy").len(), 2);
    assert_eq!(member["Resources"].as_object().unwrap().len(), 3, "a role, its optional key and vault-share policies");
}

/// `cloudformation/vault.json` (SPEC §16): one role, named by `VaultRoleName`, that only the
/// deployment's function roles may assume (the deployment's account id as `ExternalId`, no
/// operators); it may copy into the vault with tags at creation, lock and delete only snapshots
/// tagged `ebs-snapper:vault-of`, use the given keys only through EC2, and never unlock.
#[test]
fn the_vault_role_trusts_only_the_function_roles_and_deletes_only_vault_copies() {
    let vault = cloudformation("vault.json");
    let member = member_template();
    assert_eq!(vault["Parameters"]["VaultRoleName"]["Default"], "ebs-snapper-vault");
    let roles = resources_of(&vault, "AWS::IAM::Role");
    let [(_, role)] = &roles[..] else { panic!("one vault role: {roles:?}") };
    let role = &role["Properties"];
    assert_eq!(role["RoleName"], json!({"Ref": "VaultRoleName"}));
    let trust = role["AssumeRolePolicyDocument"]["Statement"].as_array().unwrap();
    assert_eq!(
        trust,
        &vec![member["Resources"]["MemberRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0].clone()],
        "the member role's trust in the deployment's function roles, and nothing else"
    );
    let statements: Vec<Value> = role["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap().to_vec();
    // The drills' statements (SPEC §17) have a test of their own.
    let plain: Vec<&Value> = statements
        .iter()
        .filter(|s| s.get("Fn::If").is_none() && !s["Sid"].as_str().is_some_and(|sid| sid.starts_with("Drill")))
        .collect();
    let by_action = |action: &str| -> Vec<&Value> {
        plain.iter().copied().filter(|s| actions(s).iter().any(|a| a == action)).collect()
    };
    let vault_of = json!({"Null": {"aws:ResourceTag/ebs-snapper:vault-of": "false"}});
    for action in ["ec2:DeleteSnapshot", "ec2:LockSnapshot"] {
        let [s] = &by_action(action)[..] else { panic!("{action}: one statement") };
        assert_eq!(actions(s), vec![action.to_string()], "{action} stands alone");
        assert_eq!(s["Condition"], vault_of, "{action} only on vault copies");
    }
    let [tags] = &by_action("ec2:CreateTags")[..] else { panic!("one CreateTags") };
    assert_eq!(tags["Condition"], json!({"StringEquals": {"ec2:CreateAction": ["CopySnapshot"]}}));
    let mut allowed: Vec<String> = plain.iter().flat_map(|s| actions(s)).collect();
    allowed.sort();
    assert_eq!(
        allowed,
        [
            "ec2:CopySnapshot",
            "ec2:CreateTags",
            "ec2:DeleteSnapshot",
            "ec2:DescribeAvailabilityZones",
            "ec2:DescribeLockedSnapshots",
            "ec2:DescribeSnapshots",
            "ec2:DescribeVolumes",
            "ec2:LockSnapshot"
        ]
    );
    // Keys only through EC2 (the vault's own keys also through EBS, whose direct APIs a drill
    // reads blocks with, SPEC §17), and only when given.
    for s in statements.iter().filter_map(|s| s.get("Fn::If")) {
        let s = &s[1];
        assert!(actions(s).iter().all(|a| a.starts_with("kms:")), "{s}");
        let via = if s["Sid"] == "VaultKeysOnlyThroughEc2AndEbs" {
            json!([{"Fn::Sub": "ec2.*.${AWS::URLSuffix}"}, {"Fn::Sub": "ebs.*.${AWS::URLSuffix}"}])
        } else {
            json!({"Fn::Sub": "ec2.*.${AWS::URLSuffix}"})
        };
        assert_eq!(s["Condition"]["StringLike"]["kms:ViaService"], via, "{s}");
    }
    assert!(!vault.to_string().to_ascii_lowercase().contains("unlock"));
}

/// SPEC §16: a snapshot is shared only with the configured vault accounts (`ec2:Add/userId`,
/// never a group such as `all`, only snapshots tagged for a vault), by the replication role and
/// the member role, through a policy that exists only when vault accounts are given and that
/// also lets them delete their share copies (tagged `ebs-snapper:vault-share-of`); the
/// replication and clean roles reach the vault role by its name.
#[test]
fn snapshots_are_shared_only_with_the_vault_accounts() {
    for (name, t, role) in
        [("ebs-snapper.json", template(), "ReplicationFunctionRole"), ("member.json", member_template(), "MemberRole")]
    {
        let policy = &t["Resources"]["VaultSharePolicy"];
        assert_eq!(policy["Type"], "AWS::IAM::Policy", "{name}");
        assert_eq!(policy["Condition"], "HasVaultAccounts", "{name}: only with vault accounts given");
        assert_eq!(policy["Properties"]["Roles"], json!([{"Ref": role}]), "{name}");
        let statements = policy["Properties"]["PolicyDocument"]["Statement"].as_array().unwrap();
        let [share, share_copies] = &statements[..] else { panic!("{name}: a sharing and a deleting statement") };
        // The share copies of sources on aws/ebs, and only they, may be deleted: tagged as one
        // (given only at creation), for a vault, and without a DeleteOn (no backup is).
        assert_eq!(actions(share_copies), ["ec2:DeleteSnapshot"], "{name}");
        assert_eq!(
            share_copies["Condition"],
            json!({"Null": {
                "aws:ResourceTag/ebs-snapper:vault-share-of": "false",
                "aws:ResourceTag/ebs-snapper:vault-to": "false",
                "aws:ResourceTag/DeleteOn": "true"
            }}),
            "{name}"
        );
        assert_eq!(actions(share), ["ec2:ModifySnapshotAttribute"]);
        assert!(sub(&share["Resource"][0]).contains(":snapshot/"));
        let c = &share["Condition"];
        let vaults = json!({"Fn::Split": [",", {"Ref": "VaultAccountIds"}]});
        assert_eq!(c["ForAllValues:StringEquals"]["ec2:Add/userId"], vaults, "{name}");
        assert_eq!(c["ForAllValues:StringEquals"]["ec2:Remove/userId"], vaults, "{name}");
        assert_eq!(c["Null"]["ec2:Add/group"], "true", "{name}: never public");
        assert_eq!(
            c["Null"]["aws:ResourceTag/ebs-snapper:vault-to"], "false",
            "{name}: only snapshots tagged for a vault"
        );
        assert_eq!(
            t["Conditions"]["HasVaultAccounts"],
            json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "VaultAccountIds"}, ""]}]})
        );
        // Nothing else shares a snapshot.
        for (id, p) in resources_of(&t, "AWS::IAM::Policy").into_iter().chain(resources_of(&t, "AWS::IAM::Role")) {
            let text = p.to_string();
            assert!(id == "VaultSharePolicy" || !text.contains("ec2:ModifySnapshotAttribute"), "{name}: {id}");
        }
    }
    let t = template();
    for function in ["ReplicationFunction", "CleanSnapshotFunction"] {
        let reach = role_statements(&t, function).into_iter().find(|s| s["Sid"] == "ReachVaults").expect(function);
        assert_eq!(sub(&reach["Resource"]), "arn:${AWS::Partition}:iam::*:role/${VaultRoleName}");
        assert_eq!(
            t["Resources"][function]["Properties"]["Environment"]["Variables"]["VAULT_ROLE_NAME"],
            json!({"Ref": "VaultRoleName"})
        );
    }
}

/// The statement `sid` among `statements`.
fn statement<'a>(statements: &'a [Value], sid: &str) -> &'a Value {
    statements.iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no statement {sid}"))
}

/// The restore drills' statements (SPEC §17), the same in the clean role, the member role and
/// (on vault copies) the vault role: a volume only with the drill tag and from the tool's
/// snapshots, tags only at its creation, deletion only of drill volumes, the snapshot tagged
/// only with the result, blocks read only of the tool's snapshots.
#[test]
fn drills_make_and_delete_only_drill_volumes_and_read_only_the_tools_snapshots() {
    let t = template();
    let clean = role_statements(&t, "CleanSnapshotFunction");
    let member = member_template()["Resources"]["MemberRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .unwrap()
        .clone();
    let vault = cloudformation("vault.json")["Resources"]["VaultRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .unwrap()
        .clone();
    for (who, statements, own) in
        [("clean", &clean, "DeleteOn"), ("member", &member, "DeleteOn"), ("vault", &vault, "ebs-snapper:vault-of")]
    {
        let own_tag = format!("aws:ResourceTag/{own}");
        let s = statement(statements, "DrillVolumesOnlyTagged");
        assert_eq!(
            (actions(s), sub(&s["Resource"][0])),
            (
                vec!["ec2:CreateVolume".to_string()],
                "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:volume/*".to_string()
            ),
            "{who}"
        );
        // A drill volume names its snapshot (`snap-...`), and is gp3.
        assert_eq!(
            s["Condition"],
            json!({"StringLike": {"aws:RequestTag/ebs-snapper:drill": "snap-*"}, "StringEquals": {"ec2:VolumeType": "gp3"}}),
            "{who}"
        );
        let s = statement(statements, "DrillFromOwnSnapshots");
        assert_eq!(sub(&s["Resource"][0]), "arn:${AWS::Partition}:ec2:*::snapshot/*", "{who}");
        assert_eq!(s["Condition"]["Null"][&own_tag], "false", "{who}");
        let s = statement(statements, "DrillTagVolumesOnlyWhileCreating");
        assert_eq!(s["Condition"], json!({"StringEquals": {"ec2:CreateAction": ["CreateVolume"]}}), "{who}");
        let s = statement(statements, "DrillTagVolumesOnlyWhileCreating");
        assert_eq!(sub(&s["Resource"][0]), "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:volume/*", "{who}");
        let s = statement(statements, "DrillTagOnlyTheResult");
        assert_eq!(sub(&s["Resource"][0]), "arn:${AWS::Partition}:ec2:*::snapshot/*", "{who}");
        assert_eq!(s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"], json!(["ebs-snapper:drill"]), "{who}");
        assert_eq!(s["Condition"]["Null"][&own_tag], "false", "{who}");
        let s = statement(statements, "DrillDeleteOnlyDrillVolumes");
        assert_eq!(actions(s), ["ec2:DeleteVolume"], "{who}");
        // Not a volume someone restored with a drilled snapshot's tags (its value is a result).
        assert_eq!(s["Condition"], json!({"StringLike": {"aws:ResourceTag/ebs-snapper:drill": "snap-*"}}), "{who}");
        assert_eq!(sub(&s["Resource"][0]), "arn:${AWS::Partition}:ec2:*:${AWS::AccountId}:volume/*", "{who}");
        let s = statement(statements, "DrillReadOnlyOwnSnapshotBlocks");
        assert_eq!(actions(s), ["ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock"], "{who}");
        assert_eq!(s["Condition"], json!({"Null": {own_tag.clone(): "false"}}), "{who}");
        // No other statement grants what these bound.
        for other in statements.iter().filter(|s| !s["Sid"].as_str().unwrap_or("").starts_with("Drill")) {
            let other = other.get("Fn::If").map(|f| &f[1]).unwrap_or(other);
            for a in ["ec2:CreateVolume", "ec2:DeleteVolume", "ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock"] {
                assert!(!actions(other).contains(&a.to_string()), "{who}: {a} in {other}");
            }
        }
    }
    // Keys only through EC2 and EBS, and grants only for AWS resources.
    for (who, statements) in [("clean", &clean), ("member", &member)] {
        let via = json!([{"Fn::Sub": "ec2.*.${AWS::URLSuffix}"}, {"Fn::Sub": "ebs.*.${AWS::URLSuffix}"}]);
        let s = statement(statements, "DrillKeysOnlyThroughEc2AndEbs");
        assert_eq!(s["Condition"]["StringLike"]["kms:ViaService"], via, "{who}");
        assert!(
            actions(s).contains(&"kms:Decrypt".to_string()) && !actions(s).contains(&"kms:CreateGrant".to_string())
        );
        let s = statement(statements, "DrillGrantsOnlyForEbs");
        assert_eq!(actions(s), ["kms:CreateGrant"], "{who}");
        assert_eq!(s["Condition"]["StringLike"]["kms:ViaService"], via, "{who}");
        assert_eq!(s["Condition"]["Bool"]["kms:GrantIsForAWSResource"], "true", "{who}");
        assert_eq!(sub(&s["Resource"]), "arn:${AWS::Partition}:kms:*:${AWS::AccountId}:key/*", "{who}");
    }
    let keys = vault
        .iter()
        .find_map(|s| s.get("Fn::If").map(|f| &f[1]).filter(|s| s["Sid"] == "VaultKeysOnlyThroughEc2AndEbs"));
    let via = &keys.expect("the vault keys' statement")["Condition"]["StringLike"]["kms:ViaService"];
    assert_eq!(via.as_array().map(Vec::len), Some(2), "EC2 and EBS: {via}");
}

#[test]
fn a_failed_drill_raises_an_alarm_and_the_dashboard_shows_the_drills() {
    let t = template();
    let alarm = &t["Resources"]["DrillsFailedAlarm"]["Properties"];
    assert_eq!(alarm["Namespace"], ebs_snapper_core::metrics::NAMESPACE);
    assert_eq!(alarm["MetricName"], "DrillsFailed");
    assert_eq!(alarm["Dimensions"], json!([{"Name": "function", "Value": {"Ref": "CleanSnapshotFunction"}}]));
    assert_eq!((alarm["Statistic"].as_str(), alarm["Threshold"].as_u64()), (Some("Sum"), Some(1)));
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    assert_eq!(alarm["AlarmActions"][0]["Fn::If"][1]["Ref"], "AlarmTopicArn");
    // The clean worker emits DrillsFailed with the function alone as its dimension, which the
    // alarm reads.
    let report = ebs_snapper_core::RegionReport::new(ebs_snapper_core::Job::Clean, "us-east-1", false);
    let emf = ebs_snapper_core::metrics::emf("f", "123456789012", &report, 0);
    let by_function = emf["_aws"]["CloudWatchMetrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["Dimensions"] == json!([["function"]]))
        .expect("a directive by function");
    assert!(by_function["Metrics"].as_array().unwrap().iter().any(|m| m["Name"] == "DrillsFailed"));
    let body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"].as_str().unwrap();
    assert!(body.contains(r#"MetricName=\"Drills\""#) && body.contains(r#"MetricName=\"DrillsFailed\""#));
}
