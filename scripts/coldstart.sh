#!/usr/bin/env bash
# Benchmark (not a test): per function, the release binary's size, its zip's size, and the time
# from process start to its first request for an event (GET /runtime/invocation/next), the
# median of several runs against a stub Runtime API on loopback.
#
#   scripts/coldstart.sh [RUNS]       default 9 runs; builds with scripts/package.sh (release)
#   SKIP_BUILD=1 scripts/coldstart.sh   use the zips already in target/lambda
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/functions.sh
runs="${1:-9}"
[[ "${SKIP_BUILD:-0}" == 1 ]] || scripts/package.sh
python3 scripts/bench/coldstart.py "$runs" $(lambda_functions)
