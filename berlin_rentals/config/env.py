"""How a setting is read: each variable is declared once, on the field that holds it (its name, what it
accepts, its default), and both `from_env` and a value built in code are checked against that declaration.

A value that is missing or blank is unset: the field keeps its default (a key prefix is the one exception:
blank is the whole bucket). Anything else must be what the variable accepts, or it is a ConfigError that
names the variable and the value, e.g. "ETL_MAX_ATTEMPTS must be an integer, got 'x'", never a bare
ValueError from deep inside `int()`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, Self

# A schema or role name is the one piece of text pasted into SQL: a plain lower-case identifier, nothing
# else. The settings match it whole (fullmatch: `$` alone also matches before a trailing newline).
PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class ConfigError(ValueError):
    """A setting is missing or malformed."""


class Refused(Exception):
    """A raw value a kind cannot read: the text says what it must be ("must be an integer")."""


@dataclass(frozen=True)
class Kind:
    """What one variable accepts. `accepts` is the text docs/configuration.md gives; `parse` turns the raw
    text into a value or raises Refused; `check` returns None for a good value, else what it must be (run
    on values built in code as well as on parsed ones)."""

    accepts: str
    parse: Callable[[str], Any]
    check: Callable[[Any], str | None] = lambda value: None
    # A blank value is unset (the default) unless the kind gives blank a meaning of its own (a prefix: root).
    blank_is_unset: bool = True
    # Values of numbers, flags and lists it must refuse: tests/unit/test_config_reference.py feeds each variable
    # of such a kind every one of them.
    refused: tuple[str, ...] = ()


def _integer(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise Refused("must be an integer") from None


def _number(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise Refused("must be a number") from None
    if not math.isfinite(value):
        raise Refused("must be a finite number")
    return value


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def integer(minimum: int = 1, maximum: int | None = None) -> Kind:
    """A whole number in [minimum, maximum]."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if value < minimum:
            return f"must be at least {minimum}"
        if maximum is not None and value > maximum:
            return f"must be at most {maximum}"
        return None

    accepts = f"an integer ≥ {minimum}" + (f" and ≤ {maximum}" if maximum is not None else "")
    refused = ("x", "1.5", str(minimum - 1), *(() if maximum is None else (str(maximum + 1),)))
    return Kind(accepts, _integer, check, refused=refused)


def positive() -> Kind:
    """A number above 0 (seconds, a factor)."""

    def check(value: Any) -> str | None:
        if not _is_number(value):
            return "must be a number"
        return None if value > 0 else "must be more than 0"

    return Kind("a number > 0", _number, check, refused=("x", "0", "-1", "nan", "inf"))


def ratio() -> Kind:
    """A share: 0 to 1, 0.05 is 5%."""

    def check(value: Any) -> str | None:
        if not _is_number(value):
            return "must be a number"
        return None if 0 <= value <= 1 else "must be between 0 and 1 (0.05 is 5%)"

    return Kind("a number between 0 and 1 (0.05 is 5%)", _number, check, refused=("x", "5%", "1.5", "-0.1", "nan"))


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in _TRUE + _FALSE:
        raise Refused("must be one of 1, true, yes, on or 0, false, no, off")
    return value in _TRUE


def flag() -> Kind:
    return Kind(
        "1, true, yes or on; 0, false, no or off",
        _flag,
        lambda value: None if isinstance(value, bool) else "must be true or false",
        refused=("maybe", "2"),
    )


def _seconds_list(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise Refused("must be a comma-separated list of seconds") from None
    return delays


def seconds_list() -> Kind:
    def check(value: Any) -> str | None:
        if not value or any(not _is_number(d) or d < 0 for d in value):
            return "must be a comma-separated list of seconds, each at least 0"
        return None

    return Kind("comma-separated seconds, each ≥ 0", _seconds_list, check, refused=("soon", "1,-1", "1,,2", "nan"))


def matching(pattern: re.Pattern[str], accepts: str) -> Kind:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) and pattern.fullmatch(value) else f"must be {accepts}"

    return Kind(accepts, str.strip, check)


def identifier() -> Kind:
    return matching(PLAIN_IDENTIFIER, "a plain lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63)")


def bucket() -> Kind:
    return matching(BUCKET_NAME, "a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")


