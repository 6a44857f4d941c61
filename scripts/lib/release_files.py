#!/usr/bin/env python3
"""The files scripts/release.sh writes besides the binaries: the CycloneDX SBOM, MANIFEST.json
and SHA256SUMS. Each is a function of its inputs only (no clock, no random numbers, sorted
keys and paths), so two releases of one commit are byte-identical.

    release_files.py sbom --version V --commit C --epoch T --target TRIPLE... OUT
    release_files.py manifest DIR --version V --commit C --profile P --glibc G
                     (--architecture A | --tree ARCH=SUBDIR...) [--tool NAME=VERSION...]
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tomllib
import uuid
from datetime import datetime, timezone

# What ships: the five functions (lambda.json) and the CLI. Their normal dependencies, for the
# release's targets, are the SBOM's components.
CLI = "ebs-snapper-cli"


def shipped_packages():
    with open("lambda.json") as f:
        return frozenset([CLI] + [fn["binary"] for fn in json.load(f)["functions"]])


def cargo_metadata(target):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", target],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def lock_checksums():
    with open("Cargo.lock", "rb") as f:
        lock = tomllib.load(f)
    return {(p["name"], p["version"]): p.get("checksum") for p in lock.get("package", [])}


def purl(pkg):
    return f"pkg:cargo/{pkg['name']}@{pkg['version']}"


def sbom(args):
    """CycloneDX 1.6 JSON: the shipped crates and every crate they link, with licences,
    crates.io checksums and the dependency graph."""
    checksums = lock_checksums()
    shipped = shipped_packages()
    packages, edges = {}, {}
    for target in args.target:
        meta = cargo_metadata(target)
        by_id = {p["id"]: p for p in meta["packages"]}
        nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
        roots = [p["id"] for p in meta["packages"] if p["name"] in shipped and p["source"] is None]
        todo = list(roots)
        while todo:
            pid = todo.pop()
            pkg = by_id[pid]
            if purl(pkg) in packages:
                continue
            packages[purl(pkg)] = pkg
            deps = set()
            for dep in nodes[pid]["deps"]:
                # What is linked: normal dependencies (proc macros among them), not build scripts'
                # or tests' dependencies.
                if any(k["kind"] is None for k in dep["dep_kinds"]):
                    deps.add(purl(by_id[dep["pkg"]]))
                    todo.append(dep["pkg"])
            edges.setdefault(purl(pkg), set()).update(deps)

    def component(pkg):
        c = {
            "type": "application" if pkg["name"] in shipped else "library",
            "bom-ref": purl(pkg),
            "name": pkg["name"],
            "version": pkg["version"],
            "purl": purl(pkg),
        }
        if pkg.get("description"):
            c["description"] = " ".join(pkg["description"].split())
        if pkg.get("license"):
            c["licenses"] = [{"expression": pkg["license"]}]
        checksum = checksums.get((pkg["name"], pkg["version"]))
        if checksum:
            c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        refs = []
        if pkg.get("repository"):
            refs.append({"type": "vcs", "url": pkg["repository"]})
        if pkg["source"] and pkg["source"].startswith("registry+"):
            refs.append({"type": "distribution", "url": f"https://crates.io/crates/{pkg['name']}/{pkg['version']}"})
        if refs:
            c["externalReferences"] = refs
        return c

    cli = next(p for p in packages.values() if p["name"] == CLI)
    root_ref = f"pkg:generic/ebs-snapper@{args.version}"
    stamp = datetime.fromtimestamp(int(args.epoch), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        # The same release, the same document: the serial number comes from what it describes.
        "serialNumber": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{root_ref}?commit={args.commit}&targets={','.join(sorted(args.target))}")),
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "tools": {"components": [{"type": "application", "name": "ebs-snapper scripts/lib/release_files.py"}]},
            "component": {
                "type": "application",
                "bom-ref": root_ref,
                "name": "ebs-snapper",
                "version": args.version,
                "purl": root_ref,
                "licenses": [{"expression": cli["license"]}],
                "externalReferences": [{"type": "vcs", "url": f"{cli['repository']}", "comment": f"commit {args.commit}"}],
            },
            "properties": [{"name": "ebs-snapper:target", "value": t} for t in sorted(args.target)],
        },
        "components": [component(packages[k]) for k in sorted(packages)],
        "dependencies": [{"ref": root_ref, "dependsOn": sorted(purl(p) for p in packages.values() if p["name"] in shipped)}]
        + [{"ref": k, "dependsOn": sorted(edges[k])} for k in sorted(edges)],
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def files_under(root):
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/")
            out.append(rel)
    return sorted(out)


def manifest(args):
    """MANIFEST.json and SHA256SUMS of DIR: every file in it (but those two), its size and
    SHA-256; the sums cover the manifest too. The trees of a release directory are summed by
    their own files, so the directory's list has only its own files and the tarballs."""
    trees = dict(t.split("=", 1) for t in args.tree or [])
    skip = {"MANIFEST.json", "SHA256SUMS"}
    # A tree's files are its own manifest's; the directory lists each tree's SHA256SUMS, so the
    # sums published with the release cover every tree too.
    paths = [
        p
        for p in files_under(args.dir)
        if p not in skip and (p.split("/")[0] not in trees.values() or p == p.split("/")[0] + "/SHA256SUMS")
    ]
    doc = {
        "name": "ebs-snapper",
        "version": args.version,
        "commit": args.commit,
        "toolchain": dict(sorted(t.split("=", 1) for t in args.tool or [])),
        "profile": args.profile,
        "glibc": args.glibc,
    }
    if args.architecture:
        doc["architecture"] = args.architecture
    else:
        doc["architectures"] = dict(sorted(trees.items()))
    doc["files"] = [
        {"path": p, "size": os.path.getsize(os.path.join(args.dir, p)), "sha256": digest(os.path.join(args.dir, p))}
        for p in paths
    ]
    with open(os.path.join(args.dir, "MANIFEST.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    summed = sorted(paths + ["MANIFEST.json"])
    with open(os.path.join(args.dir, "SHA256SUMS"), "w") as f:
        for p in summed:
            f.write(f"{digest(os.path.join(args.dir, p))}  {p}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sbom")
    s.add_argument("--version", required=True)
    s.add_argument("--commit", required=True)
    s.add_argument("--epoch", required=True)
    s.add_argument("--target", action="append", required=True)
    s.add_argument("out")
    m = sub.add_parser("manifest")
    m.add_argument("dir")
    m.add_argument("--version", required=True)
    m.add_argument("--commit", required=True)
    m.add_argument("--profile", required=True)
    m.add_argument("--glibc", required=True)
    m.add_argument("--architecture")
    m.add_argument("--tree", action="append")
    m.add_argument("--tool", action="append")
    args = parser.parse_args()
    if args.command == "manifest" and bool(args.architecture) == bool(args.tree):
        parser.error("manifest: give --architecture (a tree) or --tree ARCH=SUBDIR (a release directory)")
    {"sbom": sbom, "manifest": manifest}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
