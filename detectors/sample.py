"""Bounded, deterministic samples of a window and its reference, for the detectors that need rows in Python.

Evidently's report, the domain classifier and direct loss estimation fit or
render on pandas frames; a window can hold millions of rows. Each side is
ordered by a hash of the row and its first `sample_rows` are kept, so memory
is bounded however large the window is and the same window always gives the
same sample (a recomputed window gets the same verdict).
"""

from __future__ import annotations

import pandas as pd
from clickhouse_connect.driver.client import Client

from detectors.aggregates import DETECTOR_SETTINGS
from detectors.config import ModelSpec
from detectors.sources import ALL_ROWS, Query, Segment, Window, columns_for, production_rows, reference_rows

MAX_SAMPLE_ROWS = 1_000_000


def sample_frames(client: Client, model: ModelSpec, window: Window, sample_rows: int, *,
                  segment: Segment = ALL_ROWS, prediction: bool = True,
                  target: bool = False, reference: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, current) samples: one column per feature (typed by the registry), then prediction/target if asked.

    Columns are named as in results (`__prediction__`, `__target__`); a target column joins each
    prediction to its latest label (NULL when it has none yet). `reference=False` skips the reference's
    query (its frame comes back empty), for callers that already hold it.
    """
    if not 1 <= sample_rows <= MAX_SAMPLE_ROWS:
        raise ValueError(f"sample_rows must be between 1 and {MAX_SAMPLE_ROWS}, got {sample_rows}")
    frames = []
    for side in (reference_rows, production_rows):
        q = Query()
        rows = side(model, window, segment, q, with_labels=target)
        columns = columns_for(model, q, prediction=prediction, target=target)
        if side is reference_rows and not reference:
            frames.append(pd.DataFrame(columns=[c.name for c in columns]))
            continue
        select = ", ".join(f"{c.sql} AS `c{i}`" for i, c in enumerate(columns))
        frame = client.query_df(
            f"SELECT {select} FROM ({rows}) ORDER BY cityHash64(features, prediction) LIMIT {int(sample_rows)}",
            parameters=q.parameters, settings=DETECTOR_SETTINGS,
        )
        names = [c.name for c in columns]
        frames.append(pd.DataFrame(columns=names) if frame.empty else frame.set_axis(names, axis=1))
    return frames[0], frames[1]
