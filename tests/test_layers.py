"""The layer table of docs/architecture.md, read from the document and checked: every import of
a project package, at the top of a module or inside a function, points down the table; the
composition root (ops/app/, ops/__main__.py) sits inside ops/ but nothing below it imports it;
no shipped package imports the tests or the benchmarks."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("ops", "storage", "graph", "ingress", "consumers")
NOT_SHIPPED = ("tests", "bench")
COMPOSITION_ROOT = "ops.app"


def layer_table() -> dict[str, set[str]]:
    """{layer: the layers it may import} from the table under "Layers" in docs/architecture.md;
    `ops/` (base) is the layer "ops", `ops/app/` the layer "ops.app"."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers: who may import whom", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        folders = re.findall(r"`([\w/.]+)`", cells[0])
        may_import = set(re.findall(r"`(\w+)`", cells[2]))
        for folder in folders:
            if folder.rstrip("/") in SHIPPED or folder == "ops/app/":
                table[folder.rstrip("/").replace("/", ".")] = may_import
    return table


def layer_of_module(name: str) -> str | None:
    """The layer an imported module belongs to (None: not the project's)."""
    if name == COMPOSITION_ROOT or name.startswith(COMPOSITION_ROOT + "."):
        return COMPOSITION_ROOT
    top = name.split(".")[0]
    return top if top in SHIPPED or top in NOT_SHIPPED else None


def layer_of_file(path: Path) -> str:
    relative = path.relative_to(ROOT).as_posix()
    if relative.startswith("ops/app/") or relative == "ops/__main__.py":
        return COMPOSITION_ROOT
    return relative.split("/")[0]


def imported_layers(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from ops import app` imports the composition root as much as `import ops.app`
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if (layer := layer_of_module(name)) is not None:
                found.add((layer, node.lineno))
    return found


def test_the_table_names_every_shipped_layer():
    assert set(layer_table()) == {*SHIPPED, COMPOSITION_ROOT}
    assert layer_table()["ops"] == set()  # the ground: nothing of the project


def test_every_import_points_down_the_layer_table():
    table = layer_table()
    wrong = []
    for package in SHIPPED:
        for path in sorted((ROOT / package).rglob("*.py")):
            layer = layer_of_file(path)
            allowed = table[layer] | {layer}
            for imported, line in sorted(imported_layers(path)):
                if imported not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert wrong == [], "imports against docs/architecture.md's layer table:\n" + "\n".join(wrong)


def test_the_tests_and_benchmarks_are_not_shipped():
    """What the wheel and the image carry (pyproject.toml, Dockerfile) leaves both out, so no
    command of the image can need them (the check above keeps shipped code from importing them)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(shipped) == sorted(f"{package}*" for package in SHIPPED)
    copied = re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), re.M)
    assert not {"bench", "./bench"} & set(copied)
