"""moto server, made to answer as AWS does where moto is kinder (SPEC section 15).

Run as moto_server is (same arguments). Each change below is AWS's documented behaviour:

- DescribeInstances refuses a filter name it does not know, and a filter with more than 200
  values, with InvalidParameterValue (moto either ignores the filter or fails with a 500).
- A snapshot made by CopySnapshot reports its volume as vol-ffffffff (moto reports the source
  snapshot's volume).
- S3 refuses a request whose x-amz-expected-bucket-owner is not the bucket's owner (403
  AccessDenied), as S3 does; moto ignores the header.
- Requests arrive over TLS, as the SDK sends them to AWS: a bucket policy statement that denies
  requests without TLS (aws:SecureTransport false) does not apply to them (moto, serving plain
  HTTP on loopback, and misreading conditions on Deny, would refuse everything).
- GetBucketVersioning answers with S3's root element, VersioningConfiguration (moto's
  GetBucketVersioningResponse is unreadable to the Rust SDK).
- DescribeSnapshots and DescribeVolumes answer pages of at most MaxResults, with a NextToken
  (moto returns everything at once, so no test could cross a page boundary).
- CreateSnapshots leaves out the volumes named in ExcludeDataVolumeIds (moto snapshots them).
- A filter with several values matches a resource one of whose values matches one of them,
  wildcards included (moto compares a resource's tag keys with several values as sets, with no
  wildcard: tag-key ["replication_*", "ebs-snapper:copy-to"] matched nothing tagged
  replication_dst_region).
- CopySnapshot with a KmsKeyId requires Encrypted (InvalidParameterDependency), and a key ARN
  must be in the destination region (moto accepts both).
- The key EC2 makes for default encryption (behind alias/aws/ebs, as every reserved alias) is AWS
  managed (DescribeKey: KeyManager AWS; moto says CUSTOMER), and a snapshot is encrypted under
  its volume's key (moto records no key on it).

- AssumeRole into a role is refused (AccessDenied) unless the role exists and its trust policy
  allows the caller: an Allow statement for sts:AssumeRole whose Principal names the caller's
  account (root or id) or the caller itself, and whose conditions all hold (StringEquals,
  StringLike, ArnEquals and ArnLike on sts:ExternalId, aws:PrincipalArn and
  aws:PrincipalAccount; any other condition fails). moto lets anyone assume anything, even a
  role that does not exist. The test bed's own root (moto's default account, whose credentials
  the tests start from) keeps moto's behaviour: it is how a test gets a fresh account.
- RegisterImage with block device mappings makes each snapshot named there back the image, as
  AWS does: DeleteSnapshot and ModifySnapshotTier of it are refused with InvalidSnapshot.InUse
  (moto ignores the mappings, and archives a snapshot an image uses).
- A stack update changes an IAM role's trust policy and inline policies (moto keeps the old
  ones), and a template's AWS::NoValue inside a list leaves no element there (moto leaves a
  null, e.g. a trust statement chosen away by Fn::If).
- DescribeSnapshots honours RestorableByUserIds (moto lists every snapshot whatever it says).
- Sharing and copying across accounts, which moto cannot do: a snapshot shared with another
  account (ModifySnapshotAttribute createVolumePermission add UserId) can be copied by that
  account (CopySnapshot with SourceRegion); one not shared with it is InvalidSnapshot.NotFound to
  it, and sharing a snapshot encrypted with the AWS managed key aws/ebs is refused
  (OperationNotPermitted), as EC2 does.
- CreateVolume with a ClientToken is idempotent: a repeated request (the SDK's retry of an
  answer lost after EC2 made the volume) gets the volume the first one made, as EC2 documents
  (moto makes another).
- Snapshot lock, which moto lacks, as the EC2 API reference documents it: LockSnapshot (with
  its refusals: both or neither of LockDuration and ExpirationDate, a date not in the future, a
  CoolOffPeriod in governance mode, out of 1-72 or once the cool-off has ended, a shorter lock or
  another mode once a compliance lock's cool-off has ended; a snapshot in neither pending nor
  completed), UnlockSnapshot (refused in compliance mode after the cool-off),
  DescribeLockedSnapshots (pages of at most LOCK_PAGE entries with a NextToken whatever
  MaxResults asks, the expired locks listed too, the lock-state filter), lock states that follow
  the clock (compliance-cooloff -> compliance -> expired), DeleteSnapshot refused while locked
  (SNAPSHOT_LOCKED_CODE), and a snapshot that ends in error losing its lock. The test bed moves a
  lock's clock with two tags: test-bed:cool-off-ended ends its cool-off now, test-bed:lock-expired
  ends the lock now (both removed once applied).
- The EBS direct APIs read EC2's snapshots: ListSnapshotBlocks and GetSnapshotBlock serve a
  snapshot of the caller's account and region made by CreateSnapshot, CreateSnapshots,
  CopySnapshot (another account's copy of a shared one too) or for an image, as AWS serves it
  (moto serves only the snapshots it made by StartSnapshot, which it still serves as it does).
  Only a completed snapshot can be read (ValidationException, reason INVALID_SNAPSHOT_ID, for
  one pending or in error; ResourceNotFoundException 404 for one that does not exist). Blocks of
  512 KiB, VolumeSize the volume's GiB, so VolumeSize * 2048 block indices; a page of
  ListSnapshotBlocks covers maxResults (100-10000, default 10000; else ValidationException)
  indices from its start and lists the written blocks among them, so a page may be empty and
  still carry a NextToken, as AWS's do; ExpiryTime an hour ahead. A snapshot's written blocks
  are its volume's when it is made (8, spread evenly over the index space; the test bed's tag
  test-bed:written-blocks on the volume says how many, 0 for a volume never written); a copy has
  its source's, with the same data: a block's data is derived from the first volume of the chain
  and the index, and GetSnapshotBlock answers it with x-amz-Data-Length, x-amz-Checksum (base64
  SHA-256) and x-amz-Checksum-Algorithm SHA256. A block token not listed for that snapshot and
  index, an unwritten index among them, is ValidationException (INVALID_BLOCK_TOKEN); a page
  token not of that snapshot is ValidationException (INVALID_PAGE_TOKEN).

The request recording the tests count calls from is written one request at a time (moto's
threads could cut one request's line with another's).

And two things only a test bed does. A history: a snapshot created with the tag
test-bed:start-time (RFC 3339) or test-bed:state, or a volume with test-bed:create-time, gets
that time (or state) instead of now (completed), and the tag is removed, as if it had been made then (AWS has no such call; moto none either).
Blocks gone wrong, for the restore drills to catch (a snapshot's tag, read at each request and
kept until removed): with test-bed:bad-checksum, GetSnapshotBlock answers the block's data with a
checksum that does not match it; with test-bed:altered, data other than its source's (the first
byte flipped) with a checksum that matches it, so only comparing with the source finds it. A
volume's test-bed:written-blocks (a count) says how many blocks its snapshots have.

What must be switchable per test (lost answers, empty first pages, snapshots pending or not yet
listed) is done by the test bed's proxy instead (crates/cli/tests/e2e/support/fault_proxy.rs).
"""

