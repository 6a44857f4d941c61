#!/usr/bin/env bash
# Builds a release: what operators install, with no Rust toolchain (README "Install").
#
#   scripts/release.sh VERSION                 both architectures, release profile
#   scripts/release.sh VERSION --arch x86_64   one architecture (repeat --arch for more)
#   scripts/release.sh VERSION --debug         the debug profile, host architecture only: for the
#                                              script's own test (a dev build, never published)
#   scripts/release.sh VERSION --out DIR       write DIR/ebs-snapper-VERSION (default: dist)
#   scripts/release.sh VERSION --allow-dirty   build a tree with uncommitted changes (the
#                                              manifest's commit then does not describe it)
#
# It writes dist/ebs-snapper-VERSION/ (docs/reference/release.md has the layout):
#   ebs-snapper-VERSION-ARCH-linux/        one tree per architecture, as its tarball unpacks:
#     ebs-snapper                            the CLI, for any Linux with glibc >= 2.17
#     lambda/FUNCTION/bootstrap.zip          the five functions (lambda.json)
#     cloudformation/*.json, lambda.json     the templates and the function list
#     sbom.cdx.json, README.md, LICENSE
#     MANIFEST.json, SHA256SUMS              what is in the tree; `deploy --from` checks both
#   ebs-snapper-VERSION-ARCH-linux.tar.gz  one tarball per architecture
#   ebs-snapper-VERSION.cdx.json           the CycloneDX SBOM of the Rust dependencies
#   MANIFEST.json, SHA256SUMS              the tarballs, the SBOM, and where each tree is
#
# The build is reproducible: the same commit gives byte-identical zips, CLIs and tarballs
# (paths remapped, file times from the commit, archives sorted, no build ids that vary).
# A release build links with zig through cargo-lambda (`pip install cargo-lambda`), for
# glibc 2.17 on both architectures, and needs `rustup target add aarch64-unknown-linux-gnu`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
source scripts/lib/functions.sh
# The same bytes on every machine: zip stores local times, tar the files' modes.
export TZ=UTC
umask 022

usage() { echo "usage: scripts/release.sh VERSION [--arch x86_64|aarch64]... [--debug] [--out DIR] [--allow-dirty]" >&2; exit 2; }
die() { echo "release.sh: $*" >&2; exit 1; }

version=""
arches=()
profile=release
out_root=dist
allow_dirty=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) [[ $# -ge 2 ]] || usage; arches+=("$2"); shift ;;
    --debug) profile=dev ;;
    --out) [[ $# -ge 2 ]] || usage; out_root=$2; shift ;;
    --allow-dirty) allow_dirty=true ;;
    -*) usage ;;
    *) [[ -z "$version" ]] || usage; version=$1 ;;
  esac
  shift
done
[[ -n "$version" ]] || usage
for a in "${arches[@]}"; do
  [[ "$a" == x86_64 || "$a" == aarch64 ]] || die "--arch $a: x86_64 or aarch64"
