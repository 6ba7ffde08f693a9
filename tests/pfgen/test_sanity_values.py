"""The published sanity values of the official scorer (pfgen-metrics.md), on the upstream data where it lies.

The first run builds the table cache for all 50 questions in the default cache dir (~20 s of CPU); later
runs reuse it.
"""

from __future__ import annotations

import pytest

from lab.eval.pfgen.data import load_examples
from lab.eval.pfgen.results import GeneratedAnswer, score_answers, summarize
from lab.eval.pfgen.scorer import load_scorers


@pytest.fixture(scope="module")
def scorers(upstream):
    return load_scorers(upstream)


def test_example_answers_score_the_published_1_050(upstream, scorers):
    examples = load_examples(upstream / "questions.jsonl")
    answers = [GeneratedAnswer(e.question, e.answer, 1, i) for i, e in enumerate(examples, start=1)]
    report = summarize(score_answers(answers, scorers))
    assert report.questions == 50 and report.trials == 1 and report.score_std == 0.0
    assert round(report.score, 3) == 1.050
    assert round(report.fluency, 3) == 1.155
    assert round(report.truthfulness, 3) == 0.996
    assert report.helpfulness == 1.0


@pytest.mark.slow
@pytest.mark.xfail(
    reason="unresolved: pooled over all sets gives 0.8047, own set only 0.8325; how 0.849 was averaged is unknown",
    strict=False,
)
def test_references_against_their_own_sets_score_about_0_849(scorers):
    scores = []
    for scorer in scorers.values():
        for answers in scorer.question.answer_sets.values():
            scores += [s.score for s in scorer.score(answers)]
    assert len(scores) == sum(len(s) for q in scorers.values() for s in q.question.answer_sets.values())
    assert sum(scores) / len(scores) == pytest.approx(0.849, abs=5e-4)
