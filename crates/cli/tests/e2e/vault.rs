//! The vault account (SPEC §16), as far as it is built: the configuration, the tag the snapshot
//! job puts on each snapshot for it, the vault role's stack (`deploy --vault`), the test bed's
//! sharing and copying across accounts, and the replication job's share, copy, lock, unshare.

use crate::support;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use support::{text, Account};

const R: &str = "us-east-1";

fn cli(acct: &Account, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A copy as the vault keeps it, planted in the vault: of account `of`'s snapshot from region
/// `from`, started `days` ago, expired yesterday (a volume of the vault, `stand_in`, stands in
/// for the copied one).
async fn plant_vault_copy(vault: &Account, stand_in: &str, of: &str, from: &str, days: i64) -> String {
    plant_vault_copy_until(vault, stand_in, of, from, days, -1).await
}

/// The same, with its `DeleteOn` `until` days from today.
async fn plant_vault_copy_until(
    vault: &Account,
    stand_in: &str,
    of: &str,
    from: &str,
    days: i64,
    until: i64,
) -> String {
    let start = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
    let tags = [
        ("ebs-snapper:vault-of", of.to_string()),
        ("replication_src_region", from.to_string()),
        ("replication_snapshot_id", format!("snap-source{days}")),
        ("ebs-snapper:volume-id", "vol-0123456789abcdef0".to_string()),
        ("ebs-snapper:config", "vaulted".to_string()),
        ("DeleteOn", support::date(until)),
        ("test-bed:start-time", start),
    ];
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vault.make_snapshot(R, stand_in, &tags).await
}

/// A deployment (its table in `R`, credentials of a role under its function roles' path) and a
/// vault account with the vault role installed (`deploy --vault`), trusting it.
async fn deployment_and_vault() -> (Account, Account) {
    let acct = Account::deployment().await;
    acct.create_table(R).await;
    let vault = Account::new().await;
    let out = vault.cli().args(["-t", R, "deploy", "--poll-ms", "100", "--vault", &acct.id]).output().unwrap();
    assert!(out.status.success(), "deploy --vault: {}", text(&out.stderr));
    (acct, vault)
}

fn with_vault(vault: &str) -> String {
    format!(
        r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "7 days", "minimum": 2, "frequency": "1 day"}},
            "vault": {vault}}}"#
    )
}

