"""A cold function's first answer (a measurement, not a test): from process start to the first
response posted for a small real event, against the emulator (AWS_ENDPOINT_URL; scripts/bench.sh
starts it). That is what a scheduled invocation waits: the process's start, then its first AWS
calls (credentials, the region list, the configuration query, the region lease, the inventory).

  python3 first_answer.py RUNS DIR FUNCTION...

DIR holds DIR/<function>/bootstrap (target/lambda after scripts/package.sh). The account
(the emulator's default) gets the configuration table, one configuration and one instance
tagged for it, once. Each function is started RUNS times under a one-event Lambda Runtime API
serving {"region": "us-east-1"}; its first run snapshots the instance, the others find it not
due, as most scheduled runs do. Prints a Markdown table: start to ready (the runtime's first
poll), start to first answer, median and min of each, and the answer's status.
"""
import json
import os
import statistics
import sys

import boto3
# The Lambda Runtime API stub is the test bed's (scripts/testbed).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testbed"))
from lambda_stub import Runtime  # noqa: E402

REGION = "us-east-1"
TABLE = "ebs_snapshot_configuration"
ACCOUNT = "123456789012"
CONFIG = {"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"}}


def prepare(endpoint):
    kw = dict(region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    ddb = boto3.client("dynamodb", **kw)
    if TABLE not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("aws_account_id", "id")],
            KeySchema=[{"AttributeName": "aws_account_id", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
        )
    ddb.put_item(
        TableName=TABLE,
        Item={"aws_account_id": {"S": ACCOUNT}, "id": {"S": "first-answer"}, "configuration": {"S": json.dumps(CONFIG)}},
    )
    ec2 = boto3.client("ec2", **kw)
    tagged = ec2.describe_instances(Filters=[{"Name": "tag:backup", "Values": ["yes"]}])["Reservations"]
    if not tagged:
        ec2.run_instances(
            ImageId="ami-12345678",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "backup", "Value": "yes"}]}],
        )


def measure(binary, endpoint):
    """(ms to the first poll, ms to the answer, answer kind)."""
    runtime = Runtime("first-answer", REGION, ACCOUNT, deadline=300)
    runtime.invoke({"region": REGION})
    runtime.start(
        binary,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        EBS_SNAPPER_LISTING_LAG_SECONDS="4",
    )
    answer = runtime.answer(timeout=60)
    runtime.stop()
    runtime.proc.wait()
    if answer is None:
        raise SystemExit(f"{binary} never answered")
    ready = (runtime.ready_at - runtime.started_at) * 1000
    return ready, (answer.at - runtime.started_at) * 1000, "error" if answer.error else "response"


def main():
    runs, folder, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    prepare(endpoint)
    print(f"| function | event | start to ready, median (ms) | start to first answer, median of {runs} (ms) | min (ms) | answers |")
    print("|---|---|---:|---:|---:|---|")
    for name in names:
        binary = os.path.join(folder, name, "bootstrap")
        if not os.path.exists(binary):
            binary = os.path.join(folder, name)
        results = [measure(binary, endpoint) for _ in range(runs)]
        ready = statistics.median(r[0] for r in results)
        answers = [r[1] for r in results]
        kinds = sorted({r[2] for r in results})
        print(
            f'| {name} | {{"region": "{REGION}"}} | {ready:.1f} | {statistics.median(answers):.1f} '
            f"| {min(answers):.1f} | {', '.join(kinds)} |"
        )


if __name__ == "__main__":
    main()
