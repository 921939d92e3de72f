#!/usr/bin/env bash
# The collections registry check: collection names are spelled in one file only,
# shared/src/store/collections.rs (`wemint::store::collections`). Every other Rust source uses its
# constants, so renaming or adding a collection is one edit and a grep finds every user.
#
# How it works: the names are read from the registry's `pub const X: &str = "name";` lines (no
# second list to keep in step), then every `"name"` string literal in the workspace's *.rs files
# outside the registry is reported, except where the same word is plainly not a collection:
#   - comments (`//`, `///`, `//!`);
#   - JSON object keys (`"orders": …` inside `json!` or a JSON text) and JSON lookups
#     (`v["orders"]`, `v.get("orders")` with one argument: the store's `get` takes two);
#   - the ALLOWED contexts below, each a word that is also something else in the API.
# It also checks that docs/collections.md has a section for every registry collection.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - <<'PY'
import pathlib, re, sys

REGISTRY = pathlib.Path("shared/src/store/collections.rs")
DOC = pathlib.Path("docs/collections.md")

# (path regex, line regex, why it is not a collection). Keep this list short: a new entry
# needs a reason a reviewer accepts.
ALLOWED = [
    # gatedContent's `entitlements` action (a callable name), registered and called by name.
    (r".*", r'callable\(\s*"entitlements"', "gatedContent action name"),
    (r"^(tests|emulator)/", r'"action"\s*:\s*"entitlements"', "gatedContent action name"),
    (r"^tests/", r'\.ok\([^;]*"entitlements"|ask\(\s*"entitlements"', "gatedContent action name"),
    # The `orders` map of an entitlement document (`{"o_<orderId>": at}`): a field.
    (r"^shared/src/commerce/revoke\.rs$", r'object_keys\(&doc, "orders"\)', "entitlement field"),
    # The emulated virtual payment order's `refunds` array and WeChat Pay's URL path segment.
    (r"^emulator/src/standins/wechat_api\.rs$", r'\.push\(\s*"refunds"', "emulated order field"),
    (r"^emulator/src/standins/wechat_pay\.rs$", r'"domestic",\s*"refunds"', "WeChat Pay URL path"),
    # A revenue report's counts (fields) and the CSV export's column names.
    (r"^shared/src/finance/report\.rs$", r'\.set\(\s*"(orders|refunds)"|^\s*"(orders|refunds)",\s*$', "report field / CSV column"),
    # Realtime (docs/realtime.md): the `orders`/`posts` topic names and the `events` frame type
    # of the socket protocol, in its module and the tests and bench that speak it.
    (r"^(shared/src/realtime/|tests/tests/commerce\.rs$|tests/src/bin/rt-bench\.rs$)",
     r'name == "(orders|posts)"|=> "(orders|posts)"\.into|"type": "events"|Some\("events"\)|== "events"|"events", "\{|\["(order:[^"]*", )*"orders"|"orders"\.into\(\)|\[topic, "orders"\]|in \["orders", "posts"|"orders", "bad topic"',
     "realtime topic name / frame type"),
]

names = dict(re.findall(r'pub const ([A-Z_]+): &str = "([a-z_]+)";', REGISTRY.read_text()))
if not names:
    sys.exit(f"check-collections: no `pub const X: &str = \"name\";` found in {REGISTRY}")
literal = re.compile(r'"(%s)"' % "|".join(sorted(map(re.escape, names.values()), key=len, reverse=True)))

def code_part(line):
    """The line without a trailing `//` comment (a `//` inside a string literal is kept)."""
    in_str, i = False, 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and in_str:
            i += 2
            continue
        if ch == '"':
            in_str = not in_str
        elif not in_str and line.startswith("//", i):
            return line[:i]
        i += 1
    return line

def benign(code, m):
    after = code[m.end():].lstrip()
    before = code[:m.start()].rstrip()
    if after.startswith(":") and not after.startswith("::"):
        return True  # JSON object key
    if before.endswith("[") and after.startswith("]"):
        return True  # v["name"]
    if before.endswith(".get(") and after.startswith(")"):
        return True  # serde_json field lookup
    return False

problems = []
roots = ["shared", "functions", "emulator", "tests"]
for root in roots:
    for path in sorted(pathlib.Path(root).rglob("*.rs")):
        if path == REGISTRY or "target" in path.parts:
            continue
        rel = path.as_posix()
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("//"):
                continue
            code = code_part(line)
            for m in literal.finditer(code):
                if benign(code, m):
                    continue
                if any(re.search(p, rel) and re.search(l, code) for p, l, _ in ALLOWED):
                    continue
                const = [k for k, v in names.items() if v == m.group(1)][0]
                problems.append(f"{rel}:{no}: collection name {m.group(0)} spelled out; use wemint::store::collections::{const}")

doc = DOC.read_text(encoding="utf-8")
documented = set(re.findall(r"^### ([a-z_]+)\s*$", doc, re.M))
for name in names.values():
    if name not in documented:
        problems.append(f"{DOC}: no `### {name}` section for a registry collection")
for name in sorted(documented - set(names.values())):
    problems.append(f"{DOC}: `### {name}` is not in {REGISTRY}")

if problems:
    print("\n".join(problems))
    print(f"check-collections: {len(problems)} problem(s); collection names live in {REGISTRY} only")
    sys.exit(1)
print(f"check-collections: {len(names)} collections, names only in {REGISTRY}")
PY
