"""The report figure: per-category metrics and the distribution of per-answer scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lab.eval.pfgen.results import PfgenReport  # noqa: E402
from lab.eval.pfgen.scorer import AnswerScore  # noqa: E402


def plot_report(report: PfgenReport, scores: Sequence[AnswerScore], path: Path) -> Path:
    """Grouped bars of score/F/T/H per category, next to a histogram of per-answer scores."""
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    x = np.arange(len(report.categories))
    for i, name in enumerate(("score", "fluency", "truthfulness", "helpfulness")):
        bars.bar(x + (i - 1.5) * 0.2, [getattr(c, name) for c in report.categories], 0.2, label=name)
    bars.set_xticks(x, [c.category for c in report.categories], rotation=45, ha="right")
    bars.set_ylabel("mean over answers")
    bars.set_title(f"pfgen-bench {report.score:.3f} ± {report.score_std:.3f} ({report.trials} trials)")
    bars.legend(fontsize="small")
    hist.hist([s.score for s in scores], bins=30)
    hist.set_xlabel("per-answer score")
    hist.set_ylabel("answers")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
