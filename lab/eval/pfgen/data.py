"""The upstream question files (a folder of Qxx.json), read and checked with errors that name the culprit."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.eval.pfgen.keywords import KeywordRule, parse_rule


class PfgenDataError(ValueError):
    """Bad benchmark input; the message names the file, the question and the rule at fault."""


@dataclass(frozen=True)
class Question:
    """One benchmark question: its text, category, keyword rules and reference answer sets."""

    question_id: str
    question: str
    category: str
    keywords: tuple[KeywordRule, ...]
    answer_sets: dict[str, list[str]]
    path: Path
    sha1: str  # of the file's bytes: the cache key of its n-gram tables


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise PfgenDataError(f"{where}: {message}")


def load_question(path: Path) -> Question:
    """Parse and validate one Qxx.json."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        data: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PfgenDataError(f"{path}: malformed JSON: {error}") from error
    _require(isinstance(data, dict), str(path), "expected a JSON object")
    fields = ("question_id", "question", "category", "keywords", "answers")
    missing = [f for f in fields if f not in data]
    _require(not missing, str(path), f"missing fields {missing}")
    where = f"{path}: question {data['question_id']} ({data['question']!r})"
    _require(isinstance(data["keywords"], list), where, "keywords must be a list of rules")
    keywords = []
    for rule in data["keywords"]:
        try:
            keywords.append(parse_rule(rule))
        except (ValueError, TypeError, re.error) as error:
            raise PfgenDataError(f"{where}: keyword rule {json.dumps(rule, ensure_ascii=False)}: {error}") from error
    answers = data["answers"]
    _require(isinstance(answers, dict) and len(answers) > 0, where, "no reference answer sets")
    for label, texts in answers.items():
        _require(isinstance(texts, list) and len(texts) > 0, where, f"reference set {label!r} is empty")
        _require(all(isinstance(t, str) for t in texts), where, f"reference set {label!r} holds non-strings")
    return Question(
        question_id=str(data["question_id"]),
        question=str(data["question"]),
        category=str(data["category"]),
        keywords=tuple(keywords),
        answer_sets={str(k): list(v) for k, v in answers.items()},
        path=path,
        sha1=hashlib.sha1(raw).hexdigest(),
    )


def question_paths(data_dir: Path) -> list[Path]:
    """Q*.json files of a data folder, in order."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise PfgenDataError(f"{data_dir}: not a folder of Qxx.json files")
    paths = sorted(data_dir.glob("Q*.json"))
    if not paths:
        raise PfgenDataError(f"{data_dir}: no Q*.json files")
    return paths


def load_questions(data_dir: Path) -> list[Question]:
    """All questions of a data folder; question texts must be unique (answers are matched by text)."""
    questions = [load_question(p) for p in question_paths(data_dir)]
    seen: dict[str, Path] = {}
    for q in questions:
        if q.question in seen:
            raise PfgenDataError(f"{q.path}: question {q.question_id} repeats the question of {seen[q.question]}")
        seen[q.question] = q.path
    return questions


@dataclass(frozen=True)
class Example:
    """A question with its 100-character example answer (questions.jsonl): few-shot material and a sanity set."""

    question: str
    answer: str


def load_examples(path: Path) -> list[Example]:
    """Read questions.jsonl: one {"question", "answer"} object per line."""
    examples = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            examples.append(Example(str(record["question"]), str(record["answer"])))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise PfgenDataError(f"{path}:{number}: malformed example line: {error}") from error
    return examples