import base64
import fnmatch
import hashlib
import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.ebs.models import ebs_backends
from moto.ebs.responses import EBSResponse
from moto.ec2 import utils as ec2_utils
from moto.ec2.exceptions import EC2ClientError, InvalidSnapshotInUse
from moto.ec2.responses.amis import AmisResponse
from moto.ec2.models import elastic_block_store, instances
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.s3 import responses as s3_responses
from moto.s3.exceptions import AccessDeniedByLock
from moto.s3 import models as s3_models
from moto.s3.models import s3_backends
from moto.server import main
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import Role, iam_backends
from moto.kms import models as kms_models
from moto.moto_api._internal.recorder import models as recorder_models
from moto.sts.exceptions import STSClientError
from moto.sts.responses import TokenResponse

# DescribeInstances filter names (EC2 API reference), besides tag:KEY.
INSTANCE_FILTERS = {
    'affinity',
    'architecture',
    'availability-zone',
    'availability-zone-id',
    'block-device-mapping.attach-time',
    'block-device-mapping.delete-on-termination',
    'block-device-mapping.device-name',
    'block-device-mapping.status',
    'block-device-mapping.volume-id',
    'boot-mode',
    'capacity-reservation-id',
    'capacity-reservation-specification.capacity-reservation-preference',
    'capacity-reservation-specification.capacity-reservation-target.capacity-reservation-id',
    'capacity-reservation-specification.capacity-reservation-target.capacity-reservation-resource-group-arn',
    'client-token',
    'current-instance-boot-mode',
    'dns-name',
    'ebs-optimized',
    'ena-support',
    'enclave-options.enabled',
    'hibernation-options.configured',
    'host-id',
    'hypervisor',
    'iam-instance-profile.arn',
    'iam-instance-profile.id',
    'image-id',
    'instance-id',
    'instance-lifecycle',
    'instance-state-code',
    'instance-state-name',
    'instance-type',
    'instance.group-id',
    'instance.group-name',
    'ip-address',
    'ipv6-address',
    'kernel-id',
    'key-name',
    'launch-index',
    'launch-time',
    'maintenance-options.auto-recovery',
    'metadata-options.http-endpoint',
    'metadata-options.http-protocol-ipv4',
    'metadata-options.http-protocol-ipv6',
    'metadata-options.http-put-response-hop-limit',
    'metadata-options.http-tokens',
    'metadata-options.instance-metadata-tags',
    'metadata-options.state',
    'monitoring-state',
    'network-interface.addresses.association.allocation-id',
    'network-interface.addresses.association.association-id',
    'network-interface.addresses.association.carrier-ip',
    'network-interface.addresses.association.customer-owned-ip',
    'network-interface.addresses.association.ip-owner-id',
    'network-interface.addresses.association.public-dns-name',
    'network-interface.addresses.association.public-ip',
    'network-interface.addresses.primary',
    'network-interface.addresses.private-dns-name',
    'network-interface.addresses.private-ip-address',
    'network-interface.association.allocation-id',
    'network-interface.association.association-id',
    'network-interface.association.carrier-ip',
    'network-interface.association.customer-owned-ip',
    'network-interface.association.ip-owner-id',
    'network-interface.association.public-dns-name',
    'network-interface.association.public-ip',
    'network-interface.attachment.attach-time',
    'network-interface.attachment.attachment-id',
    'network-interface.attachment.delete-on-termination',
    'network-interface.attachment.device-index',
    'network-interface.attachment.instance-id',
    'network-interface.attachment.instance-owner-id',
    'network-interface.attachment.network-card-index',
    'network-interface.attachment.status',
    'network-interface.availability-zone',
    'network-interface.deny-all-igw-traffic',
    'network-interface.description',
    'network-interface.group-id',
    'network-interface.group-name',
    'network-interface.ipv4-prefixes.ipv4-prefix',
    'network-interface.ipv6-address',
    'network-interface.ipv6-addresses.ipv6-address',
    'network-interface.ipv6-addresses.is-primary-ipv6',
    'network-interface.ipv6-native',
    'network-interface.ipv6-prefixes.ipv6-prefix',
    'network-interface.mac-address',
    'network-interface.network-interface-id',
    'network-interface.operator.managed',
    'network-interface.operator.principal',
    'network-interface.outpost-arn',
    'network-interface.owner-id',
    'network-interface.private-dns-name',
    'network-interface.private-ip-address',
    'network-interface.public-dns-name',
    'network-interface.requester-id',
    'network-interface.requester-managed',
    'network-interface.source-dest-check',
    'network-interface.status',
    'network-interface.subnet-id',
    'network-interface.tag-key',
    'network-interface.tag-value',
    'network-interface.vpc-id',
    'network-performance-options.bandwidth-weighting',
    'operator.managed',
    'operator.principal',
    'outpost-arn',
    'owner-id',
    'placement-group-name',
    'placement-partition-number',
    'platform',
    'platform-details',
    'private-dns-name',
    'private-dns-name-options.enable-resource-name-dns-a-record',
    'private-dns-name-options.enable-resource-name-dns-aaaa-record',
    'private-dns-name-options.hostname-type',
    'private-ip-address',
    'product-code',
    'product-code.type',
    'ramdisk-id',
    'requester-id',
    'reservation-id',
    'root-device-name',
    'root-device-type',
    'source-dest-check',
    'spot-instance-request-id',
    'state-reason-code',
    'state-reason-message',
    'subnet-id',
    'tag-key',
    'tenancy',
    'tpm-support',
    'usage-operation',
    'usage-operation-update-time',
    'virtualization-type',
    'vpc-id',
}
MAX_FILTER_VALUES = 200
COPY_VOLUME = "vol-ffffffff"


