"""The jobs behind EC2's token buckets at full size (a benchmark, not a test).

The test bed's stricter AWS is in front of the emulator, and the emulator is too slow for the
issue's sizes (10,000 volumes, 30,000 expired snapshots): setting such a fleet up takes longer
than the run, and each request then takes seconds. So this serves a synthetic account on
loopback instead (the EC2 query API of scripts/bench/large_run.py, plus CreateSnapshot and
CreateSnapshots that keep what they make), behind EC2's request token buckets: one per API,
AWS's published sizes (mutating actions 200 refilled at 5/s, Describe* 100 at 20/s), the
snapshot APIs' bucket BUCKET refilled at REFILL; an empty bucket answers RequestLimitExceeded
(HTTP 503) and takes no token.

Each worker binary runs as Lambda runs it: a Runtime API hands it one event at a time with a
deadline DEADLINE seconds away (Lambda's 900 unless given); an invocation that outlives its
deadline is killed, as Lambda would, and counts as a failure. The worker's own continuation (a
Lambda Invoke of itself) is the next event. A job is done when an invocation ends without one.

Scenarios, each in an account of its own, run side by side:
  snapshot  VOLUMES instances with one volume each, none snapshotted: VOLUMES CreateSnapshot
  sets      VOLUMES/2 instances with two volumes each, consistency "instance": VOLUMES/2
            CreateSnapshots (one token per instance)
  clean     VOLUMES volumes with EXPIRED_PER_VOLUME expired snapshots each (minimum 0): all
            deleted, one DeleteSnapshot each

  python3 paced_run.py DIR [--volumes N] [--bucket B] [--refill R] [--expired-per-volume E]
                           [--deadline S] [--scenarios snapshot,sets,clean]

DIR holds DIR/<function>/bootstrap (target/lambda) or DIR/<function> (a build directory).
Prints a Markdown table: calls needed, wall time against the bucket's bound ((calls - bucket)
/ refill), calls refused by an empty bucket per 1,000, failed actions, continuation hops, the
worker's peak RSS.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone

import large_run as lr
# The Lambda Runtime API stub is the test bed's (scripts/testbed).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testbed"))
from lambda_stub import TIMED_OUT, Runtime  # noqa: E402

REGION = lr.SOURCE
# AWS's published request token buckets ("Request throttling for the Amazon EC2 API").
MUTATING, NON_MUTATING = (200.0, 5.0), (100.0, 20.0)


class Buckets:
    """One token bucket per API: a request takes a token; an empty bucket refuses it."""

    def __init__(self, overrides, clock=time.monotonic):
        self.overrides = overrides
        self.clock = clock
        self.state = {}  # operation -> (tokens, as of when)
        self.refused = {}
        self.lock = threading.Lock()

    def take(self, operation):
        size, refill = self.overrides.get(operation) or (NON_MUTATING if operation.startswith("Describe") else MUTATING)
        now = self.clock()
        with self.lock:
            tokens, at = self.state.get(operation, (size, now))
            tokens = min(size, tokens + refill * (now - at))
            if tokens >= 1.0:
                self.state[operation] = (tokens - 1.0, now)
                return True
            self.state[operation] = (tokens, now)
            self.refused[operation] = self.refused.get(operation, 0) + 1
            return False


def tags_of(params, prefix="TagSpecification.1.Tag"):
    out, n = {}, 1
    while f"{prefix}.{n}.Key" in params:
        out[params[f"{prefix}.{n}.Key"]] = params.get(f"{prefix}.{n}.Value", "")
        n += 1
    return out


def snapshot_info_xml(s):
    """A CreateSnapshots answer's item (SnapshotInfo: `state`, not `status`)."""
    return (
        f"<item><snapshotId>{s['id']}</snapshotId><volumeId>{s['volume']}</volumeId><state>pending</state>"
        f"<startTime>{lr.iso(s['start'])}</startTime><progress></progress><ownerId>{lr.ACCOUNT}</ownerId>"
        f"<volumeSize>8</volumeSize><description>{s['desc']}</description>{lr.tag_set(s['tags'])}</item>"
    )


