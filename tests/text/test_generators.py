"""Every registered text family: valid Japanese, deterministic by (seed, index), and true to its knobs."""

from __future__ import annotations

import re
from dataclasses import asdict

import numpy as np
import pytest

from lab.data.text import JAPANESE_CHAR
from lab.core.registry import UnknownNameError
from synth_render.text import TEXT_GENERATORS, create_text_generator, lexicon, text_config
from synth_render.text.world import build_world

FAMILIES = TEXT_GENERATORS.names()
KATAKANA_RUN = re.compile(r"[\u30a1-\u30fa\u30fc]+")
HIRAGANA = re.compile(r"[\u3041-\u309f]")


def _docs(name: str, n: int = 40, **knobs) -> list[str]:
    generator = create_text_generator(text_config(name, **knobs))
    return [generator.document(i) for i in range(n)]


def test_the_four_families_are_registered():
    assert {"world_facts", "arithmetic", "dialogue", "structured"} <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_documents_are_non_empty_japanese(name):
    for doc in _docs(name):
        assert doc.strip() and "\x00" not in doc
        assert HIRAGANA.search(doc), doc  # real sentences, not just names and numbers
        japanese = len(JAPANESE_CHAR.findall(doc))
        assert japanese / len(re.sub(r"\s", "", doc)) > 0.25, doc  # worksheets are digit-heavy


@pytest.mark.parametrize("name", FAMILIES)
def test_document_depends_only_on_seed_and_index(name):
    generator = create_text_generator(text_config(name, seed=3))
    forward = [generator.document(i) for i in range(12)]
    fresh = create_text_generator(text_config(name, seed=3))
    assert [fresh.document(i) for i in reversed(range(12))] == forward[::-1]
    assert fresh.document(7) == forward[7]
    other_seed = create_text_generator(text_config(name, seed=4))
    assert [other_seed.document(i) for i in range(12)] != forward
    assert len(set(forward)) > 6  # documents differ from one another


@pytest.mark.parametrize("name", FAMILIES)
def test_vocab_size_bounds_the_distinct_entity_names(name):
    """With 6 names for 40 entities, at most 6 distinct generated names ever appear in the text."""
    vocab = 6
    docs = _docs(name, n=60, vocab_size=vocab, n_entities=40)
    world = build_world(0, vocab, 40)
    assert len(world.person_names) + len(world.place_names) == vocab
    fixed = {run for value in vars(lexicon).values() if isinstance(value, tuple)
             for item in value for run in KATAKANA_RUN.findall(str(item))}
    person_names = {run for doc in docs for run in KATAKANA_RUN.findall(doc)} - fixed - {"データ"}
    assert person_names <= set(world.person_names)
    place_names = {m for doc in docs for m in re.findall(r"[\u4e00-\u9fff]{2}[市町村]", doc)}
    assert place_names <= set(world.place_names)
    assert 0 < len(person_names) + len(place_names) <= vocab


@pytest.mark.parametrize("name", FAMILIES)
def test_n_entities_bounds_the_people_mentioned(name):
    docs = _docs(name, n=60, vocab_size=2000, n_entities=8)
    world = build_world(0, 2000, 8)
    assert len(world.persons) + len(world.places) == 8
    mentioned = {p.name for p in world.persons if any(p.name in doc for doc in docs)}
    all_names = {run for doc in docs for run in KATAKANA_RUN.findall(doc)} & set(world.person_names)
    assert mentioned and all_names <= {p.name for p in world.persons}


@pytest.mark.parametrize("name", FAMILIES)
def test_template_depth_and_doc_length_make_documents_longer(name):
    def mean_length(**knobs) -> float:
        return float(np.mean([len(d) for d in _docs(name, n=40, **knobs)]))

    assert mean_length(template_depth=4) > mean_length(template_depth=1)
    assert mean_length(doc_length=[8, 8]) > mean_length(doc_length=[1, 1])


def test_world_facts_nest_relative_clauses_only_when_depth_allows():
    clause = re.compile(r"(に住む|が趣味の|の友人である|が名産の|出身の|人口\d+人の|にある[^。])")
    assert not any(clause.search(d) for d in _docs("world_facts", template_depth=1))
    assert sum(len(clause.findall(d)) for d in _docs("world_facts", template_depth=3)) > 20


def test_world_facts_agree_with_the_world():
    world = build_world(0, 400, 100)
    jobs: dict[str, set[str]] = {}
    for p in world.persons:
        jobs.setdefault(p.name, set()).add(p.occupation)
    checked = 0
    for doc in _docs("world_facts", n=80):
        stated = re.findall(r"(?:^|\n|[^\u30a1-\u30fc])([\u30a1-\u30fc]+)の職業は(\w+?)です", doc)
        stated += re.findall(r"問: ([\u30a1-\u30fc]+)の職業は何ですか。\n答: (\w+?)です", doc)
        for name, job in stated:
            assert job in jobs[name] or job == "何", (name, job)
            checked += job != "何"
    assert checked > 10


def test_arithmetic_answers_are_correct_and_steps_bounded_by_depth():
    generator = create_text_generator(text_config("arithmetic", template_depth=2, max_operand=50))
    checked = 0
    for i in range(40):
        for problem in generator.document(i).split("\n\n"):
            for left, op, right, result in re.findall(r"(?:まず|次に)、(\d+) ([-+×÷]) (\d+) = (\d+)", problem):
                a, b, c = int(left), int(right), int(result)
                assert {"+": a + b, "-": a - b, "×": a * b, "÷": a // b if a % b == 0 else -1}[op] == c
                checked += 1
            if "次の計算" in problem:
                assert problem.count("次に") + problem.count("まず") <= 3  # a depth-2 tree has <= 3 operations
            if "式:" in problem and "代金" not in problem:
                formula, value = re.search(r"式: (.+) = (\d+)", problem).groups()
                assert eval(formula) == int(value)  # noqa: S307 - digits and +/- only
    assert checked > 50


def test_structured_tables_answer_from_their_rows():
    world = build_world(0, 400, 100)
    ages = {p.name: p.age for p in world.persons}
    for doc in _docs("structured", n=40):
        match = re.search(r"最も年齢が高いのは誰ですか。\n答: (.+)\((\d+)歳\)です。", doc)
        if match:
            assert all(ages[n] == int(match[2]) for n in match[1].split("と"))


@pytest.mark.parametrize("knobs, message", [
    ({"vocab_size": 1}, "vocab_size"), ({"n_entities": 1}, "n_entities"), ({"template_depth": 0}, "template_depth"),
    ({"doc_length": [5, 2]}, "doc_length"), ({"shard_size": 0}, "shard_size"),
])
def test_bad_knobs_are_clear_errors(knobs, message):
    with pytest.raises(ValueError, match=message):
        text_config("world_facts", **knobs)


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="world_facts"):
        text_config("poetry")
    with pytest.raises(TypeError, match="max_operand"):
        text_config("world_facts", max_operand=5)  # an arithmetic-only knob
    with pytest.raises(ValueError, match="max_operand"):
        text_config("arithmetic", max_operand=1)
    assert create_text_generator(asdict(text_config("arithmetic", max_operand=9))).config.max_operand == 9
    with pytest.raises(ValueError, match="index"):
        create_text_generator(text_config("dialogue")).document(-1)
