#!/usr/bin/env python3
"""Checks the module structure of the logic layer (src/, without src/arch
and the images): no import cycles, and no import of a higher layer.

Modules are read from the file tree (src/a.rs or src/a/mod.rs is `a`,
src/a/b.rs is `a::b`). Dependencies are every `use` path and every
`crate::`/`super::`/`self::` path in code, after comments, `#[cfg(test)]`
modules, test files (`*tests.rs`) and `#[cfg(doc)]` items are removed.
A parent's `pub use` of its own descendants is its facade, not a
dependency.

Rules:
- At every level of the tree, sibling modules form an acyclic graph: an
  edge from `a::x::..` to `a::y::..` counts as `a::x` -> `a::y`; imports
  between a module and its own ancestor or descendant are one unit.
- A top-level module imports only modules of its own layer or lower ones
  (LAYERS below, the order of docs/architecture.md); `arch` is above them
  all, and every top-level module must be placed in a layer.

Usage: module_graph.py [SRC_DIR]   (default: src next to this repository)
       module_graph.py --self-test
"""

import os
import re
import sys
import tempfile

# Layer of each top-level module of layer 2 ("Logic"), lowest first. A
# module may import its own layer and the ones below.
LAYERS = [
    # Foundations: no policy, no devices.
    ["platform", "spsc", "guest_memory", "irq", "mmio", "trap", "print",
     "hypercall", "psci", "debug_regs", "id_regs", "test_rng"],
    # Models and parsers built on them.
    ["vgic", "stage2", "loader", "config", "sched", "console", "net"],
    # The virtio core and its device backends.
    ["virtio"],
    # Emulated devices and the per-VM device manager.
    ["devices"],
    # VMs and vCPUs.
    ["vcpu", "vm", "restart"],
    # The in-QEMU test runner.
    ["selftest"],
]
# Never imported by the logic layer.
ABOVE = {"arch"}
SKIP_DIRS = {"arch", "bin"}
SKIP_FILES = {"main.rs", "lib.rs"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments(text):
    """Removes // and /* */ comments, keeping string literals intact."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_block(text, start):
    """Index after the item starting at `start` (a `;` item or a `{}` block)."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif text[i] == ";" and depth == 0:
            return i + 1
    return len(text)


def strip_cfg(text):
    """Removes items under #[cfg(test)] (test modules, test-only helpers)
    and #[cfg(doc)] (imports for documentation links)."""
    pattern = re.compile(r"#\[cfg\((test|doc)\)\]")
    while True:
        m = pattern.search(text)
        if not m:
            return text
        end = skip_block(text, m.end())
        text = text[:m.start()] + text[end:]


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"as" + IDENT + "$", "", tree) if "as" in tree else tree]
    prefix = tree[:brace]
    inner = tree[brace + 1:tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        parts.append(cur)
    paths = []
    for part in parts:
        for sub in expand_use_tree(part):
            paths.append(prefix + sub if sub != "self" else prefix.rstrip(":"))
    return paths


def module_files(src):
    """{module path tuple: file} for the logic layer under `src`."""
    modules = {}
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        parts = [] if rel == "." else rel.split(os.sep)
        if parts and parts[0] in SKIP_DIRS:
            dirs[:] = []
            continue
        for name in files:
            if not name.endswith(".rs") or name.endswith("tests.rs"):
                continue
            if not parts and name in SKIP_FILES:
                continue
            stem = name[:-3]
            path = tuple(parts) if stem == "mod" else tuple(parts + [stem])
            modules[path] = os.path.join(root, name)
    return modules


def resolve(module, path, modules, is_mod_rs):
    """Module a path refers to (longest known prefix), or None."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(module)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif tuple(list(module) + segs[:1]) in modules:
        base = list(module)  # a child module named without `self::`
    else:
        return None  # an external crate (core, zerocopy, hal, ...)
    if segs and segs[0] in ABOVE and not base:
        return (segs[0],)
    best = None
    for k in range(len(segs) + 1):
        cand = tuple(base + segs[:k])
        if cand in modules:
            best = cand
    return best


def dependencies(modules):
    """{(from, to)} module edges, facade re-exports excluded."""
    edges = set()
    for module, file in modules.items():
        with open(file, encoding="utf-8") as f:
            text = strip_cfg(strip_comments(f.read()))
        is_mod_rs = file.endswith("mod.rs")
        for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);", text):
            public = m.group(1) is not None
            for path in expand_use_tree(m.group(2)):
                target = resolve(module, path, modules, is_mod_rs)
                if target is None or target == module:
                    continue
                if public and target[:len(module)] == module:
                    continue  # facade: re-exporting its own descendants
                edges.add((module, target))
        code = re.sub(r"\buse\s+[^;]+;", "", text)
        for m in re.finditer(r"\b(?:crate|super|self)(?:::" + IDENT + ")+", code):
            target = resolve(module, m.group(0), modules, is_mod_rs)
            if target is not None and target != module:
                edges.add((module, target))
    return edges


def lift(a, b):
    """The sibling pair an edge a -> b stands for, or None if one contains
    the other."""
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    if k == len(a) or k == len(b):
        return None
    return a[:k + 1], b[:k + 1]


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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


def check(src, layers=None):
    """List of problems found under `src` (empty: the structure is clean)."""
    layers = LAYERS if layers is None else layers
    level = {name: i for i, names in enumerate(layers) for name in names}
    modules = module_files(src)
    problems = []
    for path in sorted({m[:1] for m in modules}):
        if path[0] not in level:
            problems.append(f"module `{path[0]}` is in no layer: add it to LAYERS "
                            f"in {os.path.relpath(__file__)} and to docs/architecture.md")
    edges = dependencies(modules)
    lifted = set()
    for a, b in sorted(edges):
        pair = lift(a, b)
        if pair is None:
            continue
        lifted.add(pair)
        top_a, top_b = a[0], b[0]
        if top_a == top_b:
            continue
        if top_b in ABOVE:
            problems.append(f"upward import: `{'::'.join(a)}` uses `{top_b}` (layer 3)")
        elif top_a in level and top_b in level and level[top_b] > level[top_a]:
            problems.append(f"upward import: `{'::'.join(a)}` (layer 2.{level[top_a]}) uses "
                            f"`{'::'.join(b)}` (layer 2.{level[top_b]})")
    for comp in cycles(lifted):
        names = ", ".join("::".join(c) for c in comp)
        detail = "; ".join(f"{'::'.join(a)} -> {'::'.join(b)}" for a, b in sorted(edges)
                           if (lift(a, b) or (None, None))[0] in comp
                           and (lift(a, b) or (None, None))[1] in comp)
        problems.append(f"import cycle between {names} ({detail})")
    return problems


def self_test():
    """The checker finds a cycle, an upward import and an unplaced module
    in small synthetic trees, and accepts a clean one."""
    def tree(files):
        root = tempfile.mkdtemp()
        for path, body in files.items():
            full = os.path.join(root, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as f:
                f.write(body)
        return root

    layers = [["low"], ["mid"], ["high"]]
    clean = tree({
        "low.rs": "// uses crate::high in a comment only\npub struct L;\n",
        "mid/mod.rs": "pub mod a;\npub mod b;\npub use a::A;\nuse crate::low::L;\n",
        "mid/a.rs": "use super::b::B;\nuse crate::low;\npub struct A(B);\n",
        "mid/b.rs": "pub struct B;\n#[cfg(test)]\nmod tests { use super::super::a::A; }\n",
        "high.rs": "use crate::{low::L, mid::{a::A, b}};\n",
    })
    failures = []
    if check(clean, layers):
        failures.append(f"clean tree refused: {check(clean, layers)}")
    cyclic = tree({
        "low.rs": "",
        "mid/mod.rs": "pub mod a;\npub mod b;\n",
        "mid/a.rs": "use super::b::B;\npub struct A;\n",
        "mid/b.rs": "pub struct B(crate::mid::a::A);\n",
        "high.rs": "",
    })
    found = check(cyclic, layers)
    if not any("cycle" in p and "mid::a" in p and "mid::b" in p for p in found):
        failures.append(f"sibling cycle not found: {found}")
    upward = tree({
        "low.rs": "use crate::high::{H, self as h};\n",
        "mid.rs": "",
        "high.rs": "pub struct H;\n",
    })
    found = check(upward, layers)
    if not any("upward import: `low`" in p for p in found):
        failures.append(f"upward import not found: {found}")
    unplaced = tree({"low.rs": "", "stray.rs": ""})
    if not any("`stray` is in no layer" in p for p in check(unplaced, layers)):
        failures.append("unplaced module not found")
    top_cycle = tree({
        "low.rs": "", "mid.rs": "use crate::high;\n", "high.rs": "use crate::mid::X;\n",
    })
    found = check(top_cycle, [["low"], ["mid", "high"]])
    if not any("cycle between high, mid" in p for p in found):
        failures.append(f"top-level cycle not found: {found}")
    for f in failures:
        print(f"module_graph self-test FAILED: {f}")
    if not failures:
        print("module_graph self-test: 5 cases passed")
    return not failures


def main():
    if sys.argv[1:] == ["--self-test"]:
        return 0 if self_test() else 1
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
    problems = check(src)
    for p in problems:
        print(f"module_graph: {p}")
    if problems:
        print(f"module_graph: {len(problems)} problem(s)")
        return 1
    print(f"module_graph: {len(module_files(src))} modules, no cycles, no upward imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
