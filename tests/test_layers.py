"""The layer table of docs/architecture.md, checked: every import of a project package, at the
top of a module or inside a function, points down the table. The composition root (ops/app/cli.py,
ops/__main__.py, bench/) imports everything; so do the tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ops", "storage", "graph", "ingress", "consumers")
MAY_IMPORT = {
    "ops": set(),
    "storage": {"ops"},
    "graph": {"storage", "ops"},
    "ingress": {"storage", "ops"},
    "consumers": {"graph", "storage", "ops"},
}
COMPOSITION_ROOT = ("ops/app/cli.py", "ops/__main__.py", "bench/")


def imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES or top == "tests":
                found.add((top, node.lineno))
    return found


def test_every_import_points_down_the_layer_table():
    wrong = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(COMPOSITION_ROOT):
                continue
            allowed = MAY_IMPORT[package] | {package}
            for top, line in sorted(imported_packages(path)):
                if top not in allowed:
                    wrong.append(f"{relative}:{line} imports {top}")
    assert wrong == [], "imports against docs/architecture.md's layer table:\n" + "\n".join(wrong)
