//! IAM as AWS evaluates it (SPEC §15): the functions run under their own roles from the
//! template, behind the test bed's IAM gate (`support::iam`). These tests show the gate refuses
//! what a role does not allow, as AWS refuses it, so that the other tests' passing means the
//! roles allow what the functions do.

use crate::support;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use support::fault_proxy::{FaultPlan, FaultProxy, Strict};
use support::scenes::plant_monthly;
use support::{date, Account};

const R: &str = "us-east-1";

async fn ec2_as(acct: &Account, binary: &str) -> (aws_sdk_ec2::Client, support::iam::IamGate) {
    let (aws, gate) = acct.aws_as(R, binary, &[]).await;
    (aws_sdk_ec2::Client::new(&aws.in_region(R)), gate)
}

fn tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder().key(key).value(value).build()
}

#[tokio::test]
async fn a_role_may_do_only_what_the_template_grants_it() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let volume = acct.volumes_of(R, &i).await[0].clone();
    let dated = acct.make_snapshot(R, &volume, &[("DeleteOn", &date(-1))]).await;
    let undated = acct.make_snapshot(R, &volume, &[("Name", "someone else's")]).await;

    // The clean role deletes only snapshots carrying DeleteOn (aws:ResourceTag).
    let (clean, gate) = ec2_as(&acct, "clean-snapshot").await;
    let err = clean.delete_snapshot().snapshot_id(&undated).send().await.expect_err("not dated");
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    clean.delete_snapshot().snapshot_id(&dated).send().await.expect("a dated snapshot");
    assert_eq!(gate.refused().len(), 1, "{:?}", gate.refused());
    assert!(gate.refused()[0].starts_with("ec2:DeleteSnapshot on resource arn:aws:ec2:us-east-1::snapshot/"));
    let left: Vec<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(left, std::slice::from_ref(&undated));

    // The snapshot role creates snapshots with tags at creation (ec2:CreateAction), never tags
    // one that exists, never deletes; and no role runs what the gate cannot map (fail closed).
    let (create, gate) = ec2_as(&acct, "create-snapshot").await;
    let specification = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Snapshot)
        .tags(tag("DeleteOn", &date(5)))
        .build();
    create.create_snapshot().volume_id(&volume).tag_specifications(specification).send().await.expect("create");
    let err = create.create_tags().resources(&undated).tags(tag("DeleteOn", "2000-01-01")).send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    let err = create.delete_snapshot().snapshot_id(&undated).send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    let err = create.terminate_instances().instance_ids(&i).send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    assert_eq!(gate.refused().len(), 3, "{:?}", gate.refused());
    assert!(acct.snapshots(R).await.iter().all(|s| s.tag("DeleteOn") != Some("2000-01-01")));

    // DynamoDB: a worker writes only lease items (dynamodb:LeadingKeys), never a configuration.
    let (aws, gate) = acct.aws_as(R, "create-snapshot", &[]).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws.in_region(R));
    let put = |key: String, id: &str| {
        dynamodb
            .put_item()
            .table_name(support::TABLE)
            .item("aws_account_id", AttributeValue::S(key))
            .item("id", AttributeValue::S(id.into()))
            .send()
    };
    let err = put(acct.id.clone(), "planted").await.unwrap_err();
    assert_eq!(aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&err), Some("AccessDeniedException"), "{err:?}");
    put(format!("lease#{}", acct.id), "snapshot/us-east-1").await.expect("a lease item");
    assert_eq!(gate.refused().len(), 1, "{:?}", gate.refused());
    assert!(acct.items(R).await.iter().all(|(id, _)| id != "planted"), "no configuration was written");
}

