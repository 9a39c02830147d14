"""The log ends a collector keeps for counting what a killed in-memory broker lost (collector/incarnations.py)."""

from __future__ import annotations

from pathlib import Path

from collector.incarnations import WatermarkFile, incarnation_key
from collector.loop import consumer_config
from driftline.config import Settings


def test_log_ends_survive_a_restart_and_belong_to_one_incarnation(tmp_path: Path) -> None:
    path = tmp_path / "log-ends.json"
    marks = WatermarkFile(path)
    old = incarnation_key("id-1", 0)
    marks.raise_to(("predictions", 0), old, 120)
    marks.raise_to(("predictions", 0), old, 90)  # a lower end (an older fetch) never lowers it
    marks.save()
    again = WatermarkFile(path)  # the next `up`
    assert again.get(("predictions", 0), old) == 120
    assert again.get(("predictions", 0), incarnation_key("id-2", 120)) is None  # another incarnation: unknown
    assert again.get(("predictions", 1), old) is None
    again.raise_to(("predictions", 0), incarnation_key("id-2", 120), 130)  # a new incarnation replaces the old
    assert again.get(("predictions", 0), old) is None


def test_a_broker_without_topic_ids_tells_incarnations_apart_by_their_base(tmp_path: Path) -> None:
    marks = WatermarkFile(tmp_path / "log-ends.json")
    marks.raise_to(("labels", 2), incarnation_key("", 0), 500)
    marks.raise_to(("labels", 2), incarnation_key("", 500), 510)  # started over at base 500: a lower broker end
    assert marks.get(("labels", 2), incarnation_key("", 500)) == 510
    assert marks.get(("labels", 2), incarnation_key("", 0)) is None


def test_a_damaged_log_ends_file_is_read_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "log-ends.json"
    path.write_text("{not json")
    assert WatermarkFile(path).get(("predictions", 0), incarnation_key("x", 0)) is None


def test_the_consumer_never_resets_an_offset_by_itself() -> None:
    config = consumer_config(Settings(kafka_bootstrap_servers="127.0.0.1:1"))
    assert config["auto_offset_reset"] == "none"
    assert config["isolation_level"] == "read_committed"
