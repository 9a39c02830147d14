"""`driftline dashboards push`: upload the generated dashboards to a running Grafana through its HTTP API.

Uses `grafana-client`, the maintained successor of `grafana-api` (unmaintained
since 2020). The folder is created if missing (stable uid `driftline`), and
each dashboard is written with `overwrite`, so pushing again updates in place.
The API token comes from the environment (`DRIFTLINE_GRAFANA_TOKEN`) and never
appears in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError, GrafanaUnauthorizedError
from pydantic import SecretStr

FOLDER_UID = "driftline"


class PushError(RuntimeError):
    """Grafana could not be reached or refused the upload; the message says what to check."""


@dataclass(frozen=True)
class Pushed:
    uid: str
    url: str
    version: int | None


def _explain(exc: GrafanaException, grafana_url: str, what: str) -> PushError:
    code = exc.status_code
    if isinstance(exc, GrafanaUnauthorizedError) or code == 401:
        return PushError(f"Grafana at {grafana_url} refused the API token (401) while {what}: set "
                         "DRIFTLINE_GRAFANA_TOKEN to a valid service account token")
    if code == 403:
        return PushError(f"Grafana at {grafana_url} says the token may not do this (403) while {what}: the service "
                         "account needs the Editor role (or dashboards:write and folders:create)")
    if code == 404:
        return PushError(f"Grafana at {grafana_url} answered 404 while {what}: is DRIFTLINE_GRAFANA_URL Grafana's "
                         "base URL (with its sub-path, if any)?")
    if isinstance(exc, GrafanaServerError) or (code or 0) >= 500:
        return PushError(f"Grafana at {grafana_url} failed (HTTP {code}) while {what}; try again, or look at "
                         "Grafana's log")
    if code == 0 or code is None:
        return PushError(f"cannot reach Grafana at {grafana_url} while {what}: {type(exc).__name__}")
    return PushError(f"Grafana at {grafana_url} refused the request (HTTP {code}) while {what}")


def push(grafana_url: str, token: SecretStr, dashboards: list[dict[str, Any]], *, folder_title: str = "Driftline",
         timeout_s: float = 10.0) -> list[Pushed]:
    """Create the folder if needed, then upload every dashboard into it, overwriting older versions."""
    if not grafana_url.startswith(("http://", "https://")):
        raise PushError(f"DRIFTLINE_GRAFANA_URL must start with http:// or https://, got {grafana_url[:60]!r}")
    try:
        return _push(grafana_url, token, dashboards, folder_title, timeout_s)
    except niquests.exceptions.RequestException as exc:  # not every transport error is wrapped by grafana-client
        raise PushError(f"cannot reach Grafana at {grafana_url}: {type(exc).__name__}") from None


def _push(grafana_url: str, token: SecretStr, dashboards: list[dict[str, Any]], folder_title: str,
          timeout_s: float) -> list[Pushed]:
    api = GrafanaApi.from_url(grafana_url, credential=token.get_secret_value(), timeout=timeout_s)
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise _explain(exc, grafana_url, "looking up the folder") from None
        try:
            api.folder.create_folder(folder_title, uid=FOLDER_UID)
        except GrafanaException as exc2:
            raise _explain(exc2, grafana_url, "creating the folder") from None
    except GrafanaException as exc:
        raise _explain(exc, grafana_url, "looking up the folder") from None
    pushed = []
    for board in dashboards:
        body = {"dashboard": {**board, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                "message": "driftline dashboards push"}
        try:
            answer = api.dashboard.update_dashboard(body)
        except GrafanaException as exc:
            raise _explain(exc, grafana_url, f"uploading dashboard {board.get('uid')}") from None
        pushed.append(Pushed(str(answer.get("uid", board.get("uid"))), str(answer.get("url", "")),
                             answer.get("version")))
    return pushed
