"""Answers generated elsewhere (the upstream result layout) and the report built from their scores.

Layout: trials.jsonl or trials.jsonl.xz, one {"question", "answer", ...} object per line; the i-th line
for a question is its trial i (upstream concatenates one file of 50 lines per trial).

Headline numbers as upstream's pfgen_eval.py computes them: the score of a trial is the mean over questions of that
trial's answers (trials every question has); fluency, truthfulness and helpfulness are per-question means first,
then the mean over questions, so a question with more answers does not weigh more. Per category likewise.
"""

from __future__ import annotations

import json
import lzma
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

from lab.eval.pfgen.data import PfgenDataError
from lab.eval.pfgen.scorer import AnswerScore, QuestionScorer

RESULT_NAMES = ("trials.jsonl.xz", "trials.jsonl")
METRICS = ("score", "fluency", "truthfulness", "helpfulness")


@dataclass(frozen=True)
class GeneratedAnswer:
    question: str
    answer: str
    trial: int
    line: int  # 1-based line number in the result file
    fields: dict[str, Any] = field(default_factory=dict, compare=False)  # the whole input line


def _result_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in RESULT_NAMES:
            if (path / name).is_file():
                return path / name
        raise PfgenDataError(f"{path}: no {' or '.join(RESULT_NAMES)} in this folder")
    if not path.is_file():
        raise PfgenDataError(f"{path}: no such result file")
    return path


def read_answers(path: Path) -> list[GeneratedAnswer]:
    """Read a result file (or a folder holding one); trials are numbered per question from 1."""
    path = _result_file(path)
    try:
        text = lzma.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".xz" else path.read_text("utf-8")
    except (lzma.LZMAError, UnicodeDecodeError) as error:
        raise PfgenDataError(f"{path}: unreadable result file: {error}") from error
    counts: dict[str, int] = defaultdict(int)
    answers = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise PfgenDataError(f"{path}:{number}: malformed JSON: {error}") from error
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise PfgenDataError(f"{path}:{number}: expected an object with a string 'question'")
        if not isinstance(record.get("answer"), str):
            raise PfgenDataError(f"{path}:{number}: question {record['question']!r} has no string 'answer'")
        counts[record["question"]] += 1
        answers.append(GeneratedAnswer(record["question"], record["answer"], counts[record["question"]], number,
                                       record))
    if not answers:
        raise PfgenDataError(f"{path}: no answers")
    return answers


def score_answers(
    answers: Sequence[GeneratedAnswer], scorers: dict[str, QuestionScorer], source: str = "answers"
) -> list[AnswerScore]:
    """Score all answers, one vectorised pass per question; unknown questions are an error. Each score carries
    its input line's number and fields."""
    by_question: dict[str, list[GeneratedAnswer]] = defaultdict(list)
    for a in answers:
        if a.question not in scorers:
            raise PfgenDataError(f"{source}:{a.line}: question {a.question!r} is not in the data folder")
        by_question[a.question].append(a)
    scores = []
    for question, group in by_question.items():
        scored = scorers[question].score([a.answer for a in group], [a.trial for a in group])
        scores += [replace(s, line=a.line, fields=a.fields) for s, a in zip(scored, group)]
    return sorted(scores, key=lambda s: (s.trial, s.question_id))


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and population std, as the public scorer reports them."""
    values = list(values)
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@dataclass(frozen=True)
class CategoryRow:
    category: str
    questions: int
    score: float
    fluency: float
    truthfulness: float
    helpfulness: float


@dataclass(frozen=True)
class PfgenReport:
    """Benchmark summary: score +- std over trials, the three metrics, length, and a per-category table."""

    score: float
    score_std: float
    fluency: float
    truthfulness: float
    helpfulness: float
    length: float
    length_std: float
    trials: int
    questions: int
    categories: list[CategoryRow] = field(default_factory=list)

    def text(self) -> str:
        lines = [
            f"pfgen-bench: score {self.score:.4f} +- {self.score_std:.4f} over {self.trials} trials "
            f"({self.questions} questions)",
            f"  fluency {self.fluency:.4f}  truthfulness {self.truthfulness:.4f}  helpfulness {self.helpfulness:.4f}",
            f"  length {self.length:.1f} +- {self.length_std:.1f} characters",
            "",
            f"  {'category':<12} {'n':>3} {'score':>7} {'F':>7} {'T':>7} {'H':>7}",
        ]
        for c in self.categories:
            lines.append(
                f"  {c.category:<12} {c.questions:>3} {c.score:>7.4f} {c.fluency:>7.4f} "
                f"{c.truthfulness:>7.4f} {c.helpfulness:>7.4f}"
            )
        return "\n".join(lines)


def summarize(scores: Sequence[AnswerScore]) -> PfgenReport:
    """Trial score = mean over questions; reported = mean +- std over the trials every question has; F/T/H and the
    categories average each question first (see the module docstring)."""
    by_question: dict[str, list[AnswerScore]] = defaultdict(list)
    for s in sorted(scores, key=lambda s: s.trial):
        by_question[s.question_id].append(s)
    trials = min(len(v) for v in by_question.values())
    per_trial = [sum(v[t].score for v in by_question.values()) / len(by_question) for t in range(trials)]
    score, score_std = mean_std(per_trial)
    length, length_std = mean_std(s.length for s in scores)

    def means(group: Sequence[AnswerScore]) -> tuple[float, float, float, float]:
        """Mean score, F, T, H over questions, each question's answers averaged first (as upstream)."""
        per_question: dict[str, list[AnswerScore]] = defaultdict(list)
        for s in group:
            per_question[s.question_id].append(s)
        rows = [[sum(getattr(s, m) for s in answers) / len(answers) for m in METRICS]
                for answers in per_question.values()]
        return tuple(sum(column) / len(rows) for column in zip(*rows))  # type: ignore[return-value]

    by_category: dict[str, list[AnswerScore]] = defaultdict(list)
    for s in scores:
        by_category[s.category].append(s)
    rows = [
        CategoryRow(cat, len({s.question_id for s in group}), *means(group)) for cat, group in by_category.items()
    ]
    _, f, t, h = means(scores)
    return PfgenReport(score, score_std, f, t, h, length, length_std, trials, len(by_question), rows)


def write_scores(scores: Sequence[AnswerScore], path: Path) -> None:
    """Per-answer scores as JSONL, in input order: each input line's fields, its line number, the scores and
    upstream's per-answer details (see AnswerScore)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for s in sorted(scores, key=lambda s: (s.line is None, s.line or 0)):
            f.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
