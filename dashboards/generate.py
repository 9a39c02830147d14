"""Generate the dashboards' JSON from code: `python -m dashboards.generate` (or `--check` to compare).

The JSON under dashboards/json/ is committed: Grafana's provisioning mounts
that folder, and a test fails when regenerating gives anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboards import fleet, model, service
from dashboards.board import Board

JSON_DIR = Path(__file__).parent / "json"
BUILDERS = (fleet.build, model.build, service.build)


def boards() -> list[Board]:
    return [build() for build in BUILDERS]


def render(board: Board) -> str:
    """The file's exact text: sorted keys, two-space indent, a final newline (stable diffs)."""
    return json.dumps(board.to_json(), indent=2, sort_keys=True) + "\n"


def write(folder: Path = JSON_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for board in boards():
        path = folder / f"{board.uid}.json"
        path.write_text(render(board))
        written.append(path)
    return written


def stale(folder: Path = JSON_DIR) -> list[str]:
    """Dashboards whose committed JSON differs from what the code generates."""
    out = []
    for board in boards():
        path = folder / f"{board.uid}.json"
        if not path.exists() or path.read_text() != render(board):
            out.append(path.name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is not what the code gives")
    args = parser.parse_args(argv)
    if args.check:
        differing = stale()
        for name in differing:
            print(f"{name}: differs from the code; run `python -m dashboards.generate`", file=sys.stderr)
        return 1 if differing else 0
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
