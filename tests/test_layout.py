"""The package's layering: every import points down (or within a sub-package), no import cycle between
sub-packages, one concern a module (none over 700 lines)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "masnn_jax")

#: Layer of each sub-package (a module may import its own sub-package or a lower layer).
RANK = {"snn": 0, "nn": 1, "data": 1, "models": 2, "config": 3, "train": 4, "interop": 5, "analysis": 5,
        "analyze": 6, "__init__": 6}
#: Command-line entry points (``__main__`` modules) are the top layer: they may import anything.


def _modules():
    for dirpath, _, files in os.walk(PKG):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield rel, path


def _imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("masnn_jax"):
            if node.module == "masnn_jax":
                for alias in node.names:
                    yield f"masnn_jax.{alias.name}"
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("masnn_jax"):
                    yield alias.name


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_points_down():
    upward = []
    for module, path in _modules():
        src = _group(module)
        if module.endswith(".__main__"):
            continue
        assert src in RANK, f"{module}: sub-package {src!r} has no layer in tests/test_layout.py"
        for target in _imports(path):
            dst = _group(target)
            if dst != src and RANK[dst] >= RANK[src]:
                upward.append(f"{module} imports {target} ({src} -> {dst})")
    assert not upward, "\n".join(upward)


def test_no_cycle_between_subpackages():
    edges = {}
    for module, path in _modules():
        if module.endswith(".__main__"):
            continue
        for target in _imports(path):
            a, b = _group(module), _group(target)
            if a != b:
                edges.setdefault(a, set()).add(b)

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = [g for g in edges if g in reach(g)]
    assert not cycles, f"import cycles through {cycles}: {edges}"


def test_modules_are_small():
    big = [(m, n) for m, p in _modules() if (n := sum(1 for _ in open(p))) > 700]
    assert not big, big
