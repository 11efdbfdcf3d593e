"""make bench: every benchmark module in its own process, one after another.

Each prints its figures and ratios against a bare baseline measured in the same run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

BENCHES = ("pipeline", "mix", "replytime", "delivery", "media", "agent", "scheduling")


def main(argv: list[str] | None = None) -> int:
    names = argv or list(BENCHES)
    failed = 0
    for name in names:
        module = f"bench.{name}"
        if importlib.util.find_spec(module) is None:
            print(f"== {name}: not built yet")
            continue
        print(f"== {name}", flush=True)
        failed += subprocess.call([sys.executable, "-m", module]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
