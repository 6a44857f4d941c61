"""Checks that a Lambda function binary can start on Lambda's provided.al2023 runtime.

    python3 scripts/lib/elf_check.py ARCH FILE...      ARCH: x86_64 or arm64
    python3 scripts/lib/elf_check.py --glibc 2.17 ARCH FILE...

For each FILE (an ELF executable): its machine must be ARCH (an arm64 host builds arm64 code,
which an x86_64 function cannot run), and the highest GLIBC_ version it requires (from its
.gnu.version_r section) must be at most 2.34, the glibc of provided.al2023 (a binary linked on a
newer distribution needs a newer glibc and fails to start). Prints one line per file; exits 1
naming each problem. `--glibc X.Y` sets another ceiling: a release's binaries (the CLI among
them) must run on any glibc from 2.17 on.
"""

import struct
import sys

LAMBDA_GLIBC = (2, 34)
MACHINES = {62: "x86_64", 183: "arm64"}
SHT_GNU_VERNEED = 0x6FFFFFFE


def inspect(data):
    """(machine name, sorted GLIBC versions required) of an ELF image, or raises ValueError."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff = struct.unpack_from("<Q", data, 40)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = []
    for i in range(shnum):
        name, kind, _flags, _addr, offset, size, link, info = struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize)
        sections.append((kind, offset, size, link, info))
    versions = set()
    for kind, offset, _size, link, count in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][1]
        entry = offset
        for _ in range(count):
            _version, cnt, _file, aux, next_entry = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(cnt):
                _hash, _flags, _other, name, next_aux = struct.unpack_from("<IHHII", data, at)
                end = data.index(b"\0", strtab + name)
                text = data[strtab + name : end].decode("ascii", "replace")
                if text.startswith("GLIBC_") and text[6:].replace(".", "").isdigit():
                    versions.add(tuple(int(p) for p in text[6:].split(".")))
                if not next_aux:
                    break
                at += next_aux
            if not next_entry:
                break
            entry += next_entry
    return MACHINES.get(machine, f"machine {machine}"), sorted(versions)


def problems(path, arch, ceiling=LAMBDA_GLIBC):
    with open(path, "rb") as f:
        data = f.read()
    try:
        machine, versions = inspect(data)
    except (ValueError, struct.error, IndexError) as e:
        return [f"{path}: {e}"], "?"
    found = []
    if machine != arch:
        found.append(f"{path}: built for {machine}, but the function runs on {arch}")
    newest = versions[-1] if versions else None
    if newest and newest > ceiling:
        needed = ".".join(map(str, newest))
        where = "Lambda's provided.al2023 (2.34)" if ceiling == LAMBDA_GLIBC else ".".join(map(str, ceiling))
        found.append(
            f"{path}: needs GLIBC_{needed}, newer than {where}; "
            "build on an older distribution or with cargo-lambda (zig), see README"
        )
    return found, ".".join(map(str, newest)) if newest else "none"


def main(argv):
    ceiling = LAMBDA_GLIBC
    if len(argv) >= 2 and argv[0] == "--glibc":
        ceiling = tuple(int(p) for p in argv[1].split("."))
        argv = argv[2:]
    if len(argv) < 2 or argv[0] not in ("x86_64", "arm64"):
        print("usage: elf_check.py [--glibc X.Y] x86_64|arm64 FILE...", file=sys.stderr)
        return 2
    arch, failed = argv[0], []
    for path in argv[1:]:
        found, newest = problems(path, arch, ceiling)
        failed.extend(found)
        if not found:
            print(f"ok: {path}: {arch}, highest GLIBC_ needed {newest}")
    for line in failed:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