class PacedAccount(lr.Account):
    """The synthetic account of one scenario, behind the token buckets; snapshots made are kept
    (a continuation must see them), Lambda Invokes go to the scenario's function."""

    def __init__(self, region, configs, buckets):
        self.regions = {REGION: region}
        self.counts = {}
        self.lock = threading.Lock()
        self.created = 0
        self.found = {}
        self.configs = configs
        self.buckets = buckets
        self.function = None  # the Function its Invokes start

    def invoked(self, function, payload):
        self.function.events.put(json.loads(payload or b"{}"))

    def make_snapshot(self, region, volume, tags, desc):
        with self.lock:
            self.created += 1
            sid = lr.ec2_id("snap", 3 * 10**9 + self.created)
            s = {"id": sid, "volume": volume, "start": datetime.now(timezone.utc).replace(microsecond=0),
                 "state": "pending", "tags": tags, "desc": desc}
            region.snapshots[sid] = s
            region.by_volume.setdefault(volume, []).append(sid)
        return s

    def ec2(self, region_name, params):
        action = params.get("Action", "")
        if not self.buckets.take(action):
            self.count(action)
            return 503, (
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
                "</Message></Error></Errors><RequestID>1</RequestID></Response>"
            )
        region = self.regions.get(region_name)
        if action == "CreateSnapshot" and region:
            self.count(action)
            s = self.make_snapshot(region, params.get("VolumeId"), tags_of(params), params.get("Description", ""))
            return 200, (
                f'<CreateSnapshotResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>1</requestId>'
                f"<snapshotId>{s['id']}</snapshotId><volumeId>{s['volume']}</volumeId><status>pending</status>"
                f"<startTime>{lr.iso(s['start'])}</startTime><progress></progress><ownerId>{lr.ACCOUNT}</ownerId>"
                f"<volumeSize>8</volumeSize><description>{s['desc']}</description></CreateSnapshotResponse>"
            )
        if action == "CreateSnapshots" and region:
            self.count(action)
            wanted = params.get("InstanceSpecification.InstanceId")
            instance = next((i for i in region.instances if i["id"] == wanted), None)
            if instance is None:
                return 400, (
                    "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID "
                    f"'{wanted}' does not exist</Message></Error></Errors><RequestID>1</RequestID></Response>"
                )
            excluded = {v for k, v in params.items() if k.startswith("InstanceSpecification.ExcludeDataVolumeId.")}
            skip_root = params.get("InstanceSpecification.ExcludeBootVolume") == "true"
            made = [
                self.make_snapshot(region, v, tags_of(params), params.get("Description", ""))
                for d, v in instance["devices"]
                if v not in excluded and not (skip_root and d == "/dev/xvda")
            ]
            return 200, (
                f'<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>1</requestId>'
                f"<snapshotSet>{''.join(snapshot_info_xml(s) for s in made)}</snapshotSet></CreateSnapshotsResponse>"
            )
        return super().ec2(region_name, params)


