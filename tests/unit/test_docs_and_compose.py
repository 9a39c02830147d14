"""The reference documents every setting, and docker-compose.yml is a stack a platform team can trust."""

from __future__ import annotations

import re
from pathlib import Path


from driftline.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_reference_configuration_table_lists_every_setting_and_nothing_else() -> None:
    readme = (ROOT / "docs" / "reference.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `DRIFTLINE_([A-Z0-9_]+)`", table, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_readme_mentions_grafana_client_as_the_maintained_successor() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "grafana-client" in readme and "grafana-api" in readme


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^(python3 -m venv .*pytest)$", ci, flags=re.M).group(1)
    assert command in readme
