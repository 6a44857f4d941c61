//! `ebs-snapper deploy` into the AWS emulator: bucket, uploads, stack, function code and versions.

use crate::support;

use std::path::Path;

use support::{cloudformation, root, text, Account};

const FUNCTIONS: [&str; 5] = ["fanout-snapshot", "create-snapshot", "fanout-clean", "clean-snapshot", "replication"];

/// Small stand-in zips (the deploy logic does not look inside them; packaging is tested apart).
fn artifacts(tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in FUNCTIONS {
        std::fs::create_dir_all(dir.path().join(f)).unwrap();
        std::fs::write(dir.path().join(f).join("bootstrap.zip"), format!("zip of {f} {tag}")).unwrap();
    }
    dir
}

fn deploy(acct: &Account, region: &str, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = acct
        .cli()
        .current_dir(root())
        .args(["-t", region, "deploy", "-n", "--poll-ms", "100", "--artifacts"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn stack_parameters(acct: &Account, region: &str) -> std::collections::BTreeMap<String, String> {
    let cfn = aws_sdk_cloudformation::Client::new(&acct.sdk(region).await);
    let out = cfn.describe_stacks().stack_name(format!("ebs-snapper-{}", acct.id)).send().await.unwrap();
    out.stacks()[0]
        .parameters()
        .iter()
        .map(|p| (p.parameter_key().unwrap().to_string(), p.parameter_value().unwrap_or("").to_string()))
        .collect()
}

/// A parameter for a stack the test creates or updates itself.
fn cfn_parameter(key: &str, value: &str) -> aws_sdk_cloudformation::types::Parameter {
    aws_sdk_cloudformation::types::Parameter::builder().parameter_key(key).parameter_value(value).build()
}

/// The logical ids of the resources of the account's stack.
async fn logical_ids(acct: &Account, region: &str) -> Vec<String> {
    let cfn = aws_sdk_cloudformation::Client::new(&acct.sdk(region).await);
    let out = cfn.list_stack_resources().stack_name(format!("ebs-snapper-{}", acct.id)).send().await.unwrap();
    out.stack_resource_summaries().iter().filter_map(|r| r.logical_resource_id().map(str::to_string)).collect()
}

async fn versions(acct: &Account, function: &str) -> Vec<String> {
    let lambda = aws_sdk_lambda::Client::new(&acct.sdk("us-east-1").await);
    let out = lambda.list_versions_by_function().function_name(function).send().await.unwrap();
    out.versions().iter().filter_map(|v| v.version().map(str::to_string)).collect()
}

#[tokio::test]
async fn first_deploy_creates_everything_and_a_second_changes_nothing() {
    let acct = Account::new().await;
    let a = acct.id.clone();
    let zips = artifacts("v1");
    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &[]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(&format!("bucket ebs-snapper-{a} created (private, encrypted, versioned, TLS only)")),
        "{out}"
    );
    let s3 = aws_sdk_s3::Client::new(&acct.sdk("us-east-1").await);
    let bucket = format!("ebs-snapper-{a}");
    let versioning = s3.get_bucket_versioning().bucket(&bucket).send().await.unwrap();
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    let policy = s3.get_bucket_policy().bucket(&bucket).send().await.unwrap();
    assert!(policy.policy().unwrap().contains("aws:SecureTransport"), "TLS only");
    assert!(out.contains(&format!("uploaded s3://ebs-snapper-{a}/ebs-snapper/create-snapshot.zip")), "{out}");
    assert!(out.contains(&format!("stack ebs-snapper-{a}: CREATE_COMPLETE")), "{out}");
    assert!(err.contains("CREATE_IN_PROGRESS") || err.contains("creating"), "progress is shown: {err}");

    // The table, the five functions and the rules exist; replication starts disabled.
    let ddb = acct.dynamodb("us-east-1").await;
    ddb.describe_table().table_name("ebs_snapshot_configuration").send().await.expect("table");
    let lambda = aws_sdk_lambda::Client::new(&acct.sdk("us-east-1").await);
    for f in FUNCTIONS {
        let got = lambda.get_function().function_name(format!("ebs-snapper-{a}-{f}")).send().await.expect("function");
        assert_eq!(got.configuration().unwrap().runtime().map(|r| r.as_str()), Some("provided.al2023"));
    }
    assert!(!acct.rule_enabled("us-east-1", &format!("ebs-snapper-{a}-replication")).await);
    // The deployed table is usable at once.
    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(text(&out.stdout), "No configurations found\n");

    // Nothing changed: no upload, no stack change, no new version.
    let before = acct.recorded().len();
    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("stack ebs-snapper-{a}: no changes")), "{out}");
    assert!(out.contains("code unchanged"), "{out}");
    let calls: Vec<String> = acct.recorded().into_iter().skip(before).map(|r| r.action).collect();
    assert!(!calls.iter().any(|c| c.starts_with("PUT ")), "no upload: {calls:?}");
    assert!(!calls.iter().any(|c| c.contains("/versions")), "no new version: {calls:?}");
    assert_eq!(versions(&acct, &format!("ebs-snapper-{a}-create-snapshot")).await, vec!["$LATEST"]);
}

