"""The persona library: the built-in persona files plus any user directories, indexed by slug.

A directory of personas holds `<mode>/<slug>.toml` files, flat `<slug>.toml` files whose `mode`
field says the mode, or both. When several sources define the same slug the later one wins,
so a user directory overrides a built-in persona of the same slug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from dreamteam.errors import PersonaError
from dreamteam.personas.schema import Persona, load_persona_file
from dreamteam.personas.vocabulary import TECHNIQUES
from dreamteam.records import Mode

_BUILTIN_ROOT: Final = Path(__file__).resolve().parent
_MODE_ORDER: Final = {mode: rank for rank, mode in enumerate(Mode)}
_SUFFIX: Final = ".toml"


@dataclass(frozen=True)
class FileCheck:
    """The outcome of validating one persona file: a persona, or the error message."""

    label: str  # how messages name the file
    persona: Persona | None
    error: str | None = None  # the PersonaError message when persona is None


def builtin_dir() -> Path:
    """The directory holding the built-in `<mode>/<slug>.toml` persona files."""
    return _BUILTIN_ROOT


def _label(path: Path) -> str:
    # Built-in files are named from the package ("personas/savant/x.toml") so that messages
    # read the same wherever the package is installed.
    try:
        return path.resolve().relative_to(_BUILTIN_ROOT.parent).as_posix()
    except ValueError:
        return str(path)


def _parse_mode(value: Mode | str) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        known = ", ".join(m.value for m in Mode)
        raise PersonaError(f"unknown mode '{value}' (known: {known})") from None


def persona_files(path: Path) -> list[tuple[Path, Mode | None]]:
    """The persona files at a file or directory, each with the mode its folder implies (if any)."""
    if path.is_file():
        folder = path.parent.name
        return [(path, Mode(folder) if folder in _MODE_ORDER else None)]
    if not path.is_dir():
        raise PersonaError(f"{path}: no such persona file or directory")
    found: list[tuple[Path, Mode | None]] = [
        (file, None) for file in sorted(path.glob(f"*{_SUFFIX}")) if file.is_file()
    ]
    for mode in Mode:
        found += [(file, mode) for file in sorted((path / mode.value).glob(f"*{_SUFFIX}"))]
    return found


def _load_files(files: Sequence[tuple[Path, Mode | None]]) -> list[Persona]:
    """Load files that form one source; a slug defined twice within it is an error."""
    loaded: dict[str, Persona] = {}
    for file, mode in files:
        persona = load_persona_file(file, label=_label(file), expected_mode=mode)
        earlier = loaded.get(persona.slug)
        if earlier is not None and earlier.source is not None:
            raise PersonaError(
                f"{_label(file)}: slug '{persona.slug}' is already defined by "
                f"{_label(earlier.source)}"
            )
        loaded[persona.slug] = persona
    return list(loaded.values())


def validate_path(path: Path) -> list[Persona]:
    """Validate one persona file or a directory of them; raise PersonaError on the first fault."""
    files = persona_files(path)
    if not files:
        raise PersonaError(
            f"{path}: no persona files found (expected <mode>/<slug>{_SUFFIX} or <slug>{_SUFFIX})"
        )
    return _load_files(files)


def check_files(path: Path | None = None) -> list[FileCheck]:
    """Validate each persona file at `path` (default: the built-in ones) on its own.

    Unlike validate_path this does not stop at the first fault: every file gets a FileCheck,
    and a file repeating an earlier file's slug fails.
    """
    files = persona_files(builtin_dir() if path is None else path)
    if path is not None and not files:
        raise PersonaError(
            f"{path}: no persona files found (expected <mode>/<slug>{_SUFFIX} or <slug>{_SUFFIX})"
        )
    checks: list[FileCheck] = []
    first_file: dict[str, str] = {}
    for file, mode in files:
        label = _label(file)
        try:
            persona = load_persona_file(file, label=label, expected_mode=mode)
        except PersonaError as exc:
            checks.append(FileCheck(label, None, str(exc)))
            continue
        if persona.slug in first_file:
            message = (
                f"{label}: slug '{persona.slug}' is already defined by {first_file[persona.slug]}"
            )
            checks.append(FileCheck(label, None, message))
            continue
        first_file[persona.slug] = label
        checks.append(FileCheck(label, persona))
    return checks


class PersonaLibrary:
    """An immutable, slug-indexed collection of personas, ordered by mode then slug."""

    def __init__(self, personas: Iterable[Persona]) -> None:
        index: dict[str, Persona] = {}
        for persona in sorted(personas, key=lambda p: (_MODE_ORDER[p.mode], p.slug)):
            if persona.slug in index:
                raise PersonaError(f"persona slug '{persona.slug}' is defined twice")
            index[persona.slug] = persona
        self._by_slug: MappingProxyType[str, Persona] = MappingProxyType(index)

    def __iter__(self) -> Iterator[Persona]:
        return iter(self._by_slug.values())

    def __len__(self) -> int:
        return len(self._by_slug)

    def __contains__(self, slug: object) -> bool:
        return slug in self._by_slug

    def __repr__(self) -> str:
        return f"PersonaLibrary({len(self)} personas)"

    @property
    def slugs(self) -> tuple[str, ...]:
        """Every slug, in library order."""
        return tuple(self._by_slug)

    def get(self, slug: str) -> Persona:
        """The persona with this slug; PersonaError with close matches if there is none."""
        persona = self._by_slug.get(slug)
        if persona is not None:
            return persona
        close = difflib.get_close_matches(slug.strip().lower(), self.slugs, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise PersonaError(
            f"no persona named '{slug}'{hint}; `dreamteam personas list` shows them all"
        )

    def select(
        self,
        modes: Iterable[Mode | str] | None = None,
        tags: Iterable[str] | None = None,
        slugs: Iterable[str] | None = None,
    ) -> tuple[Persona, ...]:
        """Personas passing every given filter.

        `modes`: any of these modes. `tags`: any of these tags, matched case-insensitively
        against a persona's tags and disciplines. `slugs`: exactly these personas, in the
        order given (an unknown slug is a PersonaError).
        """
        pool: Iterable[Persona] = self if slugs is None else [self.get(s) for s in slugs]
        if modes is not None:
            wanted_modes = {_parse_mode(m) for m in modes}
            pool = [p for p in pool if p.mode in wanted_modes]
        if tags is not None:
            wanted_tags = {t.strip().lower() for t in tags}
            pool = [p for p in pool if wanted_tags & {*p.tags, *p.disciplines}]
        return tuple(pool)

    def by_technique(self, key: str) -> tuple[Persona, ...]:
        """Personas that connect to this technique key (e.g. "rope"), in library order."""
        if key not in TECHNIQUES:
            close = difflib.get_close_matches(key, list(TECHNIQUES), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(TECHNIQUES)
            raise PersonaError(f"unknown technique '{key}'{hint} (known: {known})")
        return tuple(p for p in self if key in p.technique_keys)


def load_library(extra_dirs: Sequence[Path] = ()) -> PersonaLibrary:
    """Load the built-in personas, then each user directory in turn (later slugs override)."""
    personas = {p.slug: p for p in _load_files(persona_files(builtin_dir()))}
    for directory in extra_dirs:
        if not directory.is_dir():
            raise PersonaError(f"{directory}: persona directory not found")
        files = persona_files(directory)
        if not files:
            raise PersonaError(
                f"{directory}: no persona files found "
                f"(expected <mode>/<slug>{_SUFFIX} or <slug>{_SUFFIX})"
            )
        personas.update((p.slug, p) for p in _load_files(files))
    return PersonaLibrary(personas.values())
