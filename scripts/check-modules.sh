#!/usr/bin/env bash
# Fails when the top-level modules of the `wemint` crate (shared/src) import each other in a
# cycle. A path `crate::a::…` (or `$crate::a::…`, or `crate::{a, …}`) written anywhere in the
# module tree `b` is an edge b -> a; comments and string literals are ignored. Every cycle is
# listed with the lines that make its edges.
#
# Usage: scripts/check-modules.sh [--graph]   (--graph also prints every edge)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os
import re
import sys

ROOT = "shared/src"
show_graph = "--graph" in sys.argv[1:]

# Comments and literals go first, so a `crate::` inside them never counts. Alternatives are
# tried left to right at each position: raw strings, strings, chars (not lifetimes), comments.
SKIP = re.compile(
    r'r(#*)".*?"\1'
    r'|b?"(?:\\.|[^"\\])*"'
    r"|b?'(?:\\.|[^'\\])'"
    r"|//[^\n]*"
    r"|/\*.*?\*/",
    re.S,
)
PATH = re.compile(r"(?<![\w])\$?crate::(\{|[A-Za-z_]\w*)")


def blank(match):
    # Keep line breaks so line numbers stay right.
    return re.sub(r"[^\n]", " ", match.group(0))


def group_heads(text, start):
    """Top-level names inside the `{…}` opening at `start`: `{a, b::c, d::{e}}` -> a, b, d."""
    depth, item, heads, i = 0, "", [], start
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and ch == ",":
            heads.append(item)
            item = ""
        elif depth == 1:
            item += ch
        i += 1
    names = []
    for h in heads:
        m = re.match(r"\s*([A-Za-z_]\w*)", h)
        if m and m.group(1) not in ("self", "super"):
            names.append(m.group(1))
    return names


def top_module(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


modules = set()
for entry in os.listdir(ROOT):
    if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
        modules.add(entry[:-3])
    elif os.path.isdir(os.path.join(ROOT, entry)):
        modules.add(entry)

edges = {}  # (from, to) -> ["file:line", …]
for dirpath, _, files in os.walk(ROOT):
    for name in sorted(files):
        if not name.endswith(".rs"):
            continue
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, ROOT)
        src = top_module(rel)
        if src not in modules:
            continue  # lib.rs only declares the modules
        with open(path, encoding="utf-8") as f:
            text = SKIP.sub(blank, f.read())
        for m in PATH.finditer(text):
            if m.group(1) == "{":
                targets = group_heads(text, m.start(1))
            else:
                targets = [m.group(1)]
            line = text.count("\n", 0, m.start()) + 1
            for dst in targets:
                if dst in modules and dst != src:
                    edges.setdefault((src, dst), []).append(f"{path}:{line}")

graph = {m: sorted({d for (s, d) in edges if s == m}) for m in sorted(modules)}

if show_graph:
    for m, ds in graph.items():
        print(f"{m} -> {', '.join(ds) if ds else '(leaf)'}")

# Tarjan's strongly connected components: every component of two or more modules is a cycle.
index, low, on_stack, stack, sccs = {}, {}, set(), [], []


def strongconnect(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
        if w not in index:
            strongconnect(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in graph:
    if v not in index:
        strongconnect(v)


def shortest_cycle(comp):
    """A shortest cycle through the component's first module, by breadth-first search."""
    start, members = comp[0], set(comp)
    prev, queue = {start: None}, [start]
    while queue:
        v = queue.pop(0)
        for w in graph[v]:
            if w == start:
                back = [v]  # v, prev(v), …, start
                while prev[back[-1]] is not None:
                    back.append(prev[back[-1]])
                return back[::-1] + [start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


if not sccs:
    print(f"module graph: {len(modules)} top-level modules of wemint, no cycle")
    sys.exit(0)

print("module cycles among the top-level modules of wemint (shared/src):", file=sys.stderr)
for comp in sccs:
    cycle = shortest_cycle(comp)
    print(f"\n  {' -> '.join(cycle)}   (modules in this cycle: {', '.join(comp)})", file=sys.stderr)
    for s in comp:
        for d in graph[s]:
            if d in comp:
                where = edges[(s, d)]
                more = f" (+{len(where) - 3} more)" if len(where) > 3 else ""
                print(f"    {s} -> {d}: {', '.join(where[:3])}{more}", file=sys.stderr)
print("\nMove the shared item down a layer so the imports run one way.", file=sys.stderr)
sys.exit(1)
PY
