"""The reference commands of `driftline` (detectors/reference.py).

  reference upload   a training sample (CSV, TSV or Parquet) becomes a model's reference
  reference list     the references stored for a model: name, rows, when uploaded
  reference delete   remove a stored reference (refused while the registry names it, unless --force)

Beside a running `up` on the embedded store they run through it (driftline/store/service_link.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from driftline.config import Settings
from driftline.store import connect, migrate


def cmd_upload(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.reference import ReferenceError, upload
    from driftline.cli import _registry
    from driftline.names import InvalidName

    model = _registry(settings, args.models_file).get(args.model)
    client = connect(settings)
    migrate(client)
    try:
        result = upload(client, model, args.name, Path(args.file), prediction_column=args.prediction_column,
                        label_column=args.label_column, score_column=args.score_column, show_progress=not args.quiet,
                        model_version=args.model_version)
    except (ReferenceError, InvalidName) as exc:
        print(f"driftline reference upload: {exc}", file=sys.stderr)
        return 2
    if result.ignored:
        print(f"driftline reference upload: ignored column(s) the model does not use: {', '.join(result.ignored)} "
              "(a probability column? name it proba_<class>, or map it in reference.columns)", file=sys.stderr)
    print(json.dumps({"model": result.model, "reference": result.reference, "rows": result.rows,
                      "columns": result.columns, "ignored": result.ignored}))
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.reference import stored_references
    from driftline.cli import _registry
    from driftline.timestamps import as_utc

    model = _registry(settings, args.models_file).get(args.model)
    for row in stored_references(connect(settings), model.name):
        print(json.dumps({"reference": row["reference"], "rows": int(row["rows"]),
                          "uploaded_at": as_utc(row["uploaded_at"]).isoformat()}))
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.reference import delete_reference
    from driftline.cli import _registry

    model = _registry(settings, args.models_file).get(args.model)
    named = model.reference.upload
    if named is not None and (args.name == named or args.name.startswith(f"{named}@")) and not args.force:
        print(f"driftline reference delete: the registry's {model.name} compares with reference {named!r}; "
              "deleting it leaves its windows without a reference (--force to delete it anyway)", file=sys.stderr)
        return 2
    rows = delete_reference(connect(settings), model.name, args.name)
    if not rows:
        print(f"driftline reference delete: model {model.name!r} has no reference {args.name!r}", file=sys.stderr)
        return 2
    print(json.dumps({"model": model.name, "reference": args.name, "deleted_rows": rows}))
    return 0


def add_parsers(sub: Any, common: Any, registry_arg: Any) -> None:
    ref = sub.add_parser("reference", help="reference data commands").add_subparsers(
        dest="reference_command", required=True, metavar="REFERENCE_COMMAND")
    p = ref.add_parser("upload", help="upload a training sample (CSV or Parquet) as a model's reference")
    common(p)
    registry_arg(p)
    p.add_argument("--model", required=True, help="the model (as named in the registry)")
    p.add_argument("--name", required=True, help="the reference's name, as the registry's `reference: upload:` names it")
    p.add_argument("--prediction-column", help="column with the model's output (default: the registry's "
                   "reference.columns.prediction, else `prediction`; optional in the file)")
    p.add_argument("--label-column", help="column with the true label (default: reference.columns.label, else `label`)")
    p.add_argument("--score-column", help="binary models: column with the probability of positive_label "
                   "(default: reference.columns.score)")
    p.add_argument("--model-version", help="the model version this sample trained (for `reference: {per_version: true}`)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("file", help="a .csv, .tsv or .parquet file with one column per feature")
    p.set_defaults(handler=cmd_upload)
    p = ref.add_parser("list", help="the references stored for a model: name, rows, when uploaded (JSON lines)")
    common(p)
    registry_arg(p)
    p.add_argument("--model", required=True, help="the model (as named in the registry)")
    p.set_defaults(handler=cmd_list)
    p = ref.add_parser("delete", help="remove a stored reference")
    common(p)
    registry_arg(p)
    p.add_argument("--model", required=True, help="the model (as named in the registry)")
    p.add_argument("--name", required=True, help="the reference's name (per-version ones: name@version)")
    p.add_argument("--force", action="store_true", help="delete it even though the registry names it")
    p.set_defaults(handler=cmd_delete)
