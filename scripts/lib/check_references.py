"""Every `§n` / `§n.m` reference in the repository resolves to a section (and item) of
docs/spec.md, and every relative link in a Markdown file to a file or folder that exists.

    python3 scripts/lib/check_references.py        (run by scripts/test.sh; exit 1 on a dangling one)
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPEC = os.path.join("docs", "spec.md")
TEXT = (".rs", ".md", ".py", ".sh", ".json", ".mjs", ".toml", ".yml", ".yaml")


def spec_sections(text):
    """{"n"} for each `## n.` heading and {"n.m"} for each item `m.` of its numbered lists."""
    found, section = set(), None
    for line in text.splitlines():
        heading = re.match(r"^## (\d+)\. ", line)
        if heading:
            section = heading.group(1)
            found.add(section)
            continue
        item = re.match(r"^(\d+)\. ", line)
        if item and section:
            found.add(f"{section}.{item.group(1)}")
    return found


def tracked_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if f.endswith(TEXT) and os.path.isfile(os.path.join(ROOT, f))]


def problems():
    sections = spec_sections(open(os.path.join(ROOT, SPEC), encoding="utf-8").read())
    found = []
    for path in tracked_files():
        text = open(os.path.join(ROOT, path), encoding="utf-8", errors="replace").read()
        for n, line in enumerate(text.splitlines(), 1):
            for ref in re.findall(r"§(\d+(?:\.\d+)?)", line):
                if ref not in sections:
                    found.append(f"{path}:{n}: §{ref} is not a section or item of {SPEC}")
            if path.endswith(".md"):
                for target in re.findall(r"\]\(([^)\s]+)\)", line):
                    if re.match(r"^(https?:|mailto:|#)", target):
                        continue
                    file = target.split("#")[0]
                    if not os.path.exists(os.path.normpath(os.path.join(ROOT, os.path.dirname(path), file))):
                        found.append(f"{path}:{n}: the link {target} resolves to nothing")
    return sections, found


if __name__ == "__main__":
    sections, found = problems()
    for p in found:
        print(f"FAIL: {p}", file=sys.stderr)
    if found:
        sys.exit(1)
    if len(sections) < 17:
        sys.exit(f"FAIL: {SPEC} has only {len(sections)} sections and items: the check cannot fail")
    print(f"ok: every § reference and relative link resolves ({len(sections)} sections and items in {SPEC})")
