"""Fixtures: the upstream data where it lies (never copied), and small hand-made question folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

UPSTREAM = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "pfgen-bench").resolve()


@pytest.fixture(scope="session")
def upstream() -> Path:
    """../shared/data/pfgen-bench; skipped when absent, except on CI where its absence is a failure."""
    if not (UPSTREAM / "Q01.json").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"pfgen-bench data missing at {UPSTREAM} (CI=true)")
        pytest.skip(f"pfgen-bench data not found at {UPSTREAM}")
    return UPSTREAM


def write_question(folder: Path, number: int, **overrides) -> Path:
    """A small Qxx.json: two reference sets of five short answers, three keyword rules."""
    data = {
        "question_id": f"Q{number:02d}",
        "question": f"質問{number}は何ですか？",
        "category": "math" if number % 2 else "history",
        "note": "",
        "keywords": [{"t": "答え"}, {"or": [{"t": "[0-9]+回"}, {"t": "二回"}]}, {"importance": 0.5, "t": "理由"}],
        "answers": {
            "P": [f"答えは{i}回です。理由は時計の針が重なるからです。" for i in range(5)],
            "S": ["答えは二回です。", "それは答えです。", "二回重なります。理由はありません。", "答え", "回"],
        },
    }
    data.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"Q{number:02d}.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def small_data(tmp_path) -> Path:
    folder = tmp_path / "data"
    for number in (1, 2, 3):
        write_question(folder, number)
    return folder
