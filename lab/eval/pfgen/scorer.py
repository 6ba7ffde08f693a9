"""Per-answer pfgen scores: Fluency, Truthfulness, Helpfulness and their mean, rounded like the public scorer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.eval.pfgen.cache import cached_tables
from lab.eval.pfgen.data import Question, load_questions
from lab.eval.pfgen.keywords import helpfulness_details
from lab.eval.pfgen.ngram_table import NgramTable, fluency_and_discount, truthfulness


@dataclass(frozen=True)
class AnswerScore:
    """One answer's scores; per-set values are each set's share F_k / K (and T_k / K), as upstream reports them.

    With upstream's per-answer details: `helpfulness_results` (the keyword rules not matched within the credited
    prefix, as [name, 1 - importance], then "<k>字超過" with the length discount when that prefix passes 100
    characters) and `fluency_discount`, the length discount d(n) at the prefix that gave the best fluency (the
    smallest over the sets). Upstream's own `fluency_discount` starts at 1.0 and keeps the max, so it always reads
    1.0; this one is the discount actually applied. `line` and `fields` are the input line's number and content.
    """

    question_id: str
    category: str
    question: str
    trial: int
    answer: str
    fluency_sets: dict[str, float]  # round(F_k / K, 6)
    truthfulness_sets: dict[str, float]  # round(T_k / K, 6)
    helpfulness: float  # round(H, 5)
    score: float  # round((sum F + sum T + H) / 3, 5)
    fluency_discount: float = 1.0  # round(min_k d(n_k), 2)
    helpfulness_results: tuple[tuple[str, float], ...] = ()
    line: int | None = None  # 1-based line of the result file
    fields: dict[str, Any] = field(default_factory=dict, compare=False)  # the input line as read

    @property
    def fluency(self) -> float:
        return sum(self.fluency_sets.values())

    @property
    def truthfulness(self) -> float:
        return sum(self.truthfulness_sets.values())

    @property
    def length(self) -> int:
        return len(self.answer)

    @property
    def missed_keywords(self) -> list[str]:
        """Names of the keyword rules the answer did not satisfy within its credited prefix."""
        return [name for name, _ in self.helpfulness_results if not name.endswith("字超過")]

    def to_json(self) -> dict[str, Any]:
        """The input line's fields, then its line number and the scores. An input field whose name a score uses
        with a different value is kept as `input_<name>`."""
        scores = {
            "line": self.line,
            "question_id": self.question_id,
            "category": self.category,
            "question": self.question,
            "trial": self.trial,
            "answer": self.answer,
            "fluency": self.fluency_sets,
            "fluency_discount": self.fluency_discount,
            "truthfulness": self.truthfulness_sets,
            "helpfulness": self.helpfulness,
            "helpfulness_results": [list(result) for result in self.helpfulness_results],
            "missed_keywords": self.missed_keywords,
            "score": self.score,
        }
        clashes = {f"input_{k}": v for k, v in self.fields.items() if k in scores and v != scores[k]}
        return {**self.fields, **clashes, **scores}


@dataclass(frozen=True)
class QuestionScorer:
    """A question with its n-gram tables: scores any number of answers in one vectorised pass."""

    question: Question
    tables: dict[str, NgramTable]

    def score(self, answers: Sequence[str], trials: Sequence[int] | None = None) -> list[AnswerScore]:
        trials = list(trials) if trials is not None else list(range(1, len(answers) + 1))
        k = len(self.tables)
        fl = {label: fluency_and_discount(t, answers) for label, t in self.tables.items()}
        tr = {label: truthfulness(t, answers) for label, t in self.tables.items()}
        scores = []
        for i, answer in enumerate(answers):
            f_sets = {label: round(float(v[i]) / k, 6) for label, (v, _) in fl.items()}
            t_sets = {label: round(float(v[i]) / k, 6) for label, v in tr.items()}
            details = helpfulness_details(self.question.keywords, answer)
            h = round(details.value, 5)
            mean = round((sum(f_sets.values()) + sum(t_sets.values()) + h) / 3, 5)
            discount = round(min(float(d[i]) for _, d in fl.values()), 2)
            q = self.question
            scores.append(AnswerScore(q.question_id, q.category, q.question, trials[i], answer, f_sets, t_sets, h,
                                      mean, discount, tuple(tuple(r) for r in details.results())))
        return scores


def load_scorers(data_dir: Path, cache_dir: Path | None = None) -> dict[str, QuestionScorer]:
    """One scorer per question of the data folder, keyed by question text (how result files name questions)."""
    return {q.question: QuestionScorer(q, cached_tables(q, cache_dir)) for q in load_questions(data_dir)}