#[tokio::test]
async fn changed_zip_updates_code_publishes_and_keeps_two_versions() {
    let acct = Account::new().await;
    let a = acct.id.clone();
    let (code, _, err) = deploy(&acct, "us-east-1", artifacts("v1").path(), &[]);
    assert_eq!(code, 0, "{err}");
    for n in 2..=4 {
        let zips = artifacts(&format!("v{n}"));
        let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(&format!(
                "function ebs-snapper-{a}-create-snapshot: code updated, published version {}",
                n - 1
            )),
            "{out}"
        );
    }
    let mut v = versions(&acct, &format!("ebs-snapper-{a}-create-snapshot")).await;
    v.sort();
    assert_eq!(v, vec!["$LATEST", "2", "3"], "the newest two versions are kept");
}

#[tokio::test]
async fn parameter_override_changes_only_that_parameter() {
    let acct = Account::new().await;
    let zips = artifacts("v1");
    // The first release's `MemorySize` still means every function; a function's own parameter wins.
    let (code, _, err) = deploy(
        &acct,
        "us-east-1",
        zips.path(),
        &["--parameter", "MemorySize=256", "--parameter", "LambdaMemoryClean=512"],
    );
    assert_eq!(code, 0, "{err}");
    let before = stack_parameters(&acct, "us-east-1").await;
    assert!(!before.contains_key("MemorySize"));
    assert_eq!(before["LambdaMemoryFanout"], "256");
    assert_eq!(before["LambdaMemorySnapshot"], "256");
    assert_eq!(before["LambdaMemoryReplication"], "256");
    assert_eq!(before["LambdaMemoryClean"], "512");
    let (code, out, err) =
        deploy(&acct, "us-east-1", zips.path(), &["--parameter", "CreateScheduleExpression=rate(1 hour)"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let after = stack_parameters(&acct, "us-east-1").await;
    assert_eq!(after["CreateScheduleExpression"], "rate(1 hour)");
    for (k, v) in &before {
        if k != "CreateScheduleExpression" {
            assert_eq!(&after[k], v, "{k} kept its value");
        }
    }
    let (code, _, err) = deploy(&acct, "us-east-1", zips.path(), &["--parameter", "NoSuchParameter=1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--parameter NoSuchParameter: the template has no such parameter"), "{err}");
    let (code, _, err) = deploy(&acct, "us-east-1", zips.path(), &["--parameter", "novalue"]);
    assert_eq!(code, 2, "{err}");
}

/// A stack deployed by the first release has one `MemorySize`; the next deploy gives its value
/// to each function's own memory parameter instead of falling back to the defaults.
#[tokio::test]
async fn a_first_release_stacks_memory_size_carries_over() {
    let acct = Account::new().await;
    let zips = artifacts("v1");
    // The code bucket and zips, without a stack.
    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &["-o"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The first release's template: the four memory parameters were one `MemorySize`.
    let mut old = cloudformation("ebs-snapper.json");
    let params = old["Parameters"].as_object_mut().unwrap();
    let memory = params["LambdaMemoryFanout"].clone();
    params.retain(|k, _| !k.starts_with("LambdaMemory"));
    params.insert("MemorySize".into(), memory);
    for (_, r) in old["Resources"].as_object_mut().unwrap().iter_mut() {
        if r["Type"] == "AWS::Lambda::Function" {
            r["Properties"]["MemorySize"] = serde_json::json!({"Ref": "MemorySize"});
        }
    }
    let cfn = aws_sdk_cloudformation::Client::new(&acct.sdk("us-east-1").await);
    let stack = format!("ebs-snapper-{}", acct.id);
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(old.to_string())
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
        .parameters(cfn_parameter("CodeBucket", &format!("ebs-snapper-{}", acct.id)))
        .parameters(cfn_parameter("MemorySize", "384"))
        .send()
        .await
        .expect("the first release's stack");
    let before = stack_parameters(&acct, "us-east-1").await;
    assert_eq!(before.get("MemorySize").map(String::as_str), Some("384"), "{before:?}");
    assert!(!before.contains_key("LambdaMemoryFanout"), "{before:?}");

    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let after = stack_parameters(&acct, "us-east-1").await;
    for p in ["LambdaMemoryFanout", "LambdaMemorySnapshot", "LambdaMemoryClean", "LambdaMemoryReplication"] {
        assert_eq!(after[p], "384", "{p}");
    }
}

/// Without `KmsKeyArn` the stack has no key policy; an update that gives one adds it. (Taking
/// the key away again is an ordinary conditional delete on AWS; the emulator cannot update a
/// stack whose conditional IAM policy goes away, so that direction is not run here.)
#[tokio::test]
async fn an_optional_kms_key_is_applied_by_an_update() {
    let acct = Account::new().await;
    let zips = artifacts("v1");
    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!logical_ids(&acct, "us-east-1").await.contains(&"KmsKeyPolicy".to_string()));

    let key = format!("arn:aws:kms:us-east-1:{}:key/0b6c0b0e-1111-4222-8333-444455556666", acct.id);
    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &["--parameter", &format!("KmsKeyArn={key}")]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("UPDATE_COMPLETE"), "{out}");
    // (The emulator's stacks do not pass `KmsKeyArn` on to the functions; the template test
    // checks that every function, log group, the table and the queue use it.)
    assert_eq!(stack_parameters(&acct, "us-east-1").await["KmsKeyArn"], key);
    assert!(logical_ids(&acct, "us-east-1").await.contains(&"KmsKeyPolicy".to_string()));
}

#[tokio::test]
async fn tool_region_puts_bucket_and_stack_there() {
    let acct = Account::new().await;
    let a = acct.id.clone();
    let (code, out, err) = deploy(&acct, "eu-west-1", artifacts("v1").path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let s3 = aws_sdk_s3::Client::new(&acct.sdk("eu-west-1").await);
    let loc = s3
        .get_bucket_location()
        .bucket(format!("ebs-snapper-{a}-eu-west-1"))
        .send()
        .await
        .expect("bucket in eu-west-1");
    assert_eq!(loc.location_constraint().map(|c| c.as_str()), Some("eu-west-1"));
    assert_eq!(stack_parameters(&acct, "eu-west-1").await["CodeBucket"], format!("ebs-snapper-{a}-eu-west-1"));
    let cfn = aws_sdk_cloudformation::Client::new(&acct.sdk("us-east-1").await);
    assert!(cfn.describe_stacks().stack_name(format!("ebs-snapper-{a}")).send().await.is_err(), "nothing in us-east-1");
}

#[tokio::test]
async fn missing_zip_is_one_clear_line_and_touches_nothing() {
    let acct = Account::new().await;
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = deploy(&acct, "us-east-1", empty.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("fanout-snapshot/bootstrap.zip") && err.contains("scripts/package.sh"), "{err}");
    assert!(
        acct.recorded().iter().all(|r| r.action == "GetCallerIdentity"),
        "no AWS change: {:?}",
        acct.recorded().iter().map(|r| &r.action).collect::<Vec<_>>()
    );
}

/// Deploy as AWS answers it: S3 ETags that are not MD5s (SSE-KMS), and Lambda refusing to
/// publish a version while the code update it follows is still in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_against_the_stricter_aws_skips_unchanged_code_and_waits_for_updates() {
    use support::fault_proxy::{FaultPlan, FaultProxy, Strict};
    let acct = Account::new().await;
    let a = acct.id.clone();
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict {
        lambda_update_for: std::time::Duration::from_secs(2),
        s3_etag_not_md5: true,
        ..Strict::default()
    });
    let through_proxy = |dir: &Path| {
        let out = acct
            .cli()
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .current_dir(root())
            .args(["-t", "us-east-1", "deploy", "-n", "--poll-ms", "100", "--artifacts"])
            .arg(dir)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    };
    let v1 = artifacts("v1");
    let (code, out, err) = through_proxy(v1.path());
    assert_eq!(code, 0, "{out}\n{err}");
    // The same zips again: the ETags are no MD5s, yet nothing is uploaded.
    let (code, out, err) = through_proxy(v1.path());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("uploaded"), "unchanged objects are not uploaded again: {out}");
    assert!(out.contains(&format!("unchanged s3://ebs-snapper-{a}/ebs-snapper/create-snapshot.zip")), "{out}");
    // New code: each version is published once its update is no longer in progress.
    let (code, out, err) = through_proxy(artifacts("v2").path());
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("function ebs-snapper-{a}-create-snapshot: code updated, published version 1")),
        "{out}"
    );
}

