#!/usr/bin/env bash
# Performance figures as one report (benchmarks and measurements, never timed tests):
#   1. planner scaling and peak memory (release example)
#   2. criterion planner benchmarks (cargo bench)
#   3. AWS call budget against the emulator (request recording)
#   4. function binaries: size, zip size, start-to-ready, idle RSS (needs release zips:
#      scripts/package.sh first, or set BUILD=1 to build them here; slow)
#   5. each function's peak RSS on the large synthetic region (VOLUMES volumes, default 10,000,
#      and ten snapshots each; same release zips)
#   6. the snapshot fanout over ACCOUNTS member accounts (default 50) x 4 regions: wall time and
#      calls per account and per (account, region)
#   7. the jobs behind EC2's token buckets, each worker run as Lambda runs it (DEADLINE, default
#      900 s, per invocation; its own continuations), three scenarios side by side: VOLUMES_PACED
#      (10,000) due volumes behind a CreateSnapshot bucket of BUCKET (100) refilled at REFILL (5)
#      per second; the same volumes as crash-consistent sets (one CreateSnapshots token per
#      instance); the clean job on EXPIRED_PER_VOLUME (3) expired snapshots per volume (30,000).
#      Wall time against the bucket's bound, throttles per 1,000 calls, failures, continuation
#      hops, peak RSS. 7a serves a synthetic account (scripts/bench/paced_run.py; the release
#      workers; the clean run takes about 1 h 50 min at the default size); 7b runs the same
#      through the test bed's stricter AWS in front of the emulator, on VOLUMES_EMULATOR (1,000)
#      volumes, which is as large as the emulator serves at a pace the bucket decides
#   8. a cold function's first answer: process start to the first response posted for a small
#      real event against the emulator, median of 9 (the zips in target/lambda, either profile)
#   9. side by side with an earlier build (PREVIOUS_BIN=path/to/its/ebs-snapper): calls and wall
#      time of snapshot and clean at 4 / 20 / 100 / 1,000 instances (SIZES)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/functions.sh
source scripts/testbed/emulator.sh

step "1. planner scaling and peak RSS ($(date -u +%Y-%m-%d))"
cargo run --quiet --release -p ebs-snapper-core --features testing --example plan_scale

step "2. criterion: cargo bench -p ebs-snapper-core"
cargo bench -p ebs-snapper-core --features testing --bench planners -- --noplot 2>/dev/null | grep -E "^planners|time:" || true

step "3. AWS call budget (emulator with request recording)"
ensure_venv >/dev/null
start_moto >/dev/null
cargo build --quiet -p ebs-snapper-cli --bins
BUDGET_SIZES="${BUDGET_SIZES:-10,50,200}" cargo test --quiet -p ebs-snapper-cli --test e2e budget::call_budget -- --nocapture 2>/dev/null | grep -E "^\|"

step "3b. restore drills: ${DRILLS:-100} drills in one region, the clean worker as Lambda runs it (emulator)"
# Volumes creating for CREATING s (20); DEADLINE (240 s) short enough to see the continuation.
DRILLS="${DRILLS:-100}" CREATING="${CREATING:-20}" DEADLINE="${DRILL_DEADLINE:-240}" \
  cargo test --quiet -p ebs-snapper-cli --test e2e drills::drill_budget -- --nocapture 2>/dev/null | grep -E "^\|"
stop_moto

step "4. function binaries (release)"
if [[ "${BUILD:-0}" == 1 ]]; then scripts/package.sh >/dev/null; fi
if [[ "$(cat target/lambda/PROFILE 2>/dev/null)" == release ]]; then
  python3 scripts/bench/coldstart.py 9 $(lambda_functions)
else
  echo "no release zips in target/lambda: run scripts/package.sh (or BUILD=1 scripts/bench.sh)"
fi

step "5. peak RSS of each function on the large synthetic region (release)"
if [[ "$(cat target/lambda/PROFILE 2>/dev/null)" == release ]]; then
  python3 scripts/bench/large_run.py "${VOLUMES:-10000}" target/lambda \
    $(lambda_functions)
else
  echo "no release zips in target/lambda: run scripts/package.sh (or BUILD=1 scripts/bench.sh)"
fi

step "6. snapshot fanout over ${ACCOUNTS:-50} member accounts x 4 regions (emulator)"
start_moto >/dev/null
ACCOUNTS="${ACCOUNTS:-50}" cargo test --quiet -p ebs-snapper-cli --test e2e budget::fanout_over_many_accounts -- \
  --ignored --nocapture 2>/dev/null | grep -E "^\|"
stop_moto

step "7a. the jobs paced by token buckets of ${BUCKET:-100} refilled at ${REFILL:-5}/s, ${VOLUMES_PACED:-10000} volumes (synthetic account, release)"
if [[ "$(cat target/lambda/PROFILE 2>/dev/null)" == release ]]; then
  python3 scripts/bench/paced_run.py target/lambda --volumes "${VOLUMES_PACED:-10000}" --bucket "${BUCKET:-100}" \
    --refill "${REFILL:-5}" --expired-per-volume "${EXPIRED_PER_VOLUME:-3}" --deadline "${DEADLINE:-900}" \
    --scenarios "${SCENARIOS:-snapshot,sets,clean}" 2>/dev/null
else
  echo "no release zips in target/lambda: run scripts/package.sh (or BUILD=1 scripts/bench.sh)"
fi

step "7b. the same through the stricter AWS in front of the emulator, ${VOLUMES_EMULATOR:-1000} volumes"
start_moto >/dev/null
VOLUMES="${VOLUMES_EMULATOR:-1000}" BUCKET="${BUCKET:-100}" REFILL="${REFILL:-5}" \
  EXPIRED_PER_VOLUME="${EXPIRED_PER_VOLUME:-3}" SCENARIOS="${SCENARIOS:-snapshot,sets,clean}" \
  DEADLINE="${DEADLINE:-900}" \
  cargo test --quiet -p ebs-snapper-cli --test e2e budget::paced_by_the_token_bucket -- \
  --ignored --nocapture 2>/dev/null | grep -E "^\|"
stop_moto

step "8. a cold function's first answer, median of 9 ($(cat target/lambda/PROFILE 2>/dev/null || echo no) zips)"
if [[ -f target/lambda/PROFILE ]]; then
  start_moto >/dev/null
  "$VENV_DIR/bin/python" scripts/bench/first_answer.py 9 target/lambda create-snapshot clean-snapshot replication
  stop_moto
else
  echo "no zips in target/lambda: run scripts/package.sh"
fi

step "9. side by side with an earlier build (PREVIOUS_BIN)"
if [[ -n "${PREVIOUS_BIN:-}" ]]; then
  start_moto >/dev/null
  PREVIOUS_BIN="$PREVIOUS_BIN" SIZES="${SIZES:-4,20,100,1000}" cargo test --quiet -p ebs-snapper-cli --test e2e \
    budget::side_by_side_with_an_earlier_build -- --ignored --nocapture 2>/dev/null | grep -E "^\|"
  stop_moto
else
  echo "PREVIOUS_BIN is not set: build an earlier commit's ebs-snapper (git worktree add DIR COMMIT;"
  echo "cargo build -p ebs-snapper-cli --target-dir target/prev) and pass its path"
fi
