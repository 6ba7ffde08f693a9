"""`pfgen-score` on small hand-made result files: report, per-answer JSONL, figure, and clear errors."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.eval.pfgen.cli import main
from lab.eval.pfgen.data import PfgenDataError
from lab.eval.pfgen.results import read_answers

REPO = Path(__file__).resolve().parents[2]


def write_trials(path: Path, lines: list[dict], xz: bool = False) -> Path:
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if xz:
        path.write_bytes(lzma.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def trial_lines(trials: int = 2) -> list[dict]:
    answers = ["答えは2回です。理由は針が重なるからです。", "わかりません。"]
    return [
        {"question": f"質問{q}は何ですか？", "answer": answers[(q + t) % 2], "timestamp": "2025-01-01T00:00:00"}
        for t in range(trials)
        for q in (1, 2, 3)
    ]


@pytest.mark.parametrize("xz", [False, True])
def test_scores_report_jsonl_and_figure(tmp_path, small_data, capsys, xz):
    result = write_trials(tmp_path / ("trials.jsonl.xz" if xz else "trials.jsonl"), trial_lines(), xz=xz)
    out, figure = tmp_path / "per_answer.jsonl", tmp_path / "report.png"
    argv = [str(result), "--data", str(small_data), "--out", str(out), "--figure", str(figure)]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    report = capsys.readouterr().out
    assert "over 2 trials (3 questions)" in report and "math" in report and "history" in report
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and {r["trial"] for r in rows} == {1, 2}
    for row in rows:
        expected = round((sum(row["fluency"].values()) + sum(row["truthfulness"].values()) + row["helpfulness"]) / 3, 5)
        assert row["score"] == pytest.approx(expected, abs=1e-5) and set(row["fluency"]) == {"P", "S"}
    good = [r for r in rows if r["answer"].startswith("答え")]
    assert all(r["helpfulness"] == 1.0 for r in good) and all(r["helpfulness"] == 0.0 for r in rows if r not in good)
    assert figure.stat().st_size > 1000


def test_module_entry_point_runs(tmp_path, small_data):
    result = write_trials(tmp_path / "trials.jsonl", trial_lines(1))
    env = {**os.environ, "LAB_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "lab.eval.pfgen.cli", "pfgen-score", str(tmp_path), "--data", str(small_data)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pfgen-bench: score" in done.stdout


def test_malformed_result_line_names_file_and_line(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(PfgenDataError, match=r"trials.jsonl:2: malformed JSON"):
        read_answers(path)


def test_bad_inputs_exit_2_with_a_clear_message(tmp_path, small_data, capsys):
    result = write_trials(tmp_path / "trials.jsonl", [{"question": "知らない質問", "answer": "a"}])
    assert main([str(result), "--data", str(small_data), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "trials.jsonl:1: question '知らない質問' is not in the data folder" in capsys.readouterr().err
    (small_data / "Q02.json").write_text("{not json", encoding="utf-8")
    assert main([str(result), "--data", str(small_data), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "Q02.json: malformed JSON" in capsys.readouterr().err


def test_per_answer_output_keeps_input_fields_and_headline_averages_questions_first(tmp_path, small_data, capsys):
    """Issue 19: --out keeps every input field and the line number, adds upstream's details; with 3 answers to
    Q01 and 1 to Q02, F/T/H are per-question means first (upstream), not pooled over the 4 answers."""
    from lab.eval.pfgen.results import summarize
    from lab.eval.pfgen.scorer import load_scorers
    from lab.eval.pfgen.results import score_answers

    good, bad = "答えは2回です。理由は針が重なるからです。", "わかりません。"
    lines = [{"question": "質問1は何ですか？", "answer": good, "model": "m", "seed": 7, "trial": 1},
             {"question": "質問1は何ですか？", "answer": good, "model": "m", "seed": 7, "trial": 2},
             {"question": "質問1は何ですか？", "answer": good + "x" * 120, "model": "m", "seed": 7, "trial": 3},
             {"question": "質問2は何ですか？", "answer": bad, "model": "m", "seed": 7, "score": "kept", "trial": 1}]
    result = write_trials(tmp_path / "trials.jsonl", lines)
    out = tmp_path / "per_answer.jsonl"
    assert main([str(result), "--data", str(small_data), "--out", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4]
    assert all(r["model"] == "m" and r["seed"] == 7 for r in rows) and rows[3]["input_score"] == "kept"
    assert [r["answer"] for r in rows] == [line["answer"] for line in lines]
    assert rows[0]["missed_keywords"] == [] and rows[0]["helpfulness_results"] == []
    assert rows[3]["missed_keywords"] == ["答え", "[0-9]+回", "理由"]  # an "or" rule is named by its earliest match
    assert rows[3]["helpfulness_results"] == [["答え", 0.0], ["[0-9]+回", 0.0], ["理由", 0.5]]
    assert rows[0]["fluency_discount"] == 1.0 and rows[2]["fluency_discount"] <= 1.0

    scores = score_answers(read_answers(result), load_scorers(small_data, tmp_path / "c"))
    report = summarize(scores)
    for metric in ("fluency", "truthfulness", "helpfulness"):
        q1 = [getattr(s, metric) for s in scores if s.question_id == "Q01"]
        q2 = [getattr(s, metric) for s in scores if s.question_id == "Q02"]
        assert getattr(report, metric) == pytest.approx((sum(q1) / 3 + q2[0]) / 2)
    pooled = sum(s.helpfulness for s in scores) / len(scores)
    assert abs(report.helpfulness - pooled) > 0.1  # the two means differ here
    assert report.score == pytest.approx((scores[0].score + scores[1].score) / 2)  # trial 1, both questions
