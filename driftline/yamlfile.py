"""YAML config files whose validation errors point at the offending line.

pydantic reports an error as a path (`models.2.features.age.type`); a person
editing a file wants `models.yaml:14`. This loader keeps the line of every
node while converting YAML to plain Python, so any path can be turned back
into a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from driftline.durations import parse_duration
from driftline.names import validate_identifier

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A YAML duration field: `15m`, `1h30m`, `7d`, or seconds."""
Identifier = Annotated[str, BeforeValidator(lambda v: validate_identifier(v, what="name"))]
"""A YAML name field held to the identifier pattern (it may reach SQL parameters, labels and file names)."""


class Strict(BaseModel):
    """Base of every config-as-code model: unknown keys are errors (a typo is not silently ignored); frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the line and the field."""


Path_ = tuple[str | int, ...]


SECRET_WORDS = ("password", "secret", "token", "api_key")


class FieldError(ValueError):
    """Raised by a cross-field validator to blame one field (`loc`, relative to the validated object)."""

    def __init__(self, loc: Path_, message: str) -> None:
        super().__init__(message)
        self.loc = loc


@dataclass
class LocatedYaml:
    """Plain data from a YAML file and the line of each node, keyed by its path."""

    path: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the deepest node of `loc` that exists in the file.

        Steps of `loc` that are not in the file (a validator's union tag such as `webhook`) are skipped.
        """
        found: Path_ = ()
        for part in loc:
            if (*found, part) in self.lines:
                found = (*found, part)
        return self.lines.get(found)

    def where(self, loc: Sequence[str | int]) -> str:
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)


def _convert(node: yaml.Node, at: Path_, lines: dict[Path_, int]) -> Any:
    lines.setdefault(at, node.start_mark.line + 1)  # a mapping's key line, when it has a key
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(f"line {key_node.start_mark.line + 1}: keys must be plain names")
            key = str(key_node.value)  # a feature called `1` or `yes` stays that string
            if key in out:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            lines[(*at, key)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, (*at, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*at, i), lines) for i, item in enumerate(node.value)]
    # A scalar: let the safe loader type it (numbers, booleans, null, strings).
    return yaml.safe_load(yaml.serialize(node))


def load_yaml(path: Path) -> LocatedYaml:
    """Parse `path`, refusing anchors/aliases to other types, duplicate keys and syntax errors with a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    lines: dict[Path_, int] = {}
    if root is None:
        return LocatedYaml(path, {}, lines)
    try:
        data = _convert(root, (), lines)
    except ConfigError as exc:
        raise ConfigError(f"{path}:{str(exc).removeprefix('line ')}") from None
    return LocatedYaml(path, data, lines)


def describe_validation_error(
    doc: LocatedYaml,
    exc: ValidationError,
    *,
    prefix: Path_ = (),
    context: str = "",
    fallback: Path_ | None = None,
) -> str:
    """One line per problem: file:line, the field path, what was wrong and the value given.

    `prefix` is where the validated object sits in the file; `fallback` is where values it did not
    state itself came from (a `defaults:` block), so an error in an inherited value points there.
    """
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-"))))
        original = (err.get("ctx") or {}).get("error")
        if isinstance(original, FieldError):
            loc = (*loc, *original.loc)
        line = doc.line_of((*prefix, *loc))
        if fallback is not None and loc and (*prefix, *loc) not in doc.lines and (*fallback, *loc) in doc.lines:
            line = doc.lines[(*fallback, *loc)]
        where = f"{doc.path}:{line}" if line else str(doc.path)
        field_path = ".".join(str(p) for p in loc) or "(top level)"
        value = err.get("input")
        shown = ""
        if loc and any(word in str(loc[-1]).lower() for word in SECRET_WORDS):
            shown = " (value hidden)"  # a secret pasted into the wrong field is not echoed into logs
        elif value is not None and not isinstance(value, dict | list):
            text = repr(value)
            shown = f" (got {text if len(text) <= 80 else text[:77] + '...'})"
        message = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {context}{field_path}: {message}{shown}")
    return "\n".join(out)
