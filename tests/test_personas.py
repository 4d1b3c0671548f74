"""The persona library: schema errors, loading and overrides, selection, rendering, the CLI."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import dreamteam.personas as personas_api
from dreamteam.cli.personas import app as personas_app
from dreamteam.errors import PersonaError, TaskError
from dreamteam.personas import (
    TECHNIQUES,
    PromptView,
    load_library,
    render_prompt,
    validate_path,
)
from dreamteam.personas.library import builtin_dir, check_files
from dreamteam.records import Mode

SEEDS = Path(__file__).parents[2] / "shared" / "seeds"
SEED_FILES = {"archimedes": "000_78d74014cf17ed61.txt", "aristotle": "004_7abbac00ee541fcf.txt"}


# --- helpers -------------------------------------------------------------------------------


def _seed_text(slug: str) -> str:
    path = SEEDS / SEED_FILES[slug]
    if not path.is_file():
        pytest.skip(f"seed prompts not found at {SEEDS} (the ../shared beside the repo)")
    return path.read_text(encoding="utf-8")


def _base_data() -> dict[str, Any]:
    """A valid persona as a dict: the built-in Archimedes file."""
    return tomllib.loads((builtin_dir() / "savant" / "archimedes.toml").read_text("utf-8"))


def _toml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # JSON strings and numbers are valid TOML values


def _dump(data: dict[str, Any]) -> str:
    """Serialise a persona dict to TOML (top-level values, then arrays of tables)."""
    lines: list[str] = []
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, items in tables:
        for item in items:
            lines += ["", f"[[{key}]]"] + [f"{k} = {_toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(data), encoding="utf-8")
    return path


def _as_mode(data: dict[str, Any], mode: Mode, name: str) -> dict[str, Any]:
    return {**data, "mode": mode.value, "era": "contemporary", "name": name}


def _error_for(tmp_path: Path, data: dict[str, Any], name: str = "x.toml") -> str:
    path = _write(tmp_path / "savant" / name, data)
    with pytest.raises(PersonaError) as caught:
        validate_path(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def _cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(personas_app, name="personas")
    return root


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(SEED_FILES))
def test_seed_persona_renders_byte_for_byte(slug: str) -> None:
    expected = _seed_text(slug)
    assert render_prompt(load_library().get(slug)) == expected


def test_technique_title_appends_qualifier() -> None:
    archimedes = load_library().get("archimedes")
    titles = [t.title for t in archimedes.techniques]
    assert titles[2] == "FlashAttention & Geometric Efficiency"
    assert titles[4] == TECHNIQUES["rope"]


def test_one_file_view_adapts_constraints_and_answer_format() -> None:
    view = PromptView(files=("train.py",), entry_point="fit", returns="val_loss")
    prompt = render_prompt(load_library().get("archimedes"), view)
    assert "constraints given in the `train.py` file." in prompt
    assert "The return values of the `fit()` function in `train.py` should be" in prompt
    assert "to be `val_loss`." in prompt
    assert "Make substantial changes to `train.py`, ensuring your modifications are:" in prompt
    assert "train_mps.py" not in prompt
    assert "model.py" not in prompt
    assert prompt.count("```python\n") == 1
    assert prompt.endswith("```python\ntrain.py\n# Your modified train.py code here\n```")


def test_three_file_view_lists_every_file() -> None:
    view = PromptView(files=("a.py", "b.py", "c.py"))
    prompt = render_prompt(load_library().get("aristotle"), view)
    assert "Make substantial changes to all of `a.py`, `b.py` and `c.py`, ensuring" in prompt
    assert "If you don't modify a file, include an empty Python block for it." in prompt
    blocks = prompt.split("**Innovation")[1].split("```python\n")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["a.py", "b.py", "c.py"]
    assert "\n```\n\n```python\nb.py\n" in prompt
    assert prompt.endswith("# Your modified c.py code here\n```")


@pytest.mark.parametrize(
    ("mode", "wording"),
    [
        (Mode.COLLABORATOR, "Think about how your role would approach this problem"),
        (Mode.SPECIALIST, "Think about how your field would approach this problem"),
    ],
)
def test_collaborator_and_specialist_keep_skeleton_with_own_wording(
    tmp_path: Path, mode: Mode, wording: str
) -> None:
    path = _write(tmp_path / f"{mode}" / "tester.toml", _as_mode(_base_data(), mode, "the Tester"))
    persona = validate_path(path)[0]
    prompt = render_prompt(persona)
    savant = render_prompt(load_library().get("archimedes"))
    assert prompt.startswith("You are the Tester, a Greek mathematician")
    assert wording in prompt
    assert "in your time" not in prompt
    assert "historical" not in prompt
    # Shared skeleton: the same answer format as the savant prompt.
    tail = "Provide your modified code in separate Python code blocks."
    assert prompt[prompt.index(tail) :] == savant[savant.index(tail) :]
    assert prompt.count("**Modern LLM Connections & Novel Techniques:**") == 1


def test_prompt_view_rejects_no_files_and_keeps_a_tuple() -> None:
    with pytest.raises(TaskError):
        PromptView(files=())
    view = PromptView(files=["train.py"])  # type: ignore[arg-type]
    assert view.files == ("train.py",)
    assert hash(view)


# --- schema errors -------------------------------------------------------------------------


def test_missing_field_is_named(tmp_path: Path) -> None:
    data = _base_data()
    del data["trait"]
    assert _error_for(tmp_path, data).endswith("field 'trait': missing")


def test_wrong_breakthrough_count_is_named(tmp_path: Path) -> None:
    data = _base_data()
    data["breakthroughs"] = data["breakthroughs"][:4]
    message = _error_for(tmp_path, data)
    assert message.endswith("field 'breakthroughs': expected exactly 5 entries, got 4")


def test_unknown_technique_key_lists_known_keys(tmp_path: Path) -> None:
    data = _base_data()
    data["techniques"][3]["key"] = "foo"
    message = _error_for(tmp_path, data)
    assert "field 'techniques[3].key': unknown technique 'foo'" in message
    assert "(known: moe, ssm, flash_attention," in message


def test_misspelt_technique_key_gets_a_suggestion(tmp_path: Path) -> None:
    data = _base_data()
    data["techniques"][0]["key"] = "ropee"
    assert "did you mean 'rope'?" in _error_for(tmp_path, data)


def test_duplicate_technique_key_is_named(tmp_path: Path) -> None:
    data = _base_data()
    data["techniques"][5]["key"] = "moe"
    message = _error_for(tmp_path, data)
    assert (
        "field 'techniques[5].key': duplicate technique 'moe' (already at techniques[0])" in message
    )


def test_unknown_extra_fields_are_errors(tmp_path: Path) -> None:
    data = {**_base_data(), "colour": "blue"}
    assert "field 'colour': unknown field" in _error_for(tmp_path, data)
    data = _base_data()
    data["directions"][2]["qualifier"] = "Extra"
    assert "field 'directions[2].qualifier': unknown field" in _error_for(tmp_path, data)


def test_bad_toml_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "Broken\nmode = savant\n', encoding="utf-8")
    with pytest.raises(PersonaError) as caught:
        validate_path(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 1" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"era": "contemporary"}, "field 'era': unknown era 'contemporary' for a savant"),
        ({"identity": "a Greek mathematician"}, "field 'identity': must end with '.'"),
        ({"trait": "A master of invention."}, "field 'trait': must be one sentence"),
        ({"work": "pioneering work."}, "field 'work': must not end with '.'"),
        ({"tags": ["Geometry", "levers"]}, "field 'tags[0]': must be lower-case"),
        ({"tags": ["geometry"]}, "field 'tags': expected 2 to 8 entries, got 1"),
        ({"biography": "Line one.\nLine two."}, "field 'biography': must be a single line"),
        ({"name": 7}, "field 'name': expected a string, got an integer"),
        ({"mode": "wizard"}, "field 'mode': unknown mode 'wizard'"),
        (
            {"mode": "specialist", "era": "contemporary"},
            "field 'mode': 'specialist' does not match",
        ),
    ],
)
def test_field_rules(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    assert expected in _error_for(tmp_path, {**_base_data(), **change})


def test_file_name_must_be_a_slug(tmp_path: Path) -> None:
    assert "slug 'Bad_Name' is not valid" in _error_for(tmp_path, _base_data(), "Bad_Name.toml")


def test_fields_default_to_the_standard_list_and_may_be_overridden(tmp_path: Path) -> None:
    data = {**_base_data(), "fields": ["information theory", "Fourier analysis"]}
    persona = validate_path(_write(tmp_path / "savant" / "x.toml", data))[0]
    assert persona.fields == ("information theory", "Fourier analysis")
    assert "\ninformation theory, Fourier analysis.\n" in render_prompt(persona)
    assert len(load_library().get("archimedes").fields) == 33


# --- loading, overrides, selection ---------------------------------------------------------


def test_user_dir_overrides_builtin_and_adds_flat_files(tmp_path: Path) -> None:
    builtin = load_library()
    _write(tmp_path / "savant" / "archimedes.toml", {**_base_data(), "name": "Archimedes II"})
    _write(tmp_path / "newcomer.toml", {**_base_data(), "name": "A Newcomer"})
    library = load_library([tmp_path])
    assert library.get("archimedes").name == "Archimedes II"
    assert library.get("archimedes").source == tmp_path / "savant" / "archimedes.toml"
    assert library.get("newcomer").mode is Mode.SAVANT
    assert len(library) == len(builtin) + 1


def test_later_user_dir_wins(tmp_path: Path) -> None:
    for name in ("first", "second"):
        _write(tmp_path / name / "savant" / "archimedes.toml", {**_base_data(), "name": name})
    library = load_library([tmp_path / "first", tmp_path / "second"])
    assert library.get("archimedes").name == "second"


def test_duplicate_slug_within_one_dir_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "savant" / "twin.toml", _base_data())
    _write(tmp_path / "twin.toml", _base_data())
    with pytest.raises(PersonaError, match="slug 'twin' is already defined by"):
        load_library([tmp_path])


def test_missing_user_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="persona directory not found"):
        load_library([tmp_path / "nope"])


def test_unknown_slug_suggests_close_matches() -> None:
    with pytest.raises(
        PersonaError, match=r"no persona named 'archimedez' \(did you mean 'archimedes'"
    ):
        load_library().get("archimedez")


def test_by_technique_finds_the_personas_that_connect_to_it() -> None:
    library = load_library()
    rope = library.by_technique("rope")
    assert {"archimedes", "aristotle"} <= {p.slug for p in rope}
    assert all("rope" in p.technique_keys for p in rope)
    with pytest.raises(PersonaError, match="unknown technique 'rop'"):
        library.by_technique("rop")


def test_select_by_mode_tag_and_slugs(tmp_path: Path) -> None:
    geo = {**_as_mode(_base_data(), Mode.SPECIALIST, "Geo"), "tags": ["zz-geo", "geometry"]}
    _write(tmp_path / "specialist" / "geo.toml", geo)
    _write(tmp_path / "savant" / "geo-savant.toml", {**geo, "mode": "savant", "era": "antiquity"})
    library = load_library([tmp_path])
    savants = library.select(modes=["savant"])
    assert savants and all(p.mode is Mode.SAVANT for p in savants)
    assert [p.slug for p in library.select(tags=["ZZ-geo"])] == ["geo-savant", "geo"]
    assert [p.slug for p in library.select(modes=[Mode.SPECIALIST], tags=["zz-geo"])] == ["geo"]
    tagged = {p.slug for p in library.select(tags=["geometry"])}
    assert {"archimedes", "geo"} <= tagged
    assert "aristotle" not in tagged
    assert [p.slug for p in library.select(slugs=["geo", "aristotle"])] == ["geo", "aristotle"]
    with pytest.raises(PersonaError, match="unknown mode 'wizard'"):
        library.select(modes=["wizard"])


def test_check_files_reports_every_file(tmp_path: Path) -> None:
    _write(tmp_path / "savant" / "good.toml", _base_data())
    _write(tmp_path / "savant" / "bad.toml", {**_base_data(), "era": "future"})
    checks = check_files(tmp_path)
    assert [(c.label.endswith("bad.toml"), c.persona is None) for c in checks] == [
        (True, True),
        (False, False),
    ]


def test_public_api_is_pinned() -> None:
    assert sorted(personas_api.__all__) == [
        "DIRECTIONS",
        "Persona",
        "PersonaLibrary",
        "PromptView",
        "TECHNIQUES",
        "load_library",
        "render_prompt",
        "validate_path",
    ]


# --- CLI -----------------------------------------------------------------------------------


def test_cli_list_shows_a_table_and_a_count(tmp_path: Path) -> None:
    _write(tmp_path / "zeta.toml", {**_base_data(), "name": "Zeta"})
    result = CliRunner().invoke(
        _cli(), ["personas", "list", "--mode", "savant", "--persona-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "archimedes" in result.stdout
    assert "zeta" in result.stdout
    savants = len(load_library([tmp_path]).select(modes=["savant"]))
    assert result.stdout.rstrip().endswith(f"{savants} personas of {len(load_library()) + 1}")


def test_cli_list_filters_by_tag() -> None:
    result = CliRunner().invoke(_cli(), ["personas", "list", "--tag", "buoyancy"])
    assert result.exit_code == 0, result.output
    assert "archimedes" in result.stdout
    assert "aristotle" not in result.stdout


def test_cli_show_prints_the_prompt_exactly() -> None:
    result = CliRunner().invoke(_cli(), ["personas", "show", "aristotle"])
    assert result.exit_code == 0, result.output
    assert result.stdout == render_prompt(load_library().get("aristotle"))


def test_cli_show_unknown_persona_raises_persona_error() -> None:
    result = CliRunner().invoke(_cli(), ["personas", "show", "aristotel"])
    assert result.exit_code != 0
    assert isinstance(result.exception, PersonaError)
    assert "did you mean 'aristotle'" in str(result.exception)


def test_cli_validate_good_dir(tmp_path: Path) -> None:
    _write(tmp_path / "savant" / "good.toml", _base_data())
    result = CliRunner().invoke(_cli(), ["personas", "validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "OK savant/good.toml" in result.stdout or "good.toml (savant:" in result.stdout
    assert result.stdout.rstrip().endswith("1 persona file valid")


def test_cli_validate_malformed_file_fails_naming_the_field(tmp_path: Path) -> None:
    data = _base_data()
    data["breakthroughs"] = data["breakthroughs"][:3]
    path = _write(tmp_path / "savant" / "bad.toml", data)
    result = CliRunner().invoke(_cli(), ["personas", "validate", str(path)])
    assert result.exit_code != 0
    assert "field 'breakthroughs': expected exactly 5 entries, got 3" in result.stderr
    assert isinstance(result.exception, PersonaError)
    assert "1 of 1 persona file failed validation" in str(result.exception)
