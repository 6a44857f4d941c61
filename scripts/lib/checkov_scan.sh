# Scans every template under cloudformation/ with the pinned checkov (sourced by scripts/test.sh
# after ensure_checkov). A finding that is neither fixed nor skipped with a reason in the
# template's own Metadata fails the run; so does a skip without a reason, and a scan that
# could not fail (the same template with its skips removed must show findings, and every
# template must have had checks run on it: a scan that read nothing would print no finding).
checkov_scan() {
  # Offline: no guideline download, no external checks.
  local checkov=(env BC_SKIP_MAPPING=TRUE "$SCAN_VENV_DIR/bin/checkov" --skip-download --compact --quiet --framework cloudformation)
  local template
  for template in cloudformation/*.json; do
    local report passed
    report=$("${checkov[@]}" -f "$template" -o json) || {
      run "${checkov[@]}" -f "$template"
      echo "FAIL: checkov found problems in $template (see above)" >&2
      return 1
    }
    passed=$(python3 -c 'import json, sys; r = json.loads(sys.stdin.read() or "{}"); r = r[0] if isinstance(r, list) else r; print(r.get("summary", {}).get("passed", 0))' <<<"$report")
    if [[ "$passed" -lt 1 ]]; then
      echo "FAIL: checkov ran no check on $template: a scan that read nothing cannot fail" >&2
      return 1
    fi
    echo "checkov: $template: $passed checks passed"
    python3 - "$template" <<'PY' || return 1
import json, sys
path = sys.argv[1]
t = json.load(open(path))
bad = []
for name, r in t.get("Resources", {}).items():
    for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
        if len(skip.get("comment", "").strip()) < 20:
            bad.append(f"{name}: {skip.get('id')}")
if bad:
    sys.exit(f"FAIL: {path}: checkov skips without a reason: {', '.join(bad)}")
PY
    local stripped
    stripped=$(mktemp --suffix=.json)
    python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
for r in t.get("Resources", {}).values():
    r.get("Metadata", {}).pop("checkov", None)
json.dump(t, open(sys.argv[2], "w"))' "$template" "$stripped"
    if grep -q '"checkov"' "$template" && "${checkov[@]}" -f "$stripped" >/dev/null 2>&1; then
      rm -f "$stripped"
      echo "FAIL: checkov passed $template with its skips removed: the scan cannot fail" >&2
      return 1
    fi
    rm -f "$stripped"
    echo "ok: $template: checkov finds nothing that is not fixed or explained"
  done
}
