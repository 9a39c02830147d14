"""`driftline init`: monitor a new model from its reference frame (driftline/onboarding.py).

  init FILE --name MODEL   infer the model's entry from a CSV, TSV or Parquet file, add it to models.yaml,
                           write a starter alerts.yaml (when there is none) and upload FILE as its reference

Then `driftline up`; beside a running `up` it works too (the upload goes through that `up`), and
`driftline reload` makes the service monitor the new model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from driftline.config import Settings

TASKS = ("binary_classification", "multiclass_classification", "regression")


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from driftline.onboarding import init_model

    if args.models_file:
        settings = settings.model_copy(update={"models_file": Path(args.models_file)})
    result = init_model(args.file, args.name, settings=settings, reference=args.reference, owner=args.owner,
                        task=args.task, prediction=args.prediction, label=args.label, score=args.score,
                        ignore=tuple(args.ignore), held_out=args.held_out)
    inferred = result.inferred
    out = sys.stderr
    print(f"{inferred.name}: {inferred.task}, {len(inferred.features)} features, {inferred.rows} reference rows", file=out)
    for reason in inferred.reasons:
        print(f"  {reason}", file=out)
    for column, why in inferred.skipped.items():
        print(f"  not monitored: {column} ({why})", file=out)
    for warning in inferred.warnings:
        print(f"warning: {warning}", file=out)
    print(f"added {inferred.name} to {result.models_file}"
          + (f"; wrote a starter {result.alerts_file} (every rule commented)" if result.alerts_file else ""), file=out)
    print("next: `driftline up` (when it already runs: `driftline reload`), and log predictions with "
          "driftline.producer.PredictionLogger (log_frame(df) sends a frame's rows)", file=out)
    print(json.dumps({"model": inferred.name, "task": inferred.task, "features": inferred.features,
                      "reference": {"name": args.reference, "rows": result.uploaded_rows,
                                    "ignored_columns": result.ignored_columns},
                      "skipped": inferred.skipped, "warnings": inferred.warnings}))
    return 0


def add_parsers(sub: Any, common: Any) -> None:
    p = sub.add_parser("init", help="monitor a new model: its models.yaml entry and reference, from a CSV or "
                                    "Parquet frame", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(p)
    p.add_argument("file", help="the model's reference frame: a .csv, .tsv or .parquet file with a column per "
                                "feature and its prediction, probability and label columns")
    p.add_argument("--name", required=True, help="the model's name in models.yaml and in the events")
    p.add_argument("--models-file", help="the model registry to add to (default: DRIFTLINE_MODELS_FILE or models.yaml)")
    p.add_argument("--reference", default="reference", help="the reference's name (default: reference)")
    p.add_argument("--owner", help="the owning team (alerts and API scopes group by it)")
    p.add_argument("--task", choices=TASKS, help="default: from the label, prediction and probability columns")
    p.add_argument("--prediction", help="the prediction column (default: prediction, pred, y_pred or predicted)")
    p.add_argument("--label", help="the label column (default: label, target, y, y_true or actual)")
    p.add_argument("--score", help="binary models: one column with the positive class's probability "
                                   "(default: proba_<class> columns, else score, y_pred_proba, y_score or probability)")
    p.add_argument("--ignore", action="append", default=[], metavar="COLUMN", help="a column that is not a feature "
                                                                                  "(repeatable)")
    p.add_argument("--held-out", action="store_true", help="the frame is held-out data, not the training sample "
                                                          "(silences the warning about performance baselines)")
    p.set_defaults(handler=cmd_init)
