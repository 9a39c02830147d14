"""The concept drift commands of `driftline` (detectors/concept_drift.py).

  concept-drift run      process the labelled stream of each model now, batch by batch; one JSON line per batch
  concept-drift status   where each model's stream stands: rows seen, cursor, firings, labels waiting

On the embedded store these open the chDB folder, so they run while `driftline up` is stopped (the running
service processes the streams itself after every detector tick).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from driftline.config import Settings
from driftline.store import connect, migrate


def _models(args: argparse.Namespace, settings: Settings) -> list[Any]:
    from driftline.cli import _models, _registry

    return _models(_registry(settings, args.models_file), args.model)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.concept_drift import RunSummary, run

    models = _models(args, settings)
    client = connect(settings)
    migrate(client)

    def progress(out: RunSummary) -> None:  # a line per persisted batch: what a watcher (or a test) waits for
        print(json.dumps({"model": out.model, "batch": out.batches, "rows_seen": out.rows_seen,
                          "firings": len(out.firings)}), flush=True)

    for model in models:
        if not model.concept_drift.enabled and not args.model:
            continue
        out = run(client, model, on_batch=None if args.quiet else progress)
        print(json.dumps({"model": model.name, "done": True, "batches": out.batches, "rows_read": out.rows_read,
                          "rows_seen": out.rows_seen,
                          "firings": [{"detector": f.detector, "position": f.position} for f in out.firings]}),
              flush=True)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.concept_drift import status

    models = _models(args, settings)
    client = connect(settings)
    migrate(client)
    for model in models:
        print(json.dumps(status(client, model)))
    return 0


def add_parsers(sub: Any, common: Any) -> None:
    concept = sub.add_parser("concept-drift", help="streaming concept drift detectors on the labelled stream: "
                                                   "run, status").add_subparsers(
        dest="concept_command", required=True, metavar="CONCEPT_DRIFT_COMMAND")
    for name, handler, text in (
        ("run", cmd_run, "process each model's new labelled rows now (one JSON line per persisted batch)"),
        ("status", cmd_status, "rows seen, cursor, firings and labels waiting, per model"),
    ):
        p = concept.add_parser(name, help=text)
        common(p)
        p.add_argument("--models-file", help="the model registry (default: DRIFTLINE_MODELS_FILE or models.yaml)")
        p.add_argument("--model", action="append", help="a model (repeatable; default: all with concept_drift enabled)")
        if name == "run":
            p.add_argument("--quiet", action="store_true", help="no line per batch, only the summary")
        p.set_defaults(handler=handler)
