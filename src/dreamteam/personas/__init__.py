"""The persona library: persona data files, their validation, and prompt rendering.

lib = load_library()
print(render_prompt(lib.get("archimedes")))
"""

from dreamteam.personas.library import PersonaLibrary, load_library, validate_path
from dreamteam.personas.render import PromptView, render_prompt
from dreamteam.personas.schema import Persona
from dreamteam.personas.vocabulary import DIRECTIONS, TECHNIQUES

__all__ = [
    "DIRECTIONS",
    "TECHNIQUES",
    "Persona",
    "PersonaLibrary",
    "PromptView",
    "load_library",
    "render_prompt",
    "validate_path",
]
