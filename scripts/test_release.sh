#!/usr/bin/env bash
# The test of scripts/release.sh, on the debug profile (run by scripts/test.sh after the test
# build, with the AWS emulator's environment set):
#
# 1. Reproducible: the release is built twice, from two checkouts of the same commit at two
#    paths (the second compiles the workspace's crates again, into the same target directory),
#    and every file of the two must be byte-identical: zips, CLIs, tarballs, manifests, SBOMs.
# 2. Whole: each tree's and the directory's SHA256SUMS verify with `sha256sum -c`, and the SBOM
#    is valid CycloneDX (the schema, by cyclonedx-python-lib).
# 3. Installable without a toolchain: the tarball is unpacked in a fresh directory and its
#    `./ebs-snapper deploy --from .` deploys into the emulator with only /usr/bin and /bin on
#    PATH (no cargo, no rustc), recording the version as the stack's tag and output.
#
#   scripts/test_release.sh     needs AWS_ENDPOINT_URL (scripts/test.sh starts the emulator)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
source scripts/lib/functions.sh
: "${AWS_ENDPOINT_URL:?the emulator: run from scripts/test.sh}"
VENV_DIR="${VENV_DIR:-$root/.venv}"

version=$(workspace_version)
work=$root/target/release-test
rm -rf "$work"
mkdir -p "$work"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

# checkout DIR: a clone of this checkout's commit at DIR.
checkout() { git clone --quiet --no-hardlinks "$root" "$1" && git -C "$1" checkout --quiet "$(git rev-parse HEAD)"; }

# The first build is the checkout itself when it has no uncommitted change (it reuses the test
# build); else a clone, so that both builds are of the commit.
if [[ -z "$(git status --porcelain --untracked-files=no)" ]]; then
  first=$root
else
  echo "the checkout has uncommitted changes: both builds are of clones of $(git rev-parse --short HEAD)"
  first=$work/first
  checkout "$first"
fi
second=$work/second
checkout "$second"

echo "+ scripts/release.sh $version --debug (in $first)"
(cd "$first" && bash scripts/release.sh "$version" --debug --out "$work/a") >"$work/a.log" 2>&1 ||
  { cat "$work/a.log"; echo "FAIL: scripts/release.sh (first build)" >&2; exit 1; }
# The workspace's crates are compiled again for the second build: cargo would otherwise take the
# first build's (their fingerprints do not depend on the checkout's path).
members=$(cargo metadata --no-deps --format-version 1 --offline |
  python3 -c 'import json,sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))')
# shellcheck disable=SC2086
(cd "$second" && cargo clean --quiet $members)
echo "+ scripts/release.sh $version --debug (in $second, another path)"
(cd "$second" && bash scripts/release.sh "$version" --debug --out "$work/b") >"$work/b.log" 2>&1 ||
  { cat "$work/b.log"; echo "FAIL: scripts/release.sh (second build)" >&2; exit 1; }
# The second build's crates have the first's names in the shared target directory: without this,
# a later build in this checkout could take them for its own (seen: a change not compiled in).
# shellcheck disable=SC2086
cargo clean --quiet $members
grep -E '^ +Compiling ' "$work/b.log" | sed 's/^ */second build: /' || true
grep -qE '^ +Compiling ebs-snapper-cli ' "$work/b.log" ||
  { echo "FAIL: the second build compiled nothing again, so it proves nothing" >&2; exit 1; }

