"""The table across post-training stages (base, SFT, DPO, merges): one row per stage, as markdown and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.core.rundir import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class StageRow:
    stage: str
    checkpoint: str
    task_accuracy: float
    task_n: int
    pfgen_score: float
    pfgen_fluency: float
    pfgen_truthfulness: float
    pfgen_helpfulness: float
    response_nll: float  # held-out chosen responses, nats per token
    preference_accuracy: float  # held-out pairs: chosen more likely than rejected
    by_category: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_measures(cls, stage: str, checkpoint: str, task: dict[str, Any], pfgen: dict[str, Any],
                      preference: dict[str, Any]) -> "StageRow":
        return cls(stage, checkpoint, task["accuracy"], task["n"], pfgen["score"], pfgen["fluency"],
                   pfgen["truthfulness"], pfgen["helpfulness"], preference["response_nll"],
                   preference["preference_accuracy"], dict(task["by_category"]))


def markdown_table(rows: Sequence[StageRow]) -> str:
    categories = sorted({c for row in rows for c in row.by_category})
    head = ["stage", "task acc", *(f"acc {c}" for c in categories), "pfgen", "F", "T", "H", "resp NLL", "pref acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.stage, f"{r.task_accuracy:.3f}", *(f"{r.by_category.get(c, float('nan')):.3f}" for c in categories),
                 f"{r.pfgen_score:.4f}", f"{r.pfgen_fluency:.4f}", f"{r.pfgen_truthfulness:.4f}",
                 f"{r.pfgen_helpfulness:.4f}", f"{r.response_nll:.3f}", f"{r.preference_accuracy:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_stage_table(rows: Sequence[StageRow], out_dir: Path | str, *, title: str = "Post-training stages",
                      notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """report.md (title, table, notes) and stages.json (the rows) in `out_dir`."""
    if not rows:
        raise ValueError("no stage rows to write")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = f"# {title}\n\n{markdown_table(rows)}" + "".join(f"\n{note}\n" for note in notes)
    atomic_write_text(out_dir / "report.md", text)
    atomic_write_json(out_dir / "stages.json", [asdict(r) for r in rows])
    return out_dir / "report.md", out_dir / "stages.json"
