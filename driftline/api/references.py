"""Reference samples over HTTP: upload a training sample as a model's reference, list what is stored.

The body is the file itself (CSV, TSV or Parquet, as `driftline reference
upload` takes it, with the same value model and column mapping; the answer
lists how each column was read and the columns ignored). It is spooled to a temporary file, bounded by
`DRIFTLINE_API_MAX_UPLOAD_BYTES`, then validated whole before anything is
replaced: a bad row is a 422 naming the row and column, and the previous
reference stays.
"""

import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from pyarrow import ArrowException

from detectors.reference import stored_references, upload
from detectors.reference_file import MAX_COLUMNS, MAX_DECODED_BYTES, MAX_ROWS, ReferenceError, ReferenceTooLarge
from driftline.api.auth import Principal
from driftline.api.context import FORBIDDEN, NOT_FOUND, UNAUTHORIZED, ApiContext
from driftline.api.models import ModelName, json_row
from driftline.names import IDENTIFIER_PATTERN, InvalidName

FORMATS = {"text/csv": "csv", "text/tab-separated-values": "tsv", "application/vnd.apache.parquet": "parquet",
           "application/x-parquet": "parquet"}
ReferenceName = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$", max_length=128,
                                    description="the name the registry's `reference: {upload: NAME}` uses",
                                    examples=["training-2026-11"])]


class UploadAnswer(BaseModel):
    model: str = Field(examples=["churn"])
    reference: str = Field(examples=["training-2026-11"])
    rows: int = Field(examples=[50000])
    columns: dict[str, str] = Field(default_factory=dict, description="how each used column was read",
                                    examples=[{"tenure_months": "feature", "label": "label", "proba_1": "proba[1]"}])
    ignored: list[str] = Field(default_factory=list, description="columns of the file the model does not use",
                               examples=[["customer_id"]])


def _format(content_type: str, given: str | None) -> str:
    if given:
        return given
    found = FORMATS.get(content_type.split(";")[0].strip().lower())
    if found is None:
        raise HTTPException(415, f"say what the file is: Content-Type one of {sorted(FORMATS)}, or ?format="
                                 "csv|tsv|parquet")
    return found


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["references"], responses={**UNAUTHORIZED, **FORBIDDEN, **NOT_FOUND})
    body_doc = {"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}, "example": "tenure_months,contract,prediction,label\n12,monthly,1,1\n"},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    }}}

    @api.post("/models/{model}/references/{name}", openapi_extra=body_doc, status_code=201, responses={
        413: {"description": f"larger than DRIFTLINE_API_MAX_UPLOAD_BYTES, or more than {MAX_ROWS:,} rows, "
                            f"{MAX_COLUMNS:,} columns or (Parquet) {MAX_DECODED_BYTES:,} bytes decompressed"}, 415: {"description": "unknown format"},
        422: {"description": "a row or column is invalid; nothing was replaced"}})
    async def upload_reference(
        model: ModelName, name: ReferenceName, request: Request,
        who: Annotated[Principal, Depends(ctx.needs("write"))],
        format: Annotated[Literal["csv", "tsv", "parquet"] | None, Query(description="default: from Content-Type")] = None,
        model_version: Annotated[str | None, Query(pattern=f"^{IDENTIFIER_PATTERN}$", description="for "
                                                   "`reference: {per_version: true}`")] = None,
        prediction_column: Annotated[str | None, Query(max_length=128, description="default: the registry's "
                                                       "reference.columns.prediction, else `prediction`")] = None,
        label_column: Annotated[str | None, Query(max_length=128, description="default: reference.columns.label, "
                                                  "else `label`")] = None,
        score_column: Annotated[str | None, Query(max_length=128, description="binary models: the probability of "
                                                  "positive_label (default: reference.columns.score)")] = None,
    ) -> UploadAnswer:
        """Replace reference `name` of the model with the uploaded sample (validated whole first)."""
        spec = ctx.model_for(model, who)
        suffix = _format(request.headers.get("content-type", ""), format)
        with tempfile.TemporaryDirectory(prefix="driftline-upload-") as tmp:
            path = FilePath(tmp) / f"reference.{suffix}"
            with path.open("wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
            try:
                result = await run_in_threadpool(
                    upload, ctx.client, spec, name, path, prediction_column=prediction_column,
                    label_column=label_column, score_column=score_column, show_progress=False,
                    model_version=model_version)
            except ReferenceTooLarge as exc:
                raise HTTPException(413, str(exc).replace(str(path), "the upload")) from None
            except (ReferenceError, InvalidName) as exc:
                raise HTTPException(422, str(exc).replace(str(path), "the upload")) from None
            except (ValueError, OSError, ArrowException) as exc:  # pandas / pyarrow: a file that is not what it says
                raise HTTPException(422, f"cannot read the upload as {suffix}: {type(exc).__name__}: "
                                         f"{str(exc)[:300]}") from None
        return UploadAnswer(model=result.model, reference=result.reference, rows=result.rows, columns=result.columns,
                            ignored=result.ignored)

    @api.get("/models/{model}/references")
    def list_references(model: ModelName, who: Annotated[Principal, Depends(ctx.needs("read"))]) -> list[dict]:
        """The references stored for the model: name, rows, when uploaded."""
        spec = ctx.model_for(model, who)
        return [json_row(r) for r in stored_references(ctx.client, spec.name)]

    return api
