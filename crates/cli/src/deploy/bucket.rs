//! The code bucket: made private, encrypted, versioned and TLS-only when missing, checked when
//! it exists; and the uploads into it (skipped when unchanged).

use super::*;

/// The code bucket, and the account that must own it. Its default name is predictable, so
/// every S3 call says whose bucket it expects (`ExpectedBucketOwner`): a bucket of that name in
/// another account is refused by S3 itself, never written to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket<'a> {
    pub(super) name: &'a str,
    pub(super) owner: &'a str,
}

pub(super) async fn ensure_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: Bucket<'_>,
    region: &str,
    say: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let name = bucket.name;
    match s3.head_bucket().bucket(name).expected_bucket_owner(bucket.owner).send().await {
        Ok(_) => {
            say(format!("bucket {name} exists"));
            check_bucket(s3, bucket, say).await;
            return Ok(());
        }
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(404) => {}
            Some(403) => {
                return Err(DeployError::BucketDenied { bucket: name.to_string(), owner: bucket.owner.to_string() })
            }
            _ => return Err(AwsError::call("HeadBucket", region, e).into()),
        },
    }
    let mut create = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build(),
        );
    }
    create.send().await.map_err(|e| match e.as_service_error() {
        Some(se) if se.is_bucket_already_exists() => DeployError::ForeignBucket { bucket: name.to_string() },
        _ => AwsError::call("CreateBucket", region, e).into(),
    })?;
    s3.put_public_access_block()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::call("PutPublicAccessBlock", region, e))?;
    let by_default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|e| DeployError::BucketSettings(e.to_string()))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build())
        .build()
        .map_err(|e| DeployError::BucketSettings(e.to_string()))?;
    s3.put_bucket_encryption()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(|e| AwsError::call("PutBucketEncryption", region, e))?;
    s3.put_bucket_versioning()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .map_err(|e| AwsError::call("PutBucketVersioning", region, e))?;
    s3.put_bucket_policy()
        .bucket(name)
        .expected_bucket_owner(bucket.owner)
        .policy(tls_only_policy(name, region))
        .send()
        .await
        .map_err(|e| AwsError::call("PutBucketPolicy", region, e))?;
    say(format!("bucket {name} created (private, encrypted, versioned, TLS only)"));
    Ok(())
}

/// A bucket policy refusing every request not made over TLS (ARNs in the region's partition).
pub(super) fn tls_only_policy(bucket: &str, region: &str) -> String {
    let arn = format!("arn:{}:s3:::{bucket}", ebs_snapper_aws::account::partition(region));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
    .to_string()
}

/// Says what an existing bucket lacks of what deploy would have set (it is not changed: it may
/// be shared, with settings of its own).
pub(super) async fn check_bucket(s3: &aws_sdk_s3::Client, bucket: Bucket<'_>, say: &mut dyn FnMut(String)) {
    let name = bucket.name;
    let versioning = s3.get_bucket_versioning().bucket(name).expected_bucket_owner(bucket.owner).send().await;
    if !versioning.is_ok_and(|v| v.status() == Some(&BucketVersioningStatus::Enabled)) {
        say(format!("bucket {name}: versioning is not enabled (deploy enables it on the buckets it creates)"));
    }
    if s3.get_bucket_encryption().bucket(name).expected_bucket_owner(bucket.owner).send().await.is_err() {
        say(format!("bucket {name}: no default encryption could be read"));
    }
}

/// Uploads unless the object already holds these bytes, by S3's SHA-256 checksum of the object
/// (an ETag is the MD5 only for some objects: not under SSE-KMS, not for multipart uploads).
pub(super) async fn upload(
    s3: &aws_sdk_s3::Client,
    bucket: Bucket<'_>,
    region: &str,
    key: &str,
    bytes: &[u8],
    say: &mut dyn FnMut(String),
) -> Result<(), DeployError> {
    let (owner, bucket) = (bucket.owner, bucket.name);
    let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes));
    let head =
        s3.head_object().bucket(bucket).key(key).expected_bucket_owner(owner).checksum_mode(ChecksumMode::Enabled);
    if let Ok(head) = head.send().await {
        if head.checksum_sha256() == Some(sha256.as_str()) {
            say(format!("unchanged s3://{bucket}/{key}"));
            return Ok(());
        }
    }
    s3.put_object()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(bytes.to_vec()))
        .send()
        .await
        .map_err(|e| AwsError::call("PutObject", region, e))?;
    say(format!("uploaded s3://{bucket}/{key}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_policy_follows_the_partition() {
        for (region, partition) in [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")] {
            let policy: serde_json::Value = serde_json::from_str(&tls_only_policy("b", region)).unwrap();
            assert_eq!(
                policy["Statement"][0]["Resource"],
                serde_json::json!([format!("arn:{partition}:s3:::b"), format!("arn:{partition}:s3:::b/*")]),
                "{region}"
            );
        }
    }
}
