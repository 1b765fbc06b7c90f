#!/usr/bin/env python3
"""Fails when source files of a crate import each other in a cycle.

A file's imports are its `use crate::...`, `use super::...` and `use self::...` paths (and
`crate::`/`super::` paths in code), each resolved to the deepest module file that exists. A
module file's re-exports of its own descendants (`pub use child::Item` in `mod.rs` or
`lib.rs`) are its facade, not a dependency, and are left out. Prints every cycle and exits 1
if there is one.
"""
import pathlib
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_path(src: pathlib.Path, file: pathlib.Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text: str) -> str:
    """Drops comments and the inline test module (its `super` is the file itself)."""
    tests = re.search(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{", text)
    if tests:
        text = text[: tests.start()]
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def use_statements(text: str):
    """Yields (is_pub_use, expanded paths) for each use statement, braces expanded."""
    for match in re.finditer(r"(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
        yield bool(match.group(1)), expand(match.group(2).replace("\n", " ").replace(" ", ""))


def expand(tree: str) -> list:
    brace = tree.find("{")
    if brace < 0:
        return [tree.split(" as ")[0]]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for index, char in enumerate(inner):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(inner[start:index])
            start = index + 1
    parts.append(inner[start:])
    return [path for part in parts if part for path in expand(prefix + part)]


def resolve(path: str, here: tuple, modules: dict):
    segments = path.split("::")
    if segments[0] == "crate":
        base, rest = (), segments[1:]
    elif segments[0] in ("super", "self"):
        base, rest = here, segments[1:]
        if segments[0] == "super":
            base = here[:-1]
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
    else:
        return None
    candidate = tuple(base) + tuple(rest)
    while candidate not in modules and candidate:
        candidate = candidate[:-1]
    return candidate if candidate in modules else None


def crate_cycles(src: pathlib.Path) -> list:
    files = sorted(src.rglob("*.rs"))
    modules = {module_path(src, file): file for file in files}
    edges = {}
    for module, file in modules.items():
        text = strip_comments(file.read_text())
        is_module_file = file.stem in ("mod", "lib", "main")
        targets = set()
        reexports = set()
        for is_pub, paths in use_statements(text):
            for path in paths:
                target = resolve(path, module, modules)
                if target is None or target == module:
                    continue
                if is_pub and is_module_file and target[: len(module)] == module:
                    reexports.add(target)
                else:
                    targets.add(target)
        for match in PATH.finditer(re.sub(r"use\s+[^;]+;", "", text)):
            target = resolve(match.group(1) + match.group(2), module, modules)
            if target is not None and target != module:
                targets.add(target)
        edges[module] = targets - (reexports - targets)
    return strongly_connected(edges, modules)


def strongly_connected(edges: dict, modules: dict) -> list:
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(str(modules[m]) for m in component))

    sys.setrecursionlimit(10_000)
    for node in edges:
        if node not in index:
            visit(node)
    return result


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    cycles = []
    for manifest in sorted(root.glob("*/Cargo.toml")):
        src = manifest.parent / "src"
        if src.is_dir():
            cycles += crate_cycles(src)
    for cycle in cycles:
        print("import cycle: " + " <-> ".join(cycle))
    if not cycles:
        print("no import cycles between source files")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