done
host_arch=$(uname -m)
if [[ "$profile" == dev ]]; then
  # A debug release reuses the test build (target/debug): the host's architecture only.
  [[ ${#arches[@]} -eq 0 ]] && arches=("$host_arch")
  [[ "${arches[*]}" == "$host_arch" ]] || die "--debug builds the host's architecture ($host_arch) only"
fi
[[ ${#arches[@]} -eq 0 ]] && arches=(x86_64 aarch64)

# The version is the workspace's: the CLI refuses to deploy a release of another version.
workspace_version=$(workspace_version)
[[ "$version" == "$workspace_version" ]] ||
  die "VERSION $version is not the workspace's version $workspace_version: set [workspace.package] version in Cargo.toml first"

commit=$(git rev-parse --verify HEAD) || die "not a git checkout: a release names the commit it is built from"
if [[ -n "$(git status --porcelain --untracked-files=no)" ]] && ! $allow_dirty; then
  die "the checkout has uncommitted changes: commit them (a release is of a commit), or pass --allow-dirty"
fi
# Every file time in the release is the commit's.
epoch=$(git show -s --format=%ct HEAD)
glibc=2.17

# The debug build's binaries are large and only tested: compressed fast.
level=-9
[[ "$profile" == dev ]] && level=-1

mapfile -t functions < <(lambda_functions)
packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done
packages+=(-p ebs-snapper-cli)

tools=("rustc=$(rustc -V | cut -d' ' -f2-)" "cargo=$(cargo -V | cut -d' ' -f2-)")
target_dir="${CARGO_TARGET_DIR:-$root/target}"

# bin_dir ARCH: where the build leaves that architecture's binaries.
declare -A bin_dir
if [[ "$profile" == release ]]; then
  cargo lambda --version >/dev/null 2>&1 || die "a release links with zig through cargo-lambda: pip install cargo-lambda==1.9.2"
  tools+=("cargo-lambda=$(cargo lambda --version | cut -d' ' -f2)")
  # Paths in panic messages are the same on every machine: the checkout and the registry's
  # sources are renamed (the standard library's already are, by the toolchain).
  cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
  # C compilers take any date they stamp from SOURCE_DATE_EPOCH: a fixed one, not the commit's,
  # since the cc crate rebuilds the SDK's C code (and everything above it) when it changes. The
  # debug build is the test build and gets none: setting it there rebuilt the SDK too.
  export SOURCE_DATE_EPOCH=315532800
  export RUSTFLAGS="--remap-path-prefix=$root=/ebs-snapper --remap-path-prefix=$cargo_home=/cargo ${RUSTFLAGS:-}"
  # The linker's build id is a hash of the output, so it is the same for the same input; the
  # default stays. Nothing else in the build reads the clock.
  for arch in "${arches[@]}"; do
    triple=$arch-unknown-linux-gnu
    rustup target list --installed 2>/dev/null | grep -qx "$triple" || die "$arch needs 'rustup target add $triple'"
    step "build the functions and the CLI for $arch (glibc $glibc, release profile)"
    run cargo lambda build --release --target "$triple.$glibc" "${packages[@]}"
    # cargo-lambda moves each binary to target/lambda/<binary>/bootstrap, where the next
    # architecture's build would put its own: each is kept apart at once.
    bin_dir[$arch]=$target_dir/release-binaries/$arch
    rm -rf "${bin_dir[$arch]}"
    mkdir -p "${bin_dir[$arch]}"
    for b in "${functions[@]}" ebs-snapper; do cp "$target_dir/lambda/$b/bootstrap" "${bin_dir[$arch]}/$b"; done
  done
else
  step "build the functions and the CLI (debug, host; the test build's binaries)"
  run cargo build --workspace --bins
  bin_dir[$host_arch]=$target_dir/debug
  glibc=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)
fi

out=$out_root/ebs-snapper-$version
rm -rf "$out"
mkdir -p "$out"

# copy_binary SRC DEST: the binary as it ships: executable, the commit's time, and (debug
# builds) stripped as the release profile strips: debug information holds the checkout's path,
# and the linker's build id is a hash of the output with that information in it (two checkouts
# gave two ids and nothing else different). A release build is linked stripped, with paths
# remapped, so its id is a hash of what ships.
copy_binary() {
  cp "$1" "$2"
  [[ "$profile" == dev ]] && strip --strip-all --remove-section=.note.gnu.build-id "$2"
  chmod 755 "$2"
  touch -d "@$epoch" "$2"
}

trees=()
for arch in "${arches[@]}"; do
  name=ebs-snapper-$version-$arch-linux
  tree=$out/$name
  step "package $name"
  # Each binary is for its architecture and runs on glibc 2.17 (a debug build is the host's,
  # for tests only: its glibc is what the host has).
  python3 scripts/lib/elf_check.py --glibc "$glibc" "$(lambda_arch "$arch")" "${bin_dir[$arch]}/ebs-snapper" \
    "${functions[@]/#/${bin_dir[$arch]}/}" || die "these binaries cannot run where a release runs (see above)"
  mkdir -p "$tree/lambda" "$tree/cloudformation"
  copy_binary "${bin_dir[$arch]}/ebs-snapper" "$tree/ebs-snapper"
  for f in "${functions[@]}"; do
    mkdir -p "$tree/lambda/$f"
    staging=$(mktemp -d)
    copy_binary "${bin_dir[$arch]}/$f" "$staging/bootstrap"
    # -X: no extra fields (uid, times); one member, so the order is fixed.
    (cd "$staging" && zip -q -X "$level" bootstrap.zip bootstrap)
    mv "$staging/bootstrap.zip" "$tree/lambda/$f/bootstrap.zip"
    rm -rf "$staging"
  done
  cp cloudformation/ebs-snapper.json cloudformation/member.json cloudformation/vault.json cloudformation/operator.json "$tree/cloudformation/"
  cp lambda.json README.md LICENSE "$tree/"
  python3 scripts/lib/release_files.py sbom --version "$version" --commit "$commit" --epoch "$epoch" \
    --target "$arch-unknown-linux-gnu" "$tree/sbom.cdx.json"
  find "$tree" -exec touch -h -d "@$epoch" {} +
  python3 scripts/lib/release_files.py manifest "$tree" --version "$version" --commit "$commit" --profile "$profile" \
    --glibc "$glibc" --architecture "$arch" "${tools[@]/#/--tool=}"
  touch -d "@$epoch" "$tree/MANIFEST.json" "$tree/SHA256SUMS"
  # The same bytes for the same tree: names sorted, the commit's time, no owner, gzip without
  # its own time stamp or file name.
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode=go-w --format=gnu \
    -C "$out" -cf - "$name" | gzip "$level" -n >"$out/$name.tar.gz"
  trees+=("--tree=$arch=$name")
  du -b "$out/$name.tar.gz" | awk '{printf "%s: %d bytes\n", $2, $1}'
done

step "the release's SBOM, manifest and sums"
targets=()
for arch in "${arches[@]}"; do targets+=("--target=$arch-unknown-linux-gnu"); done
python3 scripts/lib/release_files.py sbom --version "$version" --commit "$commit" --epoch "$epoch" \
  "${targets[@]}" "$out/ebs-snapper-$version.cdx.json"
python3 scripts/lib/release_files.py manifest "$out" --version "$version" --commit "$commit" --profile "$profile" \
  --glibc "$glibc" "${trees[@]}" "${tools[@]/#/--tool=}"
(cd "$out" && sha256sum -c --quiet SHA256SUMS)
for arch in "${arches[@]}"; do (cd "$out/ebs-snapper-$version-$arch-linux" && sha256sum -c --quiet SHA256SUMS); done
echo "release $version ($commit, $profile) in $out:"
(cd "$out" && ls -l --time-style=+ ./*.tar.gz ./*.cdx.json MANIFEST.json SHA256SUMS)
