"""What a text study costs: training tokens and FLOPs of every task of its plan, over a measured FLOP rate.

    python benchmarks/text_cost.py +experiment=paper_text_gpu --rate-from benchmarks/results/plamo_NVIDIA-H200_*.csv
    python benchmarks/text_cost.py +experiment=paper_text --rate-from /work/studies/text/paper_text  # the CPU run

The plan is the study's own (experiments.text_study.plan_text_sweep, nothing is run): a pre-training trains
steps x batch x seq_len tokens, a fine-tune that many per learning rate of its grid, each at the model's training
FLOPs per token (lab.models.plamo.flops: 6 N plus attention and scan terms). The rate comes from either
  - a finished study folder: the FLOP/s its own finished pre-trainings and fine-tunes reached (their result.json:
    steps and train_seconds), so the estimate of the study that ran is checked against its wall time; or
  - a bench_plamo CSV (benchmarks/results/plamo_*.csv): MFU x peak of its eager and best compiled `train` rows,
    assumed to carry over to the study's model (a smaller model usually reaches a lower MFU: the eager row is the
    conservative one).
Evaluation, rendering and tokenizer time are left out and said so (minutes against the training hours at GPU
scale; at lab scale the study folder's wall time includes them, which is why its check compares both).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli import CONF_DIR  # noqa: E402
from experiments.text_study import TextSweepConfig, plan_text_sweep  # noqa: E402
from lab.core.config import load_config  # noqa: E402


def task_flops(task) -> tuple[float, float]:
    """(training tokens, training FLOPs) of one pre-training or fine-tune task of a text plan."""
    job = task.job
    if task.stage == "pretrain":
        config, runs = job.train.train_config(job.n), 1
    else:
        config, runs = job.train.train_config(job.pretrain is None), max(1, len(job.train.lr_grid))
    tokens = float(config.steps * config.batch_size * config.seq_len * runs)
    return tokens, tokens * flops_per_token(job.model, vocab_size(task), config.seq_len)


_FLOPS: dict[tuple, float] = {}


def flops_per_token(spec, vocab: int, seq_len: int) -> float:
    from lab.models.plamo import create_plamo

    key = (json.dumps({"name": spec.name, **dict(spec.overrides)}, sort_keys=True), vocab, seq_len)
    if key not in _FLOPS:
        model = create_plamo(spec.name, device="meta", **{**dict(spec.overrides), "vocab_size": vocab})
        _FLOPS[key] = model.flops_per_token(seq_len)
    return _FLOPS[key]


def vocab_size(task) -> int:
    tokenizer = task.job.render.tokenizer if task.stage == "pretrain" else task.job.tokenizer
    return tokenizer.tokenizer.vocab_size


def plan_cost(config: TextSweepConfig) -> dict[str, dict[str, float]]:
    plan = plan_text_sweep(config)
    stages: dict[str, dict[str, float]] = {}
    for task in plan.tasks:
        if task.stage not in ("pretrain", "finetune"):
            continue
        tokens, flops = task_flops(task)
        row = stages.setdefault(task.stage, {"tasks": 0, "tokens": 0.0, "flops": 0.0})
        row["tasks"] += 1
        row["tokens"] += tokens
        row["flops"] += flops
    return stages


def rate_from_study(folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    """FLOP/s per stage reached by a finished study, and its wall seconds per stage (work + evaluation)."""
    rates, walls = {}, {}
    plan_path = folder / "sweep" / "config.yaml"
    if not plan_path.exists():
        raise SystemExit(f"{folder}: no config.yaml (not a text study folder written by lab text-study)")
    from omegaconf import OmegaConf

    study = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TextSweepConfig),
                                                OmegaConf.load(plan_path)))
    plan = plan_text_sweep(study)
    for stage in ("pretrain", "finetune"):
        flops = seconds = wall = 0.0
        for task in plan.tasks:
            if task.stage != stage or not task.done():
                continue
            result = json.loads(Path(task.outputs[0]).read_text())
            flops += task_flops(task)[1]
            seconds += result["train_seconds"]
            wall += result["wall_seconds"] if stage == "pretrain" else result["finetune_seconds"]
        if seconds:
            rates[stage], walls[stage] = flops / seconds, wall
    if not rates:
        raise SystemExit(f"{folder}: no finished pre-training or fine-tune to measure a rate on")
    return rates, walls


def rates_from_benchmark(path: Path) -> dict[str, float]:
    """Effective training FLOP/s (MFU x peak) of a bench_plamo CSV's eager and best compiled train rows."""
    rows = [r for r in csv.DictReader(path.open()) if r["benchmark"] == "train" and r["mfu"]]
    if not rows:
        raise SystemExit(f"{path}: no train rows with an MFU")
    eager = [r for r in rows if "compile=False" in r["detail"]]
    rate = lambda r: float(r["mfu"]) * float(r["peak_tflops"]) * 1e12  # noqa: E731
    out = {"eager": max(map(rate, eager))} if eager else {}
    out["compiled"] = max(map(rate, rows))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate-from", required=True, type=Path,
                        help="a finished text study folder (<root>/<name>) or a bench_plamo CSV")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the text sweep config to cost")
    args = parser.parse_args(argv)
    config = load_config(CONF_DIR, "text_sweep", TextSweepConfig, [*args.overrides, "root=/nonexistent/cost"])
    stages = plan_cost(config)
    total_flops = sum(s["flops"] for s in stages.values())
    print(f"{config.name}: " + "; ".join(f"{name} {int(s['tasks'])} tasks, {s['tokens']:.3g} tokens, "
                                         f"{s['flops']:.3g} FLOP" for name, s in stages.items()))
    if args.rate_from.suffix == ".csv":
        for label, rate in rates_from_benchmark(args.rate_from).items():
            print(f"  at {rate / 1e12:.0f} TFLOP/s ({label}, {args.rate_from.name}): training "
                  f"{total_flops / rate / 3600:.3g} hours (evaluation, rendering and the tokenizer not included)")
        return 0
    rates, walls = rate_from_study(args.rate_from)
    predicted = 0.0
    for name, s in stages.items():
        rate = rates.get(name, min(rates.values()))
        predicted += s["flops"] / rate
        print(f"  {name}: {rate / 1e9:.2f} GFLOP/s measured -> training {s['flops'] / rate / 3600:.3g} hours")
    print(f"  training {predicted / 3600:.3g} hours; the measured study's finished tasks took "
          + ", ".join(f"{k} {v / 3600:.3g} h wall" for k, v in walls.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