rel=ebs-snapper-$version
compared=0
while IFS= read -r -d '' f; do
  path=${f#"$work/a/"}
  cmp -s "$f" "$work/b/$path" || { echo "FAIL: $path differs between two builds of one commit" >&2; exit 1; }
  compared=$((compared + 1))
done < <(find "$work/a" -type f -print0)
[[ $(find "$work/b" -type f | wc -l) -eq $compared ]] || { echo "FAIL: the two builds have other files" >&2; exit 1; }
for f in ebs-snapper lambda/clean-snapshot/bootstrap.zip; do
  grep -q "\"path\": \"$f\"" "$work/a/$rel/$rel-$(uname -m)-linux/MANIFEST.json" || { echo "FAIL: $f is not in the manifest" >&2; exit 1; }
done
echo "ok: two builds of one commit at two paths are byte-identical ($compared files: zips, CLI, tarball, manifests, SBOMs)"

(cd "$work/a/$rel" && sha256sum -c --quiet SHA256SUMS)
(cd "$work/a/$rel/$rel-$(uname -m)-linux" && sha256sum -c --quiet SHA256SUMS)
"$VENV_DIR/bin/python" - "$work/a/$rel/$rel.cdx.json" <<'EOF'
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
text = open(sys.argv[1]).read()
errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
if errors:
    sys.exit(f"FAIL: the SBOM is not valid CycloneDX 1.6: {errors}")
doc = json.loads(text)
names = {c["name"] for c in doc["components"]}
for needed in ["ebs-snapper-cli", "clean-snapshot", "aws-sdk-ec2", "tokio", "rustls"]:
    if needed not in names:
        sys.exit(f"FAIL: the SBOM has no {needed}")
if "proptest" in names:
    sys.exit("FAIL: the SBOM lists a test-only crate (proptest)")
print(f"ok: the SBOM is valid CycloneDX 1.6 with {len(names)} components, each with its licence")
EOF

# Install as an operator would: the tarball, a fresh directory, no toolchain on PATH.
install=$work/install
mkdir -p "$install"
tar -xzf "$work/a/$rel/$rel-$(uname -m)-linux.tar.gz" -C "$install"
cd "$install/$rel-$(uname -m)-linux"
if env PATH=/usr/bin:/bin bash -c 'command -v cargo || command -v rustc'; then
  echo "FAIL: a toolchain is on the reduced PATH" >&2; exit 1
fi
env PATH=/usr/bin:/bin ./ebs-snapper --version
env PATH=/usr/bin:/bin ./ebs-snapper --version | grep -qx "ebs-snapper $version (commit $(git -C "$root" rev-parse HEAD))" ||
  { echo "FAIL: --version does not name the version and commit" >&2; exit 1; }
# A fresh account of the emulator's, by AssumeRole as the end-to-end tests make them.
account=$(printf '9%011d' $((RANDOM * 32768 + RANDOM)))
mapfile -t creds < <("$VENV_DIR/bin/python" - "$account" <<'EOF'
import os, sys
import boto3
sts = boto3.client("sts", region_name="us-east-1", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                   aws_access_key_id="testing", aws_secret_access_key="testing")
c = sts.assume_role(RoleArn=f"arn:aws:iam::{sys.argv[1]}:role/release-test", RoleSessionName="release-test")["Credentials"]
print(f"AWS_ACCESS_KEY_ID={c['AccessKeyId']}\nAWS_SECRET_ACCESS_KEY={c['SecretAccessKey']}\nAWS_SESSION_TOKEN={c['SessionToken']}")
EOF
)
echo "+ ./ebs-snapper deploy --from . (account $account, PATH=/usr/bin:/bin)"
env PATH=/usr/bin:/bin "${creds[@]}" \
  ./ebs-snapper -t us-east-1 deploy --from . --poll-ms 200 >"$work/deploy.out" 2>"$work/deploy.err" ||
  { cat "$work/deploy.out" "$work/deploy.err"; echo "FAIL: deploy --from . of the unpacked release" >&2; exit 1; }
cat "$work/deploy.out"
grep -q "^release $version ($(lambda_arch "$(uname -m)")" "$work/deploy.out" || { echo "FAIL: deploy did not say it verified the release" >&2; exit 1; }
grep -q "CREATE_COMPLETE" "$work/deploy.out" || { echo "FAIL: the stack was not created" >&2; exit 1; }
env "${creds[@]}" "$VENV_DIR/bin/python" - "$account" "$version" <<'EOF'
import os, sys
import boto3
account, version = sys.argv[1], sys.argv[2]
cfn = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
stack = cfn.describe_stacks(StackName=f"ebs-snapper-{account}")["Stacks"][0]
tags = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
if tags.get("ebs-snapper:version") != version or outputs.get("Version") != version:
    sys.exit(f"FAIL: the stack does not record version {version}: tags {tags}, outputs {outputs}")
print(f"ok: the stack records version {version} (tag ebs-snapper:version and output Version)")
EOF
echo "ok: the unpacked release deployed with no Rust toolchain on PATH"
# The release directory as release.sh wrote it (its manifest naming the tree) deploys too.
env PATH=/usr/bin:/bin "${creds[@]}" ./ebs-snapper -t us-east-1 deploy --from "$work/a/$rel" --poll-ms 200 \
  >"$work/deploy2.out" 2>"$work/deploy2.err" ||
  { cat "$work/deploy2.out" "$work/deploy2.err"; echo "FAIL: deploy --from the release directory" >&2; exit 1; }
grep -q "code unchanged" "$work/deploy2.out" || { cat "$work/deploy2.out"; echo "FAIL: the release directory's tree is not the tarball's" >&2; exit 1; }
echo "ok: the release directory deploys the same code"
