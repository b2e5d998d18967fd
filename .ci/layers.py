#!/usr/bin/env python3
"""Checks the architecture invariants of ARCHITECTURE.md that a script can.

    python3 .ci/layers.py [SRC_DIR]

1. Layers go one way. Every top-level module of the crate sits in a layer;
   a module may refer (`use crate::…`, `crate::…` paths) only to modules of
   lower layers, or of its own layer where the layer allows it.
2. No cycle between files either (the strongly connected components of the
   file graph, the same reading as ../shared/tools/module-cycles --files).
3. A probe kind is one file: a kind's name appears in src/ only in its own
   file, the registry (src/probe/mod.rs) and, for the kinds the sandbox
   serves, the sandbox's file for it (checked for `websocket`, the kind
   that was added after the registry existed, as the proof).
4. Only the assembly knows every kind: `::KIND` registry entries are listed
   in src/probe/mod.rs and nowhere else.

Exit status 0 when every invariant holds, 1 otherwise; each violation is
printed with the file and the names that make it.
"""
import os
import re
import sys
from collections import defaultdict

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"

# Lowest first. `same` says whether modules of the layer may use each other.
LAYERS = [
    ("leaf libraries", ["diag", "secret", "expr", "template", "generate",
                        "threshold", "schedule", "tagging", "slo", "hold"], True),
    ("outcome types", ["outcome"], False),
    ("network", ["net"], False),
    ("config files", ["config"], False),
    ("probe kinds", ["probe"], False),
    ("outcome consumers", ["alert", "telemetry", "report"], False),
    ("history", ["history"], False),
    ("sandbox target", ["sandbox"], False),
    ("assembly", ["plan"], False),
    ("programs", ["daemon", "once", "cli"], True),
]
ROOT_FILES = {"lib", "main"}


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    text = "".join(out)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_use(tree, prefix):
    tree = tree.strip()
    m = re.match(r"^([\w:]*?)(::)?\{(.*)\}$", tree, flags=re.S)
    if m:
        head = [p for p in m.group(1).split("::") if p]
        body, parts, depth, cur = m.group(3), [], 0, ""
        for ch in body:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += (ch == "{") - (ch == "}")
            cur += ch
        parts.append(cur)
        res = []
        for p in parts:
            if p.strip():
                res += expand_use(p, prefix + head)
        return res
    name = re.split(r"\s+as\s+", tree)[0]
    return [prefix + [p for p in name.split("::") if p]]


def resolve(path, here, known):
    if path and path[0] == "crate":
        path = path[1:]
    elif path and path[0] in ("super", "self"):
        base = list(here)
        while path and path[0] in ("super", "self"):
            if path[0] == "super" and base:
                base = base[:-1]
            path = path[1:]
        path = base + path
    else:
        return None
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in known:
            return tuple(path[:n]), (path[n] if n < len(path) else path[n - 1])
    return None


files = {}
for root, _, names in os.walk(SRC):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            files[module_of(p)] = p
known = set(files)

edges = defaultdict(set)
for mod, path in files.items():
    text = strip(open(path, encoding="utf-8", errors="replace").read())
    refs = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", text, flags=re.S):
        refs += expand_use(m.group(1), [])
    for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
        refs.append([m.group(1)] + m.group(2).split("::")[1:])
    for r in refs:
        got = resolve(r, list(mod), known)
        if got and got[0] != mod:
            edges[(mod, got[0])].add(got[1])

failures = []

# 1. Layers.
layer_of = {}
for i, (_, mods, _) in enumerate(LAYERS):
    for m in mods:
        layer_of[m] = i
tops = {m[0] for m in known if m}
for top in sorted(tops - set(layer_of) - ROOT_FILES):
    failures.append(f"layers: top-level module `{top}` is in no layer (add it to .ci/layers.py and ARCHITECTURE.md)")
for (a, b), names in sorted(edges.items()):
    if not a or not b or a[0] == b[0]:
        continue
    la, lb = layer_of.get(a[0]), layer_of.get(b[0])
    if la is None or lb is None:
        continue
    allowed = lb < la or (lb == la and LAYERS[la][2])
    if not allowed:
        failures.append(
            f"layers: {'::'.join(a)} ({LAYERS[la][0]}) uses {'::'.join(b)} "
            f"({LAYERS[lb][0]}): {', '.join(sorted(names)[:6])}"
        )


# 2. No file cycle.
def scc(nodes, adj):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
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

    for v in nodes:
        if v not in index:
            visit(v)
    return out


adj = defaultdict(set)
for (a, b) in edges:
    adj[a].add(b)
for comp in scc(sorted(known), adj):
    failures.append("files: cycle between " + ", ".join("::".join(c) or "crate" for c in comp))

# 3. The proof kind lives in its own file, the registry and the sandbox's file.
allowed_ws = {
    os.path.join(SRC, "probe", "websocket.rs"),
    os.path.join(SRC, "probe", "mod.rs"),
    os.path.join(SRC, "sandbox", "ws.rs"),
}
for path in sorted(files.values()):
    if path in allowed_ws:
        continue
    if re.search(r"websocket", open(path, encoding="utf-8", errors="replace").read(), re.I):
        failures.append(f"kinds: {path} mentions `websocket`; a kind is its own file plus one registry line")

# 4. Registry entries are listed in one place.
for path in sorted(files.values()):
    if path == os.path.join(SRC, "probe", "mod.rs"):
        continue
    text = strip(open(path, encoding="utf-8", errors="replace").read())
    if re.search(r"\b\w+::KIND\b", text):
        failures.append(f"kinds: {path} names a kind's registry entry; only src/probe/mod.rs lists them")

for f in failures:
    print(f)
print(f"layers: {len(LAYERS)} layers, {len(known)} files, {len(edges)} file edges, {len(failures)} violation(s)")
sys.exit(1 if failures else 0)
