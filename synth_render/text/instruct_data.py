"""Instruction data from the synthetic text generators: prompt/response pairs and preference pairs.

Questions come from the pfgen lab-set question makers (`synth_render.text.question_sets.QUESTION_MAKERS`), so a
response is judged by the same keyword rules the lab question sets use: it is correct when every required
(importance 1) rule matches. Why a hash split: a question text belongs to the training or the held-out split by
sha1(seed, question) alone, so the splits are disjoint whatever indices are drawn; questions of the evaluation set
(passed as `exclude`) belong to neither.

Example i of a split is drawn from `SeedSequence(seed, spawn_key=(split stream, i, attempt))`, the first attempt
whose question lands in that split (and is not excluded): it depends on (seed, split, i) only. Its response is one
reference answer of the question, from its own stream. A preference pair keeps that response as `chosen` and
corrupts it into `rejected` (a wrong value swapped in, the value's characters shuffled, or the answer cut before
its value), with the first corruption, in a seeded order, that makes the rules fail.

Drawing it is synthetic data generation, so it lives here (formerly `lab.post.instruct_data`, which re-exports it);
`lab.post.sft` and `lab.post.dpo` train on any objects with the same fields.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab.data.keyword_rules import NEVER, KeywordRule, parse_rule
from lab.core.registry import Registry
from synth_render.text import lexicon as lx
from synth_render.text.question_sets import QUESTION_MAKERS, make_generators
from synth_render.text.world import World

PROMPT_TEMPLATE = "Q: {question}\nA:"  # the pfgen completion layout, so few-shot prompts and SFT prompts agree
RESPONSE_TEMPLATE = " {answer}"
SPLIT_STREAMS = {"train": 21, "heldout": 22}  # distinct from the lab sets' question streams (11, 12, 13)
RESPONSE_STREAM, CORRUPTION_STREAM = 23, 24
MAX_ATTEMPTS = 1000

Rng = np.random.Generator


def _rng(seed: int, *key: int) -> Rng:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass
class InstructDataConfig:
    """Which generators ask the questions, the world they ask about, and the held-out share of questions."""

    generators: list[str] = field(default_factory=lambda: ["world_facts", "arithmetic", "dialogue", "structured"])
    seed: int = 0  # the world's seed (as in the pre-training corpus) and the draws'
    text: dict[str, Any] = field(default_factory=dict)  # generator options, e.g. n_entities, template_depth
    heldout_percent: int = 20

    def validate(self) -> None:
        if not 0 < self.heldout_percent < 100:
            raise ValueError(f"instruct.heldout_percent must be in (0, 100), got {self.heldout_percent}")


@dataclass(frozen=True)
class InstructExample:
    """One question with a reference response and the keyword rules that judge any answer to it."""

    split: str
    index: int
    category: str
    question: str
    response: str
    keywords: tuple[dict[str, Any], ...]

    @property
    def prompt(self) -> str:
        return PROMPT_TEMPLATE.format(question=self.question)

    @property
    def completion(self) -> str:
        return RESPONSE_TEMPLATE.format(answer=self.response)

    def required_rules(self) -> list[KeywordRule]:
        return [rule for rule in map(parse_rule, self.keywords) if rule.importance >= 1]

    def is_correct(self, answer: str) -> bool:
        """Every required keyword rule matches somewhere in the answer."""
        return all(rule.end(answer) != NEVER for rule in self.required_rules())


@dataclass(frozen=True)
class PreferencePair:
    example: InstructExample
    chosen: str  # the completion text (leading space included), as SFT trains on it
    rejected: str
    corruption: str


# ---------------------------------------------------------------------------------------------- corruptions

Corruption = Callable[[str, Sequence[re.Pattern[str]], World, Rng], "str | None"]  # None: does not apply
CORRUPTIONS: Registry[Corruption] = Registry("response corruption")


def _value_pools(world: World) -> list[tuple[str, ...]]:
    return [tuple(p.name for p in world.persons), tuple(q.name for q in world.places), lx.OCCUPATIONS, lx.HOBBIES,
            lx.FOODS, lx.REGIONS]


def _wrong_number(text: str, rng: Rng) -> str:
    """`text` with its first digit run changed to another non-negative number."""
    digits = re.search(r"[0-9]+", text)
    assert digits is not None
    value = int(digits.group())
    offset = int(rng.integers(1, max(3, value // 5) + 1)) * (1 if value < 2 or rng.random() < 0.5 else -1)
    wrong = value + offset if value + offset >= 0 else value + abs(offset)
    return text[: digits.start()] + str(wrong) + text[digits.end() :]


@CORRUPTIONS.register("swap_value")
def swap_value(response: str, patterns: Sequence[re.Pattern[str]], world: World, rng: Rng) -> str | None:
    """Every occurrence of a required value replaced by one wrong value of the same kind (a number or a name)."""
    text = response
    for pattern in patterns:
        found = pattern.search(text)
        if found is None:
            return None
        value = found.group()
        if re.search(r"[0-9]", value):
            wrong = _wrong_number(value, rng)
        else:
            pool = next((p for p in _value_pools(world) if value in p and len(set(p)) > 1), None)
            if pool is None:
                return None
            others = sorted(set(pool) - {value})
            wrong = others[int(rng.integers(len(others)))]
        text = pattern.sub(lambda _: wrong, text)
    return text


@CORRUPTIONS.register("shuffle")
def shuffle_value(response: str, patterns: Sequence[re.Pattern[str]], world: World, rng: Rng) -> str | None:
    """The characters of each required value shuffled (digits of a number, characters of a name or list)."""
    text = response
    for pattern in patterns:
        found = pattern.search(text)
        if found is None or len(set(found.group())) < 2:
            return None
        chars = list(found.group())
        wrong = "".join(chars[int(k)] for k in rng.permutation(len(chars)))
        text = pattern.sub(lambda _: wrong, text)
    return text


@CORRUPTIONS.register("truncate")
def truncate(response: str, patterns: Sequence[re.Pattern[str]], world: World, rng: Rng) -> str | None:
    """The response cut before its first required value: fluent-looking but without the answer."""
    starts = [found.start() for found in (p.search(response) for p in patterns) if found is not None]
    if not starts or min(starts) < 2:
        return None
    return response[: int(rng.integers(1, min(starts) + 1))]


# ------------------------------------------------------------------------------------------------ the data


class InstructData:
    """Instruction examples and preference pairs of one world; `exclude` holds evaluation questions."""

    def __init__(self, config: InstructDataConfig, exclude: Iterable[str] = ()) -> None:
        config.validate()
        self.config = config
        self.generators = make_generators(config.generators, config.seed, config.text)
        self.exclude = frozenset(exclude)

    def split_of(self, question: str) -> str:
        digest = hashlib.sha1(f"{self.config.seed}::{question}".encode("utf-8")).hexdigest()
        return "heldout" if int(digest, 16) % 100 < self.config.heldout_percent else "train"

    def _stream(self, split: str) -> int:
        if split not in SPLIT_STREAMS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLIT_STREAMS)}")
        return SPLIT_STREAMS[split]

    def example(self, split: str, index: int) -> InstructExample:
        """Example `index` of `split`: a function of (seed, split, index) and the excluded questions."""
        stream = self._stream(split)
        if index < 0:
            raise ValueError(f"example index must be >= 0, got {index}")
        generator = self.generators[index % len(self.generators)]
        maker = QUESTION_MAKERS.get(generator.config.name)
        for attempt in range(MAX_ATTEMPTS):
            draft = maker(generator, _rng(self.config.seed, stream, index, attempt))
            if draft is not None and draft.question not in self.exclude and self.split_of(draft.question) == split:
                break
        else:
            raise ValueError(f"{split} example {index}: no {generator.config.name} question in {MAX_ATTEMPTS} draws "
                             f"(the world is too small or every question is excluded; raise n_entities)")
        response = draft.compose(_rng(self.config.seed, RESPONSE_STREAM, stream, index))
        return InstructExample(split, index, draft.category, draft.question, response, tuple(draft.keywords))

    def examples(self, split: str, count: int, start: int = 0) -> list[InstructExample]:
        return [self.example(split, i) for i in range(start, start + count)]

    def pair(self, split: str, index: int) -> PreferencePair:
        """Example `index` with its response as chosen and a corrupted one, judged wrong by the rules, rejected."""
        example = self.example(split, index)
        patterns = [rule.pattern for rule in example.required_rules() if rule.pattern is not None]
        rng = _rng(self.config.seed, CORRUPTION_STREAM, self._stream(split), index)
        names = CORRUPTIONS.names()
        world = self.generators[index % len(self.generators)].world
        for k in rng.permutation(len(names)):
            rejected = CORRUPTIONS.get(names[int(k)])(example.response, patterns, world, rng)
            if rejected and rejected != example.response and not example.is_correct(rejected):
                return PreferencePair(example, example.completion, RESPONSE_TEMPLATE.format(answer=rejected),
                                      names[int(k)])
        raise ValueError(f"{split} example {index} ({example.question!r}): no corruption of its response "
                         f"{example.response!r} breaks its rules")

    def pairs(self, split: str, count: int, start: int = 0) -> list[PreferencePair]:
        return [self.pair(split, i) for i in range(start, start + count)]
