"""Import cycles between the modules of a crate, from its `use crate::...` lines (and
`crate::module::item` paths in the code): each cycle found is printed, exit 1.

    python3 scripts/lib/check_module_cycles.py crates/core/src crates/aws/src
"""
import os
import re
import sys


def modules(src):
    """module name -> the source texts of its files, for the top-level modules of a crate (`x.rs`, `x/mod.rs`
    and the files below `x/`, which belong to `x`)."""
    out = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs") or f in ("lib.rs", "main.rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            out.setdefault(top, []).append(open(os.path.join(dirpath, f), encoding="utf-8").read())
    return out


def reexports(src):
    """Names the crate root re-exports (`pub use module::{A, B}` in lib.rs) -> their module, so
    that `crate::A` counts as a use of `module`."""
    lib = os.path.join(src, "lib.rs")
    if not os.path.exists(lib):
        return {}
    out = {}
    for module, names in re.findall(r"pub use ([a-z_][a-z0-9_]*)::\{?([^;]*?)\}?;", open(lib, encoding="utf-8").read(), re.S):
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", names):
            out[name] = module
    return out


def edges(mods, names=None):
    names = names or {}
    graph = {m: set() for m in mods}
    for m, texts in mods.items():
        # The code only: a file's tests may reach anywhere, and comments (doc links) import nothing.
        code = "\n".join(
            line.split("//")[0] for text in texts for line in text.split("#[cfg(test)]")[0].splitlines()
        )
        for target in re.findall(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)", code):
            target = names.get(target, target) if target[0].isupper() or target not in mods else target
            if target in mods and target != m:
                graph[m].add(target)
        for group in re.findall(r"\buse crate::\{([^;]*)\}", code, re.S):
            for name in re.findall(r"(?:^|[,{\s])([A-Z][A-Za-z0-9_]*)", group):
                if names.get(name) in mods and names[name] != m:
                    graph[m].add(names[name])
        for group in re.findall(r"\buse crate::\{([^;]*)\}", code, re.S):
            for target in re.findall(r"(?:^|[,{\s])([a-z_][a-z0-9_]*)::", group):
                if target in mods and target != m:
                    graph[m].add(target)
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    found = False
    for src in sys.argv[1:]:
        mods = modules(src)
        for comp in cycles(edges(mods, reexports(src))):
            found = True
            print(f"FAIL: {src}: import cycle among {', '.join(comp)}", file=sys.stderr)
        if not found:
            print(f"ok: {src}: {len(mods)} modules, no import cycle")
    sys.exit(1 if found else 0)