/// The clean role drills (SPEC §17) only as the template says: a volume only with the
/// `ebs-snapper:drill` tag and only from a snapshot of the tool's (`DeleteOn`), deletes only drill
/// volumes, tags a snapshot only with the drill's result, and reads blocks only of the tool's
/// snapshots.
#[tokio::test]
async fn the_clean_role_drills_only_with_the_drill_tag_and_the_tools_snapshots() {
    let acct = Account::new().await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let volume = acct.volumes_of(R, &i).await[0].clone();
    let dated = acct.make_snapshot(R, &volume, &[("DeleteOn", &date(5))]).await;
    let undated = acct.make_snapshot(R, &volume, &[("Name", "someone else's")]).await;
    let (clean, gate) = ec2_as(&acct, "clean-snapshot").await;
    let drill_tags = |snapshot: &str| {
        aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
            .tags(tag("ebs-snapper:drill", snapshot))
            .tags(tag("DeleteOn", &date(1)))
            .build()
    };
    let gp3 = aws_sdk_ec2::types::VolumeType::Gp3;
    let create = |snapshot: &str| {
        clean.create_volume().availability_zone(format!("{R}a")).snapshot_id(snapshot).volume_type(gp3.clone())
    };
    let made = create(&dated).tag_specifications(drill_tags(&dated)).send().await.expect("a drill volume");
    let drill_volume = made.volume_id().unwrap().to_string();
    let refused = [
        create(&dated)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.code().map(str::to_string))
            .expect_err("without the drill tag"),
        create(&undated)
            .tag_specifications(drill_tags(&undated))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.code().map(str::to_string))
            .expect_err("not the tool's"),
        clean
            .delete_volume()
            .volume_id(&volume)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.code().map(str::to_string))
            .expect_err("not a drill volume"),
        clean
            .create_tags()
            .resources(&dated)
            .tags(tag("DeleteOn", "2099-01-01"))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.code().map(str::to_string))
            .expect_err("not the result"),
    ];
    // Nor a volume of another type, nor the drill tag put on an existing volume (the way to
    // DeleteVolume).
    let io2 = create(&dated).volume_type(aws_sdk_ec2::types::VolumeType::Io2).iops(1000);
    let err = io2.tag_specifications(drill_tags(&dated)).send().await.expect_err("not gp3");
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    let err = clean.create_tags().resources(&volume).tags(tag("ebs-snapper:drill", &dated)).send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnauthorizedOperation"), "{err:?}");
    for code in &refused {
        assert_eq!(code.as_deref(), Some("UnauthorizedOperation"));
    }
    clean
        .create_tags()
        .resources(&dated)
        .tags(tag("ebs-snapper:drill", "2026-12-07T00:00:00Z ok 1s"))
        .send()
        .await
        .expect("the result");
    clean.delete_volume().volume_id(&drill_volume).send().await.expect("a drill volume is deleted");
    let (aws, ebs_gate) = acct.aws_as(R, "clean-snapshot", &[]).await;
    let ebs = aws_sdk_ebs::Client::new(&aws.in_region(R));
    let page =
        ebs.list_snapshot_blocks().snapshot_id(&dated).max_results(100).send().await.expect("the tool's snapshot");
    assert_eq!(page.block_size(), Some(524_288));
    let err = ebs.list_snapshot_blocks().snapshot_id(&undated).send().await.expect_err("someone else's");
    assert_eq!(aws_sdk_ebs::error::ProvideErrorMetadata::code(&err), Some("AccessDeniedException"), "{err:?}");
    assert_eq!(gate.refused().len(), 6, "{:?}", gate.refused());
    assert_eq!(ebs_gate.refused().len(), 1, "{:?}", ebs_gate.refused());
    assert!(ebs_gate.refused()[0].starts_with("ebs:ListSnapshotBlocks on resource arn:aws:ec2:us-east-1::snapshot/"));
}

const WEST: &str = "us-west-2";

/// A crash-consistent set of an instance's volumes.
const SETS: &str = r#"{"match": {"tag:backup": "sets"}, "consistency": "instance",
    "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"}}"#;
/// A monthly tier that archives.
const TIERS: &str = r#"{"match": {"tag:backup": "tiers"},
    "schedules": [{"name": "monthly", "frequency": "30 days", "retention": "365 days", "minimum": 1, "archive": true}]}"#;