def _check_instance_filters(filters):
    for name, values in (filters or {}).items():
        if not (name in INSTANCE_FILTERS or (name.startswith("tag:") and len(name) > 4)):
            raise EC2ClientError("InvalidParameterValue", f"The filter '{name}' is invalid")
        if len(values or []) > MAX_FILTER_VALUES:
            raise EC2ClientError(
                "FilterLimitExceeded",
                f"The maximum number of filter values specified on a single call is {MAX_FILTER_VALUES}",
            )


_describe_instances = instances.InstanceBackend.describe_instances
_by_ids = instances.InstanceBackend.get_reservations_by_instance_ids


def describe_instances(self, filters=None):
    _check_instance_filters(filters)
    return _describe_instances(self, filters=filters)


def get_reservations_by_instance_ids(self, instance_ids, filters=None):
    _check_instance_filters(filters)
    return _by_ids(self, instance_ids, filters=filters)


class _CopiedVolume:
    """The source volume as a copy sees it: every attribute but the id."""

    def __init__(self, volume):
        self._volume = volume
        self.id = COPY_VOLUME

    def __getattr__(self, name):
        return getattr(self._volume, name)


_is_filter_matching = ec2_utils.is_filter_matching


def is_filter_matching(obj, name, wanted):
    value = obj.get_filter_value(name)
    if isinstance(wanted, list) and len(wanted) > 1 and isinstance(value, (list, set, tuple)):
        return any(fnmatch.fnmatchcase(str(v), pattern) for v in value for pattern in wanted)
    return _is_filter_matching(obj, name, wanted)


_copy_snapshot = elastic_block_store.EBSBackend.copy_snapshot
_copy_snapshot_response = ElasticBlockStore.copy_snapshot


def copy_snapshot_response(self):
    kms_key_id = self._get_param("KmsKeyId")
    if kms_key_id:
        if str(self._get_param("Encrypted", "false")).lower() != "true":
            raise EC2ClientError(
                "InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set."
            )
        parts = kms_key_id.split(":")
        if kms_key_id.startswith("arn:") and (len(parts) < 6 or parts[3] != self.region):
            raise EC2ClientError("InvalidParameterValue", f"Value ({kms_key_id}) for parameter kmsKeyId is invalid.")
    return _copy_snapshot_response(self)


def _default_key(snapshot):
    """Encrypted with the AWS managed key aws/ebs: no key recorded (a copy without KmsKeyId, under
    the default), the alias, or a key KMS says is AWS managed."""
    if not snapshot.encrypted:
        return False
    key = snapshot.kms_key_id
    if not key or "alias/aws/ebs" in str(key):
        return True
    from moto.kms.models import kms_backends

    backend = snapshot.ec2_backend
    try:
        return kms_backends[backend.account_id][backend.region_name].describe_key(key).key_manager == "AWS"
    except Exception:
        return False


_create_snapshot = elastic_block_store.EBSBackend.create_snapshot


def create_snapshot(self, volume_id, description, owner_id=None, from_ami=None):
    """A snapshot is encrypted under its volume's key, as EC2 reports it (moto records none)."""
    snapshot = _create_snapshot(self, volume_id, description, owner_id=owner_id, from_ami=from_ami)
    if snapshot.encrypted and not snapshot.kms_key_id:
        snapshot.kms_key_id = snapshot.volume.kms_key_id
    # Its blocks are those its volume has written now (EBS direct APIs, below).
    _blocks_of(snapshot)
    return snapshot


_create_alias = kms_models.KmsBackend.create_alias


def create_alias(self, target_key_id, alias_name):
    """The key behind a reserved alias (alias/aws/ebs, made by EC2 for default encryption) is AWS
    managed, KeyManager AWS (moto makes it a customer managed key)."""
    alias = _create_alias(self, target_key_id, alias_name)
    if alias_name.startswith("alias/aws/"):
        self.keys[self.get_key_id(target_key_id)].key_manager = "AWS"
    return alias


def _shared_source(backend, source_snapshot_id, source_region):
    """Another account's snapshot in `source_region` that it shares with `backend`'s account
    (createVolumePermission), or InvalidSnapshot.NotFound as EC2 answers for one it may not see."""
    from moto.ec2.models import ec2_backends

    for account in list(ec2_backends.keys()):
        if account == backend.account_id:
            continue
        regions = ec2_backends[account]
        other = regions[source_region] if source_region in regions else None
        snapshot = other.snapshots.get(source_snapshot_id) if other is not None else None
        if snapshot is None:
            continue
        if backend.account_id in snapshot.create_volume_permission_userids or "all" in snapshot.create_volume_permission_groups:
            return snapshot
        break
    raise EC2ClientError("InvalidSnapshot.NotFound", f"The snapshot '{source_snapshot_id}' does not exist.")


def copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id):
    from moto.ec2.models import ec2_backends

    own = ec2_backends[self.account_id][source_region]
    if source_snapshot_id in own.snapshots:
        source = own.snapshots[source_snapshot_id]
        snapshot = _copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id)
    else:
        # A copy by another account: only of a snapshot shared with it (SPEC section 16).
        source = _shared_source(self, source_snapshot_id, source_region)
        snapshot = elastic_block_store.Snapshot(
            self,
            ec2_utils.random_snapshot_id(),
            volume=source.volume,
            description=description,
            encrypted=source.encrypted,
            kms_key_id=kms_key_id,
        )
        self.snapshots[snapshot.id] = snapshot
    snapshot.volume = _CopiedVolume(snapshot.volume)
    # A copy holds its source's blocks, with the same data (EBS direct APIs, below).
    snapshot._test_bed_blocks = _blocks_of(source)
    return snapshot


