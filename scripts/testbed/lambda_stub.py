"""What the measurement scripts share: the environment Lambda gives a function, and a Lambda
Runtime API on loopback that hands a function process its events (each script its own)."""
import http.server
import json
import os
import queue
import subprocess
import threading
import time
from collections import namedtuple

# One answer of the function: `error` when it posted to .../error; `at` is perf_counter time;
# `hwm_kb` the process's peak RSS (VmHWM) when it answered.
Answer = namedtuple("Answer", "error body at hwm_kb")


def function_env(runtime_port, name, region="us-east-1", **extra):
    """The function's environment: the Runtime API on loopback `runtime_port`, 128 MB, `region`,
    dummy credentials unless given, no instance metadata; `extra` adds or replaces variables."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime_port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra)
    return env


# The error an invocation still running at its deadline ends with (the process is killed).
TIMED_OUT = "Sandbox.Timedout"


class Runtime:
    """The Runtime API for one function process, as Lambda serves a warm one: each poll takes the
    next event given to `invoke` (waiting for one), with a deadline `deadline` seconds after it is
    handed out; each answer is put on `answers`. `start` runs the process against it.

    Lambda's deadline is enforced: an invocation still running at it is answered with a
    `Sandbox.Timedout` error, its process is killed and started again (a new execution
    environment) for the next event, and an answer it sends later is refused."""

    def __init__(self, name, region, account, deadline=900.0):
        self.name, self.region, self.deadline = name, region, deadline
        self.events, self.answers = queue.Queue(), queue.Queue()
        self.started_at = self.ready_at = None
        self.proc = None
        self.launch = None  # how `start` started the process, to start it again
        self.lock = threading.Lock()
        self.current = None  # (request id, deadline as time.time()) of the invocation in flight
        self.killed = 0
        runtime = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if runtime.ready_at is None:
                    runtime.ready_at = time.perf_counter()
                data = json.dumps(runtime.events.get()).encode()
                rid, deadline = f"{name}-{time.monotonic_ns()}", time.time() + runtime.deadline
                with runtime.lock:
                    runtime.current = (rid, deadline)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", rid)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(deadline * 1000)))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", f"arn:aws:lambda:{region}:{account}:function:{name}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                at = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hwm = 0
                try:
                    with open(f"/proc/{runtime.proc.pid}/status") as status:
                        hwm = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
                except (OSError, AttributeError, StopIteration):
                    pass
                rid = self.path.split("/")[-2] if "/invocation/" in self.path else None
                with runtime.lock:
                    late = rid is not None and (runtime.current is None or runtime.current[0] != rid)
                    if not late and rid is not None:
                        runtime.current = None
                if late:
                    # Killed at its deadline already: Lambda takes no answer after it.
                    self.send_response(410)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                runtime.answers.put(Answer(self.path.endswith("/error"), body.decode(errors="replace"), at, hwm))

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True  # a poll left waiting for an event never holds the script

            def handle_error(self, request, client_address):
                pass  # a killed function drops its connection

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._enforce_deadlines, daemon=True).start()

    def _enforce_deadlines(self):
        while True:
            time.sleep(0.05)
            with self.lock:
                late = self.current is not None and time.time() > self.current[1]
                if late:
                    rid, self.current = self.current[0], None
            if not late:
                continue
            self.killed += 1
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            body = json.dumps({"errorType": TIMED_OUT, "errorMessage": f"{rid}: Task timed out: still running at its deadline"})
            self.answers.put(Answer(True, body, time.perf_counter(), 0))
            if self.launch is not None:
                self.start(*self.launch[0], **self.launch[1])

    def invoke(self, event):
        self.events.put(event)

    def start(self, binary, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **env):
        """Starts `binary` (a path, or a command line as a list) with the function's environment
        (`env` adds to it)."""
        self.started_at = time.perf_counter()
        self.launch = ((binary, stdout, stderr), env)
        self.proc = subprocess.Popen(
            binary if isinstance(binary, list) else [binary], env=function_env(self.server.server_address[1], self.name, self.region, **env),
            stdout=stdout, stderr=stderr,
        )
        return self.proc

    def answer(self, timeout):
        """The next answer, or None when none came within `timeout` seconds."""
        try:
            return self.answers.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self):
        """Kills the process (what it printed to a pipe stays readable) and the Runtime API."""
        self.launch = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.server.shutdown()