/// Disaster-recovery copies to us-west-2, under `key` when given.
fn dr(key: Option<&str>) -> String {
    let key = key.map(|k| format!(r#", "kms_key": "{k}""#)).unwrap_or_default();
    format!(
        r#"{{"match": {{"tag:backup": "dr"}}, "snapshot": {{"retention": "7 days", "minimum": 1, "frequency": "1 day"}},
            "copies": [{{"region": "{WEST}", "retention": "30 days"{key}}}]}}"#
    )
}

/// An instance for each configuration: one with a data volume (SETS), one whose volume has two
/// monthly snapshots to archive (TIERS), one to copy (DR). The tiered volume.
async fn every_kind_of_work(acct: &Account) -> String {
    let with_data = acct.launch(R, &[("backup", "sets")]).await;
    acct.attach_volume(R, &with_data, "/dev/sdf", &[]).await;
    let tiered = acct.launch(R, &[("backup", "tiers")]).await;
    let tiered_volume = acct.volumes_of(R, &tiered).await[0].clone();
    for start in ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"] {
        plant_monthly(acct, &tiered_volume, "tiers", start, 300).await;
    }
    acct.launch(R, &[("backup", "dr")]).await;
    tiered_volume
}

/// Every kind of mutation the workers make, each under its own role as Lambda runs it:
/// crash-consistent sets (`CreateSnapshots`), archiving (`ModifySnapshotTier`), a
/// disaster-recovery copy under a key (`CopySnapshot`), and a replica whose source is gone
/// (`DeleteSnapshot` by `replication_src_region`), and a DR copy that ended in error, deleted in
/// its destination and made again (SPEC §10.11). A refusal of any of them fails the test (the
/// gates' own check), and so does a run that failed anything it should not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_of_every_worker_is_allowed_by_its_role() {
    let key = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let acct = Account::with_configs(R, &[("sets", SETS), ("tiers", TIERS), ("dr", &dr(Some(key)))]).await;
    let tiered_volume = every_kind_of_work(&acct).await;
    // A replica in us-west-2 whose source is gone.
    let other = acct.make_snapshot(R, &tiered_volume, &[]).await;
    acct.make_copy(
        WEST,
        R,
        &other,
        &[("replication_src_region", R), ("replication_snapshot_id", "snap-0123456789abcdef0")],
    )
    .await;
    acct.ec2(R).await.delete_snapshot().snapshot_id(&other).send().await.unwrap();

    // Replication behind the stricter AWS: copies under the key end in error.
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict {
        end_in_error: vec![(key.to_string(), "Given key ID is not accessible".to_string())],
        ..Strict::default()
    });
    let mut lambda = support::lambda::LambdaHarness::new(&acct).await;
    lambda.start(&acct, "create", "create-snapshot", &[]).await;
    lambda.start(&acct, "clean", "clean-snapshot", &[]).await;
    lambda.start(&acct, "replication", "replication", &[("AWS_ENDPOINT_URL", &proxy.endpoint())]).await;
    let ok = |r: Result<serde_json::Value, serde_json::Value>| {
        let summary = r.unwrap_or_else(|e| panic!("the run failed: {e}"));
        assert_eq!(summary["failed"], 0, "{summary:#}");
        summary
    };
    let created = ok(lambda.call("create", serde_json::json!({"region": R})).await);
    assert_eq!(created["created"], 4, "a set of two, the tiered volume and the DR volume: {created:#}");
    let cleaned = ok(lambda.call("clean", serde_json::json!({"region": R})).await);
    assert_eq!(cleaned["archived"], 2, "{cleaned:#}");
    let copied = ok(lambda.call("replication", serde_json::json!({"region": R})).await);
    assert_eq!(copied["copied"], 1, "{copied:#}");
    let west = ok(lambda.call("replication", serde_json::json!({"region": WEST})).await);
    assert_eq!(west["deleted"], 1, "the replica whose source is gone: {west:#}");
    let errored: Vec<String> = acct.snapshots(WEST).await.into_iter().map(|s| s.id).collect();
    assert_eq!(errored.len(), 1, "the DR copy (in error)");

    // The key is fixed: the next run fails naming the copy in error, deletes it in us-west-2
    // under the replication role, and copies the source again.
    proxy.set_strict(Strict::default());
    let error = lambda.call("replication", serde_json::json!({"region": R})).await.expect_err("a reported failure");
    assert_eq!(error["errorType"], "EbsSnapper.ActionsFailed", "{error}");
    assert!(
        error["errorMessage"].as_str().unwrap().contains("ended in error (Given key ID is not accessible)"),
        "{error}"
    );
    let copies: Vec<String> = acct.snapshots(WEST).await.into_iter().map(|s| s.id).collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_ne!(copies, errored, "the copy in error was deleted and the source copied again");
}

