"""The Persona record and the validation that turns one persona TOML file into it.

Every problem is reported as one PersonaError line naming the file and the field, e.g.
`personas/savant/x.toml: field 'techniques[3].key': unknown technique 'foo' (known: ...)`.
Array positions in field names count from 0, as in the TOML array they index.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from dreamteam.errors import PersonaError
from dreamteam.personas.vocabulary import (
    CONTEMPORARY,
    DIRECTIONS,
    SAVANT_ERAS,
    STANDARD_FIELDS,
    TECHNIQUES,
)
from dreamteam.records import Mode

SLUG_PATTERN: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
"""A persona slug: lower-case words joined by single hyphens (`ada-lovelace`)."""

_BREAKTHROUGHS: Final = 5
_TECHNIQUES: Final = (8, 12)
_DIRECTIONS: Final = (8, 13)
_DISCIPLINES: Final = (1, 4)
_TAGS: Final = (2, 8)
_FIELDS: Final = (1, 40)

_TOP_LEVEL: Final = (
    "name",
    "mode",
    "identity",
    "biography",
    "trait",
    "work",
    "understanding",
    "era",
    "disciplines",
    "tags",
    "fields",
    "breakthroughs",
    "techniques",
    "directions",
)
_TOML_TYPES: Final = {
    str: "a string",
    int: "an integer",
    float: "a float",
    bool: "a boolean",
    list: "an array",
    dict: "a table",
}


@dataclass(frozen=True)
class Breakthrough:
    """One of the five "Breakthrough Connections" of a persona."""

    title: str
    text: str


@dataclass(frozen=True)
class Technique:
    """A modern LLM technique the persona connects to, keyed into TECHNIQUES."""

    key: str
    text: str
    qualifier: str | None = None

    @property
    def title(self) -> str:
        """The heading shown in the prompt, e.g. "FlashAttention & Geometric Efficiency"."""
        base = TECHNIQUES[self.key]
        return f"{base} & {self.qualifier}" if self.qualifier else base


@dataclass(frozen=True)
class Direction:
    """A future research direction the persona connects to, keyed into DIRECTIONS."""

    key: str
    text: str

    @property
    def title(self) -> str:
        """The heading shown in the prompt, e.g. "Memory Modules"."""
        return DIRECTIONS[self.key]


@dataclass(frozen=True)
class Persona:
    """One validated persona: everything a prompt template needs, plus where it came from."""

    slug: str
    mode: Mode
    name: str
    identity: str
    biography: str
    trait: str
    work: str
    understanding: str
    era: str
    disciplines: tuple[str, ...]
    tags: tuple[str, ...]
    breakthroughs: tuple[Breakthrough, ...]
    techniques: tuple[Technique, ...]
    directions: tuple[Direction, ...]
    fields: tuple[str, ...] = STANDARD_FIELDS
    source: Path | None = None

    @property
    def technique_keys(self) -> tuple[str, ...]:
        """The persona's technique keys in file order (the offline agent's priors)."""
        return tuple(t.key for t in self.techniques)

    @property
    def direction_keys(self) -> tuple[str, ...]:
        """The persona's direction keys in file order."""
        return tuple(d.key for d in self.directions)


