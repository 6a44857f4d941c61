"""Tests of paced_run.py's token buckets and synthetic account (what the full-size benchmark
relies on). Run: python3 -m unittest scripts/bench/test_paced_run.py"""

import json
import os
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testbed"))
import paced_run  # noqa: E402
from lambda_stub import TIMED_OUT, Runtime  # noqa: E402

# A function that answers two events the way a worker does: the event back, with the deadline
# it was given and, for the first, a continuation invoked (put straight on the queue here).
ECHO = """
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
for n in range(2):
    with urllib.request.urlopen(api + "next") as r:
        event, rid, deadline = json.load(r), r.headers["Lambda-Runtime-Aws-Request-Id"], int(r.headers["Lambda-Runtime-Deadline-Ms"])
    body = json.dumps({"event": event, "left_s": deadline / 1000 - time.time(), "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"]})
    path = "error" if event.get("fail") else "response"
    urllib.request.urlopen(urllib.request.Request(api + rid + "/" + path, data=body.encode(), method="POST")).read()
"""


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def query(**params):
    """The form parameters of an EC2 query request, as the server parses them."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlencode(params)))


class TokenBuckets(unittest.TestCase):
    def test_a_bucket_refuses_when_empty_and_refills_at_its_rate_up_to_its_size(self):
        clock = Clock()
        buckets = paced_run.Buckets({"CreateSnapshot": (3, 2)}, clock)
        self.assertEqual([buckets.take("CreateSnapshot") for _ in range(4)], [True, True, True, False])
        clock.now = 0.5  # one token back
        self.assertEqual([buckets.take("CreateSnapshot") for _ in range(2)], [True, False])
        clock.now = 100.0  # full again, no more than its size
        self.assertEqual(sum(buckets.take("CreateSnapshot") for _ in range(10)), 3)
        self.assertEqual(buckets.refused["CreateSnapshot"], 1 + 1 + 7)

    def test_each_api_has_its_own_bucket_with_aws_defaults(self):
        buckets = paced_run.Buckets({}, Clock())
        self.assertEqual(sum(buckets.take("DescribeSnapshots") for _ in range(150)), 100)
        self.assertEqual(sum(buckets.take("DeleteSnapshot") for _ in range(250)), 200)
        self.assertTrue(buckets.take("CreateSnapshot"))


class LambdaRuntime(unittest.TestCase):
    def test_events_are_handed_out_one_at_a_time_with_a_deadline_and_answers_come_back(self):
        runtime = Runtime("echo", "us-east-1", "123456789012", deadline=90)
        runtime.invoke({"region": "us-east-1"})
        runtime.invoke({"fail": True})
        with tempfile.NamedTemporaryFile(mode="w", suffix=".py") as script:
            script.write(ECHO)
            script.flush()
            runtime.start([sys.executable, script.name])
            first, second = runtime.answer(timeout=30), runtime.answer(timeout=30)
            runtime.stop()
        self.assertFalse(first.error)
        answer = json.loads(first.body)
        self.assertEqual(answer["event"], {"region": "us-east-1"})
        self.assertEqual(answer["function"], "echo")
        self.assertTrue(80 < answer["left_s"] <= 90, answer["left_s"])
        self.assertTrue(second.error)
        self.assertIsNone(runtime.answer(timeout=0.1))


# A function that takes its event and works for a minute without answering.
SLOW = """
import os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
urllib.request.urlopen(api + "next").read()
time.sleep(60)
"""


class Deadline(unittest.TestCase):
    def test_an_invocation_still_running_at_its_deadline_is_killed_and_failed_and_a_new_process_takes_the_next(self):
        runtime = Runtime("slow", "us-east-1", "123456789012", deadline=1)
        with tempfile.NamedTemporaryFile(mode="w", suffix=".py") as script:
            script.write(SLOW)
            script.flush()
            first_process = runtime.start([sys.executable, script.name])
            runtime.invoke({"region": "us-east-1"})
            first = runtime.answer(timeout=10)
            self.assertIsNotNone(first, "no answer at the deadline: a late answer would have been waited for")
            self.assertTrue(first.error)
            self.assertIn(TIMED_OUT, first.body)
            self.assertIsNotNone(first_process.poll(), "the process was killed")
            runtime.invoke({"region": "us-east-1"})
            second = runtime.answer(timeout=10)
            self.assertIn(TIMED_OUT, second.body)
            self.assertIsNot(runtime.proc, first_process, "a new process took the next event")
            self.assertEqual(runtime.killed, 2)
            runtime.stop()


class SyntheticAccount(unittest.TestCase):
    def account(self, name, bucket=(1000, 1)):
        region, configs, _, _, needed, _ = paced_run.scenario(name, 4, 2)
        limits = {"CreateSnapshot": bucket, "CreateSnapshots": bucket, "DeleteSnapshot": bucket}
        return paced_run.PacedAccount(region, configs, paced_run.Buckets(limits, Clock())), region, needed

    def test_a_snapshot_made_is_listed_with_its_tags(self):
        account, region, _ = self.account("snapshot")
        volume = next(iter(region.volumes))
        status, body = account.ec2(paced_run.REGION, query(
            Action="CreateSnapshot", VolumeId=volume, Description="d",
            **{"TagSpecification.1.ResourceType": "snapshot", "TagSpecification.1.Tag.1.Key": "DeleteOn",
               "TagSpecification.1.Tag.1.Value": "2030-01-01"}))
        self.assertEqual(status, 200)
        _, listed = account.ec2(paced_run.REGION, query(Action="DescribeSnapshots", **{
            "Filter.1.Name": "volume-id", "Filter.1.Value.1": volume}))
        self.assertIn("<key>DeleteOn</key><value>2030-01-01</value>", listed)
        self.assertIn("<status>pending</status>", listed)

    def test_a_set_snapshots_every_volume_of_its_instance(self):
        account, region, needed = self.account("sets")
        self.assertEqual(needed, 2)
        instance = region.instances[0]
        status, body = account.ec2(paced_run.REGION, query(Action="CreateSnapshots", **{
            "InstanceSpecification.InstanceId": instance["id"]}))
        self.assertEqual(status, 200)
        self.assertEqual(body.count("<state>pending</state>"), 2)
        for _, volume in instance["devices"]:
            self.assertEqual(len(region.by_volume[volume]), 1)

    def test_a_set_leaves_out_the_data_volumes_it_excludes(self):
        # The query name is ExcludeDataVolumeId.N (the SDK's), not ExcludeDataVolumeIds.N.
        account, region, _ = self.account("sets")
        instance = region.instances[0]
        (_, root), (_, data) = instance["devices"]
        status, body = account.ec2(paced_run.REGION, query(Action="CreateSnapshots", **{
            "InstanceSpecification.InstanceId": instance["id"], "InstanceSpecification.ExcludeDataVolumeId.1": data}))
        self.assertEqual(status, 200)
        self.assertEqual(body.count("<state>pending</state>"), 1)
        self.assertEqual((len(region.by_volume[root]), len(region.by_volume[data])), (1, 0))

    def test_an_empty_bucket_answers_request_limit_exceeded_and_changes_nothing(self):
        account, region, _ = self.account("clean", bucket=(1, 0))
        first, second = list(region.snapshots)[:2]
        self.assertEqual(account.ec2(paced_run.REGION, query(Action="DeleteSnapshot", SnapshotId=first))[0], 200)
        status, body = account.ec2(paced_run.REGION, query(Action="DeleteSnapshot", SnapshotId=second))
        self.assertEqual(status, 503)
        self.assertIn("<Code>RequestLimitExceeded</Code>", body)
        self.assertNotIn(first, region.snapshots)
        self.assertIn(second, region.snapshots)

    def test_the_run_is_checked_per_volume_not_from_the_summaries(self):
        account, region, _ = self.account("snapshot")
        self.assertEqual(len(paced_run.verify("snapshot", region)), 4, "no volume has its snapshot yet")
        volumes = list(region.volumes)
        for volume in volumes[:3] + volumes[:1]:  # one volume missed, one snapshotted twice
            account.make_snapshot(region, volume, {}, "d")
        wrong = paced_run.verify("snapshot", region)
        self.assertEqual(sorted(wrong), sorted([f"{volumes[0]}: 2 snapshots", f"{volumes[3]}: 0 snapshots"]))
        _, clean, _ = self.account("clean")
        self.assertEqual(len(paced_run.verify("clean", clean)), 4)
        clean.snapshots.clear()
        self.assertEqual(paced_run.verify("clean", clean), [])

    def test_the_clean_fleet_holds_only_expired_snapshots(self):
        _, region, needed = self.account("clean")
        self.assertEqual(needed, 8)
        self.assertEqual(len(region.snapshots), 8)
        self.assertTrue(all(s["tags"]["DeleteOn"] < paced_run.lr.NOW.strftime("%Y-%m-%d") for s in region.snapshots.values()))


if __name__ == "__main__":
    unittest.main()
