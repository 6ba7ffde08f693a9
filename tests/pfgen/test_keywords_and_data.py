"""Keyword rules (Helpfulness) and the checks on the question files, with errors naming file, question, rule."""

from __future__ import annotations

import json

import pytest

from lab.eval.pfgen.data import PfgenDataError, load_question, load_questions
from lab.eval.pfgen.keywords import helpfulness, parse_rule

from .conftest import write_question


def rules(*raw):
    return tuple(parse_rule(r) for r in raw)


def test_all_keywords_found_early_give_full_helpfulness():
    assert helpfulness(rules({"t": "答え"}, {"t": "理由"}), "答えと理由") == 1.0


def test_missing_required_keyword_gives_zero_and_half_importance_halves():
    assert helpfulness(rules({"t": "答え"}, {"t": "無い"}), "答えです") == 0.0
    assert helpfulness(rules({"t": "答え"}, {"importance": 0.5, "t": "無い"}), "答えです") == 0.5


def test_and_needs_all_or_needs_any():
    both = rules({"and": [{"t": "a"}, {"t": "b"}]})
    either = rules({"or": [{"t": "a"}, {"t": "z"}]})
    assert helpfulness(both, "a b") == 1.0 and helpfulness(both, "a only") == 0.0
    assert helpfulness(either, "a") == 1.0 and helpfulness(either, "neither") == 0.0


def test_late_keyword_is_discounted_by_length():
    # the keyword ends at character 125: the best cut point is 125, d(125) = 0.5
    assert helpfulness(rules({"t": "鍵"}), "x" * 124 + "鍵" + "y" * 10) == pytest.approx(0.5)
    assert helpfulness(rules({"t": "鍵"}), "x" * 160 + "鍵") == 0.0  # after 150 characters: no credit
    assert helpfulness(rules({"t": "鍵"}), "x" * 200 + "鍵") == 0.0  # beyond the 200-character window


def test_small_fixture_folder_loads(small_data):
    questions = load_questions(small_data)
    assert [q.question_id for q in questions] == ["Q01", "Q02", "Q03"]
    assert list(questions[0].answer_sets) == ["P", "S"] and len(questions[0].sha1) == 40


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "Q01.json"
    path.write_text('{"question_id": "Q01",', encoding="utf-8")
    with pytest.raises(PfgenDataError, match="Q01.json: malformed JSON"):
        load_question(path)


def test_invalid_regex_names_file_question_and_rule(tmp_path):
    path = write_question(tmp_path, 4, keywords=[{"t": "ok"}, {"or": [{"t": "fine"}, {"t": "bro(ken"}]}])
    with pytest.raises(PfgenDataError) as error:
        load_question(path)
    message = str(error.value)
    assert "Q04.json" in message and "question Q04" in message and "bro(ken" in message and "invalid regex" in message


def test_empty_reference_set_names_the_set(tmp_path):
    path = write_question(tmp_path, 5, answers={"P": ["答え"], "S": []})
    with pytest.raises(PfgenDataError, match=r"Q05.json: question Q05 .*reference set 'S' is empty"):
        load_question(path)


@pytest.mark.parametrize(
    "rule, message",
    [({"and": []}, "non-empty"), ({"x": "y"}, "needs one of"), ({"t": "a", "importance": "high"}, "importance")],
)
def test_other_bad_rules(tmp_path, rule, message):
    path = write_question(tmp_path, 6, keywords=[rule])
    with pytest.raises(PfgenDataError, match=message) as error:
        load_question(path)
    assert json.dumps(rule, ensure_ascii=False) in str(error.value)


def test_upstream_files_all_load(upstream):
    questions = load_questions(upstream)
    assert len(questions) == 50 and len({q.category for q in questions}) == 14
    assert all(len(s) == 1000 for q in questions for s in q.answer_sets.values())


def test_helpfulness_details_name_the_missed_rules_and_the_length_overrun():
    """Upstream's helpfulness_results: missed rules as [name, 1 - importance], then "<k>字超過" past 100 chars."""
    from lab.eval.pfgen.keywords import helpfulness_details

    keywords = rules({"t": "答え"}, {"or": [{"t": "無い"}, {"t": "[0-9]+回"}]}, {"importance": 0.5, "t": "理由"})
    for answer in ["答えは2回", "答えです", "x" * 120 + "答え2回", "理由" + "x" * 10, ""]:
        details = helpfulness_details(keywords, answer)
        assert details.value == helpfulness(keywords, answer)
    assert helpfulness_details(keywords, "答えは2回").results() == [["理由", 0.5]]
    assert helpfulness_details(keywords, "答えです").results() == [["無い", 0.0], ["理由", 0.5]]  # "or": tie, first
    assert helpfulness_details(keywords, "答え無い").missed == (("理由", 0.5),)
    late = helpfulness_details(keywords, "x" * 120 + "答え2回")
    assert late.cut == 124 and late.results() == [["理由", 0.5], ["24字超過", pytest.approx(0.52)]]
    assert late.value == pytest.approx(0.26)
