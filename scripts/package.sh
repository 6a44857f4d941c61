#!/usr/bin/env bash
# Builds the Lambda functions listed in lambda.json and zips each as
# target/lambda/<function>/bootstrap.zip (the binary renamed `bootstrap`, as provided.al2023 runs it).
#
#   scripts/package.sh            release build, x86_64 (the host)
#   scripts/package.sh --debug    debug build (faster; for tests)
#   scripts/package.sh --arm64    release build for arm64 (needs the aarch64 Rust target and linker)
#   scripts/package.sh --zig      build through cargo-lambda (zig as the linker, glibc pinned to
#                                 Lambda's 2.34, arm64 without a cross gcc); the default when
#                                 cargo-lambda is installed (`pip install cargo-lambda`)
#   scripts/package.sh --host     build with the host's toolchain even if cargo-lambda is there
#
# Zips are deterministic: the same binary gives the same zip, so deploy uploads nothing and
# publishes no version when nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/functions.sh

profile=release
level=-9
target=()
arm64=false
builder=auto
for arg in "$@"; do
  case "$arg" in
    --debug) profile=dev; level=-1 ;;
    --arm64) arm64=true; target=(--target aarch64-unknown-linux-gnu) ;;
    --zig) builder=zig ;;
    --host) builder=host ;;
    *) echo "usage: scripts/package.sh [--debug] [--arm64] [--zig | --host]" >&2; exit 2 ;;
  esac
done
if [[ "$builder" == auto ]]; then
  if cargo lambda --version >/dev/null 2>&1; then builder=zig; else builder=host; fi
fi
if [[ "$builder" == zig ]] && ! cargo lambda --version >/dev/null 2>&1; then
  echo "error: --zig needs cargo-lambda ('pip install cargo-lambda' brings it and its zig)" >&2
  exit 1
fi
if [[ "$builder" == zig ]]; then
  # cargo-lambda links with zig against glibc 2.34 (provided.al2023's), whatever the host has.
  triple=x86_64-unknown-linux-gnu
  $arm64 && triple=aarch64-unknown-linux-gnu
  if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    echo "error: --zig for $triple needs 'rustup target add $triple'" >&2
    exit 1
  fi
  target=(--target "$triple")
elif [[ ${#target[@]} -gt 0 ]]; then
  if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    echo "error: --arm64 needs 'rustup target add aarch64-unknown-linux-gnu' and the aarch64-linux-gnu-gcc linker (Debian: gcc-aarch64-linux-gnu)" >&2
    exit 1
  fi
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
fi

mapfile -t functions < <(lambda_functions)
packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done

if [[ "$builder" == zig ]]; then
  release=()
  [[ "$profile" == release ]] && release=(--release)
  echo "+ cargo lambda build ${release[*]} --target $triple.2.34 ${packages[*]}"
  cargo lambda build "${release[@]}" --target "$triple.2.34" "${packages[@]}"
else
  # A debug build (tests, the demo) builds what `cargo build --workspace --bins` builds, with the
  # same feature set: building only the functions resolves other features for the SDK's shared
  # crates (the CLI's S3 client turns on some) and would compile the SDK a second time. A
  # release build is of the functions alone, with only the features they need.
  [[ "$profile" == dev && ${#target[@]} -eq 0 ]] && packages=(--workspace --bins)
  echo "+ cargo build --profile $profile ${target[*]} ${packages[*]}"
  cargo build --profile "$profile" "${target[@]}" "${packages[@]}"
fi

out_dir="${CARGO_TARGET_DIR:-target}"
[[ ${#target[@]} -gt 0 ]] && out_dir="$out_dir/${target[1]}"
[[ "$profile" == dev ]] && out_dir="$out_dir/debug" || out_dir="$out_dir/release"

# Each binary must start on Lambda: the architecture the stack runs it on, and no glibc newer
# than provided.al2023's 2.34. A release build that fails this is not zipped; a debug build
# (tests only, never deployed) is only warned about.
arch=x86_64
$arm64 && arch=arm64
# cargo-lambda leaves each binary as target/lambda/<function>/bootstrap itself.
binary() { if [[ "$builder" == zig ]]; then echo "target/lambda/$1/bootstrap"; else echo "$out_dir/$1"; fi; }
binaries=()
for f in "${functions[@]}"; do binaries+=("$(binary "$f")"); done
if ! python3 scripts/lib/elf_check.py "$arch" "${binaries[@]}"; then
  if [[ "$profile" == release ]]; then
    echo "error: these binaries cannot start on Lambda (see above); nothing was zipped" >&2
    exit 1
  fi
  echo "warning: a release build of these would be refused (debug zips are for tests only)" >&2
fi

mkdir -p target/lambda
echo "$profile" > target/lambda/PROFILE
echo "$builder" > target/lambda/BUILDER
# deploy sets the stack's Architecture from this.
echo "$arch" > target/lambda/ARCH
for f in "${functions[@]}"; do
  dir="target/lambda/$f"
  mkdir -p "$dir"
  [[ "$(binary "$f")" == "$dir/bootstrap" ]] || cp "$(binary "$f")" "$dir/bootstrap"
  chmod 755 "$dir/bootstrap"
  touch -t 198001010000 "$dir/bootstrap"
  rm -f "$dir/bootstrap.zip"
  (cd "$dir" && zip -q -X "$level" bootstrap.zip bootstrap)
  printf '%-16s %10s bytes binary %10s bytes zip  %s\n' "$f" "$(stat -c %s "$dir/bootstrap")" "$(stat -c %s "$dir/bootstrap.zip")" "$dir/bootstrap.zip"
done
