"""Lab question sets from the synthetic generators: upstream layout, determinism, scores, and a tiny PLaMo run."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from lab.eval.pfgen.data import load_examples, load_questions
from lab.eval.pfgen.results import read_answers
from lab.eval.pfgen.scorer import load_scorers
from synth_render.text.question_sets import MANIFEST, QUESTION_MAKERS, main

GENERATORS = ["world_facts", "arithmetic", "dialogue", "structured"]


def build(out: Path, generator: str = "world_facts", questions: int = 21, answers: int = 40, *extra: str) -> Path:
    argv = ["--generator", generator, "--questions", str(questions), "--answers", str(answers), "--out", str(out)]
    assert main([*argv, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sets")
    return {g: build(root / g, g, 8, 40) for g in GENERATORS}


def test_every_generator_has_a_question_maker():
    from synth_render.text import TEXT_GENERATORS

    # the mixture interleaves the other families' documents: its questions are theirs
    assert QUESTION_MAKERS.names() == [n for n in TEXT_GENERATORS.names() if n != "mixture"] == sorted(GENERATORS)


@pytest.mark.parametrize("generator", GENERATORS)
def test_upstream_layout_read_by_the_existing_loaders(sets, generator):
    folder = sets[generator]
    questions = load_questions(folder)
    assert [q.question_id for q in questions] == [f"Q{i:02d}" for i in range(1, 9)]
    assert all(len(q.answer_sets["synthetic"]) == 40 and q.keywords for q in questions)
    assert any(rule.importance == 1.0 for q in questions for rule in q.keywords)
    examples = load_examples(folder / "questions.jsonl")
    assert [e.question for e in examples] == [q.question for q in questions]
    assert all(0 < len(e.answer) <= 100 for e in examples)
    raw = json.loads((folder / "Q01.json").read_text(encoding="utf-8"))
    assert set(raw) == {"question_id", "question", "category", "note", "keywords", "answers"}
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["generators"] == [generator] and manifest["seed"] == 0


def test_deterministic_and_a_smaller_set_is_a_prefix(tmp_path):
    mixed = "world_facts,arithmetic"
    a, b = build(tmp_path / "a", mixed, 21, 20), build(tmp_path / "b", mixed, 21, 20)
    small = build(tmp_path / "small", "world_facts,arithmetic", 5, 20)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir()) and len(files) == 23
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert all((small / f"Q{i:02d}.json").read_bytes() == (a / f"Q{i:02d}.json").read_bytes() for i in range(1, 6))
    assert [q.category for q in load_questions(a)][:4] == ["world_facts", "arithmetic", "world_facts", "arithmetic"]
    other = build(tmp_path / "seed1", "world_facts,arithmetic", 5, 20, "--seed", "1")
    assert (other / "Q01.json").read_bytes() != (a / "Q01.json").read_bytes()
    assert len({q.question for q in load_questions(a)}) == 21


def test_world_options_change_the_world(tmp_path):
    default = load_questions(build(tmp_path / "d", "structured", 3, 5))
    bigger = load_questions(build(tmp_path / "b", "structured", 3, 5, "--text", "n_entities=400", "--text",
                                  "vocab_size=1000"))
    assert [q.question for q in default] != [q.question for q in bigger]


@pytest.mark.parametrize("generator", GENERATORS)
def test_references_score_high_and_corruptions_lower(sets, generator, tmp_path):
    scorers = load_scorers(sets[generator], tmp_path / "cache")
    for scorer in scorers.values():
        references = scorer.question.answer_sets["synthetic"][:8]
        good = scorer.score(references)
        assert all(s.helpfulness == 1.0 for s in good), [s.answer for s in good if s.helpfulness < 1]
        assert sum(s.fluency for s in good) / len(good) > 0.7
        assert min(s.truthfulness for s in good) > 0.95
        assert sum(s.score for s in good) / len(good) > 0.85

        shuffled = ["".join(random.Random(i).sample(a, len(a))) for i, a in enumerate(references)]
        bad = scorer.score(shuffled)
        assert sum(s.fluency for s in bad) < 0.5 * sum(s.fluency for s in good)
        assert sum(s.truthfulness for s in bad) < 0.7 * sum(s.truthfulness for s in good)
        assert max(s.score for s in scorer.score(["わかりません。"])) < 0.4

        required = [r for r in scorer.question.keywords if r.importance == 1.0]
        wrong = [_break_required(answer, required) for answer in references]
        assert all(s.helpfulness == 0.0 for s in scorer.score(wrong)), wrong


def _break_required(answer: str, required) -> str:
    """Remove every match of the first required rule: the answer no longer states the asked fact."""
    rule = required[0]
    while rule.pattern is not None and rule.pattern.search(answer):
        answer = rule.pattern.sub("?", answer)
    if rule.pattern is None:  # an "and"/"or" rule: break every regex below it
        for child in rule.children:
            answer = _break_required(answer, [child])
    return answer


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    assert main(["--generator", "poetry", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "poetry" in err and "world_facts" in err and "arithmetic" in err
    assert main(["--generator", "world_facts", "--text", "vocab=3", "--out", str(tmp_path / "x")]) == 2
    assert "vocab" in (err := capsys.readouterr().err) and "vocab_size" in err
    assert main(["--generator", "world_facts", "--text", "seed=3", "--out", str(tmp_path / "x")]) == 2
    assert "--seed" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["--questions", "2", "--answers", "2", "--out", str(foreign)]) == 2
    assert "not empty" in capsys.readouterr().err and (foreign / "notes.txt").exists()
    tiny_world = ["--generator", "world_facts", "--questions", "30", "--answers", "2", "--text", "n_entities=3",
                  "--text", "vocab_size=3", "--out", str(tmp_path / "t")]
    assert main(tiny_world) == 2 and "n_entities" in capsys.readouterr().err


def test_rebuild_replaces_an_earlier_set(tmp_path):
    out = build(tmp_path / "s", "arithmetic", 6, 5)
    build(out, "arithmetic", 3, 5)
    assert sorted(p.name for p in out.glob("Q*.json")) == ["Q01.json", "Q02.json", "Q03.json"]


def test_lab_cli_builds_then_harness_runs_a_tiny_plamo(tmp_path, capsys):
    """`lab eval pfgen-build-set`, then `lab eval pfgen` on a random plamo-2-tiny: no upstream data involved."""
    import torch

    from experiments.cli import main as lab
    from lab.data.text import Tokenizer, TokenizerConfig
    from lab.models.plamo import create_plamo, save_pretrained

    data = tmp_path / "data"
    assert lab(["eval", "pfgen-build-set", "--generator", "world_facts,arithmetic", "--questions", "21",
                "--answers", "30", "--seed", "3", "--out", str(data)]) == 0
    assert "wrote 21 questions" in capsys.readouterr().out
    questions = load_questions(data)
    lines = [q.question for q in questions] + [a for q in questions for a in q.answer_sets["synthetic"]]
    tokenizer = Tokenizer.train(lines, TokenizerConfig(vocab_size=800, character_coverage=0.98, num_threads=1))
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    save_pretrained(create_plamo("plamo-2-tiny", vocab_size=tokenizer.vocab_size), model_dir)
    tokenizer.save(model_dir)
    argv = ["eval", "pfgen", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "run"),
            "--trials", "1", "--max-new-tokens", "6", "--questions", "Q01,Q02,Q03", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache")]
    assert lab(argv) == 0
    report = capsys.readouterr().out
    assert "over 1 trials (3 questions)" in report
    answers = read_answers(tmp_path / "run")
    assert [a.question for a in answers] == [q.question for q in questions[:3]]
    score = float(re.search(r"score\s*([0-9.]+)", report).group(1))
    assert 0.0 <= score < 0.85  # a random model is far below its references
