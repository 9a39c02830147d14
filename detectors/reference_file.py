"""A reference file (CSV, TSV or Parquet) read in chunks whose size is bounded before anything is decoded.

An upload is untrusted input, and its compressed size says little about what it
becomes: one dictionary-encoded 64 KiB string repeated 16,000 times is a 1 KiB
Parquet file and 1 GiB of strings; a 5 MB CSV header can name 100,000 columns.
So every bound is checked from what is cheap to read first (the Parquet footer,
the CSV header line), and Parquet strings are read as dictionaries, so a long
value is seen and refused once rather than decoded once per row. The bounds
match the event contract (driftline/contracts.py) where one exists: a value is
at most MAX_STRING_VALUE characters, as in an event. docs/reference.md
(Reference samples) lists them.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftline.contracts import MAX_STRING_VALUE

MAX_COLUMNS = 4096
"""Columns of a file: a model has at most 1,024 features and 1,024 probability classes, plus a few more."""
MAX_ROWS = 20_000_000
MAX_DECODED_BYTES = 4 << 30
"""Parquet: the uncompressed size its footer declares, summed over row groups."""
MAX_HEADER_BYTES = 1 << 20
"""CSV/TSV: the header line, read before the parser sees the file."""
CHUNK_ROWS = 50_000
CHUNK_BYTES = 64 << 20
"""A chunk ends at CHUNK_ROWS rows or once its Arrow data passes CHUNK_BYTES, whichever comes first."""
PARQUET_BATCH_ROWS = 1024


class ReferenceError(ValueError):
    """The file cannot become a reference; the message names the column (and row) or the bound."""


class ReferenceTooLarge(ReferenceError):
    """The file passes one of the bounds above (an HTTP upload answers 413)."""


class ReferenceFile:
    """The columns of a file, then its rows as pandas frames of the columns asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            self._parquet = True
            self.columns = self._parquet_columns()
        elif suffix in (".csv", ".gz", ".tsv"):
            self._parquet = False
            self._sep = "\t" if suffix == ".tsv" else ","
            self.columns = self._csv_columns()
        else:
            raise ReferenceError(f"{path}: unknown file type {suffix!r} (use .csv, .tsv or .parquet)")

    def chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """The rows of `columns` only, CHUNK_ROWS at a time (fewer when rows are wide)."""
        rows = 0
        for frame in (self._parquet_chunks(columns) if self._parquet else self._csv_chunks(columns)):
            rows += len(frame)
            if rows > MAX_ROWS:
                raise ReferenceTooLarge(f"{self.path}: more than {MAX_ROWS:,} rows (the limit of a reference)")
            yield frame

    # -- Parquet -----------------------------------------------------------------------------------------------------

    def _parquet_columns(self) -> list[str]:
        meta = pq.read_metadata(self.path)
        if meta.num_columns > MAX_COLUMNS:
            raise ReferenceTooLarge(f"{self.path}: {meta.num_columns:,} columns; a reference file may have at "
                                        f"most {MAX_COLUMNS:,}")
        if meta.num_rows > MAX_ROWS:
            raise ReferenceTooLarge(f"{self.path}: {meta.num_rows:,} rows; a reference may have at most "
                                        f"{MAX_ROWS:,}")
        decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if decoded > MAX_DECODED_BYTES:
            raise ReferenceTooLarge(f"{self.path}: {decoded:,} bytes once decompressed; a reference file may "
                                        f"hold at most {MAX_DECODED_BYTES:,}")
        return [str(name) for name in meta.schema.to_arrow_schema().names]

    def _parquet_chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        schema = pq.read_schema(self.path)
        for name in columns:
            kind = schema.field(name).type
            if pa.types.is_nested(kind):
                raise ReferenceError(f"{self.path}: column {name!r} is {kind}; reference columns hold numbers, "
                                         "strings or booleans")
        texts = [name for name in columns if _is_text(schema.field(name).type)]
        file = pq.ParquetFile(self.path, read_dictionary=texts)
        held: list[pa.RecordBatch] = []
        held_rows = held_bytes = 0
        for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            batch = _decoded(batch, self.path)
            held.append(batch)
            held_rows, held_bytes = held_rows + batch.num_rows, held_bytes + batch.nbytes
            if held_rows >= CHUNK_ROWS or held_bytes >= CHUNK_BYTES:
                yield pa.Table.from_batches(held).to_pandas()
                held, held_rows, held_bytes = [], 0, 0
        if held:
            yield pa.Table.from_batches(held).to_pandas()

    # -- CSV ---------------------------------------------------------------------------------------------------------

    def _open_text(self) -> IO[str]:
        raw = gzip.open(self.path) if self.path.suffix.lower() == ".gz" else self.path.open("rb")
        return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")

    def _csv_columns(self) -> list[str]:
        with self._open_text() as text:
            header = text.readline(MAX_HEADER_BYTES + 1)
        if len(header) > MAX_HEADER_BYTES:
            raise ReferenceTooLarge(f"{self.path}: the header line is longer than {MAX_HEADER_BYTES:,} "
                                        "characters")
        fields = next(csv.reader([header], delimiter=self._sep), [])
        if len(fields) > MAX_COLUMNS:
            raise ReferenceTooLarge(f"{self.path}: {len(fields):,} columns; a reference file may have at most "
                                        f"{MAX_COLUMNS:,}")
        # pandas names the columns (it tells repeated names apart as `a`, `a.1`), now that their number is bounded
        return [str(c) for c in pd.read_csv(self.path, nrows=0, sep=self._sep).columns]

    def _csv_chunks(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        yield from pd.read_csv(self.path, chunksize=CHUNK_ROWS, dtype=str, keep_default_na=False, sep=self._sep,
                               usecols=columns)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind))


def _decoded(batch: pa.RecordBatch, path: Path) -> pa.RecordBatch:
    """The batch with its dictionaries checked (no value longer than MAX_STRING_VALUE) and then expanded."""
    arrays = []
    for name, array in zip(batch.schema.names, batch.columns):
        values = array.dictionary if pa.types.is_dictionary(array.type) else array
        if _is_text(values.type) and len(values):
            lengths = pc.utf8_length(values) if pa.types.is_string(values.type) or pa.types.is_large_string(
                values.type) else pc.binary_length(values)
            longest = pc.max(lengths).as_py()
            if longest is not None and longest > MAX_STRING_VALUE:
                raise ReferenceError(f"{path}: column {name!r} holds a value of {longest:,} characters; values "
                                         f"may have at most {MAX_STRING_VALUE:,} (as in events)")
        arrays.append(array.dictionary_decode() if pa.types.is_dictionary(array.type) else array)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