_modify_snapshot_attribute = ElasticBlockStore.modify_snapshot_attribute


def modify_snapshot_attribute(self):
    """Sharing a snapshot encrypted with aws/ebs is refused, as EC2 refuses it (the AWS managed
    key's policy cannot be given to another account)."""
    if self._get_param("OperationType") == "add" and (self._get_param("UserIds") or self._get_param("GroupNames")):
        snapshot = self.ec2_backend.get_snapshot(self._get_param("SnapshotId"))
        if _default_key(snapshot):
            raise EC2ClientError("OperationNotPermitted", "Encrypted snapshots with EBS default key cannot be shared")
    return _modify_snapshot_attribute(self)


_create_snapshots = elastic_block_store.EBSBackend.create_snapshots


def create_snapshots(self, instance_spec, description, tags):
    excluded = instance_spec.get("ExcludeDataVolumeIds") or instance_spec.get("ExcludeDataVolumeId") or []
    if isinstance(excluded, dict):
        excluded = list(excluded.values())
    if not excluded:
        return _create_snapshots(self, instance_spec, description, tags)
    instance = self.get_instance(instance_spec["InstanceId"])
    exclude_boot = str(instance_spec.get("ExcludeBootVolume", False)).lower() == "true"
    volumes = [
        m.volume_id
        for device, m in instance.get_block_device_mapping
        if m.volume_id not in excluded and not (exclude_boot and device == instance.root_device_name)
    ]
    snapshots = [self.create_snapshot(v, description=description) for v in volumes]
    for snapshot in snapshots:
        snapshot.add_tags(tags)
    return snapshots


_register_image = AmisResponse.register_image


def register_image(self):
    result = _register_image(self)
    image_id = (result.result or {}).get("ImageId")
    for mapping in self._get_param("BlockDeviceMappings", []) or []:
        snapshot_id = (mapping.get("Ebs") or {}).get("SnapshotId")
        snapshot = self.ec2_backend.snapshots.get(snapshot_id) if snapshot_id else None
        if snapshot is not None and image_id:
            snapshot.from_ami = image_id
    return result


_modify_snapshot_tier = elastic_block_store.EBSBackend.modify_snapshot_tier


def modify_snapshot_tier(self, snapshot_id, storage_tier):
    snapshot = self.get_snapshot(snapshot_id)
    if snapshot.from_ami and snapshot.from_ami in self.amis:
        raise InvalidSnapshotInUse(snapshot_id, snapshot.from_ami)
    return _modify_snapshot_tier(self, snapshot_id, storage_tier)



# Snapshot lock (SPEC section 16). The error a locked snapshot's DeleteSnapshot gets (see DESIGN,
# "Snapshot lock", for the source).
SNAPSHOT_LOCKED_CODE = "SnapshotLocked"
# DescribeLockedSnapshots answers at most this many locks a page, whatever MaxResults asks (AWS
# may answer fewer than asked): small, so that every test crosses a page boundary.
LOCK_PAGE = 5
LOCK_MODES = ("governance", "compliance")


def _utcnow():
    return datetime.now(timezone.utc)


def _parse_time(text):
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(timezone.utc)


def _iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class SnapshotLock:
    def __init__(self, mode, created, expires, cool_off_hours, duration_days, duration_start):
        self.mode = mode
        self.created = created
        self.expires = expires
        self.cool_off_hours = cool_off_hours
        self.cool_off_expires = (created + timedelta(hours=cool_off_hours)) if cool_off_hours else None
        self.duration_days = duration_days
        self.duration_start = duration_start

    def state(self, now=None):
        now = now or _utcnow()
        if now >= self.expires:
            return "expired"
        if self.mode == "governance":
            return "governance"
        if self.cool_off_expires is not None and now < self.cool_off_expires:
            return "compliance-cooloff"
        return "compliance"

    def describe(self, snapshot_id, owner=None):
        out = {
            "SnapshotId": snapshot_id,
            "LockState": self.state(),
            "LockCreatedOn": _iso(self.created),
            "LockExpiresOn": _iso(self.expires),
        }
        if owner:
            out["OwnerId"] = owner
        if self.duration_days is not None:
            out["LockDuration"] = self.duration_days
            out["LockDurationStartTime"] = _iso(self.duration_start)
        if self.cool_off_hours:
            out["CoolOffPeriod"] = self.cool_off_hours
            out["CoolOffPeriodExpiresOn"] = _iso(self.cool_off_expires)
        return out


def _lock_of(snapshot):
    """The snapshot's lock, after the test bed's clock tags and AWS's rule that a snapshot whose
    creation fails loses its lock."""
    lock = getattr(snapshot, "lock", None)
    if lock is None:
        return None
    if snapshot.status == "error":
        snapshot.lock = None
        return None
    tags = snapshot.ec2_backend.tags.get(snapshot.id, {})
    now = _utcnow()
    if tags.pop("test-bed:cool-off-ended", None) is not None and lock.cool_off_expires is not None:
        lock.cool_off_expires = min(lock.cool_off_expires, now)
    if tags.pop("test-bed:lock-expired", None) is not None:
        lock.expires = min(lock.expires, now)
    return lock


def _invalid(message, code="InvalidParameterValue"):
    return EC2ClientError(code, message)


