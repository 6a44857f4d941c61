"""Peak memory of each function binary on the large synthetic region (a benchmark, not a test).

A synthetic account is served on loopback: the EC2 query API (DescribeRegions, DescribeInstances,
DescribeVolumes, DescribeSnapshots, CreateSnapshot, DeleteSnapshot) over a generated region of
VOLUMES volumes (two per instance) and ten snapshots each, as ebs-snapper would have tagged them
(nine tags, a description), every one marked for replication to a second region that holds an
in-sync replica of each; DynamoDB Query for the two configurations and writes of the region
lease (accepted); Lambda Invoke (accepted, counted); the restore drills' calls (CreateVolume, the
drill volume's DescribeVolumes, DeleteVolume, CreateTags, DescribeAvailabilityZones,
DescribeLockedSnapshots empty, and the EBS direct APIs: 16 written blocks per snapshot). Each function binary runs once under a
one-event Lambda Runtime API, with every AWS endpoint pointed at this server, and its peak RSS
(VmHWM) is read when it answers.

  python3 large_run.py VOLUMES DIR FUNCTION...

where DIR holds DIR/<function>/bootstrap (target/lambda after scripts/package.sh) or DIR/<function>.
FUNCTION may also be `status`: the CLI's report (DIR/ebs-snapper) over the same region, read only.

Prints a Markdown table: function, event, what it did, peak RSS, wall time.
"""
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

# The Lambda Runtime API stub is the test bed's (scripts/testbed).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testbed"))
from lambda_stub import Runtime  # noqa: E402

ACCOUNT = "123456789012"
SOURCE, PEER = "us-east-1", "us-east-2"
PER_VOLUME = 10
NOW = datetime.now(timezone.utc).replace(microsecond=0)
CONFIGS = {
    # With restore drills (SPEC §17): the clean worker drills 3 volumes after its retention work.
    "all": {"match": {"tag:backup": "yes"}, "snapshot": {"retention": "14 days", "minimum": 5, "frequency": "1 day"}, "replication": True,
            "drill": {"every": "7 days", "per_run": 3, "sample_blocks": 16}},
    "some": {"match": {"tag:tier": "gold"}, "snapshot": {"retention": "30 days", "minimum": 10, "frequency": "0 */6 * * *"}},
}


def ec2_id(prefix, n):
    """An EC2-like id: 17 hex digits that look random."""
    return f"{prefix}-0{hashlib.blake2b(f'{prefix}{n}'.encode(), digest_size=8).hexdigest()}"


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Region:
    def __init__(self):
        self.instances = []  # dicts
        self.volumes = {}  # id -> tags
        self.snapshots = {}  # id -> dict (insertion-ordered)
        self.by_volume = {}  # volume id -> [snapshot ids]


