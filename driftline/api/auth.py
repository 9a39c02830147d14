"""Bearer tokens with scopes (read < write < admin), each optionally limited to one team's models.

Tokens are configured in `tokens.yaml` (DRIFTLINE_API_TOKENS_FILE) by their
SHA-256 (so the file holds no usable secret) or by the name of an environment
variable holding them:

    tokens:
      - {name: grafana-reader, sha256: 9f86d081..., scopes: [read]}
      - {name: retention-ci, env: RETENTION_TOKEN, scopes: [write], team: team-retention}

A token's `team` limits it to the models whose registry `owner` is that team.
Comparisons are constant-time; a token is never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from driftline.yamlfile import ConfigError, Identifier, Strict, describe_validation_error, load_yaml

Scope = Literal["read", "write", "admin"]
RANK = {"read": 0, "write": 1, "admin": 2}


class TokenSpec(Strict):
    name: Identifier
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")
    env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="environment variable holding it")
    scopes: tuple[Scope, ...] = Field(min_length=1)
    team: Identifier | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "TokenSpec":
        if (self.sha256 is None) == (self.env is None):
            raise ValueError("give exactly one of sha256 or env")
        return self

    @property
    def scope(self) -> Scope:
        return max(self.scopes, key=RANK.__getitem__)


class TokensFile(Strict):
    tokens: tuple[TokenSpec, ...] = ()


@dataclass(frozen=True)
class Principal:
    """Who called: the token's name, its highest scope and its team (None: every model)."""

    name: str
    scope: Scope
    team: str | None

    def allows(self, needed: Scope) -> bool:
        return RANK[self.scope] >= RANK[needed]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    def __init__(self, specs: tuple[TokenSpec, ...]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for spec in specs:
            if spec.sha256 is not None:
                digest = bytes.fromhex(spec.sha256)
            else:
                value = os.environ.get(spec.env or "")
                if not value:
                    raise ConfigError(f"token {spec.name!r}: ${spec.env} is not set")
                digest = _digest(value.strip())
            self._entries.append((digest, Principal(spec.name, spec.scope, spec.team)))

    @property
    def empty(self) -> bool:
        return not self._entries

    def fingerprints(self) -> dict[str, tuple[bytes, Principal]]:
        """Token name -> (digest, principal): what a reload compares to say which tokens changed."""
        return {principal.name: (digest, principal) for digest, principal in self._entries}

    def identify(self, token: str) -> Principal | None:
        """The principal of `token`, or None; every entry is compared, in constant time each."""
        digest = _digest(token)
        found = None
        for expected, principal in self._entries:
            if hmac.compare_digest(expected, digest):
                found = principal
        return found


def load_tokens(path: Path) -> Authenticator:
    """The tokens of `path`; a missing file means no tokens (every protected endpoint answers 401)."""
    if not path.exists():
        return Authenticator(())
    doc = load_yaml(path)
    try:
        parsed = TokensFile.model_validate(doc.data or {})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(doc, exc)) from None
    return Authenticator(parsed.tokens)
