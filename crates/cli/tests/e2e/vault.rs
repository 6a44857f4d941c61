//! The vault account (SPEC §16), as far as it is built: the configuration, the tag the snapshot
//! job puts on each snapshot for it, the vault role's stack (`deploy --vault`), and the test
//! bed's sharing and copying across accounts, which the copying flow will stand on.

use crate::support;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use support::{text, Account};

const R: &str = "us-east-1";

fn cli(acct: &Account, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
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

    let config = with_vault(r#"{"account": "444455556666", "region": "eu-west-1", "retention": "30 days"}"#);
    let (code, out, err) = cli(&acct, &["configure", "-s", "vaulted", &config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Saved to key vaulted"), "{out}");
    assert!(err.lines().any(|l| l.starts_with("warning: vault:") && l.contains("does not copy")), "{err}");

    acct.launch(R, &[("backup", "yes")]).await;
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].tag("ebs-snapper:vault-to"), Some("444455556666:eu-west-1"));
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
    let iam = aws_sdk_iam::Client::new(&vault.sdk(R).await);
    let role = iam.get_role().role_name("ebs-snapper-vault").send().await.unwrap();
    let trust = support::http::percent_decode(role.role().unwrap().assume_role_policy_document().unwrap_or_default());
    let trust: serde_json::Value = serde_json::from_str(&trust).unwrap_or_else(|e| panic!("{e}: {trust}"));
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

    let encrypted = mine
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .encrypted(true)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    let on_aws_ebs = protected.make_snapshot(R, &encrypted, &[]).await;
    let err = share("add", on_aws_ebs).await.expect_err("aws/ebs cannot be shared");
    assert_eq!(err.code(), Some("OperationNotPermitted"), "{err:?}");
}
