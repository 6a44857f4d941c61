"""Helpers for scripts/demo.sh, run with the project venv's Python (boto3 comes with moto).

  demo_fleet.py fleet             create the demo fleet; prints the ids the demo needs as shell vars
  demo_fleet.py snapshots REGION  print the account's snapshots in REGION as a table
  demo_fleet.py expire REGION     plant expired snapshots (DeleteOn in the past) in REGION
  demo_fleet.py key REGION        create a KMS key in REGION; prints its ARN
  demo_fleet.py copies REGION     print the disaster-recovery copies in REGION as a table
  demo_fleet.py drop REGION INSTANCE  delete every snapshot of INSTANCE's volumes in REGION
  demo_fleet.py try-delete REGION CONFIG  try to delete every snapshot of configuration CONFIG
                                  (as an attacker with the account's keys would); print what EC2 says
  demo_fleet.py vault-env         credentials of the vault account (VAULT_ACCOUNT): shell vars
  demo_fleet.py vault-instance    launch an instance tagged backup=vault; prints VAULTED_INSTANCE=...
  demo_fleet.py vault-copies REGION  the vault account's copies in REGION, and this account's try to delete them
"""
import sys
from datetime import date, timedelta

import boto3


def ec2(region):
    return boto3.client("ec2", region_name=region)


def launch(region, tags, data_volumes=1):
    c = ec2(region)
    tag_spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    i = c.run_instances(ImageId="ami-0abcdef1234567890", MinCount=1, MaxCount=1, InstanceType="t3.micro", TagSpecifications=tag_spec)
    iid = i["Instances"][0]["InstanceId"]
    for n in range(data_volumes):
        v = c.create_volume(AvailabilityZone=f"{region}a", Size=8, TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": f"{tags.get('Name', iid)}-data{n}"}]}])
        c.attach_volume(VolumeId=v["VolumeId"], InstanceId=iid, Device=f"/dev/xvd{chr(ord('f') + n)}")
    return iid


def fleet():
    web = launch("us-east-1", {"Name": "web-1", "backup": "yes", "Service": "shop"})
    db = launch("us-east-1", {"Name": "db-1", "backup": "yes", "Service": "shop"}, data_volumes=2)
    stopped = launch("us-east-1", {"Name": "batch-1", "backup": "yes"})
    ec2("us-east-1").stop_instances(InstanceIds=[stopped])
    ignored = launch("us-east-1", {"Name": "scratch-1", "backup": "yes"})
    replicated = launch("us-west-2", {"Name": "ledger-1", "backup": "daily", "replication_dst_region": "us-east-1"})
    launch("us-west-2", {"Name": "archive-1", "backup": "weekly"}, data_volumes=0)
    pay = launch("us-east-1", {"Name": "pay-1", "backup": "tiered"}, data_volumes=2)
    scratch = ec2("us-east-1").describe_volumes(Filters=[{"Name": "tag:Name", "Values": ["pay-1-data1"]}])["Volumes"][0]["VolumeId"]
    ec2("us-east-1").create_tags(Resources=[scratch], Tags=[{"Key": "kind", "Value": "scratch"}])
    print(f"PAY_INSTANCE={pay}")
    print(f"IGNORED_INSTANCE={ignored}")
    print(f"FLEET='web {web}, db {db} (two data volumes), stopped {stopped}, ignored {ignored}, pay {pay} (two data volumes, one scratch) in us-east-1; ledger {replicated} in us-west-2, tagged for replication to us-east-1'")


def snapshots(region):
    snaps = ec2(region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    rows = []
    for s in sorted(snaps, key=lambda s: s["SnapshotId"]):
        tags = {t["Key"]: t["Value"] for t in s.get("Tags", [])}
        rows.append((s["SnapshotId"], s.get("VolumeId", ""), tags.get("ebs-snapper:instance-id", "-"), tags.get("DeleteOn", "-"),
                     tags.get("Name", "-"), tags.get("replication_dst_region", tags.get("replication_src_region", "-")),
                     tags.get("ebs-snapper:tier", "-"), "set" if "ebs-snapper:set" in tags else "-"))
    header = ("snapshot", "volume", "instance", "DeleteOn", "Name", "replication", "tier", "set")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths))
    print(f"{region}: {len(rows)} snapshot(s)")
    print(line(header))
    for r in rows:
        print(line(r))


