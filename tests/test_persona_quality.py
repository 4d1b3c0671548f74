"""Quality of the built-in persona content: counts, vocabulary, uniqueness, no copied text."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

from dreamteam.personas import DIRECTIONS, TECHNIQUES, Persona, PromptView, render_prompt
from dreamteam.personas import load_library as _load_library
from dreamteam.personas.library import check_files
from dreamteam.records import Mode

MINIMUM_PER_MODE = {Mode.SAVANT: 36, Mode.COLLABORATOR: 19, Mode.SPECIALIST: 34}
# The two seed prompts share phrasing with each other; that pair alone is exempt.
SEED_SLUGS = frozenset({"archimedes", "aristotle"})
SIMILARITY = 0.8  # Jaccard over word 3-shingles above which two sentences are near-duplicates
MIN_WORDS = 5  # shorter sentences are too generic to call copied
MAX_FLAGGED_SHARE = 0.01  # fail when more than 1% of personas have any near-duplicate
NAME_STOPWORDS = frozenset({"the", "of", "de", "von", "van", "da", "al", "ibn", "la", "le", "du"})

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")


@pytest.fixture(scope="module")
def library() -> list[Persona]:
    return list(_load_library())


def _persona_sentences(persona: Persona) -> Iterator[str]:
    texts = [persona.biography, persona.trait]
    texts += [b.text for b in persona.breakthroughs]
    texts += [t.text for t in persona.techniques]
    texts += [d.text for d in persona.directions]
    for text in texts:
        yield from (s for s in _SENTENCE_END.split(text) if s)


def _shingles(sentence: str, name_words: frozenset[str]) -> frozenset[tuple[str, ...]]:
    words = [w for w in _WORD.findall(sentence.lower()) if w not in name_words]
    if len(words) < MIN_WORDS:
        return frozenset()
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def _near_duplicates(
    personas: list[Persona],
) -> list[tuple[float, str, str, str, str]]:
    """Pairs of sentences from different personas above SIMILARITY (prefix-filtered join)."""
    items: list[tuple[str, str, frozenset[tuple[str, ...]]]] = []
    for persona in personas:
        name_words = frozenset(_WORD.findall(persona.name.lower())) - NAME_STOPWORDS
        for sentence in dict.fromkeys(_persona_sentences(persona)):
            shingles = _shingles(sentence, name_words)
            if shingles:
                items.append((persona.slug, sentence, shingles))

    # Order each set's shingles rarest first: two sets with Jaccard >= t must share one of
    # the first n - ceil(t * n) + 1 shingles of each, so only those are indexed and probed.
    frequency = Counter(s for _, _, shingles in items for s in shingles)
    index: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)
    found: list[tuple[float, str, str, str, str]] = []
    for i, (slug, sentence, shingles) in enumerate(items):
        ordered = sorted(shingles, key=lambda s: (frequency[s], s))
        prefix = ordered[: len(ordered) - math.ceil(SIMILARITY * len(ordered)) + 1]
        candidates = {j for s in prefix for j in index[s]}
        for j in sorted(candidates):
            other_slug, other_sentence, other = items[j]
            if other_slug == slug or {slug, other_slug} <= SEED_SLUGS:
                continue
            similarity = len(shingles & other) / len(shingles | other)
            if similarity > SIMILARITY:
                found.append((similarity, other_slug, other_sentence, slug, sentence))
        for s in prefix:
            index[s].append(i)
    return found


def test_every_builtin_file_is_valid() -> None:
    failures = [check.error for check in check_files() if check.persona is None]
    assert not failures, "\n".join(str(f) for f in failures)


@pytest.mark.parametrize("mode", list(MINIMUM_PER_MODE))
def test_enough_personas_per_mode(library: list[Persona], mode: Mode) -> None:
    count = sum(p.mode is mode for p in library)
    assert count >= MINIMUM_PER_MODE[mode], (
        f"{count} {mode} personas, want >= {MINIMUM_PER_MODE[mode]}"
    )


def test_technique_and_direction_keys_are_in_the_vocabulary(library: list[Persona]) -> None:
    for persona in library:
        assert set(persona.technique_keys) <= set(TECHNIQUES), persona.slug
        assert set(persona.direction_keys) <= set(DIRECTIONS), persona.slug
        assert len(set(persona.technique_keys)) == len(persona.technique_keys), persona.slug


def test_slugs_and_names_are_unique(library: list[Persona]) -> None:
    slugs = Counter(p.slug for p in library)
    names = Counter(p.name.casefold() for p in library)
    assert not [s for s, n in slugs.items() if n > 1]
    assert not [s for s, n in names.items() if n > 1]


def test_technique_choices_vary_across_personas(library: list[Persona]) -> None:
    # The offline agent draws its priors from these keys: one set copied everywhere
    # would make every persona propose the same changes.
    sets = Counter(frozenset(p.technique_keys) for p in library)
    key_set, count = sets.most_common(1)[0]
    allowed = max(2, len(library) // 10)
    assert count <= allowed, f"{count} personas share the technique set {sorted(key_set)}"


def test_every_persona_renders(library: list[Persona]) -> None:
    for persona in library:
        for view in (PromptView(), PromptView(files=("train.py",))):
            prompt = render_prompt(persona, view)
            assert prompt.startswith(f"You are {persona.name}, "), persona.slug
            assert "  " not in prompt.replace("```", ""), persona.slug


def test_no_near_duplicate_text_between_personas(library: list[Persona]) -> None:
    pairs = _near_duplicates(library)
    flagged = {slug for _, a, _, b, _ in pairs for slug in (a, b)}
    report = "\n".join(
        f"{similarity:.2f} {a}: {sa!r}\n     {b}: {sb!r}"
        for similarity, a, sa, b, sb in sorted(pairs, reverse=True)
    )
    if pairs:
        print(report)
    assert len(flagged) <= MAX_FLAGGED_SHARE * len(library), (
        f"{len(flagged)} of {len(library)} personas share near-duplicate sentences:\n{report}"
    )


def test_near_duplicate_guard_catches_a_copied_sentence(library: list[Persona]) -> None:
    archimedes = next(p for p in library if p.slug == "archimedes")
    copied = Persona(
        **{
            **archimedes.__dict__,
            "slug": "copycat",
            "name": "Copy Cat",
            "trait": "You are a copy cat.",
            "biography": "Although few details of his life are known, he is regarded as one "
            "of the leading scientists in classical antiquity!",
        }
    )
    pairs = _near_duplicates([archimedes, copied])
    assert any("classical antiquity" in sentence for _, _, sentence, _, _ in pairs)
