"""Per-answer pfgen scores: Fluency, Truthfulness, Helpfulness and their mean, rounded like the public scorer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.eval.pfgen.cache import cached_tables
from lab.eval.pfgen.data import Question, load_questions
from lab.eval.pfgen.keywords import helpfulness
from lab.eval.pfgen.ngram_table import NgramTable, fluency, truthfulness


@dataclass(frozen=True)
class AnswerScore:
    """One answer's scores; per-set values are each set's share F_k / K (and T_k / K), as upstream reports them."""

    question_id: str
    category: str
    question: str
    trial: int
    answer: str
    fluency_sets: dict[str, float]  # round(F_k / K, 6)
    truthfulness_sets: dict[str, float]  # round(T_k / K, 6)
    helpfulness: float  # round(H, 5)
    score: float  # round((sum F + sum T + H) / 3, 5)

    @property
    def fluency(self) -> float:
        return sum(self.fluency_sets.values())

    @property
    def truthfulness(self) -> float:
        return sum(self.truthfulness_sets.values())

    @property
    def length(self) -> int:
        return len(self.answer)

    def to_json(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "category": self.category,
            "question": self.question,
            "trial": self.trial,
            "answer": self.answer,
            "fluency": self.fluency_sets,
            "truthfulness": self.truthfulness_sets,
            "helpfulness": self.helpfulness,
            "score": self.score,
        }


@dataclass(frozen=True)
class QuestionScorer:
    """A question with its n-gram tables: scores any number of answers in one vectorised pass."""

    question: Question
    tables: dict[str, NgramTable]

    def score(self, answers: Sequence[str], trials: Sequence[int] | None = None) -> list[AnswerScore]:
        trials = list(trials) if trials is not None else list(range(1, len(answers) + 1))
        k = len(self.tables)
        fl = {label: fluency(t, answers) for label, t in self.tables.items()}
        tr = {label: truthfulness(t, answers) for label, t in self.tables.items()}
        scores = []
        for i, answer in enumerate(answers):
            f_sets = {label: round(float(v[i]) / k, 6) for label, v in fl.items()}
            t_sets = {label: round(float(v[i]) / k, 6) for label, v in tr.items()}
            h = round(helpfulness(self.question.keywords, answer), 5)
            mean = round((sum(f_sets.values()) + sum(t_sets.values()) + h) / 3, 5)
            q = self.question
            scores.append(AnswerScore(q.question_id, q.category, q.question, trials[i], answer, f_sets, t_sets, h, mean))
        return scores


def load_scorers(data_dir: Path, cache_dir: Path | None = None) -> dict[str, QuestionScorer]:
    """One scorer per question of the data folder, keyed by question text (how result files name questions)."""
    return {q.question: QuestionScorer(q, cached_tables(q, cache_dir)) for q in load_questions(data_dir)}