def lock_snapshot(self):
    snapshot_id = self._get_param("SnapshotId")
    mode = self._get_param("LockMode")
    cool_off = self._get_param("CoolOffPeriod")
    duration = self._get_param("LockDuration")
    expiration = self._get_param("ExpirationDate")
    self.error_on_dryrun()
    snapshot = self.ec2_backend.get_snapshot(snapshot_id)
    if mode not in LOCK_MODES:
        raise _invalid(f"Value ({mode}) for parameter lockMode is invalid.")
    if (duration is None) == (expiration is None):
        raise _invalid(
            "Specify either a lock duration or an expiration date, but not both.", "InvalidParameterCombination"
        )
    if snapshot.status not in ("pending", "completed"):
        raise EC2ClientError(
            "IncorrectState", f"The snapshot '{snapshot_id}' is in state {snapshot.status} and cannot be locked."
        )
    now = _utcnow()
    if expiration is not None:
        expires = _parse_time(expiration)
        days = None
        if expires <= now:
            raise _invalid("The expiration date must be in the future.")
    else:
        days = int(duration)
        if not 1 <= days <= 36500:
            raise _invalid(f"Value ({days}) for parameter lockDuration is invalid. Valid range is 1-36500.")
        expires = now + timedelta(days=days)
    hours = int(cool_off) if cool_off is not None else None
    if hours is not None and mode != "compliance":
        raise _invalid("A cooling-off period can be specified only for compliance mode.", "InvalidParameterCombination")
    if hours is not None and not 1 <= hours <= 72:
        raise _invalid(f"Value ({hours}) for parameter coolOffPeriod is invalid. Valid range is 1-72.")
    current = _lock_of(snapshot)
    state = current.state(now) if current else None
    if state == "compliance":
        if hours is not None:
            raise _invalid("The cooling-off period has expired; it cannot be specified.", "InvalidParameterCombination")
        if mode != "compliance":
            raise EC2ClientError(
                "OperationNotPermitted", f"The lock mode of snapshot {snapshot_id} is compliance and cannot be changed."
            )
        if expires < current.expires:
            raise EC2ClientError(
                "OperationNotPermitted",
                f"The lock of snapshot {snapshot_id} can only be extended in compliance mode.",
            )
    if current is not None and state != "expired" and hours is None:
        # A change of a lock keeps its cool-off (a cool-off is set once, when it is given).
        lock = SnapshotLock(mode, current.created, expires, None, days, now if days else None)
        lock.cool_off_hours, lock.cool_off_expires = current.cool_off_hours, current.cool_off_expires
    else:
        lock = SnapshotLock(mode, now, expires, hours, days, now if days else None)
    snapshot.lock = lock
    return ActionResult(lock.describe(snapshot_id))


def unlock_snapshot(self):
    snapshot_id = self._get_param("SnapshotId")
    self.error_on_dryrun()
    snapshot = self.ec2_backend.get_snapshot(snapshot_id)
    lock = _lock_of(snapshot)
    if lock is not None and lock.state() == "compliance":
        raise EC2ClientError(
            "OperationNotPermitted",
            f"Snapshot {snapshot_id} is locked in compliance mode after its cooling-off period and cannot be unlocked.",
        )
    snapshot.lock = None
    return ActionResult({"SnapshotId": snapshot_id})


def describe_locked_snapshots(self):
    snapshot_ids = self._get_param("SnapshotIds", []) or []
    filters = self._filters_from_querystring() or {}
    wanted_states = filters.get("lock-state")
    max_results = self._get_param("MaxResults")
    if max_results is not None and not 5 <= int(max_results) <= 1000:
        raise _invalid(f"Value ({max_results}) for parameter maxResults is invalid. Valid range is 5-1000.")
    items = []
    for snapshot in list(self.ec2_backend.snapshots.values()):
        if snapshot_ids and snapshot.id not in snapshot_ids:
            continue
        lock = _lock_of(snapshot)
        if lock is None:
            continue
        if wanted_states and lock.state() not in wanted_states:
            continue
        items.append(lock.describe(snapshot.id, owner=snapshot.owner_id))
    items.sort(key=lambda i: i["SnapshotId"])
    token = self._get_param("NextToken") or "0"
    if not token.isdigit():
        raise _invalid(f"Invalid value '{token}' for nextToken")
    start = int(token)
    size = min(int(max_results or 1000), LOCK_PAGE)
    page = {"Snapshots": items[start : start + size]}
    if start + size < len(items):
        page["NextToken"] = str(start + size)
    return ActionResult(page)


_delete_snapshot = elastic_block_store.EBSBackend.delete_snapshot


def delete_snapshot(self, snapshot_id):
    snapshot = self.snapshots.get(snapshot_id)
    lock = _lock_of(snapshot) if snapshot is not None else None
    if lock is not None and lock.state() != "expired":
        raise EC2ClientError(
            SNAPSHOT_LOCKED_CODE,
            f"The snapshot '{snapshot_id}' is locked and cannot be deleted until {_iso(lock.expires)}.",
        )
    return _delete_snapshot(self, snapshot_id)


HISTORY_TAGS = {
    "test-bed:start-time": ("snapshots", "start_time"),
    "test-bed:create-time": ("volumes", "create_time"),
    "test-bed:state": ("snapshots", "status"),
}


def _backdate(backend):
    # A copy of each collection: other requests may add to it meanwhile (moto serves them on
    # threads of their own).
    for key, (collection, attr) in HISTORY_TAGS.items():
        for resource_id, resource in list(getattr(backend, collection).items()):
            value = backend.tags.get(resource_id, {}).pop(key, None)
            if value and attr == "status":
                setattr(resource, attr, value)
            elif value:
                when = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
                setattr(resource, attr, when.replace(tzinfo=None) if getattr(resource, attr).tzinfo is None else when)


def _with_history(respond):
    def handler(self):
        result = respond(self)
        # Only a request that sets a history tag has anything to backdate (the look is over
        # every snapshot and volume, too slow to make on each call of a large run).
        if "test-bed" in str(getattr(self, "querystring", "")) or "test-bed" in str(self.body or ""):
            _backdate(self.ec2_backend)
        return result

    return handler


_VOLUME_TOKENS = {}
_VOLUME_TOKENS_LOCK = threading.Lock()


def _idempotent_create_volume(respond):
    """CreateVolume with a ClientToken answers a repeated request with the volume the first one
    made, as EC2 does (moto makes a second volume): a retry after a lost answer makes none."""

    def handler(self):
        token = self._get_param("ClientToken")
        if not token:
            return respond(self)
        key = (self.current_account, self.region, token)
        with _VOLUME_TOKENS_LOCK:
            made = _VOLUME_TOKENS.get(key)
            volume = self.ec2_backend.volumes.get(made) if made else None
            if volume is not None:
                return ActionResult(volume)
            result = respond(self)
            volume = getattr(result, "result", None)
            if getattr(volume, "id", None):
                _VOLUME_TOKENS[key] = volume.id
            return result

    return handler