#[tokio::test]
async fn configure_checks_a_vault_and_the_snapshot_job_tags_each_snapshot_for_it() {
    let acct = Account::with_configs(R, &[]).await;
    // The vault is another account, and its key is the vault's.
    let own = with_vault(&format!(r#"{{"account": "{}", "retention": "30 days"}}"#, acct.id));
    let out = acct.cli().args(["configure", "-s", "mine", &own]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("vault.account: ") && text(&out.stderr).contains("is this account"),
        "{}",
        text(&out.stderr)
    );
    acct.assert_refused(
        &with_vault(
            r#"{"account": "444455556666", "retention": "30 days", "kms_key": "arn:aws:kms:us-east-1:444455556666:key/k1"}"#,
        ),
        "vault.kms_key: \"arn:aws:kms:us-east-1:444455556666:key/k1\" is a key of one region",
    );
    acct.assert_refused(&with_vault(r#"{"account": "444455556666"}"#), "vault.retention: is required");
    assert!(acct.items(R).await.is_empty(), "nothing stored");

    let config = with_vault(
        r#"{"account": "444455556666", "region": "eu-west-1", "retention": "30 days", "lock": {"mode": "compliance"}}"#,
    );
    let (code, out, err) = cli(&acct, &["configure", "-s", "vaulted", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Saved to key vaulted"), "{out}");
    assert!(err.lines().any(|l| l.starts_with("warning: vault:") && l.contains("VaultAccountIds")), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("warning: compliance lock on the vault's copies")),
        "a compliance lock in the vault warns as any other: {err}"
    );

    acct.launch(R, &[("backup", "yes")]).await;
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].tag("ebs-snapper:vault-to"), Some("444455556666:eu-west-1"));
}

/// `configure -c` checks a vault (SPEC §16): its role can be reached from these credentials (the
/// deployment's function roles', not an operator's), and every volume the vault would receive
/// is on a key EC2 will share. A volume on `aws/ebs` is named, with the fix, unless
/// `vault.share_key` covers its region; one on a customer managed key is not.
#[tokio::test]
async fn configure_checks_that_the_vault_is_reachable_and_each_volumes_key_can_be_shared() {
    let (acct, vault) = deployment_and_vault().await;
    let plain = with_vault(&format!(r#"{{"account": "{}", "retention": "30 days"}}"#, vault.id));
    acct.put_raw(R, "vaulted", &plain).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    // One on the account's default key (aws/ebs), one on a key of its own.
    let on_aws_ebs = acct.encrypted_volume(R, None).await;
    acct.attach(R, &on_aws_ebs, &i, "/dev/xvdf").await;
    let kms = aws_sdk_kms::Client::new(&acct.sdk(R).await);
    let own_key = kms.create_key().send().await.unwrap().key_metadata().unwrap().arn().unwrap().to_string();
    let on_own_key = acct.encrypted_volume(R, Some(&own_key)).await;
    acct.attach(R, &on_own_key, &i, "/dev/xvdg").await;

    let (code, out, err) = cli(&acct, &["configure", "-c"]);
    assert_eq!(code, 0, "{err}");
    let about = |volume: &str| out.lines().filter(|l| l.contains(volume)).collect::<Vec<_>>();
    let [line] = about(&on_aws_ebs)[..] else { panic!("one line on the volume on aws/ebs: {out}") };
    assert!(line.contains("which EC2 will not share") && line.contains("set vault.share_key for us-east-1"), "{line}");
    assert!(about(&on_own_key).is_empty(), "a customer managed key may be shared: {out}");
    assert!(!out.contains("could not be reached"), "the deployment's function roles reach the vault: {out}");

    // An operator's credentials cannot assume the vault role: said, with why.
    let operator = acct.other_role("operator").await;
    let (code, out, err) = cli(&operator, &["configure", "-c"]);
    assert_eq!(code, 0, "{err}");
    let [line] = &out.lines().filter(|l| l.contains("could not be reached")).collect::<Vec<_>>()[..] else {
        panic!("one line on the vault: {out}")
    };
    assert!(line.contains(&format!("the vault {} could not be reached through role", vault.id)), "{line}");
    assert!(line.contains("trusts only the deployment's function roles") && line.contains("deploy --vault"), "{line}");
    assert!(!line.contains("member role"), "a vault is no member: {line}");

    // A share key for the region: nothing to say about the keys.
    let share_key = format!("arn:aws:kms:{R}:{}:key/mrk-1234abcd12ab34cd56ef1234567890ab", acct.id);
    let with_share_key =
        with_vault(&format!(r#"{{"account": "{}", "retention": "30 days", "share_key": "{share_key}"}}"#, vault.id));
    acct.put_raw(R, "vaulted", &with_share_key).await;
    let (code, out, err) = cli(&acct, &["configure", "-c"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("will not share"), "{out}");
}

/// `deploy --vault DEPLOYMENT`, with the vault account's credentials: the vault stack and its
/// role, trusting only the deployment's function roles with its account id as the `ExternalId`;
/// bad use is one line and creates nothing.
#[tokio::test]
async fn vault_deploy_creates_the_role_only_the_deployments_functions_may_assume() {
    let vault = Account::new().await;
    let deployment = "111122223333";
    let run = |extra: &[&str]| {
        let out = vault
            .cli()
            .args(["-t", R, "deploy", "--poll-ms", "100", "--vault", deployment])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    };
    for (bad, exit) in [
        (vec!["--member", "222233334444"], 2),
        (vec!["-n"], 2),
        (vec!["--parameter", "DeploymentAccountId=222233334444"], 2),
        (vec!["--parameter", "NoSuchParameter=1"], 1),
    ] {
        let (code, _, err) = run(&bad);
        assert_eq!(code, exit, "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
    }
    let out = vault.cli().args(["deploy", "--vault", "1234"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--vault \"1234\" is not an AWS account id"), "{}", text(&out.stderr));
    let cfn = aws_sdk_cloudformation::Client::new(&vault.sdk(R).await);
    assert!(cfn.describe_stacks().stack_name("ebs-snapper-vault").send().await.is_err(), "bad use creates no stack");

    let key = "arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let (code, out, err) = run(&["--parameter", &format!("VaultKmsKeyArns={key}")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("stack ebs-snapper-vault: CREATE_COMPLETE"), "{out}");
    let (_, trust) = vault.role("ebs-snapper-vault").await.expect("the vault role");
    let statements = trust["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "the function roles only: {trust}");
    assert_eq!(statements[0]["Condition"]["StringEquals"]["sts:ExternalId"], deployment, "{trust}");
    assert_eq!(
        statements[0]["Condition"]["ArnLike"]["aws:PrincipalArn"],
        format!("arn:aws:iam::{deployment}:role/ebs-snapper-{deployment}/*"),
        "{trust}"
    );
    let (code, out, err) = run(&["--parameter", &format!("VaultKmsKeyArns={key}")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stack ebs-snapper-vault: no changes"), "{out}");
}

/// What the copying flow stands on, as EC2 does it: another account copies a snapshot only once
/// it is shared with it; a snapshot on `aws/ebs` cannot be shared; the vault's copy is the
/// vault's, out of reach of the protected account's credentials.
#[tokio::test]
async fn the_test_bed_shares_and_copies_across_accounts_as_ec2_does() {
    let protected = Account::new().await;
    let vault = Account::new().await;
    let (mine, theirs) = (protected.ec2(R).await, vault.ec2(R).await);
    let i = protected.launch(R, &[("backup", "yes")]).await;
    let volume = protected.volumes_of(R, &i).await[0].clone();
    let source = protected.make_snapshot(R, &volume, &[]).await;
    let copy = || theirs.copy_snapshot().source_region(R).source_snapshot_id(&source).send();

    let err = copy().await.expect_err("not shared");
    assert_eq!(err.code(), Some("InvalidSnapshot.NotFound"), "{err:?}");
    let share = |op: &'static str, id: String| {
        let mine = mine.clone();
        let user = vault.id.clone();
        async move {
            mine.modify_snapshot_attribute()
                .snapshot_id(id)
                .attribute(aws_sdk_ec2::types::SnapshotAttributeName::CreateVolumePermission)
                .operation_type(aws_sdk_ec2::types::OperationType::from(op))
                .user_ids(user)
                .send()
                .await
        }
    };
    share("add", source.clone()).await.expect("share");
    let made = copy().await.expect("a shared snapshot is copied").snapshot_id().unwrap().to_string();
    share("remove", source.clone()).await.expect("unshare");
    assert!(copy().await.is_err(), "unshared again");

    let err = mine.delete_snapshot().snapshot_id(&made).send().await.expect_err("the vault's copy");
    assert_eq!(err.code(), Some("InvalidSnapshot.NotFound"), "{err:?}");
    assert_eq!(vault.snapshots(R).await.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [made.as_str()]);

    let encrypted = protected.encrypted_volume(R, None).await;
    let on_aws_ebs = protected.make_snapshot(R, &encrypted, &[]).await;
    let err = share("add", on_aws_ebs).await.expect_err("aws/ebs cannot be shared");
    assert_eq!(err.code(), Some("OperationNotPermitted"), "{err:?}");
}

/// The replication job's vault work (SPEC §16), through the CLI with the deployment's
/// credentials: a completed snapshot is shared with the vault, copied there by the vault role
/// (reached with the deployment's account id as `ExternalId`) with its tags, date and key,
/// locked there, and unshared by the next run once the copy completed; the protected account
/// cannot delete the vault's copy, and a second copy is never made.
#[tokio::test]
async fn a_snapshot_is_shared_copied_into_the_vault_locked_there_and_unshared() {
    let (acct, vault) = deployment_and_vault().await;
    let key = format!("arn:aws:kms:{R}:{}:key/1234abcd-12ab-34cd-56ef-1234567890ab", vault.id);
    let config = with_vault(&format!(
        r#"{{"account": "{}", "region": "{R}", "retention": "30 days", "kms_key": "{key}", "lock": {{"mode": "compliance"}}}}"#,
        vault.id
    ));
    acct.put_raw(R, "vaulted", &config).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let volume = acct.volumes_of(R, &i).await[0].clone();
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let source = acct.snapshots(R).await.pop().expect("a snapshot");
    let vault_column = |acct: &Account| {
        let out = acct.cli().args(["status", "--region", R, "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["volumes"][0]["vault"].clone()
    };
    assert_eq!(vault_column(&acct), serde_json::json!(false), "not in the vault yet");

    let (code, out, err) = cli(&acct, &["replication", "--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copied 1"), "{out}");
    let copies = vault.snapshots(R).await;
    let [copy] = &copies[..] else { panic!("one copy in the vault: {copies:?}") };
    assert_eq!(copy.tag("ebs-snapper:vault-of"), Some(acct.id.as_str()));
    assert_eq!(copy.tag("replication_snapshot_id"), Some(source.id.as_str()));
    assert_eq!(copy.tag("replication_src_region"), Some(R));
    assert_eq!(copy.tag("ebs-snapper:volume-id"), Some(volume.as_str()));
    assert_eq!(copy.tag("ebs-snapper:config"), Some("vaulted"));
    assert!(support::dated(copy.tag("DeleteOn"), 30), "{:?}", copy.tag("DeleteOn"));
    assert_eq!(copy.kms_key_id.as_deref(), Some(key.as_str()));
    let vault_ec2 = vault.ec2(R).await;
    let locked = vault_ec2.describe_locked_snapshots().snapshot_ids(&copy.id).send().await.unwrap();
    assert_eq!(
        locked.snapshots().first().and_then(|l| l.lock_state()).map(|s| s.as_str()),
        Some("compliance"),
        "locked in the vault"
    );
    assert_eq!(acct.shared_with(R, &source.id).await, std::slice::from_ref(&vault.id), "shared until the next run");
    assert_eq!(vault_column(&acct), serde_json::json!(true), "status finds the vault's copy");
    let (code, table, err) = cli(&acct, &["status", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(table.lines().next().unwrap().trim_end().ends_with("VAULT    DRILL"), "{table}");
    let last: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().rev().take(2).collect();
    assert_eq!(last, ["-", "in-sync"], "the vault in sync, no drill: {table}");

    // The next run finds the copy completed: the share goes, nothing is copied again.
    let (code, out, err) = cli(&acct, &["replication", "--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copied 0"), "{out}");
    assert!(acct.shared_with(R, &source.id).await.is_empty(), "no share is left once the copy completed");
    assert_eq!(vault.snapshots(R).await.len(), 1);
    // The protected account's credentials cannot touch the vault's copy.
    let err = acct.ec2(R).await.delete_snapshot().snapshot_id(&copy.id).send().await.expect_err("not the account's");
    assert_eq!(err.code(), Some("InvalidSnapshot.NotFound"), "{err:?}");
    assert_eq!(vault.snapshots(R).await.len(), 1);
}

/// The clean job's vault work (SPEC §16), through the CLI with the deployment's credentials: in
/// the vault, this account's expired copies from this region beyond the vault's minimum are
/// deleted through the vault role, oldest first; a locked copy is kept; another account's
/// copies, and copies made from another region, are not touched.
#[tokio::test]
async fn the_clean_job_cleans_the_vaults_copies_under_the_vaults_minimum() {
    let (acct, vault) = deployment_and_vault().await;
    let config = with_vault(&format!(r#"{{"account": "{}", "retention": "30 days", "minimum": 2}}"#, vault.id));
    acct.put_raw(R, "vaulted", &config).await;
    // Copies as the vault keeps them: a volume of the vault stands in for the copied one.
    let i = vault.launch(R, &[("Name", "stand-in")]).await;
    let stand_in = vault.volumes_of(R, &i).await[0].clone();
    let mut mine = Vec::new();
    for days in [9, 8, 7, 6, 5] {
        mine.push(plant_vault_copy(&vault, &stand_in, &acct.id, R, days).await);
    }
    let others = plant_vault_copy(&vault, &stand_in, "999988887777", R, 10).await;
    let elsewhere = plant_vault_copy(&vault, &stand_in, &acct.id, "eu-west-1", 11).await;
    let until = aws_smithy_types::DateTime::from_secs((chrono::Utc::now() + chrono::Duration::days(3)).timestamp());
    vault
        .ec2(R)
        .await
        .lock_snapshot()
        .snapshot_id(&mine[1])
        .lock_mode(aws_sdk_ec2::types::LockMode::Governance)
        .expiration_date(until)
        .send()
        .await
        .expect("lock");

    let (code, out, err) = cli(&acct, &["clean", "--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deleted 2"), "{out}");
    let left: Vec<String> = vault.snapshots(R).await.into_iter().map(|s| s.id).collect();
    let mut expected = vec![mine[1].clone(), mine[3].clone(), mine[4].clone(), others, elsewhere];
    expected.sort();
    assert_eq!(left, expected, "the oldest two unlocked beyond the minimum of 2 went; the rest stayed");
}

/// The vault's copies are drilled in the vault, through the vault role, when `vault.drill` is
/// set (SPEC §17): that is what proves the vault's keys and grants restore them.
#[tokio::test]
async fn the_clean_job_drills_the_vaults_newest_copy_in_the_vault() {
    let (acct, vault) = deployment_and_vault().await;
    let config = with_vault(&format!(
        r#"{{"account": "{}", "retention": "30 days", "drill": {{"sample_blocks": 2}}}}"#,
        vault.id
    ));
    acct.put_raw(R, "vaulted", &config).await;
    let stand_in = vault.volumes_of(R, &vault.launch(R, &[]).await).await[0].clone();
    let older = plant_vault_copy_until(&vault, &stand_in, &acct.id, R, 3, 20).await;
    let newer = plant_vault_copy_until(&vault, &stand_in, &acct.id, R, 2, 20).await;
    let (code, out, err) = cli(&acct, &["clean", "--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("drilled 1 (0 failed)"), "{out}");
    let tag = |id: &str, snaps: &[support::Snap]| {
        snaps.iter().find(|s| s.id == id).and_then(|s| s.tag("ebs-snapper:drill").map(str::to_string))
    };
    let in_vault = vault.snapshots(R).await;
    assert!(tag(&newer, &in_vault).is_some_and(|t| t.contains(" ok ")), "{in_vault:?}");
    assert_eq!(tag(&older, &in_vault), None);
    // Made in the vault (through the vault role, whose calls are not the vault's own keys'),
    // never in the source account.
    assert_eq!(acct.count("CreateVolume", None), 0);
    let ec2 = vault.ec2(R).await;
    let left = ec2.describe_volumes().send().await.unwrap();
    assert!(left.volumes().iter().all(|v| v.tags().iter().all(|t| t.key() != Some("ebs-snapper:drill"))));
}

/// A vault copy without its lock (its `LockSnapshot` failed, or the answer was lost) is locked by
/// the next replication run, through the vault role, until its `DeleteOn` (SPEC §16: locks only
/// grow); a copy from another region is left to that region's run, and a locked one is not sent
/// again.
#[tokio::test]
async fn a_vault_copy_without_its_lock_is_locked_by_the_next_run() {
    let (acct, vault) = deployment_and_vault().await;
    let config = with_vault(&format!(
        r#"{{"account": "{}", "region": "{R}", "retention": "30 days", "lock": {{"mode": "governance"}}}}"#,
        vault.id
    ));
    acct.put_raw(R, "vaulted", &config).await;
    let stand_in = vault.volumes_of(R, &vault.launch(R, &[]).await).await[0].clone();
    let unlocked = plant_vault_copy_until(&vault, &stand_in, &acct.id, R, 3, 20).await;
    let elsewhere = plant_vault_copy_until(&vault, &stand_in, &acct.id, "eu-west-1", 4, 20).await;

    let (code, out, err) = cli(&acct, &["replication", "--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    let ec2 = vault.ec2(R).await;
    let lock_of = |id: String| {
        let ec2 = ec2.clone();
        async move {
            let out = ec2.describe_locked_snapshots().snapshot_ids(id).send().await.unwrap();
            out.snapshots().first().map(|l| {
                let until = l.lock_expires_on().map(|t| t.secs());
                (l.lock_state().map(|s| s.as_str().to_string()), until)
            })
        }
    };
    let until = chrono::NaiveDate::parse_from_str(&support::date(20), "%Y-%m-%d").unwrap();
    let midnight = until.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    assert_eq!(lock_of(unlocked.clone()).await, Some((Some("governance".into()), Some(midnight))), "{out}");
    assert_eq!(lock_of(elsewhere).await, None, "eu-west-1's run locks it");
    let locks_sent = || {
        let id = format!("SnapshotId={unlocked}");
        support::all_recorded().iter().filter(|r| r.action == "LockSnapshot" && r.body.contains(&id)).count()
    };
    assert_eq!(locks_sent(), 1);
    let (code, out, err) = cli(&acct, &["replication", "--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(locks_sent(), 1, "a copy locked already is not sent again: {out}");
}

/// The vault's work done by the functions as Lambda runs them, each under its role behind the
/// IAM gate (the vault role's requests evaluated against `cloudformation/vault.json`'s role): the
/// replication worker shares, has the vault copy and lock, and unshares; the clean worker cleans
/// the vault's expired copies. A refusal of any call fails the test (the gates' own check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_keep_the_vault_under_their_roles() {
    let (acct, vault) = deployment_and_vault().await;
    // With drills of the sources and of the vault's copies (SPEC §17), under the same roles.
    let config = with_vault(&format!(
        r#"{{"account": "{}", "retention": "30 days", "minimum": 1, "lock": {{"mode": "governance"}},
            "drill": {{"sample_blocks": 2}}}}, "drill": {{"sample_blocks": 2}}"#,
        vault.id
    ));
    acct.put_raw(R, "vaulted", &config).await;
    acct.launch(R, &[("backup", "yes")]).await;
    // Two expired copies in the vault from an earlier source volume: the older goes.
    let stand_in = vault.volumes_of(R, &vault.launch(R, &[]).await).await[0].clone();
    let mut old = Vec::new();
    for days in [9, 8] {
        old.push(plant_vault_copy(&vault, &stand_in, &acct.id, R, days).await);
    }

    let mut lambda = support::lambda::LambdaHarness::new(&acct).await;
    lambda.parameters(&[("VaultAccountIds", &vault.id)]);
    lambda.start(&acct, "create", "create-snapshot", &[]).await;
    lambda.start(&acct, "replication", "replication", &[]).await;
    lambda.start(&acct, "clean", "clean-snapshot", &[]).await;
    let ok = |r: Result<serde_json::Value, serde_json::Value>| {
        let summary = r.unwrap_or_else(|e| panic!("the run failed: {e}"));
        assert_eq!(summary["failed"], 0, "{summary:#}");
        summary
    };
    let created = ok(lambda.call("create", serde_json::json!({"region": R})).await);
    assert_eq!(created["created"], 1, "{created:#}");
    let copied = ok(lambda.call("replication", serde_json::json!({"region": R})).await);
    assert_eq!((copied["copied"].as_u64(), copied["locked"].as_u64()), (Some(1), Some(1)), "{copied:#}");
    ok(lambda.call("replication", serde_json::json!({"region": R})).await);
    let source = acct.snapshots(R).await.pop().unwrap();
    assert!(acct.shared_with(R, &source.id).await.is_empty(), "unshared by the second run");
    let cleaned = ok(lambda.call("clean", serde_json::json!({"region": R})).await);
    assert_eq!(cleaned["deleted"], 1, "the older expired vault copy: {cleaned:#}");
    // The new source, the new vault copy and the planted copy left (another source volume).
    assert_eq!((cleaned["drilled"].as_u64(), cleaned["drills_failed"].as_u64()), (Some(3), Some(0)), "{cleaned:#}");
    let left: Vec<String> = vault.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert!(!left.contains(&old[0]) && left.contains(&old[1]), "{left:?}");
    assert_eq!(left.len(), 2, "the newer planted copy and the new one: {left:?}");
}

/// SPEC §16's invariants under the stricter AWS with 20% of every call faulted (throttled,
/// failed, dropped, or done with its answer lost), copies pending for a while: after runs under
/// faults and one without, every completed snapshot has exactly one vault copy (a lost answer
/// never makes a second), each locked, and no share is left on a source whose vault copy
/// completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_twenty_percent_faults_each_snapshot_gets_one_vault_copy_and_no_share_is_left() {
    use support::fault_proxy::{FaultPlan, FaultProxy, Strict};
    let (acct, vault) = deployment_and_vault().await;
    let config = with_vault(&format!(
        r#"{{"account": "{}", "retention": "30 days", "lock": {{"mode": "governance"}}}}"#,
        vault.id
    ));
    acct.put_raw(R, "vaulted", &config).await;
    for _ in 0..5 {
        acct.launch(R, &[("backup", "yes")]).await;
    }
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let sources: Vec<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(sources.len(), 5);

    let proxy = FaultProxy::start(FaultPlan::every_call(29, 0.2)).await;
    proxy.set_strict(Strict::on());
    for _ in 0..2 {
        let (code, doc, err) = support::scenes::run(&acct, &proxy, "replication", &["--region", R]);
        assert!(code == 0 || code == 1, "{err}\n{doc:#}");
    }
    assert!(proxy.faulted() > 0, "the proxy injected nothing");
    proxy.set_plan(FaultPlan::none());
    // Without faults, once the copies have completed (the stricter AWS keeps them pending a
    // while), a run leaves everything as it must be.
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        let (code, doc, err) = support::scenes::run(&acct, &proxy, "replication", &["--region", R]);
        assert_eq!(code, 0, "{err}\n{doc:#}");
    }
    let copies = vault.snapshots(R).await;
    for source in &sources {
        let n = copies.iter().filter(|c| c.tag("replication_snapshot_id") == Some(source.as_str())).count();
        assert_eq!(n, 1, "{source}: {n} vault copies");
    }
    assert_eq!(copies.len(), sources.len(), "no other copy: {copies:?}");
    // Every vault copy is locked, lost or failed LockSnapshot answers included (SPEC §16).
    let vault_ec2 = vault.ec2(R).await;
    for copy in &copies {
        let locked = vault_ec2.describe_locked_snapshots().snapshot_ids(&copy.id).send().await.unwrap();
        let state = locked.snapshots().first().and_then(|l| l.lock_state()).map(|s| s.as_str().to_string());
        assert_eq!(state.as_deref(), Some("governance"), "{} is not locked", copy.id);
    }
    for source in &sources {
        assert!(acct.shared_with(R, source).await.is_empty(), "{source} is still shared");
    }
}

/// A member account's snapshots go to the vault too (SPEC §16): shared with the member's
/// credentials (its member role, deployed with `VaultAccountIds`), copied with the vault's
/// (reached from the deployment), and kept there under the member's own `ebs-snapper:vault-of`.
#[tokio::test]
async fn a_members_snapshots_go_to_the_vault_under_its_own_account() {
    let deployment = Account::deployment().await;
    deployment.create_table(R).await;
    let vault = Account::new().await;
    let member = Account::new().await;
    member.install_member_role(&deployment.id, &[&format!("VaultAccountIds={}", vault.id)]);
    let out = vault.cli().args(["-t", R, "deploy", "--poll-ms", "100", "--vault", &deployment.id]).output().unwrap();
    assert!(out.status.success(), "deploy --vault: {}", text(&out.stderr));
    let config = with_vault(&format!(r#"{{"account": "{}", "retention": "30 days"}}"#, vault.id));
    deployment.put_raw_for(R, &member.id, "vaulted", &config).await;
    member.launch(R, &[("backup", "yes")]).await;
    let (code, _, err) = cli(&deployment, &["snapshot", "--account", &member.id, "--region", R]);
    assert_eq!(code, 0, "{err}");
    let source = member.snapshots(R).await.pop().expect("the member's snapshot");
    assert_eq!(source.tag("ebs-snapper:vault-to"), Some(format!("{}:{R}", vault.id).as_str()));
    let (code, out, err) = cli(&deployment, &["replication", "--account", &member.id, "--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copied 1"), "{out}");
    let copies = vault.snapshots(R).await;
    let [copy] = &copies[..] else { panic!("{copies:?}") };
    assert_eq!(copy.tag("ebs-snapper:vault-of"), Some(member.id.as_str()), "the member's own account");
    assert_eq!(copy.tag("replication_snapshot_id"), Some(source.id.as_str()));
    assert!(deployment.snapshots(R).await.is_empty(), "nothing in the deployment account");
}

/// A vault copy that AWS accepts and then fails (the vault may not use the key: SPEC §10.11 for
/// vault copies): the next run reports it with AWS's reason and the vault deletes it; once the
/// key is usable, the source is copied again, and one copy is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_copy_that_ends_in_error_is_reported_deleted_and_made_again() {
    use support::fault_proxy::{FaultPlan, FaultProxy, Strict};
    let (acct, vault) = deployment_and_vault().await;
    let key = format!("arn:aws:kms:{R}:{}:key/1234abcd-12ab-34cd-56ef-1234567890ab", vault.id);
    let config = with_vault(&format!(
        r#"{{"account": "{}", "region": "{R}", "retention": "30 days", "kms_key": "{key}"}}"#,
        vault.id
    ));
    acct.put_raw(R, "vaulted", &config).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict {
        end_in_error: vec![(key.clone(), "Given key ID is not accessible".to_string())],
        ..Strict::default()
    });
    let (code, doc, err) = support::scenes::run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!(code, 0, "accepted: {err}\n{doc:#}");
    let errored: Vec<String> = vault.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(errored.len(), 1);
    proxy.set_strict(Strict::default());
    let (code, doc, err) = support::scenes::run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!(code, 1, "a copy in error is a failure: {err}\n{doc:#}");
    let errors = doc["regions"][0]["errors"].to_string();
    assert!(errors.contains("ended in error (Given key ID is not accessible)"), "{errors}");
    assert!(vault.snapshots(R).await.is_empty(), "deleted in the vault");
    let (code, doc, err) = support::scenes::run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!(code, 0, "{err}\n{doc:#}");
    let copies: Vec<String> = vault.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(copies.len(), 1, "copied again");
    assert_ne!(copies, errored);
}

/// The vault takes a limited number of copies in progress (AWS: 20 per destination account and
/// region; the stricter AWS here: 2). A copy refused with `ResourceLimitExceeded` is left to the
/// next run, a skip and not a failure; the next run makes it, and no source is copied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_past_the_vaults_limit_wait_for_the_next_run() {
    use support::fault_proxy::{FaultPlan, FaultProxy, Strict};
    let (acct, vault) = deployment_and_vault().await;
    let config = with_vault(&format!(r#"{{"account": "{}", "retention": "30 days"}}"#, vault.id));
    acct.put_raw(R, "vaulted", &config).await;
    for _ in 0..4 {
        acct.launch(R, &[("backup", "yes")]).await;
    }
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict {
        copies_in_progress: Some(2),
        pending_for: std::time::Duration::from_secs(5),
        ..Strict::default()
    });
    let (code, doc, err) = support::scenes::run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!(code, 0, "the limit is not a failure: {err}\n{doc:#}");
    assert_eq!(doc["regions"][0]["copied"], 2, "{doc:#}");
    assert_eq!(doc["regions"][0]["skipped"], 2, "{doc:#}");
    assert_eq!(vault.snapshots(R).await.len(), 2);
    // The copies to one vault go as one batch: once the vault refused one, the rest of the run
    // sends it none (two made, one refused, the fourth not sent).
    let sent = proxy.seen().into_iter().filter(|s| s.operation == "CopySnapshot").count();
    assert_eq!(sent, 3, "CopySnapshot calls");
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (code, doc, err) = support::scenes::run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!(code, 0, "{err}\n{doc:#}");
    assert_eq!(doc["regions"][0]["copied"], 2, "{doc:#}");
    let copies = vault.snapshots(R).await;
    let sources: std::collections::BTreeSet<&str> =
        copies.iter().filter_map(|c| c.tag("replication_snapshot_id")).collect();
    assert_eq!((copies.len(), sources.len()), (4, 4), "one copy per source");
}

/// A source encrypted with `aws/ebs` cannot be shared (SPEC §16). With `vault.share_key`, the
/// replication worker (as Lambda runs it, under its role behind the IAM gate) copies it in
/// place under the share key, the vault copies that copy once it completed (as the source's
/// copy), and the share copy is deleted once the vault's copy completed: the source is never
/// shared, and nothing is left but the source and the vault's one copy. Without a share key the
/// refusal is a failure naming `vault.share_key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_on_aws_ebs_goes_to_the_vault_through_a_share_copy_under_the_share_key() {
    let (acct, vault) = deployment_and_vault().await;
    let share_key = format!("arn:aws:kms:{R}:{}:key/mrk-1234abcd12ab34cd56ef1234567890ab", acct.id);
    let configured = |share_key: &str| {
        let share_key = if share_key.is_empty() { String::new() } else { format!(r#", "share_key": "{share_key}""#) };
        with_vault(&format!(r#"{{"account": "{}", "retention": "30 days"{share_key}}}"#, vault.id))
    };
    acct.put_raw(R, "vaulted", &configured("")).await;
    let encrypted = acct.encrypted_volume(R, None).await;
    let vault_to = format!("{}:{R}", vault.id);
    let tags = [("ebs-snapper:config", "vaulted"), ("ebs-snapper:vault-to", vault_to.as_str())];
    let source = acct.make_snapshot(R, &encrypted, &tags).await;

    let mut lambda = support::lambda::LambdaHarness::new(&acct).await;
    lambda.parameters(&[("VaultAccountIds", &vault.id), ("CopyKmsKeyArns", &share_key)]);
    lambda.start(&acct, "replication", "replication", &[]).await;
    async fn run(lambda: &support::lambda::LambdaHarness) -> serde_json::Value {
        let done = lambda.call("replication", serde_json::json!({"region": R})).await;
        done.unwrap_or_else(|e| panic!("the run failed: {e}"))
    }
    let refused = lambda.call("replication", serde_json::json!({"region": R})).await.expect_err("a failure");
    assert!(refused.to_string().contains("set vault.share_key"), "{refused:#}");

    acct.put_raw(R, "vaulted", &configured(&share_key)).await;
    let first = run(&lambda).await;
    assert_eq!((first["failed"].as_u64(), first["copied"].as_u64()), (Some(0), Some(0)), "{first:#}");
    let mine = acct.snapshots(R).await;
    let [copy] = &mine.iter().filter(|s| s.id != source).collect::<Vec<_>>()[..] else { panic!("{mine:?}") };
    assert_eq!(copy.tag("ebs-snapper:vault-share-of"), Some(source.as_str()));
    assert_eq!(copy.kms_key_id.as_deref(), Some(share_key.as_str()), "under the share key");
    assert!(vault.snapshots(R).await.is_empty());

    let second = run(&lambda).await;
    assert_eq!((second["failed"].as_u64(), second["copied"].as_u64()), (Some(0), Some(1)), "{second:#}");
    let copies = vault.snapshots(R).await;
    let [kept] = &copies[..] else { panic!("one copy in the vault: {copies:?}") };
    assert_eq!(kept.tag("replication_snapshot_id"), Some(source.as_str()), "the source's copy");
    assert_eq!(kept.tag("ebs-snapper:volume-id"), Some(encrypted.as_str()));

    let third = run(&lambda).await;
    assert_eq!((third["failed"].as_u64(), third["deleted"].as_u64()), (Some(0), Some(1)), "{third:#}");
    let left: Vec<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(left, std::slice::from_ref(&source), "the share copy is gone");
    assert_eq!(vault.snapshots(R).await.len(), 1);
    assert!(acct.shared_with(R, &source).await.is_empty(), "the source itself is never shared");
    let quiet = run(&lambda).await;
    assert_eq!((quiet["failed"].as_u64(), quiet["copied"].as_u64()), (Some(0), Some(0)), "{quiet:#}");
}
