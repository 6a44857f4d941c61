# The functions of the project, one binary name per line, read from lambda.json (the one list of
# functions: the template, packaging, the tests and the benchmarks all follow it).
# Sourced; run from the project root.
lambda_functions() {
  python3 -c 'import json; [print(f["binary"]) for f in json.load(open("lambda.json"))["functions"]]'
}

# The workspace's version (the CLI's; a release must carry it).
workspace_version() {
  cargo metadata --no-deps --format-version 1 --offline |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ebs-snapper-cli"))'
}

# Lambda's name of an architecture (x86_64, aarch64 -> x86_64, arm64).
lambda_arch() { if [[ "$1" == aarch64 ]]; then echo arm64; else echo x86_64; fi; }

# Each step says how long the one before it took, and the total so far.
STEP_STARTED=$SECONDS
STEP_NAME=""
step() {
  if [[ -n "$STEP_NAME" ]]; then
    printf '(%s: %ss; %ss in all)\n' "$STEP_NAME" "$((SECONDS - STEP_STARTED))" "$SECONDS"
  fi
  STEP_NAME="$*"
  STEP_STARTED=$SECONDS
  printf '\n==> %s\n' "$*"
}
run() { printf '+ %s\n' "$*"; "$@"; }
