"""The numpy n-gram tables agree exactly with the plain definitions (the oracle)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.eval.pfgen.ngram_table import build_table, fluency, fluency_and_discount, truthfulness

from . import reference_oracle as oracle

EDGE_ANSWERS = ["", "a", "^$", "答え", "答え" * 150, "x" * 250, "「」。、", "答えは1回です。" * 20, "\U0001f600答え"]


def assert_matches_oracle(answers: list[str], queries: list[str]) -> None:
    table = build_table(answers)
    df = oracle.df_table(answers)
    baseline = sum(oracle.raw_fluency(df, a) for a in answers) / len(answers)
    assert table.baseline == baseline
    expected_f = [oracle.raw_fluency(df, q) / baseline for q in queries]
    expected_t = [oracle.truthfulness(df, q, len(answers)) for q in queries]
    np.testing.assert_allclose(fluency(table, queries), expected_f, rtol=0, atol=1e-12)
    np.testing.assert_allclose(truthfulness(table, queries), expected_t, rtol=0, atol=1e-12)
    values, discounts = fluency_and_discount(table, queries)
    np.testing.assert_allclose(values, expected_f, rtol=0, atol=1e-12)
    np.testing.assert_allclose(discounts, [oracle.fluency_discount(df, q) for q in queries], rtol=0, atol=1e-12)


def test_small_set_matches_the_definitions():
    answers = ["答えは2回です。理由は簡単。", "答えは二回。", "「答え」は2回", "回" * 120, "答" * 230]
    assert_matches_oracle(answers, answers + EDGE_ANSWERS)


def test_document_frequency_counts_each_answer_once():
    table = build_table(["aaa", "ab"])
    df = oracle.df_table(["aaa", "ab"])
    assert df["a"] == 2 and df["aa"] == 1
    assert len(table.keys) == len(df) and sorted(table.df.tolist()) == sorted(df.values())


def test_real_reference_set_matches_the_definitions(upstream):
    data = json.loads((upstream / "Q07.json").read_text(encoding="utf-8"))
    answers = data["answers"]["P"][:150]
    examples = [json.loads(line)["answer"] for line in (upstream / "questions.jsonl").read_text().splitlines()]
    assert_matches_oracle(answers, examples[:10] + data["answers"]["P"][150:170] + EDGE_ANSWERS)


def test_empty_reference_set_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        build_table([])
