"""Checks the test bed's EBS direct APIs (ListSnapshotBlocks, GetSnapshotBlock) on EC2 snapshots,
as scripts/testbed/strict_moto.py emulates them, against a running server.

    python scripts/testbed/test_ebs_direct.py --endpoint http://127.0.0.1:5077

Exits 1 if any check fails. Makes its own volumes and snapshots (and an account of its own for
the cross-account copy), so it can run against a server other tests use.
"""

import argparse
import base64
import hashlib
import sys
import time
import uuid
from datetime import datetime, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"
COPY_REGION = "us-west-2"
BLOCK_SIZE = 524288
OTHER_ACCOUNT = "210987654321"

failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)
    return ok


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


class Bed:
    def __init__(self, endpoint, credentials=None):
        self.kw = dict(endpoint_url=endpoint, **(credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}))

    def client(self, service, region=REGION, **config):
        return boto3.client(service, region_name=region, config=Config(**config) if config else None, **self.kw)


def list_pages(ebs, snapshot_id, **kw):
    pages, token = [], None
    while True:
        args = dict(SnapshotId=snapshot_id, **kw)
        if token:
            args["NextToken"] = token
        page = ebs.list_snapshot_blocks(**args)
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            return pages


def blocks_of(pages):
    return [b for p in pages for b in p.get("Blocks", [])]


def read_block(ebs, snapshot_id, block):
    answer = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=block["BlockIndex"], BlockToken=block["BlockToken"])
    data = answer["BlockData"].read()
    return data, answer


