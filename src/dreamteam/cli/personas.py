"""`dreamteam personas ...`: list, show and validate the persona library.

Errors are raised as PersonaError for the main CLI to print as one line and exit 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from dreamteam.errors import PersonaError
from dreamteam.personas import load_library, render_prompt
from dreamteam.personas.library import check_files

app = typer.Typer(
    name="personas",
    help="Browse and check the persona library.",
    no_args_is_help=True,
    add_completion=False,
)

_PersonaDirs = Annotated[
    list[Path] | None,
    typer.Option(
        "--persona-dir",
        help="A directory of extra personas (<mode>/<slug>.toml or <slug>.toml); repeatable. "
        "Its personas override built-in ones with the same slug.",
        file_okay=False,
    ),
]


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


@app.command("list")
def list_personas(
    mode: Annotated[
        str | None, typer.Option("--mode", help="Only this mode: savant, collaborator, specialist.")
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Only personas with this tag or discipline.")
    ] = None,
    persona_dir: _PersonaDirs = None,
) -> None:
    """List the personas as a table."""
    library = load_library(persona_dir or ())
    chosen = library.select(
        modes=None if mode is None else [mode], tags=None if tag is None else [tag]
    )
    console = Console()
    wide = console.width >= 100  # below that the era gives its room to the rest
    # the slug is what users type: never wrapped; the other columns give way
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("slug", no_wrap=True, min_width=max((len(p.slug) for p in chosen), default=4))
    table.add_column("mode", no_wrap=True)
    table.add_column("name")
    if wide:
        table.add_column("era")
    table.add_column("disciplines", ratio=1)
    for persona in chosen:
        era = [persona.era] if wide else []
        table.add_row(
            persona.slug, persona.mode.value, persona.name, *era, ", ".join(persona.disciplines)
        )
    console.print(table)
    console.print(f"{_count(len(chosen), 'persona')} of {len(library)}")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The persona's slug, e.g. archimedes.")],
    persona_dir: _PersonaDirs = None,
) -> None:
    """Print the persona's rendered prompt exactly as an agent receives it."""
    prompt = render_prompt(load_library(persona_dir or ()).get(name))
    # Written raw, without a newline added, so the output is byte-exact.
    sys.stdout.write(prompt)
    sys.stdout.flush()


@app.command("validate")
def validate(
    path: Annotated[
        Path | None,
        typer.Argument(help="A persona file or directory; default: the built-in library."),
    ] = None,
) -> None:
    """Check persona files against the schema; print one line per file."""
    checks = check_files(path)
    for check in checks:
        if check.persona is None:
            typer.echo(f"PersonaError: {check.error}", err=True)
        else:
            typer.echo(f"OK {check.label} ({check.persona.mode.value}: {check.persona.name})")
    failed = sum(check.persona is None for check in checks)
    if failed:
        raise PersonaError(
            f"{failed} of {_count(len(checks), 'persona file')} failed validation; "
            "fix the fields named above"
        )
    typer.echo(f"{_count(len(checks), 'persona file')} valid")