def block(slug: str | None = None) -> Kind:
    """A Prefect block as Block.load takes it, `<block type slug>/<block name>`; `slug` pins the type."""
    accepts = f"`{slug}/<block name>`" if slug else "`<block type slug>/<block name>`"

    def check(value: Any) -> str | None:
        kind, _, name = str(value).strip("/").partition("/")
        if not kind or not name or (slug is not None and kind != slug):
            return f"must be {accepts}"
        return None

    return Kind(accepts, str.strip, check)


def _prefix(raw: str) -> str:
    value = raw.strip().lstrip("/")
    return value if not value or value.endswith("/") else value + "/"


def prefix() -> Kind:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) and value == _prefix(value) else "must be a key prefix ending in /"

    # Blank is the whole bucket, as an explicit empty prefix always was.
    return Kind("a key prefix (a trailing / is added; empty: the whole bucket)", _prefix, check, blank_is_unset=False)


def text() -> Kind:
    return Kind("text", str.strip, lambda v: None if isinstance(v, str) and v else "must not be empty")


def var(
    name: str,
    kind: Kind,
    default: Any = MISSING,
    *,
    also: tuple[str, ...] = (),
    secret: bool = False,
    doc_default: str | None = None,
) -> Any:
    """A field read from the variable `name` (or, unset, from each of `also` in turn). `secret` keeps the
    value out of repr; `doc_default` is the default as docs/configuration.md shows it when it is not the
    field's own (computed, or None meaning something)."""
    metadata = {"env": (name, *also), "kind": kind, "doc_default": doc_default}
    return field(default=default, repr=not secret, metadata=metadata)


def names_of(f: Field) -> tuple[str, ...]:
    return f.metadata["env"]


def _declared(cls: type) -> list[Field]:
    return [f for f in fields(cls) if "kind" in f.metadata]


def refusal(name: str, value: Any, reason: str) -> ConfigError:
    return ConfigError(f"{name} {reason}, got {value!r}")


def read_field(f: Field, env: Mapping[str, str]) -> tuple[Any, str] | None:
    """(value, variable) of the first of the field's variables that is set, parsed and checked; None if
    none is set."""
    kind: Kind = f.metadata["kind"]
    for name in names_of(f):
        raw = env.get(name)
        if raw is None or (kind.blank_is_unset and not raw.strip()):
            continue
        try:
            value = kind.parse(raw)
        except Refused as refused:
            raise refusal(name, raw, str(refused)) from None
        if reason := kind.check(value):
            raise refusal(name, raw, reason)
        return value, name
    return None


@dataclass(frozen=True, kw_only=True)
class EnvSettings:
    """A component's settings: every field is a `var`, read in `from_env` and checked when built."""

    # The component as docs/configuration.md names it in its "read by" column.
    component: ClassVar[str] = ""
    # The modules whose settings these are (the reference says which code reads each variable).
    readers: ClassVar[str] = ""
    # Appended to "X is not set" for a variable without a default.
    unset_hint: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in _declared(self):
            value = getattr(self, f.name)
            if value is not None and (reason := f.metadata["kind"].check(value)):
                raise refusal(names_of(f)[0], value, reason)

    @classmethod
    def variables(cls) -> dict[str, Field]:
        """Every environment variable the class reads, to the field that holds it."""
        return {name: f for f in _declared(cls) for name in names_of(f)}

    @classmethod
    def read(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """The fields the environment sets, parsed: unset ones are left to the class's defaults."""
        values: dict[str, Any] = {}
        for f in _declared(cls):
            if (found := read_field(f, env)) is not None:
                values[f.name] = found[0]
        return values

    @classmethod
    def read_one(cls, field_name: str, environ: Mapping[str, str] | None = None) -> Any:
        """One field's value from the environment (its default when unset), parsed and checked, without
        the rest: for a value needed where the whole settings are not (a retry delay)."""
        (f,) = (f for f in _declared(cls) if f.name == field_name)
        found = read_field(f, os.environ if environ is None else environ)
        return f.default if found is None else found[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        values = cls.read(os.environ if environ is None else environ)
        for f in _declared(cls):
            required = f.default is MISSING and f.default_factory is MISSING
            if required and f.name not in values:
                raise ConfigError(f"{names_of(f)[0]} is not set{cls.unset_hint}")
        return cls(**values)