def checksum(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def volume(ec2, size, tags=None):
    spec = [{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    return ec2.create_volume(Size=size, AvailabilityZone=f"{ec2.meta.region_name}a", TagSpecifications=spec)["VolumeId"]


def snapshot(ec2, volume_id, tags=None):
    spec = [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    return ec2.create_snapshot(VolumeId=volume_id, TagSpecifications=spec)["SnapshotId"]


def tag(ec2, resource_id, key):
    ec2.create_tags(Resources=[resource_id], Tags=[{"Key": key, "Value": "1"}])


def read_all(ebs, snapshot_id):
    """{index: (data, checksum header)} of every listed block."""
    out = {}
    for block in blocks_of(list_pages(ebs, snapshot_id)):
        data, answer = read_block(ebs, snapshot_id, block)
        out[block["BlockIndex"]] = (data, answer["Checksum"])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    endpoint = parser.parse_args().endpoint
    bed = Bed(endpoint)
    ec2, ebs = bed.client("ec2"), bed.client("ebs")

    # A volume of 8 GiB, never tagged: 8 written blocks over 16384 indices.
    vol = volume(ec2, 8)
    snap = snapshot(ec2, vol)
    pages = list_pages(ebs, snap, MaxResults=100)
    blocks = blocks_of(pages)
    check(len(blocks) == 8, f"8 GiB volume's snapshot lists 8 blocks (got {len(blocks)})")
    check(len(pages) == 16384 // 100 + 1, f"pages of 100 indices cover 16384 indices ({len(pages)} pages)")
    check(any(not p.get("Blocks") and p.get("NextToken") for p in pages), "an empty page carries a NextToken")
    check(all(p["BlockSize"] == BLOCK_SIZE and p["VolumeSize"] == 8 for p in pages), "BlockSize 524288, VolumeSize 8")
    indices = [b["BlockIndex"] for b in blocks]
    check(indices == sorted(set(indices)) and all(0 <= i < 16384 for i in indices), f"indices unique, ordered, in range: {indices}")
    expiry = pages[0]["ExpiryTime"]
    check(3000 < (expiry - datetime.now(timezone.utc)).total_seconds() < 4000, f"ExpiryTime about an hour ahead ({expiry})")
    default_pages = list_pages(ebs, snap)
    check(len(default_pages) == 2 and [b["BlockIndex"] for b in blocks_of(default_pages)] == indices,
          "default MaxResults (10000): 2 pages, the same blocks")
    start = ebs.list_snapshot_blocks(SnapshotId=snap, StartingBlockIndex=indices[1], MaxResults=100)
    check([b["BlockIndex"] for b in start["Blocks"]] == [indices[1]], "StartingBlockIndex starts the window there")

    original = {}
    for block in blocks:
        data, answer = read_block(ebs, snap, block)
        original[block["BlockIndex"]] = data
        check(len(data) == BLOCK_SIZE and answer["DataLength"] == BLOCK_SIZE
              and answer["ChecksumAlgorithm"] == "SHA256" and answer["Checksum"] == checksum(data),
              f"block {block['BlockIndex']}: 512 KiB whose SHA-256 is the checksum header")
    check(len({d for d in original.values()}) == len(original), "blocks hold different data")

    # Refusals.
    block = blocks[0]
    code = error_code(lambda: ebs.list_snapshot_blocks(SnapshotId="snap-0123456789abcdef0"))
    check(code == ("ResourceNotFoundException", 404), f"missing snapshot: ResourceNotFoundException 404 ({code})")
    code = error_code(lambda: ebs.get_snapshot_block(SnapshotId="snap-0123456789abcdef0", BlockIndex=0, BlockToken="AAAA"))
    check(code == ("ResourceNotFoundException", 404), f"missing snapshot's block: ResourceNotFoundException 404 ({code})")
    code = error_code(lambda: ebs.get_snapshot_block(SnapshotId=snap, BlockIndex=block["BlockIndex"], BlockToken=blocks[1]["BlockToken"]))
    check(code == ("ValidationException", 400), f"another block's token: ValidationException ({code})")
    code = error_code(lambda: ebs.get_snapshot_block(SnapshotId=snap, BlockIndex=1, BlockToken=block["BlockToken"]))
    check(code == ("ValidationException", 400), f"an unwritten block: ValidationException ({code})")
    code = error_code(lambda: ebs.list_snapshot_blocks(SnapshotId=snap, NextToken="bm90LWEtdG9rZW4="))
    check(code == ("ValidationException", 400), f"a foreign page token: ValidationException ({code})")
    unchecked = bed.client("ebs", parameter_validation=False)
    for bad in (99, 10001):
        code = error_code(lambda: unchecked.list_snapshot_blocks(SnapshotId=snap, MaxResults=bad))
        check(code == ("ValidationException", 400), f"MaxResults {bad}: ValidationException ({code})")
    pending = snapshot(ec2, vol, {"test-bed:state": "pending"})
    code = error_code(lambda: ebs.list_snapshot_blocks(SnapshotId=pending))
    check(code == ("ValidationException", 400), f"a pending snapshot: ValidationException ({code})")
    other = bed.client("ebs", region=COPY_REGION)
    code = error_code(lambda: other.list_snapshot_blocks(SnapshotId=snap))
    check(code == ("ResourceNotFoundException", 404), f"a snapshot of another region: ResourceNotFoundException ({code})")

    # A never-written volume, and one with many blocks.
    empty = snapshot(ec2, volume(ec2, 1, {"test-bed:written-blocks": "0"}))
    empty_pages = list_pages(ebs, empty, MaxResults=1000)
    check(blocks_of(empty_pages) == [] and len(empty_pages) == 3, f"written-blocks 0: no block in {len(empty_pages)} pages")
    many = snapshot(ec2, volume(ec2, 2, {"test-bed:written-blocks": "300"}))
    check(len(blocks_of(list_pages(ebs, many, MaxResults=100))) == 300, "written-blocks 300: 300 blocks")

    # Copies: to another region, of the copy, and by another account of a shared snapshot.
    west = bed.client("ec2", region=COPY_REGION)
    west_ebs = bed.client("ebs", region=COPY_REGION)
    copy = west.copy_snapshot(SourceSnapshotId=snap, SourceRegion=REGION)["SnapshotId"]
    copied = read_all(west_ebs, copy)
    check({i: d for i, (d, _) in copied.items()} == original, "a copy to another region: the same blocks, the same data")
    copy2 = ec2.copy_snapshot(SourceSnapshotId=copy, SourceRegion=COPY_REGION)["SnapshotId"]
    check({i: d for i, (d, _) in read_all(ebs, copy2).items()} == original, "a copy of the copy: the same blocks, the same data")

    sts = bed.client("sts")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/drill-{uuid.uuid4().hex[:8]}", RoleSessionName="drill")["Credentials"]
    theirs = Bed(endpoint, {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                            "aws_session_token": creds["SessionToken"]})
    ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", UserIds=[OTHER_ACCOUNT])
    shared_copy = theirs.client("ec2", region=COPY_REGION).copy_snapshot(SourceSnapshotId=snap, SourceRegion=REGION)["SnapshotId"]
    theirs_ebs = theirs.client("ebs", region=COPY_REGION)
    check({i: d for i, (d, _) in read_all(theirs_ebs, shared_copy).items()} == original,
          "another account's copy of a shared snapshot: the same blocks, the same data")
    code = error_code(lambda: theirs.client("ebs").list_snapshot_blocks(SnapshotId=snap))
    check(code == ("ResourceNotFoundException", 404), f"another account's snapshot, not copied: ResourceNotFoundException ({code})")

    # CreateSnapshots for an instance (snapshots made per volume).
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    made = ec2.create_snapshots(InstanceSpecification={"InstanceId": instance})["Snapshots"]
    check(bool(made) and all(len(blocks_of(list_pages(ebs, s["SnapshotId"]))) == 8 for s in made),
          f"CreateSnapshots: each of {len(made)} snapshots lists 8 blocks")

    # The test bed's hooks, read at request time.
    tag(west, copy, "test-bed:bad-checksum")
    bad = read_all(west_ebs, copy)
    check(all(d == original[i] and c != checksum(d) for i, (d, c) in bad.items()),
          "test-bed:bad-checksum: the same data, a checksum that does not match it")
    west.delete_tags(Resources=[copy], Tags=[{"Key": "test-bed:bad-checksum"}])
    check(all(c == checksum(d) for d, c in read_all(west_ebs, copy).values()), "the tag removed: checksums match again")
    tag(ec2, copy2, "test-bed:altered")
    altered = read_all(ebs, copy2)
    check(all(d != original[i] and len(d) == BLOCK_SIZE and c == checksum(d) for i, (d, c) in altered.items()),
          "test-bed:altered: other data than the source's, with a checksum that matches it")
    check({i: d for i, (d, _) in read_all(ebs, snap).items()} == original, "the source is unchanged")

    if failures:
        print(f"\n{len(failures)} check(s) failed")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
