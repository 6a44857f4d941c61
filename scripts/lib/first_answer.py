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
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import boto3
from lambda_stub import function_env

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
    marks = {}
    done = threading.Event()
    start = [0.0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if "ready" in marks:
                time.sleep(5)  # a second poll: no second event
                return
            marks["ready"] = time.perf_counter() - start[0]
            body = json.dumps({"region": REGION}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Lambda-Runtime-Aws-Request-Id", "first-answer")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 300_000))
            self.send_header(
                "Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:first-answer"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            marks["answer"] = time.perf_counter() - start[0]
            marks["kind"] = "response" if self.path.endswith("/response") else "error"
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            done.set()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = function_env(
        server.server_address[1],
        "first-answer",
        REGION,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        EBS_SNAPPER_LISTING_LAG_SECONDS="4",
    )
    start[0] = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = done.wait(timeout=60)
    proc.kill()
    proc.wait()
    server.shutdown()
    if not ok:
        raise SystemExit(f"{binary} never answered")
    return marks["ready"] * 1000, marks["answer"] * 1000, marks["kind"]


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


main()