def expire(region):
    c = ec2(region)
    instances = c.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web-1"]}])["Reservations"][0]["Instances"]
    volume = instances[0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    for days in (40, 20, 10, 5, 3, 2):
        when = (date.today() - timedelta(days=days)).isoformat()
        c.create_snapshot(VolumeId=volume, Description=f"planted, expired {when}",
                          TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "DeleteOn", "Value": when}, {"Key": "ebs-snapper:config", "Value": "shop"}]}])
    print(f"planted 6 expired snapshots of {volume} (web-1 root), DeleteOn 2 to 40 days ago")


def key(region):
    print(boto3.client("kms", region_name=region).create_key(Description="ebs-snapper demo: DR copies")["KeyMetadata"]["Arn"])


def copies(region):
    rows = []
    for s in ec2(region).describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag-key", "Values": ["ebs-snapper:volume-id"]}])["Snapshots"]:
        tags = {t["Key"]: t["Value"] for t in s.get("Tags", [])}
        rows.append((s["SnapshotId"], tags.get("replication_snapshot_id", "-"), tags.get("replication_src_region", "-"),
                     tags.get("ebs-snapper:volume-id", "-"), tags.get("DeleteOn", "-"), "yes" if s.get("Encrypted") else "no",
                     s.get("KmsKeyId", "-").rsplit("/", 1)[-1]))
    header = ("copy", "source", "from", "source volume", "DeleteOn", "encrypted", "key")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths))
    print(f"{region}: {len(rows)} disaster-recovery cop{'y' if len(rows) == 1 else 'ies'}")
    print(line(header))
    for r in sorted(rows):
        print(line(r))


def drop(region, instance):
    c = ec2(region)
    n = 0
    for s in c.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:ebs-snapper:instance-id", "Values": [instance]}])["Snapshots"]:
        c.delete_snapshot(SnapshotId=s["SnapshotId"])
        n += 1
    print(f"deleted {n} snapshot(s) of {instance} in {region}")


def try_delete(region, config):
    c = ec2(region)
    for s in c.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:ebs-snapper:config", "Values": [config]}])["Snapshots"]:
        try:
            c.delete_snapshot(SnapshotId=s["SnapshotId"])
            print(f"{s['SnapshotId']}: deleted")
        except c.exceptions.ClientError as e:
            print(f"{s['SnapshotId']}: refused: {e.response['Error']['Code']}: {e.response['Error']['Message']}")


VAULT_ACCOUNT = "444455556666"


def vault_session():
    c = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{VAULT_ACCOUNT}:role/demo-vault-admin", RoleSessionName="demo-vault")["Credentials"]
    return c


def vault_env():
    c = vault_session()
    print(f"VAULT_ACCOUNT={VAULT_ACCOUNT}")
    print(f"VAULT_ENV='AWS_ACCESS_KEY_ID={c['AccessKeyId']} AWS_SECRET_ACCESS_KEY={c['SecretAccessKey']} AWS_SESSION_TOKEN={c['SessionToken']}'")


def vault_instance():
    print(f"VAULTED_INSTANCE={launch('us-east-1', {'Name': 'ledger-2', 'backup': 'vault'})}")


def vault_copies(region):
    c = vault_session()
    vault = boto3.client("ec2", region_name=region, aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
    copies = vault.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag-key", "Values": ["ebs-snapper:vault-of"]}])["Snapshots"]
    for s in copies:
        tags = {t["Key"]: t["Value"] for t in s.get("Tags", [])}
        locks = vault.describe_locked_snapshots(SnapshotIds=[s["SnapshotId"]])["Snapshots"]
        lock = f"{locks[0]['LockState']} until {locks[0].get('LockExpiresOn')}" if locks else "-"
        print(f"vault {VAULT_ACCOUNT} {region}: {s['SnapshotId']} copy of {tags.get('replication_snapshot_id')} "
              f"from account {tags.get('ebs-snapper:vault-of')}, DeleteOn {tags.get('DeleteOn')}, lock {lock}")
        try:
            ec2(region).delete_snapshot(SnapshotId=s["SnapshotId"])
            print("  the protected account deleted it")
        except ec2(region).exceptions.ClientError as e:
            print(f"  the protected account's DeleteSnapshot: refused: {e.response['Error']['Code']}")


{
    "fleet": lambda: fleet(),
    "vault-env": lambda: vault_env(),
    "vault-instance": lambda: vault_instance(),
    "vault-copies": lambda: vault_copies(sys.argv[2]),
    "try-delete": lambda: try_delete(sys.argv[2], sys.argv[3]),
    "snapshots": lambda: snapshots(sys.argv[2]),
    "expire": lambda: expire(sys.argv[2]),
    "key": lambda: key(sys.argv[2]),
    "copies": lambda: copies(sys.argv[2]),
    "drop": lambda: drop(sys.argv[2], sys.argv[3]),
}[sys.argv[1]]()