SNAPSHOT_CONFIG = {"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 0, "frequency": "1 day"}}


def scenario(name, volumes, expired_each):
    """(region, configurations, function, the API that needs a token per action, actions needed,
    snapshots made or deleted when done)."""
    region = lr.Region()

    def instance(i, devices):
        iid = lr.ec2_id("i", i)
        attached = []
        for d, device in enumerate(devices):
            vid = lr.ec2_id("vol", i * 2 + d)
            region.volumes[vid] = {}
            region.by_volume[vid] = []
            attached.append((device, vid))
        region.instances.append({"id": iid, "tags": {"backup": "yes", "Name": f"app-{i}"}, "devices": attached})

    if name == "snapshot":
        for i in range(volumes):
            instance(i, ["/dev/xvda"])
        return region, {"cfg": SNAPSHOT_CONFIG}, "create-snapshot", "CreateSnapshot", volumes, volumes
    if name == "sets":
        for i in range(volumes // 2):
            instance(i, ["/dev/xvda", "/dev/xvdf"])
        config = dict(SNAPSHOT_CONFIG, consistency="instance")
        return region, {"cfg": config}, "create-snapshot", "CreateSnapshots", volumes // 2, volumes // 2 * 2
    if name == "clean":
        for i in range(volumes):
            instance(i, ["/dev/xvda"])
        yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
        n = 0
        for vid in list(region.volumes):
            for k in range(expired_each):
                n += 1
                sid = lr.ec2_id("snap", n)
                start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=3 + k)
                region.snapshots[sid] = {"id": sid, "volume": vid, "start": start, "state": "completed",
                                         "tags": {"DeleteOn": yesterday}, "desc": f"planted from {vid}"}
                region.by_volume[vid].append(sid)
        config = {"match": {"tag:backup": "yes"}, "snapshot": {"retention": "1 day", "minimum": 0, "frequency": "1 day"}}
        return region, {"cfg": config}, "clean-snapshot", "DeleteSnapshot", n, n
    raise SystemExit(f"--scenarios: unknown scenario {name!r} (snapshot, sets, clean)")


def verify(name, region):
    """The volumes not as the run must leave them, each with what is wrong: for the snapshot
    scenarios exactly one snapshot of each volume (none missing, none twice), for the clean one no
    expired snapshot left. Checked per volume, not from the summaries' sums."""
    wrong = []
    for volume, ids in region.by_volume.items():
        left = [i for i in ids if i in region.snapshots]
        if name in ("snapshot", "sets") and len(left) != 1:
            wrong.append(f"{volume}: {len(left)} snapshots")
        if name == "clean" and left:
            wrong.append(f"{volume}: {len(left)} expired snapshots left")
    return wrong


class Function:
    """One function as Lambda runs it: a warm process given one event at a time, each with a
    deadline; an invocation past its deadline is killed."""

    def __init__(self, binary, name, label, aws_port, deadline, log):
        self.label, self.deadline = label, deadline
        self.hwm_kb = 0
        self.runtime = Runtime(name, REGION, lr.ACCOUNT, deadline)
        self.events = self.runtime.events  # a Lambda Invoke of the function puts its event here
        self.runtime.start(binary, stderr=log, AWS_ENDPOINT_URL=f"http://127.0.0.1:{aws_port}", AWS_LAMBDA_LOG_LEVEL="warn")

    def run(self, event, progress):
        """Invokes with `event`, then each continuation, until an invocation ends without one;
        (seconds, the summaries, killed)."""
        started = time.monotonic()
        self.runtime.invoke(event)
        summaries = []
        while True:
            # The Runtime answers an invocation still running at its deadline with a timeout
            # error, having killed it (as Lambda does): no answer is taken after the deadline.
            answer = self.runtime.answer(timeout=self.deadline + 5)
            if answer is None or (answer.error and TIMED_OUT in answer.body):
                return time.monotonic() - started, summaries, True
            self.hwm_kb = max(self.hwm_kb, answer.hwm_kb)
            summary = error_summary(answer.body) if answer.error else json.loads(answer.body)
            summaries.append(summary)
            progress(f"{self.label}: invocation {len(summaries)} after {time.monotonic() - started:.0f} s: "
                     f"created {summary.get('created')}, deleted {summary.get('deleted')}, deferred "
                     f"{summary.get('deferred')}, failed {summary.get('failed')}, continued {summary.get('continued')}")
            if not summary.get("continued"):
                return time.monotonic() - started, summaries, False

    def stop(self):
        self.runtime.stop()
        self.runtime.proc.wait()


def error_summary(body):
    """The summary inside a function error (a worker with failures answers an error whose message
    is its summary)."""
    try:
        doc = json.loads(body)
        message = doc.get("errorMessage", "")
        start = message.find("{")
        return json.loads(message[start:]) if start >= 0 else {"failed": 1, "errors": [message]}
    except (ValueError, AttributeError):
        return {"failed": 1, "errors": [body[:500]]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--volumes", type=int, default=10000)
    ap.add_argument("--bucket", type=float, default=100)
    ap.add_argument("--refill", type=float, default=5)
    ap.add_argument("--expired-per-volume", type=int, default=3)
    ap.add_argument("--deadline", type=float, default=900)
    ap.add_argument("--scenarios", default="snapshot,sets,clean")
    args = ap.parse_args()
    print_lock = threading.Lock()

    def progress(line):
        with print_lock:
            print(line, file=sys.stderr, flush=True)

    rows = {}

    def run(name):
        region, configs, function, operation, needed, snapshots = scenario(name, args.volumes, args.expired_per_volume)
        limits = (args.bucket, args.refill)
        buckets = Buckets({"CreateSnapshot": limits, "CreateSnapshots": limits, "DeleteSnapshot": limits})
        account = PacedAccount(region, configs, buckets)
        server = lr.serve(account)
        binary = os.path.join(args.dir, function, "bootstrap")
        if not os.path.exists(binary):
            binary = os.path.join(args.dir, function)
        with open(os.path.join(tempfile.gettempdir(), f"paced-{name}.log"), "wb") as log:
            fn = Function(binary, function, name, server.server_address[1], args.deadline, log)
            account.function = fn
            progress(f"{name}: {len(region.instances):,} instances, {len(region.volumes):,} volumes, "
                     f"{len(region.snapshots):,} snapshots; {needed:,} {operation} to make")
            secs, summaries, killed = fn.run({"region": REGION}, progress)
            fn.stop()
        server.shutdown()
        total = lambda key: sum(int(s.get(key) or 0) for s in summaries)
        done = total("created") + total("deleted")
        calls = account.counts.get(operation, 0)
        refused = buckets.refused.get(operation, 0)
        bound = max(0.0, (needed - args.bucket) / args.refill)
        wrong = verify(name, region)
        failed = total("failed") + (1 if killed else 0) + len(wrong)
        if wrong:
            progress(f"{name}: {len(wrong)} volume(s) not as they must be, e.g. {wrong[:3]}")
        note = "" if done == snapshots and not killed and not wrong else (
            f" (done {done} of {snapshots}{', killed at its deadline' if killed else ''}"
            f"{f', {len(wrong)} volumes wrong' if wrong else ''})")
        label = {"snapshot": "snapshot, one volume each", "sets": "snapshot, consistency instance (2 volumes each)",
                 "clean": "clean, expired snapshots"}[name]
        rows[name] = (
            f"| {label}{note} | {needed:,} | {args.bucket:.0f} | {args.refill:g} | {secs:.0f} | {bound:.0f} | "
            f"{secs / max(bound, 1.0):.2f} | {refused * 1000 / max(calls, 1):.0f} | {failed} | {len(summaries) - 1} | "
            f"{fn.hwm_kb / 1024:.1f} |"
        )
        progress(rows[name])

    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"token buckets: {args.bucket:.0f} refilled at {args.refill:g}/s for the snapshot APIs; "
          f"Lambda deadline {args.deadline:.0f} s; {args.volumes:,} volumes")
    print("| job | calls needed | bucket | refill/s | wall (s) | bound (s) | wall / bound | refused per 1,000 calls | failed | continuation hops | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        if n in rows:
            print(rows[n])
    if len(rows) != len(names) or any("(done" in r for r in rows.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
