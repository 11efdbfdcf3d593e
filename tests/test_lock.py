"""The lock files pin every dependency pyproject.toml names, with hashes (`make lock` writes
them; `make install` and the Dockerfile install from them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pinned(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==([^ \\]+)", line)
        if found:
            pins[found.group(1).lower().replace("_", "-")] = found.group(2)
    return pins


def test_every_dependency_is_pinned_with_a_hash_in_its_lock():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {
        "requirements.lock": project["dependencies"],
        "requirements-dev.lock": project["dependencies"]
        + extras["dev"]
        + extras["test"]
        + extras["llm"],
    }
    for lock, requirements in wanted.items():
        text = (ROOT / lock).read_text()
        pins = _pinned(ROOT / lock)
        missing = sorted({_name(r) for r in requirements} - set(pins))
        assert not missing, f"{lock} lacks {missing}: run `make lock`"
        assert text.count("--hash=sha256:") >= len(pins), f"{lock} has pins without hashes"
        assert "file:///" not in text, f"{lock} names a machine's local index"
