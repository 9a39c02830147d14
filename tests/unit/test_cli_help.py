"""Every command and subcommand of `driftline` has a one-line help and answers `--help` with exit 0."""

from __future__ import annotations

import argparse

import pytest

from driftline.cli import build_parser, main

EXPECTED = {"up", "api", "collect", "detect", "report", "alerts", "silence", "deliveries", "dashboards", "db", "demo",
            "models", "reference", "config", "send-example", "simulate", "concept-drift"}


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str | None]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in action._choices_actions}
            for name, sub in action.choices.items():
                found.append(((*path, name), helps.get(name)))
                found += commands(sub, (*path, name))
    return found


ALL = commands(build_parser())


def test_the_issue_s_commands_exist_and_each_has_a_help_line() -> None:
    assert EXPECTED <= {path[0] for path, _ in ALL}
    assert ("alerts", "ack") in {path for path, _ in ALL}
    missing = [" ".join(path) for path, text in ALL if not text or not text.strip()]
    assert not missing


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=[" ".join(p) for p, _ in ALL])
def test_help_exits_0(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: driftline " + " ".join(path))
