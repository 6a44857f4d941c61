#!/usr/bin/env bash
# A short fuzzing run of the parsers (not part of CI: it needs a nightly compiler's sanitizer
# flags and takes minutes). Targets are in fuzz/ (cargo-fuzz layout):
#   configuration   configuration JSON: never panics; whatever parses round-trips as canonical JSON
#   schedule        frequencies (durations and cron): never panics; a parsed schedule evaluates
#
#   scripts/fuzz.sh [SECONDS]       each target for SECONDS (default 60)
#
# cargo-fuzz is installed into target/tools on first use (from crates.io). A nightly toolchain
# is used when rustup has one; otherwise the stable compiler with RUSTC_BOOTSTRAP=1. The seed
# corpus of the configuration target is the bad-input corpus in tests/corpus/configs plus the
# README's examples; new inputs go to fuzz/corpus (ignored by git), crashes to fuzz/artifacts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"

tools="$PWD/target/tools"
if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
  echo "+ cargo install cargo-fuzz --locked --root target/tools"
  cargo install cargo-fuzz --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

mkdir -p fuzz/corpus/configuration fuzz/corpus/schedule
cp tests/corpus/configs/*.json fuzz/corpus/configuration/ 2>/dev/null || true
printf '%s' '{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "4 days", "minimum": 5, "frequency": "12 hours"}}' \
  > fuzz/corpus/configuration/readme-example.json
for s in "12 hours" "1 day" "1.5 hours" "2 weeks" "0 */6 * * *" "cron(0 3 * * ? *)" "30 2 * * 1-5" "cron(15 10 ? * 6L 2026)"; do
  printf '%s' "$s" > "fuzz/corpus/schedule/$(printf '%s' "$s" | md5sum | cut -c1-12)"
done

status=0
for target in configuration schedule; do
  echo "+ cargo ${toolchain[*]} fuzz run $target -- -max_total_time=$seconds"
  if ! (cd fuzz && cargo "${toolchain[@]}" fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 25); then
    echo "FAIL: $target found a crash; the input is in fuzz/artifacts/$target" >&2
    status=1
  fi
done
exit "$status"
