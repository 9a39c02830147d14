"""What every router of the API shares: the registry, the store client, the settings, and who may see what.

Routers are small modules (`models`, `ingest`, `alerting`, `report`,
`metrics`), each a function `router(ctx) -> APIRouter`; `create_app` includes
them. Authentication and the team limit live here once, as FastAPI
dependencies, so no endpoint re-implements them. No `from __future__ import
annotations`: FastAPI resolves the dependencies' annotations at run time.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from clickhouse_connect.driver.client import Client
from fastapi import Depends, HTTPException, Request

from detectors.config import ModelSpec, Registry
from driftline.api.auth import Authenticator, Principal, Scope
from driftline.config import Settings
from driftline.privacy import Redactor
from driftline.unknown_models import ModelGate

UNAUTHORIZED = {401: {"description": "no bearer token, or an unknown one"}}
FORBIDDEN = {403: {"description": "the token's scope or team does not allow this"}}
MALFORMED = {400: {"description": "the body is not valid JSON (or not UTF-8)"}}
NOT_FOUND = {404: {"description": "no such model (or alert, silence, delivery)"}}


@dataclass(frozen=True)
class Reloaded:
    """What a reload switched to: the registry, and (inside `up`, when alerts.yaml exists) the alert channels
    and rules added, removed or changed, by name."""

    registry: Registry
    alerts: dict[str, list[str]] | None = None


@dataclass
class ApiContext:
    """The state behind the API. `registry` is replaced whole by a reload, never mutated in place."""

    registry: Registry
    authenticator: Authenticator
    client: Client
    settings: Settings = field(default_factory=Settings)
    reload: Callable[[], Reloaded] | None = None  # re-reads the config files; raises ConfigError
    tokens_file: Path | None = None  # re-read by a reload too, so a removed token stops working at once
    lock: threading.Lock = field(default_factory=threading.Lock)
    redactor: Redactor | None = None  # the privacy policies HTTP ingest applies (shared with `up`'s collector)
    gate: ModelGate = field(default_factory=ModelGate)  # the registry's model names as ingest sees them (shared too)
    link_secret: bytes | None = None  # signs and checks report links; read at start and by each reload

    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "missing bearer token: send `Authorization: Bearer <token>` (tokens are "
                                     "configured in DRIFTLINE_API_TOKENS_FILE)", headers={"WWW-Authenticate": "Bearer"})
        found = self.authenticator.identify(token.strip())
        if found is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        request.state.principal = found
        return found

    def needs(self, scope: Scope) -> Callable[..., Principal]:
        """A dependency: the caller's principal, if its scope reaches `scope` (else 401/403)."""
        def check(who: Annotated[Principal, Depends(self.principal)]) -> Principal:
            if not who.allows(scope):
                raise HTTPException(403, f"token {who.name!r} has scope {who.scope!r}; this needs {scope!r}")
            return who
        return check

    def visible(self, who: Principal) -> list[ModelSpec]:
        return [m for m in self.registry.models if who.team is None or m.owner == who.team]

    def may_see(self, who: Principal, model: str) -> bool:
        return who.team is None or any(m.name == model and m.owner == who.team for m in self.registry.models)

    def model_for(self, name: str, who: Principal) -> ModelSpec:
        """The registry entry of `name`, or 404 (unknown) / 403 (not the token's team's).

        A team-limited token gets the same 403 for an unknown model as for
        another team's: a 404 would let it enumerate the other teams' models.
        """
        spec = next((m for m in self.registry.models if m.name == name), None)
        if who.team is not None and (spec is None or spec.owner != who.team):
            raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; model {name!r} is not "
                                     "one of its models")
        if spec is None:
            raise HTTPException(404, f"unknown model {name!r}")
        return spec