class _Checker:
    """Reads fields out of a parsed TOML table, failing with the file and field named."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, field: str, message: str) -> NoReturn:
        raise PersonaError(f"{self.origin}: field '{field}': {message}")

    def reject_unknown(self, table: Mapping[str, Any], allowed: Sequence[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                hint = _did_you_mean(key, allowed)
                self.fail(f"{prefix}{key}", f"unknown field{hint} (allowed: {', '.join(allowed)})")

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        field: str,
        *,
        required: bool = True,
        empty_ok: bool = False,
    ) -> str | None:
        if key not in table:
            if required:
                self.fail(field, "missing")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.fail(field, f"expected a string, got {_toml_type(value)}")
        if not value and not empty_ok:
            self.fail(field, "must not be empty")
        if "\n" in value or "\r" in value:
            self.fail(field, "must be a single line")
        if value != value.strip():
            self.fail(field, "has leading or trailing whitespace")
        return value

    def text(
        self, table: Mapping[str, Any], key: str, field: str, *, empty_ok: bool = False
    ) -> str:
        value = self.string(table, key, field, empty_ok=empty_ok)
        assert value is not None  # required=True fails instead of returning None
        return value

    def array(
        self, table: Mapping[str, Any], key: str, field: str, bounds: tuple[int, int]
    ) -> list[Any]:
        if key not in table:
            self.fail(field, "missing")
        value = table[key]
        if not isinstance(value, list):
            self.fail(field, f"expected an array, got {_toml_type(value)}")
        low, high = bounds
        if not low <= len(value) <= high:
            wanted = f"exactly {low}" if low == high else f"{low} to {high}"
            self.fail(field, f"expected {wanted} entries, got {len(value)}")
        return value

    def words(
        self,
        table: Mapping[str, Any],
        key: str,
        bounds: tuple[int, int],
        *,
        lower: bool,
    ) -> tuple[str, ...]:
        items = self.array(table, key, key, bounds)
        seen: set[str] = set()
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            self.text({key: item}, key, where)
            if lower and item != item.lower():
                self.fail(where, f"must be lower-case, got '{item}'")
            if item in seen:
                self.fail(where, f"duplicate entry '{item}'")
            seen.add(item)
        return tuple(items)

    def tables(
        self,
        table: Mapping[str, Any],
        key: str,
        bounds: tuple[int, int],
        allowed: Sequence[str],
    ) -> list[Mapping[str, Any]]:
        items = self.array(table, key, key, bounds)
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.fail(f"{key}[{i}]", f"expected a table, got {_toml_type(item)}")
            self.reject_unknown(item, allowed, f"{key}[{i}].")
        return items

    def keyed(
        self, items: Sequence[Mapping[str, Any]], key: str, kind: str, vocabulary: Mapping[str, str]
    ) -> list[str]:
        """Check each entry's `key` against a vocabulary and against the earlier entries."""
        keys: list[str] = []
        for i, item in enumerate(items):
            where = f"{key}[{i}].key"
            value = self.text(item, "key", where)
            if value not in vocabulary:
                hint = _did_you_mean(value, list(vocabulary))
                known = ", ".join(vocabulary)
                self.fail(where, f"unknown {kind} '{value}'{hint} (known: {known})")
            if value in keys:
                self.fail(
                    where, f"duplicate {kind} '{value}' (already at {key}[{keys.index(value)}])"
                )
            keys.append(value)
        return keys


