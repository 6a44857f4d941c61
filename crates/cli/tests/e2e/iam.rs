//! IAM as AWS evaluates it (SPEC §15): the functions run under their own roles from the
//! template, behind the test bed's IAM gate (`support::iam`). These tests show the gate refuses
//! what a role does not allow, as AWS refuses it, so that the other tests' passing means the
//! roles allow what the functions do.

use crate::support;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::error::ProvideErrorMetadata;
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
