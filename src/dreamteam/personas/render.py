"""Rendering a persona into its prompt text with the mode's jinja template.

The templates live in `templates/`: `base.j2` holds the skeleton every prompt shares and
`<mode>.j2` fills in the wording for that mode. With the default PromptView a savant renders
exactly like the seed prompts this project started from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

import jinja2

from dreamteam.errors import TaskError
from dreamteam.personas.schema import Persona

_TEMPLATES: Final = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class PromptView:
    """The task as the prompt names it to the model.

    `files` are the file names shown (the first is the training script), `entry_point` the
    function the harness calls in it and `returns` what that function must return. The defaults
    are the seeds' wording.
    """

    files: tuple[str, ...] = ("train_mps.py", "model.py")
    entry_point: str = "train"
    returns: str = "best_vloss, elapsed_min"

    def __post_init__(self) -> None:
        # A list would make the view unhashable; accept any sequence, keep a tuple.
        object.__setattr__(self, "files", tuple(self.files))
        if not self.files:
            raise TaskError("a prompt needs at least one task file to show the model")
        if len(set(self.files)) != len(self.files):
            raise TaskError(f"task files listed twice in {self.files!r}")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # One environment per process: jinja caches the compiled templates on it.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text prompts, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,  # the seeds end without a newline
        auto_reload=False,
    )


def render_prompt(persona: Persona, view: PromptView = PromptView()) -> str:
    """The full prompt text for a persona, describing the task through `view`."""
    template = _environment().get_template(f"{persona.mode.value}.j2")
    return template.render(p=persona, view=view)