/// Moving from the Python tool's live stack: same stack name, its table under the logical id
/// `EbsSnapshotConfigurationTable` without a DeletionPolicy. An update in place would delete
/// every configuration; deploy refuses it, and `--replace-python-stack` moves over keeping
/// the table and every item.
#[tokio::test]
async fn deploy_over_the_python_stack_keeps_the_table_and_every_configuration() {
    let acct = Account::new().await;
    let a = acct.id.clone();
    let cfn = aws_sdk_cloudformation::Client::new(&acct.sdk("us-east-1").await);
    let stack = format!("ebs-snapper-{a}");
    let template = std::fs::read_to_string(root().join("crates/cli/tests/fixtures/python-stack.json")).unwrap();
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(template)
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityIam)
        // Values an operator set on the Python stack, under its parameter names.
        .parameters(cfn_parameter("LambdaMemorySnapshot", "512"))
        .parameters(cfn_parameter("CreateScheduleExpression", "rate(1 hour)"))
        .send()
        .await
        .expect("the Python stack");
    for _ in 0..100 {
        let out = cfn.describe_stacks().stack_name(&stack).send().await.unwrap();
        if out.stacks()[0].stack_status().unwrap().as_str() == "CREATE_COMPLETE" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let python_config = r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "4 days", "minimum": "5", "frequency": "0 5 * * 1 *"}}"#;
    acct.put_raw("us-east-1", "weekly", python_config).await;
    acct.put_raw("us-east-1", "web", &support::backup_config("1 day", "")).await;
    let items = acct.items("us-east-1").await;
    assert_eq!(items.len(), 2);

    // Without the flag, with or without CreateTable=false: refused, nothing changed.
    for extra in [&[][..], &["--parameter", "CreateTable=false"][..]] {
        let (code, out, err) = deploy(&acct, "us-east-1", artifacts("v1").path(), extra);
        assert_eq!(code, 1, "{out}\n{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("is the Python tool's") && err.contains("--replace-python-stack"), "{err}");
        assert_eq!(acct.items("us-east-1").await, items, "every configuration is still there");
        assert!(logical_ids(&acct, "us-east-1").await.contains(&"EbsSnapshotConfigurationTable".to_string()));
    }

    // With it: the table and its items stay, and this tool's stack runs on them.
    let (code, out, err) = deploy(&acct, "us-east-1", artifacts("v1").path(), &["--replace-python-stack"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("table ebs_snapshot_configuration retained"), "{out}");
    assert!(out.contains(&format!("stack {stack}: CREATE_COMPLETE")), "{out}");
    assert_eq!(acct.items("us-east-1").await, items, "every configuration is still there");
    let params = stack_parameters(&acct, "us-east-1").await;
    assert_eq!(params["CreateTable"], "false");
    // The parameters both tools have keep the Python stack's values, set or default.
    assert_eq!(params["LambdaMemorySnapshot"], "512");
    assert_eq!(params["LambdaMemoryClean"], "256");
    assert_eq!(params["LambdaMemoryFanout"], "128");
    assert_eq!(params["CreateScheduleExpression"], "rate(1 hour)");
    let lambda = aws_sdk_lambda::Client::new(&acct.sdk("us-east-1").await);
    let create = lambda.get_function_configuration().function_name(format!("{stack}-create-snapshot")).send().await;
    assert_eq!(create.unwrap().memory_size(), Some(512));
    let logical = logical_ids(&acct, "us-east-1").await;
    assert!(
        logical.iter().any(|id| id == "CreateSnapshotFunction")
            && !logical.iter().any(|id| id == "EbsSnapshotConfigurationTable"),
        "{logical:?}"
    );
    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("aws_account_id,id\n{a},web\n{a},weekly\n"));
    // The jobs read them: the Python tool's weekly cron (1 = Monday) is understood.
    let out = acct.cli().args(["snapshot", "--region", "us-east-1", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("invalid"), "{}", text(&out.stderr));

    // A later deploy is an ordinary update of this tool's stack.
    let (code, out, err) = deploy(&acct, "us-east-1", artifacts("v1").path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(acct.items("us-east-1").await, items);
}

/// The bucket name is predictable: someone else may own `ebs-snapper-ACCOUNT`. Deploy must
/// then stop with a line naming the problem, never upload into it.
#[tokio::test]
async fn a_code_bucket_of_another_account_is_refused_and_never_written() {
    let acct = Account::new().await;
    let other = Account::new().await;
    let squatted = format!("ebs-snapper-{}", acct.id);
    let s3 = aws_sdk_s3::Client::new(&other.sdk("us-east-1").await);
    s3.create_bucket().bucket(&squatted).send().await.expect("the other account takes the name");
    let (code, out, err) = deploy(&acct, "us-east-1", artifacts("v1").path(), &[]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("bucket {squatted}")) && err.contains("--bucket"), "{err}");
    let objects = s3.list_objects_v2().bucket(&squatted).send().await.unwrap();
    assert_eq!(objects.key_count(), Some(0), "nothing was uploaded into it");
    assert!(!acct.recorded().iter().any(|r| r.action.starts_with("PUT ")), "no upload was even tried");
    // --bucket takes another name, which this account creates and owns.
    let mine = format!("ebs-snapper-code-{}", acct.id);
    let (code, out, err) = deploy(&acct, "us-east-1", artifacts("v1").path(), &["--bucket", &mine]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(stack_parameters(&acct, "us-east-1").await["CodeBucket"], mine);
}

/// Deploy works from any directory: the template and function list are built into the binary,
/// and the zips are given with --artifacts.
#[tokio::test]
async fn deploy_works_from_any_directory() {
    let acct = Account::new().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let zips = artifacts("v1");
    let out = acct
        .cli()
        .current_dir(elsewhere.path())
        .args(["deploy", "-n", "--poll-ms", "100", "--artifacts"])
        .arg(zips.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("stack ebs-snapper-{}: CREATE_COMPLETE", acct.id)));
    // A file given instead that is not there: one line, exit 2, nothing done.
    let out = acct
        .cli()
        .current_dir(elsewhere.path())
        .args(["deploy", "-n", "--template", "no-such.json", "--artifacts"])
        .arg(zips.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read no-such.json"), "{}", text(&out.stderr));
}

/// The stack's Architecture follows the zips (scripts/package.sh writes what it built for);
/// a parameter that says otherwise is refused before anything is done.
#[tokio::test]
async fn the_stacks_architecture_follows_the_zips() {
    let acct = Account::new().await;
    let zips = artifacts("v1");
    std::fs::write(zips.path().join("ARCH"), "arm64\n").unwrap();
    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &["--parameter", "Architecture=x86_64"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("--parameter Architecture=x86_64, but the zips") && err.contains("built for arm64"), "{err}");
    assert!(acct.recorded().iter().all(|r| r.action == "GetCallerIdentity"), "nothing was done");
    let (code, out, err) = deploy(&acct, "us-east-1", zips.path(), &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(stack_parameters(&acct, "us-east-1").await["Architecture"], "arm64");
}

/// `deploy --member DEPLOYMENT` (SPEC §13), with the member account's credentials: the member
/// stack and its role, trusting only the deployment's function roles with its account id as the
/// `ExternalId`; no bucket, upload or function; a second deploy changes nothing; bad use is one
/// line and changes nothing.
#[tokio::test]
async fn member_deploy_creates_the_role_the_deployment_assumes() {
    let member = Account::new().await;
    let deployment = "111122223333";
    let run = |extra: &[&str]| {
        let out = member
            .cli()
            .args(["-t", "us-east-1", "deploy", "--poll-ms", "100", "--member", deployment])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    };
    // Usage errors exit 2; a parameter the template lacks is refused as the main deploy does.
    for (bad, exit) in [
        (vec!["-a", "123456789012"], 2),
        (vec!["-n"], 2),
        (vec!["--parameter", "DeploymentAccountId=222233334444"], 2),
        (vec!["--parameter", "NoSuchParameter=1"], 1),
    ] {
        let (code, _, err) = run(&bad);
        assert_eq!(code, exit, "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
    }
    let out = member.cli().args(["deploy", "--member", "1234"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--member \"1234\" is not an AWS account id (12 digits)"),
        "{}",
        text(&out.stderr)
    );
    let cfn = aws_sdk_cloudformation::Client::new(&member.sdk("us-east-1").await);
    assert!(cfn.describe_stacks().stack_name("ebs-snapper-member").send().await.is_err(), "bad use creates no stack");

    let (code, out, err) = run(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stack ebs-snapper-member: CREATE_COMPLETE"), "{out}");
    let (arn, trust) = member.role("ebs-snapper-member").await.expect("the member role");
    assert!(arn.contains(&member.id), "{arn}");
    let statement = &trust["Statement"][0];
    assert_eq!(statement["Principal"]["AWS"], format!("arn:aws:iam::{deployment}:root"), "{trust}");
    assert_eq!(statement["Condition"]["StringEquals"]["sts:ExternalId"], deployment, "{trust}");
    assert_eq!(
        statement["Condition"]["ArnLike"]["aws:PrincipalArn"],
        format!("arn:aws:iam::{deployment}:role/ebs-snapper-{deployment}/*"),
        "the deployment's function roles, under its stack's path: {trust}"
    );
    // No bucket, no code, no function in the member: by the member's state, and by the services
    // its requests went to (the recording names S3 and Lambda calls by method and path).
    let services: Vec<String> = member
        .recorded()
        .iter()
        .filter_map(|r| {
            let auth = r.headers.get("Authorization")?.as_str()?;
            Some(auth.split("Credential=").nth(1)?.split('/').nth(3)?.to_string())
        })
        .collect();
    assert!(services.iter().any(|s| s == "cloudformation"), "the recording saw the deploy: {services:?}");
    assert!(!services.iter().any(|s| s == "s3" || s == "lambda"), "{services:?}");
    let s3 = aws_sdk_s3::Client::new(&member.sdk("us-east-1").await);
    assert!(s3.list_buckets().send().await.unwrap().buckets().is_empty(), "no bucket in the member");
    let lambda = aws_sdk_lambda::Client::new(&member.sdk("us-east-1").await);
    assert!(lambda.list_functions().send().await.unwrap().functions().is_empty(), "no function in the member");

    let (code, out, err) = run(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stack ebs-snapper-member: no changes"), "{out}");
}