/// The CLI under the operator policy README documents (`cloudformation/operator.json`): every
/// command an operator runs, each kind of mutation included, is allowed by it, and nothing more
/// is asked (a refusal fails the test, through the gate's own check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_operator_policy_lets_the_cli_do_its_work() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    let gate = support::iam::IamGate::operator(&acct.id).await;
    let cli = |args: &[&str]| {
        let out = acct.cli().env("AWS_ENDPOINT_URL", gate.endpoint()).args(args).output().unwrap();
        let (stdout, stderr) = (support::text(&out.stdout), support::text(&out.stderr));
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(!stderr.contains("without the region lease"), "{args:?}: {stderr}");
        stdout
    };
    for (id, text) in [("sets", SETS), ("tiers", TIERS), ("dr", dr(None).as_str())] {
        cli(&["configure", "-s", id, text]);
    }
    let tiered_volume = every_kind_of_work(&acct).await;
    // An expired monthly snapshot, older than the rest: deleted.
    plant_monthly(&acct, &tiered_volume, "tiers", "2025-01-01T00:00:00Z", -30).await;

    cli(&["configure", "-c"]);
    let created = cli(&["snapshot", "-r", R]);
    assert!(created.starts_with("us-east-1: created 4,"), "{created}");
    let cleaned = cli(&["clean", "-r", R]);
    assert!(cleaned.contains("deleted 1,") && cleaned.contains("archived 2"), "{cleaned}");
    let copied = cli(&["replication", "-r", R]);
    assert!(copied.contains("copied 1"), "{copied}");
    cli(&["status", "-r", R]);
    // Restore drills (SPEC §17): the set's two volumes, each from its new snapshot.
    let sets_drilled =
        SETS.replace(r#""consistency": "instance","#, r#""consistency": "instance", "drill": {"sample_blocks": 2},"#);
    cli(&["configure", "-s", "sets", &sets_drilled]);
    let drilled = cli(&["drill", "-r", R]);
    assert!(drilled.contains("drilled 2 (0 failed)"), "{drilled}");
    cli(&["configure", "-d", "dr"]);
    assert!(gate.refused().is_empty(), "{:?}", gate.refused());

    // A vault's check (SPEC §16) describes the key of each volume the vault would receive:
    // allowed. The vault role trusts only the deployment's function roles, so an operator's
    // attempt to assume it is refused (by the trust and here by the policy: it is no member
    // role), and the check says so; that is the one refusal.
    let vaulted = acct.launch(R, &[("backup", "vaulted")]).await;
    let volume = acct.encrypted_volume(R, None).await;
    acct.attach(R, &volume, &vaulted, "/dev/sdf").await;
    cli(&[
        "configure",
        "-s",
        "vaulted",
        r#"{"match": {"tag:backup": "vaulted"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"},
            "vault": {"account": "444455556666", "retention": "30 days"}}"#,
    ]);
    let checked = cli(&["configure", "-c"]);
    assert!(checked.lines().any(|l| l.contains(&volume) && l.contains("which EC2 will not share")), "{checked}");
    assert!(checked.contains("the vault 444455556666 could not be reached through role"), "{checked}");
    let refused = gate.refused();
    assert!(
        refused.len() == 1 && refused[0].contains("sts:AssumeRole") && refused[0].contains(":role/ebs-snapper-vault"),
        "{refused:?}"
    );
}
