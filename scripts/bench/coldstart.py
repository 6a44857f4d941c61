"""Start-to-ready time of each function binary against a stub Lambda Runtime API.

For each binary in target/lambda/<name>/bootstrap: start it with the Lambda environment pointed
at a local HTTP server, and measure the time until its first GET .../invocation/next. The
process is then killed. Prints a Markdown table: binary size, zip size, median and min start time.
"""
import http.server
import os
import statistics
import subprocess
import sys
import threading
import time

# The Lambda Runtime API stub is the test bed's (scripts/testbed).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testbed"))
from lambda_stub import function_env  # noqa: E402


def measure(binary: str) -> float:
    ready = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ready.set()
            # Hold the long poll: the function waits for an event that never comes.
            time.sleep(5)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = function_env(server.server_address[1], "coldstart")
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = ready.wait(timeout=10)
    elapsed = time.perf_counter() - start
    rss_kb = 0
    try:
        with open(f"/proc/{proc.pid}/status") as status:
            rss_kb = next((int(l.split()[1]) for l in status if l.startswith("VmRSS:")), 0)
    except OSError:
        pass
    measure.rss_mb = rss_kb / 1024
    proc.kill()
    proc.wait()
    server.shutdown()
    if not ok:
        raise SystemExit(f"{binary} never asked for an event")
    return elapsed * 1000


def main() -> None:
    runs = int(sys.argv[1])
    print(f"| function | binary (bytes) | zip (bytes) | start to ready, median of {runs} (ms) | min (ms) | RSS when ready (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in sys.argv[2:]:
        binary = f"target/lambda/{name}/bootstrap"
        times = [measure(binary) for _ in range(runs)]
        print(
            f"| {name} | {os.path.getsize(binary):,} | {os.path.getsize(binary + '.zip'):,} "
            f"| {statistics.median(times):.1f} | {min(times):.1f} | {measure.rss_mb:.1f} |"
        )


main()