def _page(response, key, items):
    """One page of `items` as AWS answers: at most MaxResults, then a NextToken."""
    max_results = response._get_param("MaxResults")
    if max_results is None:
        return ActionResult({key: items})
    token = response._get_param("NextToken") or "0"
    if not token.isdigit():
        raise EC2ClientError("InvalidParameterValue", f"Invalid value '{token}' for nextToken")
    start = int(token)
    end = start + int(max_results)
    page = {key: items[start:end]}
    if end < len(items):
        page["NextToken"] = str(end)
    return ActionResult(page)


def describe_snapshots(self):
    filters = self._filters_from_querystring()
    snapshot_ids = self._get_param("SnapshotIds", [])
    snapshots = self.ec2_backend.describe_snapshots(snapshot_ids=snapshot_ids, filters=filters)
    # RestorableByUserIds: only snapshots those accounts may create volumes from (moto ignores it).
    restorable_by = self._get_param("RestorableByUserIds", []) or []
    if restorable_by:
        snapshots = [
            s
            for s in snapshots
            if "all" in s.create_volume_permission_groups
            or any(u in s.create_volume_permission_userids for u in restorable_by)
        ]
    return _page(self, "Snapshots", list(snapshots))


def describe_volumes(self):
    filters = self._filters_from_querystring()
    volume_ids = self._get_param("VolumeIds", [])
    volumes = self.ec2_backend.describe_volumes(volume_ids=volume_ids, filters=filters)
    return _page(self, "Volumes", list(volumes))


# EBS direct APIs (ListSnapshotBlocks, GetSnapshotBlock) on EC2's snapshots. moto serves them
# only for its own EBS-direct snapshots (StartSnapshot/PutSnapshotBlock); here a snapshot made by
# CreateSnapshot, CreateSnapshots, CopySnapshot (also another account's copy of a shared one) or
# for an image has blocks too: a few written blocks, chosen when it is made, with data derived
# from the volume it comes from.
BLOCK_SIZE = 524288  # 512 KiB, the block of the EBS direct APIs
BLOCKS_PER_GIB = (1 << 30) // BLOCK_SIZE
WRITTEN_BLOCKS_TAG = "test-bed:written-blocks"
DEFAULT_WRITTEN_BLOCKS = 8
BAD_CHECKSUM_TAG = "test-bed:bad-checksum"
ALTERED_TAG = "test-bed:altered"
LIST_MAX_RESULTS = (100, 10000)
TOKEN_LIFETIME = 3600  # seconds: ExpiryTime is an hour ahead (AWS: a NextToken lasts 60 minutes)


def _origin_volume(volume):
    while isinstance(volume, _CopiedVolume):
        volume = volume._volume
    return volume