def synthetic_account(volumes):
    src, peer = Region(), Region()
    for i in range(volumes // 2):
        iid = ec2_id("i", i)
        tags = {"Name": f"web-{i}", "backup": "yes", "Service": "shop", "Owner": "team-a"}
        if i % 10 == 0:
            tags["tier"] = "gold"
        devices = []
        for d in range(2):
            v = i * 2 + d
            vid = ec2_id("vol", v)
            device = f"/dev/xvd{'ab'[d]}"
            devices.append((device, vid))
            src.volumes[vid] = {"Name": f"web-{i}-{device[-1]}"}
            src.by_volume[vid] = []
            for n in range(PER_VOLUME):
                # The newest snapshot is 0 to 47 hours old: about half the volumes are due.
                start = NOW - timedelta(hours=n * 24 * 21 // PER_VOLUME + v % 48)
                sid = ec2_id("snap", v * PER_VOLUME + n)
                snap_tags = {
                    "DeleteOn": (start + timedelta(days=14)).strftime("%Y-%m-%d"),
                    "ebs-snapper:instance-id": iid,
                    "ebs-snapper:device": device,
                    "ebs-snapper:config": "all",
                    "replication_dst_region": PEER,
                    **tags,
                }
                state = "pending" if n == 0 and v % 50 == 0 else "completed"
                desc = f"Created from {iid} by EbsSnapper(0.1.0) for ami-0123456789abcdef0 from {vid}"
                src.snapshots[sid] = {"id": sid, "volume": vid, "start": start, "state": state, "tags": snap_tags, "desc": desc}
                src.by_volume[vid].append(sid)
                if state == "completed":
                    rid = ec2_id("snap", 10**9 + v * PER_VOLUME + n)
                    rtags = {k: v for k, v in snap_tags.items() if k not in ("DeleteOn", "replication_dst_region")}
                    rtags.update({"replication_src_region": SOURCE, "replication_snapshot_id": sid})
                    peer.snapshots[rid] = {"id": rid, "volume": "vol-ffffffff", "start": start, "state": "completed", "tags": rtags, "desc": desc}
        src.instances.append({"id": iid, "tags": tags, "devices": devices})
    return {SOURCE: src, PEER: peer}


def tag_set(tags):
    return "<tagSet>" + "".join(f"<item><key>{k}</key><value>{v}</value></item>" for k, v in tags.items()) + "</tagSet>"


def snapshot_xml(s):
    return (
        f"<item><snapshotId>{s['id']}</snapshotId><volumeId>{s['volume']}</volumeId><status>{s['state']}</status>"
        f"<startTime>{iso(s['start'])}</startTime><progress>100%</progress><ownerId>{ACCOUNT}</ownerId>"
        f"<volumeSize>8</volumeSize><description>{s['desc']}</description><encrypted>false</encrypted>"
        f"<storageTier>standard</storageTier>{tag_set(s['tags'])}</item>"
    )


def instance_xml(inst):
    bdm = "".join(
        f"<item><deviceName>{d}</deviceName><ebs><volumeId>{v}</volumeId><status>attached</status>"
        f"<attachTime>{iso(NOW)}</attachTime><deleteOnTermination>true</deleteOnTermination></ebs></item>"
        for d, v in inst["devices"]
    )
    return (
        f"<item><instanceId>{inst['id']}</instanceId><imageId>ami-0123456789abcdef0</imageId>"
        f"<instanceState><code>16</code><name>running</name></instanceState><instanceType>t3.micro</instanceType>"
        f"<placement><availabilityZone>{SOURCE}a</availabilityZone></placement><rootDeviceName>/dev/xvda</rootDeviceName>"
        f"<blockDeviceMapping>{bdm}</blockDeviceMapping>{tag_set(inst['tags'])}</item>"
    )


def filters_of(params):
    out = {}
    n = 1
    while f"Filter.{n}.Name" in params:
        values, m = [], 1
        while f"Filter.{n}.Value.{m}" in params:
            values.append(params[f"Filter.{n}.Value.{m}"])
            m += 1
        out[params[f"Filter.{n}.Name"]] = values
        n += 1
    return out


def matches(filters, ident, tags, extra):
    for name, values in filters.items():
        if name == "tag-key":
            if not any(re.fullmatch(v.replace("*", ".*"), k) for k in tags for v in values):
                return False
        elif name.startswith("tag:"):
            if tags.get(name[4:]) not in values:
                return False
        elif name in ("instance-id", "snapshot-id", "volume-id") and name.split("-")[0] in ident:
            if ident[name.split("-")[0]] not in values:
                return False
        elif name in extra and extra[name] not in values:
            return False
    return True


def page(items, params):
    start = int(params.get("NextToken", "0"))
    size = int(params.get("MaxResults", "1000"))
    chunk = items[start : start + size]
    token = f"<nextToken>{start + size}</nextToken>" if start + size < len(items) else ""
    return chunk, token


class Account:
    def __init__(self, volumes):
        self.regions = synthetic_account(volumes)
        self.counts = {}
        self.lock = threading.Lock()
        self.created = 0
        self.found = {}  # (region, action, filters) -> matches, so paging does not filter again
        self.configs = CONFIGS

    def invoked(self, function, payload):
        """A Lambda Invoke of `function` (accepted and counted; nothing runs)."""

    def count(self, op):
        with self.lock:
            self.counts[op] = self.counts.get(op, 0) + 1

    @staticmethod
    def describe_snapshots(region, f):
        if "volume-id" in f:
            pool = [region.snapshots[s] for v in f["volume-id"] for s in region.by_volume.get(v, []) if s in region.snapshots]
            f = {k: v for k, v in f.items() if k != "volume-id"}
        else:
            pool = list(region.snapshots.values())
        return [s for s in pool if matches(f, {"snapshot": s["id"]}, s["tags"], {"status": s["state"]})]

    def ec2(self, region_name, params):
        action = params.get("Action", "")
        self.count(action)
        region = self.regions.get(region_name, Region())
        body = ""
        if action == "DescribeRegions":
            body = "<regionInfo>" + "".join(
                f"<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com</regionEndpoint>"
                f"<optInStatus>opt-in-not-required</optInStatus></item>"
                for r in sorted(self.regions)
            ) + "</regionInfo>"
        elif action == "DescribeInstances":
            f = filters_of(params)
            found = [i for i in region.instances if matches(f, {"instance": i["id"]}, i["tags"], {"instance-state-name": "running"})]
            chunk, token = page(found, params)
            body = (
                f"<reservationSet><item><reservationId>r-1</reservationId><ownerId>{ACCOUNT}</ownerId><instancesSet>"
                + "".join(instance_xml(i) for i in chunk)
                + f"</instancesSet></item></reservationSet>{token}"
            ) if chunk else "<reservationSet/>"
        elif action == "DescribeLockedSnapshots":
            body = "<snapshotSet/>"
        elif action == "DescribeAvailabilityZones":
            body = f"<availabilityZoneInfo><item><zoneName>{region_name}a</zoneName><zoneState>available</zoneState><regionName>{region_name}</regionName></item></availabilityZoneInfo>"
        elif action == "CreateVolume":
            with self.lock:
                self.created += 1
                vid = ec2_id("vol", 3 * 10**9 + self.created)
            body = f"<volumeId>{vid}</volumeId><size>8</size><availabilityZone>{region_name}a</availabilityZone><status>creating</status><volumeType>gp3</volumeType>"
        elif action in ("DeleteVolume", "CreateTags"):
            body = "<return>true</return>"
        elif action == "DescribeVolumes" and "VolumeId.1" in params:  # a drill's poll: available
            body = f"<volumeSet><item><volumeId>{params['VolumeId.1']}</volumeId><size>8</size><status>available</status></item></volumeSet>"
        elif action == "DescribeVolumes" and params.get("Filter.1.Name") == "tag-key":  # the sweep: none left
            body = "<volumeSet/>"
        elif action == "DescribeVolumes":
            f = filters_of(params)
            ids = f.get("volume-id", list(region.volumes))
            found = [v for v in ids if v in region.volumes]
            chunk, token = page(found, params)
            body = "<volumeSet>" + "".join(
                f"<item><volumeId>{v}</volumeId><size>8</size><availabilityZone>{region_name}a</availabilityZone>"
                f"<status>in-use</status><volumeType>gp3</volumeType>{tag_set(region.volumes[v])}</item>"
                for v in chunk
            ) + f"</volumeSet>{token}"
        elif action == "DescribeSnapshots":
            f = filters_of(params)
            key = (region_name, json.dumps(f, sort_keys=True))
            found = self.found.get(key) if "NextToken" in params else None
            if found is None:
                found = self.found[key] = self.describe_snapshots(region, f)
            chunk, token = page(found, params)
            body = "<snapshotSet>" + "".join(snapshot_xml(s) for s in chunk) + f"</snapshotSet>{token}"
        elif action == "CreateSnapshot":
            with self.lock:
                self.created += 1
                sid = ec2_id("snap", 2 * 10**9 + self.created)
            body = (
                f"<snapshotId>{sid}</snapshotId><volumeId>{params.get('VolumeId')}</volumeId><status>pending</status>"
                f"<startTime>{iso(NOW)}</startTime><progress></progress><ownerId>{ACCOUNT}</ownerId><volumeSize>8</volumeSize>"
            )
        elif action == "DeleteSnapshot":
            with self.lock:
                region.snapshots.pop(params.get("SnapshotId"), None)
            body = "<return>true</return>"
        elif action == "GetCallerIdentity":  # STS, for the CLI
            return 200, (
                '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
                f"<Arn>arn:aws:iam::{ACCOUNT}:user/large-run</Arn><UserId>large-run</UserId><Account>{ACCOUNT}</Account>"
                "</GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            )
        else:
            return 400, f"<Response><Errors><Error><Code>InvalidAction</Code><Message>{action} is not served here</Message></Error></Errors><RequestID>1</RequestID></Response>"
        return 200, f'<{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>1</requestId>{body}</{action}Response>'


class Quiet(http.server.ThreadingHTTPServer):
    """A server that does not print a traceback when a killed function drops its connection."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def serve(account):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, body, ctype):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            # The EBS direct APIs: 16 written blocks spread over an 8 GiB snapshot, each one's data
            # with its SHA-256.
            path = urllib.parse.urlparse(self.path)
            parts = path.path.split("/")
            if len(parts) == 4 and parts[3] == "blocks":
                account.count("ListSnapshotBlocks")
                q = dict(urllib.parse.parse_qsl(path.query))
                start = int(q.get("startingBlockIndex", "0"))
                blocks = [{"BlockIndex": i, "BlockToken": f"t{i}"} for i in range(0, 16384, 1024) if i >= start][:100]
                return self.reply(200, json.dumps({"Blocks": blocks, "BlockSize": 524288, "VolumeSize": 8}), "application/json")
            if len(parts) == 5 and parts[3] == "blocks":
                account.count("GetSnapshotBlock")
                data = hashlib.sha256(parts[4].encode()).digest() * (524288 // 32)
                checksum = __import__("base64").b64encode(hashlib.sha256(data).digest()).decode()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amz-Data-Length", str(len(data)))
                self.send_header("x-amz-Checksum", checksum)
                self.send_header("x-amz-Checksum-Algorithm", "SHA256")
                self.end_headers()
                self.wfile.write(data)
                return None
            return self.reply(404, "{}", "application/json")

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            target = self.headers.get("X-Amz-Target", "")
            if target.startswith("DynamoDB_20120810.Query"):
                account.count("Query")
                items = [
                    {"aws_account_id": {"S": ACCOUNT}, "id": {"S": k}, "configuration": {"S": json.dumps(v)}}
                    for k, v in account.configs.items()
                ]
                return self.reply(200, json.dumps({"Items": items, "Count": len(items), "ScannedCount": len(items)}), "application/x-amz-json-1.0")
            if target.startswith("DynamoDB_20120810."):  # the region lease: PutItem, UpdateItem, DeleteItem
                account.count(target.split(".")[1])
                return self.reply(200, "{}", "application/x-amz-json-1.0")
            if self.path.startswith("/2015-03-31/functions/"):
                account.count("Invoke")
                account.invoked(self.path.split("/")[3], raw)
                return self.reply(202, "", "application/json")
            params = dict(urllib.parse.parse_qsl(raw.decode()))
            scope = re.search(r"Credential=[^/]+/\d+/([^/]+)/", self.headers.get("Authorization", ""))
            status, body = account.ec2(scope.group(1) if scope else SOURCE, params)
            self.reply(status, body, "text/xml")

        def log_message(self, *args):
            pass

    server = Quiet(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_function(binary, name, event, aws_port):
    """Runs `binary` for one event under a Runtime API; returns (peak RSS MB, seconds, response)."""
    runtime = Runtime(name, SOURCE, ACCOUNT)
    runtime.invoke(event)
    proc = runtime.start(
        binary,
        stderr=subprocess.PIPE,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws_port}",
        CREATE_SNAPSHOT_FUNCTION="create-snapshot",
        CLEAN_SNAPSHOT_FUNCTION="clean-snapshot",
        AWS_LAMBDA_LOG_LEVEL="warn",
    )
    answer = runtime.answer(timeout=900)
    runtime.stop()
    _, err = proc.communicate()
    if answer is None:
        raise SystemExit(f"{name} did not answer: {err.decode(errors='replace')[-2000:]}")
    if answer.error:
        raise SystemExit(f"{name} failed: {answer.body[:2000]}")
    return answer.hwm_kb / 1024, answer.at - runtime.started_at, answer.body


# Runs argv[1:] with inherited stdout, then prints its peak RSS as the last line of stderr.
PEAK_OF_CHILD = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\\npeak_rss_kb={usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_status(binary, aws_port):
    """Runs `ebs-snapper status --region SOURCE --json`; returns (peak RSS MB, seconds, the summary)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": SOURCE,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_port}",
    }
    start = time.perf_counter()
    # The peak RSS is read by a small Python parent with wait4: a child forked from this process
    # would count this process's memory too (the kernel carries the pre-exec image's high-water
    # mark into ru_maxrss), and this process holds the whole synthetic account.
    proc = subprocess.Popen(
        [sys.executable, "-c", PEAK_OF_CHILD, binary, "status", "--region", SOURCE, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=900)
    elapsed = time.perf_counter() - start
    err = err.decode(errors="replace")
    peak_kb = int(re.search(r"peak_rss_kb=(\d+)\s*$", err).group(1)) if "peak_rss_kb=" in err else 0
    if proc.returncode != 0:
        raise SystemExit(f"status failed ({proc.returncode}): {err[-2000:]}")
    summary = json.loads(out)["summary"]
    return peak_kb / 1024, elapsed, summary


def main():
    volumes, bin_dir, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    account = Account(volumes)
    server = serve(account)
    port = server.server_address[1]
    src = account.regions[SOURCE]
    print(
        f"synthetic region: {len(src.instances):,} instances, {len(src.volumes):,} volumes, "
        f"{len(src.snapshots):,} snapshots in {SOURCE}; {len(account.regions[PEER].snapshots):,} replicas in {PEER}"
    )
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "account": ACCOUNT, "region": SOURCE, "detail": {}}
    events = {
        "fanout-snapshot": scheduled,
        "create-snapshot": {"region": SOURCE},
        "fanout-clean": scheduled,
        "clean-snapshot": {"region": SOURCE},
        "replication": {"region": SOURCE},
    }
    print("| function | event | AWS calls | result | peak RSS (MB) | wall (s) |")
    print("|---|---|---|---|---:|---:|")
    worst = 0.0
    for name in names:
        event = events.get(name, scheduled)
        before = dict(account.counts)
        if name == "status":  # the CLI's read-only report, not a function
            binary = os.path.join(bin_dir, "ebs-snapper")
            rss, secs, summary = run_status(binary, port)
            worst = max(worst, rss)
            calls = {k: v - before.get(k, 0) for k, v in account.counts.items() if v - before.get(k, 0)}
            calls_text = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
            verdicts = ", ".join(f"{k} {v}" for k, v in summary.items())
            print(f"| ebs-snapper status | `--region {SOURCE}` | {calls_text} | {verdicts} | {rss:.1f} | {secs:.1f} |")
            continue
        binary = os.path.join(bin_dir, name, "bootstrap")  # a packaged function (target/lambda)
        if not os.path.exists(binary):
            binary = os.path.join(bin_dir, name)  # a build directory (target/debug)
        rss, secs, response = run_function(binary, name, event, port)
        worst = max(worst, rss)
        calls = {k: v - before.get(k, 0) for k, v in account.counts.items() if v - before.get(k, 0)}
        summary = json.loads(response) if response.startswith("{") else {}
        result = ", ".join(f"{k} {summary[k]}" for k in ("created", "deleted", "copied", "drilled", "not_due", "regions") if k in summary)
        calls_text = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
        print(f"| {name} | `{json.dumps(event) if 'region' in event and len(event) == 1 else 'scheduled'}` | {calls_text} | {result} | {rss:.1f} | {secs:.1f} |")
    print(f"\nhighest peak RSS: {worst:.1f} MB (Lambda memory size 128 MB)")
    server.shutdown()


if __name__ == "__main__":
    main()