def _toml_type(value: object) -> str:
    for kind, label in _TOML_TYPES.items():
        # bool is a subclass of int: test the exact type first.
        if type(value) is kind:
            return label
    return type(value).__name__


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_persona(
    data: Mapping[str, Any],
    *,
    slug: str,
    origin: str,
    source: Path | None = None,
    expected_mode: Mode | None = None,
) -> Persona:
    """Validate a parsed persona table and build the Persona; `origin` names it in errors."""
    check = _Checker(origin)
    if not SLUG_PATTERN.fullmatch(slug):
        raise PersonaError(
            f"{origin}: slug '{slug}' is not valid: use lower-case words joined by hyphens, "
            "e.g. 'ada-lovelace'"
        )
    check.reject_unknown(data, _TOP_LEVEL, "")

    name = check.text(data, "name", "name")
    mode_text = check.text(data, "mode", "mode")
    known_modes = [m.value for m in Mode]
    if mode_text not in known_modes:
        check.fail("mode", f"unknown mode '{mode_text}' (known: {', '.join(known_modes)})")
    mode = Mode(mode_text)
    if expected_mode is not None and mode is not expected_mode:
        check.fail("mode", f"'{mode}' does not match the folder '{expected_mode}' it is in")

    identity = check.text(data, "identity", "identity")
    if not identity.endswith("."):
        check.fail("identity", "must end with '.' (it completes \"You are {name}, ...\")")
    biography = check.text(data, "biography", "biography", empty_ok=True)
    trait = check.text(data, "trait", "trait")
    if not (trait.startswith("You ") and trait.endswith(".")):
        check.fail("trait", "must be one sentence that starts with 'You ' and ends with '.'")
    work = check.text(data, "work", "work")
    understanding = check.text(data, "understanding", "understanding")
    for field, value in (("work", work), ("understanding", understanding)):
        if value.endswith("."):
            check.fail(field, "must not end with '.' (the template continues the sentence)")

    era = check.text(data, "era", "era")
    eras = SAVANT_ERAS if mode is Mode.SAVANT else (CONTEMPORARY,)
    if era not in eras:
        check.fail("era", f"unknown era '{era}' for a {mode} (known: {', '.join(eras)})")
    disciplines = check.words(data, "disciplines", _DISCIPLINES, lower=True)
    tags = check.words(data, "tags", _TAGS, lower=True)
    fields = STANDARD_FIELDS
    if "fields" in data:
        fields = check.words(data, "fields", _FIELDS, lower=False)

    breakthroughs, techniques, directions = _lists(check, data)

    return Persona(
        slug=slug,
        mode=mode,
        name=name,
        identity=identity,
        biography=biography,
        trait=trait,
        work=work,
        understanding=understanding,
        era=era,
        disciplines=disciplines,
        tags=tags,
        breakthroughs=breakthroughs,
        techniques=techniques,
        directions=directions,
        fields=fields,
        source=source,
    )


def _lists(
    check: _Checker, data: Mapping[str, Any]
) -> tuple[tuple[Breakthrough, ...], tuple[Technique, ...], tuple[Direction, ...]]:
    """A persona's breakthroughs, techniques and directions, each entry checked."""
    breakthrough_tables = check.tables(
        data, "breakthroughs", (_BREAKTHROUGHS, _BREAKTHROUGHS), ("title", "text")
    )
    breakthroughs = tuple(
        Breakthrough(
            title=check.text(b, "title", f"breakthroughs[{i}].title"),
            text=check.text(b, "text", f"breakthroughs[{i}].text"),
        )
        for i, b in enumerate(breakthrough_tables)
    )
    technique_tables = check.tables(data, "techniques", _TECHNIQUES, ("key", "qualifier", "text"))
    technique_keys = check.keyed(technique_tables, "techniques", "technique", TECHNIQUES)
    techniques = tuple(
        Technique(
            key=key,
            qualifier=check.string(t, "qualifier", f"techniques[{i}].qualifier", required=False),
            text=check.text(t, "text", f"techniques[{i}].text"),
        )
        for i, (key, t) in enumerate(zip(technique_keys, technique_tables, strict=True))
    )
    direction_tables = check.tables(data, "directions", _DIRECTIONS, ("key", "text"))
    direction_keys = check.keyed(direction_tables, "directions", "direction", DIRECTIONS)
    directions = tuple(
        Direction(key=key, text=check.text(d, "text", f"directions[{i}].text"))
        for i, (key, d) in enumerate(zip(direction_keys, direction_tables, strict=True))
    )
    return breakthroughs, techniques, directions


def load_persona_file(
    path: Path, *, label: str | None = None, expected_mode: Mode | None = None
) -> Persona:
    """Read and validate one `<slug>.toml` persona file; `label` is how errors name it."""
    origin = label or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PersonaError(f"{origin}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PersonaError(f"{origin}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PersonaError(f"{origin}: invalid TOML: {exc}") from exc
    return parse_persona(
        data, slug=path.stem, origin=origin, source=path, expected_mode=expected_mode
    )