def _written_indices(volume):
    """The blocks `volume` has written: WRITTEN_BLOCKS_TAG of them (DEFAULT_WRITTEN_BLOCKS without
    the tag), spread evenly over its index space."""
    backend = getattr(volume, "ec2_backend", None)
    tags = backend.tags.get(volume.id, {}) if backend is not None else {}
    try:
        count = int(tags.get(WRITTEN_BLOCKS_TAG, DEFAULT_WRITTEN_BLOCKS))
    except (TypeError, ValueError):
        count = DEFAULT_WRITTEN_BLOCKS
    space = int(volume.size) * BLOCKS_PER_GIB
    count = max(0, min(count, space))
    return tuple(k * space // count for k in range(count))


def _blocks_of(snapshot):
    """(origin volume id, written block indices) of a snapshot, recorded when it is made: the
    origin is the volume of the first snapshot of a chain of copies, whose id keys the data."""
    record = getattr(snapshot, "_test_bed_blocks", None)
    if record is None:
        origin = _origin_volume(snapshot.volume)
        record = (origin.id, _written_indices(origin))
        snapshot._test_bed_blocks = record
    return record


def _block_data(origin, index):
    return hashlib.sha256(f"{origin}:{index}".encode()).digest() * (BLOCK_SIZE // 32)


def _checksum(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _token(kind, snapshot_id, number):
    return base64.b64encode(f"{kind}:{snapshot_id}:{number}".encode()).decode()


def _token_number(token, kind, snapshot_id):
    """The number a token of ours carries for `snapshot_id`, or None for any other string."""
    try:
        got_kind, got_snapshot, number = base64.b64decode(token, validate=True).decode().split(":")
        number = int(number)
    except Exception:
        return None
    return number if (got_kind, got_snapshot) == (kind, snapshot_id) and number >= 0 else None


class _EbsError(JsonRESTError):
    """An EBS direct API error as the service answers it (rest-json): x-amzn-ErrorType and a JSON
    body with the message and the exception's Reason."""

    def __init__(self, error_type, status, message, reason=None):
        super().__init__(error_type, message)
        self.code = status
        body = {"__type": error_type, "message": message}
        if reason:
            body["Reason"] = reason
        self.description = json.dumps(body)


def _ebs_invalid(message, reason):
    return _EbsError("ValidationException", 400, message, reason)


def _readable_snapshot(response, snapshot_id):
    """The account's EC2 snapshot in the request's region, if it may be read."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[response.current_account][response.region]
    snapshot = backend.snapshots.get(snapshot_id) if snapshot_id else None
    if snapshot is None:
        raise _EbsError(
            "ResourceNotFoundException", 404, f"The snapshot '{snapshot_id}' does not exist.", "SNAPSHOT_NOT_FOUND"
        )
    if snapshot.status != "completed":
        raise _ebs_invalid(
            f"The snapshot '{snapshot_id}' is in state {snapshot.status}: only a completed snapshot can be read.",
            "INVALID_SNAPSHOT_ID",
        )
    return backend, snapshot


def _int_param(response, name, location=None):
    value = response.querystring.get(location, [None])[0] if location else None
    if value is None:
        value = response._get_param(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _ebs_invalid(f"Value '{value}' for parameter {name} is not an integer.", "INVALID_PARAMETER_VALUE")


def _moto_ebs_snapshot(response, snapshot_id):
    """Whether `snapshot_id` is moto's own EBS-direct snapshot (StartSnapshot), which moto serves."""
    return snapshot_id in ebs_backends[response.current_account][response.region].snapshots


_list_snapshot_blocks = EBSResponse.list_snapshot_blocks
_get_snapshot_block = EBSResponse.get_snapshot_block


def list_snapshot_blocks(self):
    """A page covers MaxResults block indices from its start (a NextToken's, or StartingBlockIndex)
    and lists the written blocks among them: a page may be empty and still have a NextToken, which
    is there while index space remains after it."""
    snapshot_id = self._get_param("SnapshotId")
    if _moto_ebs_snapshot(self, snapshot_id):
        return _list_snapshot_blocks(self)
    max_results = _int_param(self, "MaxResults", "maxResults")
    page_token = self.querystring.get("pageToken", [None])[0] or self._get_param("NextToken")
    starting = _int_param(self, "StartingBlockIndex", "startingBlockIndex")
    _, snapshot = _readable_snapshot(self, snapshot_id)
    if max_results is None:
        max_results = LIST_MAX_RESULTS[1]
    elif not LIST_MAX_RESULTS[0] <= max_results <= LIST_MAX_RESULTS[1]:
        raise _ebs_invalid(
            f"Value ({max_results}) for parameter maxResults is invalid. Valid range is "
            f"{LIST_MAX_RESULTS[0]}-{LIST_MAX_RESULTS[1]}.",
            "INVALID_PARAMETER_VALUE",
        )
    if page_token:
        start = _token_number(page_token, "page", snapshot.id)
        if start is None:
            raise _ebs_invalid("The pagination token is invalid.", "INVALID_PAGE_TOKEN")
    else:
        start = starting or 0
        if start < 0:
            raise _ebs_invalid(
                f"Value ({start}) for parameter startingBlockIndex is invalid.", "INVALID_PARAMETER_VALUE"
            )
    _, written = _blocks_of(snapshot)
    volume_size = int(snapshot.volume.size)
    end = start + max_results
    page = {
        "Blocks": [
            {"BlockIndex": i, "BlockToken": _token("block", snapshot.id, i)} for i in written if start <= i < end
        ],
        "ExpiryTime": round(time.time() + TOKEN_LIFETIME, 3),
        "VolumeSize": volume_size,
        "BlockSize": BLOCK_SIZE,
    }
    if end < volume_size * BLOCKS_PER_GIB:
        page["NextToken"] = _token("page", snapshot.id, end)
    return 200, {"Content-Type": "application/json"}, json.dumps(page)


def get_snapshot_block(self):
    """A written block's data, derived from the origin volume and the index, with its SHA-256 (the
    test bed's tags on the snapshot, read now, can alter either)."""
    snapshot_id = self._get_param("SnapshotId")
    if _moto_ebs_snapshot(self, snapshot_id):
        return _get_snapshot_block(self)
    index = _int_param(self, "BlockIndex")
    token = self.querystring.get("blockToken", [None])[0] or self._get_param("BlockToken")
    backend, snapshot = _readable_snapshot(self, snapshot_id)
    origin, written = _blocks_of(snapshot)
    if index is None or index < 0:
        raise _ebs_invalid(f"Value ({index}) for parameter blockIndex is invalid.", "INVALID_PARAMETER_VALUE")
    if index not in written:
        raise _ebs_invalid(
            f"The block token is invalid: block {index} of snapshot '{snapshot.id}' has no data.",
            "INVALID_BLOCK_TOKEN",
        )
    if token != _token("block", snapshot.id, index):
        raise _ebs_invalid(
            f"The block token is invalid for block {index} of snapshot '{snapshot.id}'.", "INVALID_BLOCK_TOKEN"
        )
    data = _block_data(origin, index)
    tags = backend.tags.get(snapshot.id, {})
    if ALTERED_TAG in tags:
        data = bytes([data[0] ^ 0xFF]) + data[1:]
    checksum = _checksum(data)
    if BAD_CHECKSUM_TAG in tags:
        checksum = _checksum(data + b"\0")
    headers = {
        "Content-Type": "application/octet-stream",
        "x-amz-Data-Length": str(len(data)),
        "x-amz-Checksum": checksum,
        "x-amz-Checksum-Algorithm": "SHA256",
    }
    return 200, headers, data


def _check_expected_owner(response, request, full_url):
    expected = request.headers.get("x-amz-expected-bucket-owner")
    bucket = response.parse_bucket_name_from_url(request, full_url)
    owner = s3_backends.bucket_accounts.get(bucket) if bucket else None
    if expected and owner and owner[1] != expected:
        raise AccessDeniedByLock()


_bucket_response = s3_responses.S3Response._bucket_response
_key_response = s3_responses.S3Response._key_response


def bucket_response(self, request, full_url):
    _check_expected_owner(self, request, full_url)
    return _bucket_response(self, request, full_url)


def key_response(self, request, full_url):
    _check_expected_owner(self, request, full_url)
    return _key_response(self, request, full_url)


_get_permission = s3_models.FakeBucket.get_permission


def _over_tls(statement):
    condition = statement.get("Condition") or {}
    return statement.get("Effect") == "Deny" and condition == {"Bool": {"aws:SecureTransport": "false"}}


def get_permission(self, action, resource):
    if self.policy is None:
        return _get_permission(self, action, resource)
    policy = json.loads(self.policy.decode())
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [st for st in statements if not _over_tls(st)]
    if len(kept) == len(statements):
        return _get_permission(self, action, resource)
    from moto.iam.access_control import IAMPolicy, PermissionResult

    if not kept:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps(dict(policy, Statement=kept))).is_action_permitted(action, resource)


class _AccessDenied(STSClientError):
    def __init__(self, message):
        super().__init__("AccessDenied", message)


def _values(v):
    return v if isinstance(v, list) else [v]


def _condition_holds(operator, key, wanted, context):
    if key.lower() not in context:
        return False
    have = context[key.lower()]
    if operator in ("StringEquals", "ArnEquals"):
        return any(have == w for w in _values(wanted))
    if operator in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(have, w) for w in _values(wanted))
    return False


def _trust_allows(document, caller_account, caller_arn, context):
    doc = json.loads(document) if isinstance(document, str) else document
    for st in _values(doc.get("Statement", [])):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        if not any(a in ("sts:AssumeRole", "sts:*", "*") for a in _values(st.get("Action", []))):
            continue
        principal = st.get("Principal", {})
        names = ["*"] if principal == "*" else _values(principal.get("AWS", [])) if isinstance(principal, dict) else []
        if not any(
            n in ("*", caller_account, caller_arn) or n.endswith(f":iam::{caller_account}:root") for n in names
        ):
            continue
        conditions = st.get("Condition", {})
        if all(
            _condition_holds(op, key, wanted, context)
            for op, pairs in conditions.items()
            for key, wanted in pairs.items()
        ):
            return True
    return False


_moto_assume_role = TokenResponse.assume_role


def assume_role(self):
    caller_account = self.current_account
    if caller_account == DEFAULT_ACCOUNT_ID:
        return _moto_assume_role(self)
    role_arn = self._get_param("RoleArn") or ""
    caller = self.backend.get_assumed_role_from_access_key(self.get_access_key())
    caller_arn = caller.role_arn if caller else f"arn:aws:iam::{caller_account}:user/moto"
    denied = _AccessDenied(
        f"User: {caller.arn if caller else caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    )
    parts = role_arn.split(":")
    if len(parts) < 6:
        raise denied
    try:
        role = iam_backends[parts[4]]["aws"].get_role_by_arn(role_arn)
    except Exception:
        raise denied
    context = {"aws:principalarn": caller_arn, "aws:principalaccount": caller_account}
    external_id = self._get_param("ExternalId")
    if external_id is not None:
        context["sts:externalid"] = external_id
    if not _trust_allows(role.assume_role_policy_document, caller_account, caller_arn, context):
        raise denied
    return _moto_assume_role(self)


TokenResponse.assume_role = assume_role


def _without_novalue(value):
    """A template value as CloudFormation hands it on: AWS::NoValue (None here) leaves no trace."""
    if isinstance(value, list):
        return [_without_novalue(v) for v in value if v is not None]
    if isinstance(value, dict):
        return {k: _without_novalue(v) for k, v in value.items() if v is not None}
    return value


def _role_properties(cloudformation_json):
    props = cloudformation_json["Properties"]
    for key in ("AssumeRolePolicyDocument", "Policies"):
        if key in props and not isinstance(props[key], str):
            props[key] = _without_novalue(props[key])
    return props


_moto_role_create = Role.create_from_cloudformation_json.__func__
_moto_role_update = Role.update_from_cloudformation_json.__func__


def role_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    _role_properties(cloudformation_json)
    return _moto_role_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


def role_update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    props = _role_properties(cloudformation_json)
    role = _moto_role_update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)
    document = props["AssumeRolePolicyDocument"]
    role.assume_role_policy_document = document if isinstance(document, str) else json.dumps(document, default=str)
    for name in list(role.policies):
        role.delete_policy(name)
    for policy in props.get("Policies", []):
        role.put_policy(policy["PolicyName"], policy["PolicyDocument"])
    return role


Role.create_from_cloudformation_json = classmethod(role_create)
Role.update_from_cloudformation_json = classmethod(role_update)


def get_bucket_versioning(self):
    status = self.backend.get_bucket_versioning(self.bucket_name)
    inner = f"<Status>{status}</Status>" if status else ""
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>'
    return 200, {"content-type": "application/xml"}, body


s3_responses.S3Response.get_bucket_versioning = get_bucket_versioning
s3_models.FakeBucket.get_permission = get_permission
s3_responses.S3Response._bucket_response = bucket_response
s3_responses.S3Response._key_response = key_response
ElasticBlockStore.describe_snapshots = describe_snapshots
ElasticBlockStore.copy_snapshot = copy_snapshot_response
ec2_utils.is_filter_matching = is_filter_matching
ElasticBlockStore.describe_volumes = describe_volumes
EBSResponse.list_snapshot_blocks = list_snapshot_blocks
EBSResponse.get_snapshot_block = get_snapshot_block
instances.InstanceBackend.describe_instances = describe_instances
instances.InstanceBackend.get_reservations_by_instance_ids = get_reservations_by_instance_ids
elastic_block_store.EBSBackend.copy_snapshot = copy_snapshot
elastic_block_store.EBSBackend.create_snapshots = create_snapshots
elastic_block_store.EBSBackend.modify_snapshot_tier = modify_snapshot_tier
AmisResponse.register_image = register_image
ElasticBlockStore.lock_snapshot = lock_snapshot
ElasticBlockStore.modify_snapshot_attribute = modify_snapshot_attribute
ElasticBlockStore.unlock_snapshot = unlock_snapshot
ElasticBlockStore.describe_locked_snapshots = describe_locked_snapshots
elastic_block_store.EBSBackend.delete_snapshot = delete_snapshot
elastic_block_store.EBSBackend.create_snapshot = create_snapshot
kms_models.KmsBackend.create_alias = create_alias
ElasticBlockStore.create_snapshot = _with_history(ElasticBlockStore.create_snapshot)
ElasticBlockStore.create_volume = _with_history(_idempotent_create_volume(ElasticBlockStore.create_volume))

# The request recording (MOTO_ENABLE_RECORDING), which the tests count calls from: moto appends
# each request from its own thread in two writes (more for a large body), so with many requests
# at once a line could be cut by another's and the request lost to the count. One at a time.
_RECORDING = threading.Lock()
_record_request = recorder_models.Recorder._record_request


def record_request(self, request, body=None):
    with _RECORDING:
        return _record_request(self, request, body)


recorder_models.Recorder._record_request = record_request

if __name__ == "__main__":
    sys.exit(main())
