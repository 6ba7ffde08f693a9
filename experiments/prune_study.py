"""Prune + distil vs train from scratch, at equal training tokens, on synthetic + real Japanese text.

A "large" PLaMo is trained on a packed stream of synthetic (world_facts) and real (manpages-ja) documents. It is
pruned to a smaller shape by measured importance (lab.post.prune) and distilled from the large model for T
tokens (lab.post.distill); the same small shape is trained from scratch on the same T tokens (same stream, seed
and schedule). Reported: held-out real bits/char (and held-out synthetic bits/char) of every model, and a
pfgen-style score on a lab question set about the corpus' world. The large model's training is the price of the
pruned model's head start and is listed in the report, not hidden; `charge_teacher_tokens=true` adds the stricter
baseline that pays it: the small shape trained from scratch for the teacher's tokens plus the distillation tokens
("scratch_charged"). Every model is saved in the HF layout.

    python -m experiments.prune_study [overrides]      e.g. small_train.steps=300 +experiment=prune_toy
    python -m experiments.prune_study charge_teacher_tokens=true
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from lab.core.config import load_config, to_yaml
from lab.data.text import RealTextConfig, Tokenizer, TokenizerConfig, text_split
from lab.lm_train import LMTrainConfig, TokenStream, evaluate_text, resolve_device, stream_batch, train_lm
from lab.models.plamo import PlamoForCausalLM, get_plamo_config, save_pretrained
from lab.post.distill import DistillConfig, distill
from lab.post.measure import mean_and_se, paired_difference, per_question
from lab.post.prune import PruneTarget, check_target, prune_model
from lab.core.rundir import RunDir, atomic_write_json, atomic_write_text
from lab.stages.text import PlamoSpec

CONF_DIR = Path(__file__).resolve().parent / "conf"


def _large_model() -> PlamoSpec:
    return PlamoSpec("plamo-2-tiny", {
        "hidden_size": 128, "num_hidden_layers": 4, "intermediate_size": 512, "num_attention_heads": 4,
        "num_key_value_heads": 1, "hidden_size_per_head": 32, "mamba_num_heads": 8, "mamba_d_state": 16,
        "attention_window_size": 64, "mamba_chunk_size": 32, "full_attention_idx": []})


@dataclass
class PfgenEvalConfig:
    """A small pfgen-style run: `questions` (>= 21 for 20-shot prompts) about the corpus' world, `trials` each."""

    enabled: bool = True
    questions: int = 21
    answers: int = 50  # reference answers per question (the n-gram tables)
    trials: int = 3
    max_new_tokens: int = 40
    batch_size: int = 7


@dataclass
class PruneStudyConfig:
    """Defaults finish in a few minutes on 2 CPU cores; `+experiment=prune_toy` is the seconds-long test size."""

    experiment: str = "prune_study"
    root: str = "runs"
    seed: int = 0
    generator: dict[str, Any] = field(default_factory=lambda: {"name": "world_facts"})
    synthetic_docs: int = 3000
    synthetic_eval_docs: int = 100
    data: RealTextConfig = field(default_factory=lambda: RealTextConfig(test_size=300))
    real_docs: int = 20000
    tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(vocab_size=1000,
                                                                               character_coverage=0.98))
    tokenizer_docs: int = 3000  # of each kind
    large: PlamoSpec = field(default_factory=_large_model)
    target: PruneTarget = field(default_factory=lambda: PruneTarget(
        num_hidden_layers=2, intermediate_size=256, num_attention_heads=2, mamba_num_heads=4))
    large_train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(steps=300, batch_size=16, seq_len=64,
                                                                             lr=3e-3, log_every=50))
    small_train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(steps=150, batch_size=16, seq_len=64,
                                                                             lr=3e-3, log_every=50))
    distill: DistillConfig = field(default_factory=DistillConfig)
    charge_teacher_tokens: bool = False  # also train scratch for large_train + small_train tokens
    calibration_batches: int = 4
    eval_max_len: int = 128
    pfgen: PfgenEvalConfig = field(default_factory=PfgenEvalConfig)
    device: str = "cpu"
    threads: int = 1  # tiny models run fastest on one thread; 0 keeps torch's default

    def validate(self) -> None:
        for key in ("synthetic_docs", "synthetic_eval_docs", "real_docs", "tokenizer_docs", "calibration_batches"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        self.large_train.validate("large_train")
        self.small_train.validate("small_train")
        self.distill.validate()
        if self.pfgen.enabled and self.pfgen.questions < 21:
            raise ValueError(f"pfgen.questions must be >= 21 for 20-shot prompts, got {self.pfgen.questions}")


def load_prune_config(overrides: Sequence[str] = ()) -> PruneStudyConfig:
    return load_config(CONF_DIR, "prune", PruneStudyConfig, overrides)


@dataclass
class Corpus:
    tokenizer: Tokenizer
    stream: TokenStream
    real_test: list[str]
    synthetic_test: list[str]


def build_corpus(config: PruneStudyConfig) -> Corpus:
    """Tokenizer on training text only; one shuffled, packed stream of synthetic + real training documents."""
    from synth_render.text import create_text_generator

    generator = create_text_generator(config.generator)
    synthetic = [generator.document(i) for i in range(config.synthetic_docs + config.synthetic_eval_docs)]
    split = text_split(config.data)
    real = split.train[: config.real_docs]
    tokenizer = Tokenizer.train(synthetic[: config.tokenizer_docs] + real[: config.tokenizer_docs], config.tokenizer)
    documents = synthetic[: config.synthetic_docs] + real
    random.Random(config.seed).shuffle(documents)
    stream = TokenStream.pack(tokenizer.encode_batch(documents), eos=2)
    return Corpus(tokenizer, stream, split.test, synthetic[config.synthetic_docs :])


def score_pfgen(models: dict[str, PlamoForCausalLM], tokenizer: Tokenizer, config: PruneStudyConfig, out: Path
                ) -> dict[str, dict[str, float]]:
    """Build a lab question set about the corpus' world, let every model answer it, score with the pfgen metric."""
    from lab.eval.pfgen.harness import run_pfgen
    from lab.eval.pfgen.lab_sets import build_lab_set, make_generators, write_lab_set
    from lab.eval.pfgen.results import read_answers, score_answers, summarize
    from lab.eval.pfgen.scorer import load_scorers

    name = config.generator.get("name", "world_facts")
    seed = int(config.generator.get("seed", 0))
    options = {k: v for k, v in config.generator.items() if k not in ("name", "seed", "shard_size", "doc_length")}
    generators = make_generators([name], seed, options)
    questions_dir = write_lab_set(build_lab_set(generators, config.pfgen.questions, seed, config.pfgen.answers),
                                  out / "pfgen_set", {"generators": [name], "seed": seed})
    scorers = load_scorers(questions_dir, cache_dir=out / "pfgen_cache")
    questions = [scorer.question for scorer in scorers.values()]
    scores = {}
    for label, model in models.items():
        model.eval()
        run = run_pfgen(model, tokenizer, questions, trials=config.pfgen.trials, out_dir=out / "pfgen" / label,
                        max_new_tokens=config.pfgen.max_new_tokens, batch_size=config.pfgen.batch_size,
                        model_name=label, seed=str(config.seed))
        answers = score_answers(read_answers(run.result_file), scorers)
        report = summarize(answers)
        scores[label] = {"score": report.score, "score_std": report.score_std, "fluency": report.fluency,
                         "truthfulness": report.truthfulness, "helpfulness": report.helpfulness,
                         "length": report.length, "per_question": per_question(answers)}
    return scores


def _save(model: PlamoForCausalLM, tokenizer: Tokenizer, path: Path) -> str:
    tokenizer.save(save_pretrained(model, path))
    return str(path)


def run_prune_study(config: PruneStudyConfig) -> dict[str, Any]:
    """Run every step in-process and write result.json and report.md into root/experiment."""
    config.validate()
    large_config = get_plamo_config(config.large.name, **{**config.large.overrides,
                                                          "vocab_size": config.tokenizer.vocab_size})
    check_target(large_config, config.target)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    out = Path(config.root) / config.experiment
    shutil.rmtree(out / "train", ignore_errors=True)  # training logs of an earlier run; models are overwritten
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(config))
    device = resolve_device(config.device)
    corpus = build_corpus(config)
    vocab = corpus.tokenizer.vocab_size

    torch.manual_seed(config.seed)
    large = config.large.build(vocab)
    timing: dict[str, float] = {}
    began = time.perf_counter()
    large_stats = train_lm(large, corpus.stream, _no_checkpoints(config.large_train), RunDir(out / "train" / "large"),
                           seed=config.seed, device=device, desc="large")
    timing["large_train"] = time.perf_counter() - began

    began = time.perf_counter()
    small = config.small_train
    calibration = [stream_batch(corpus.stream, 10**6 + i, small.batch_size, small.seq_len, config.seed)
                   for i in range(config.calibration_batches)]  # steps no training run reaches
    pruned, plan, importance = prune_model(large, config.target,
                                           [(inputs, documents) for inputs, _, documents in calibration])
    timing["prune"] = time.perf_counter() - began
    paths = {"large": _save(large, corpus.tokenizer, out / "large"),
             "pruned": _save(pruned, corpus.tokenizer, out / "pruned")}
    models: dict[str, PlamoForCausalLM] = {"large": large, "pruned": pruned}

    began = time.perf_counter()
    student = PlamoForCausalLM(plan.config)
    student.load_state_dict(pruned.state_dict())
    distill_stats = distill(student, large, corpus.stream, _no_checkpoints(small), config.distill,
                            RunDir(out / "train" / "distilled"), seed=config.seed + 1, device=device)
    timing["distill"] = time.perf_counter() - began
    paths["distilled"] = _save(student, corpus.tokenizer, out / "distilled")
    models["distilled"] = student

    began = time.perf_counter()
    torch.manual_seed(config.seed + 1)
    scratch = PlamoForCausalLM(plan.config)
    scratch_stats = train_lm(scratch, corpus.stream, _no_checkpoints(small), RunDir(out / "train" / "scratch"),
                             seed=config.seed + 1, device=device, desc="scratch")
    timing["scratch_train"] = time.perf_counter() - began
    paths["scratch"] = _save(scratch, corpus.tokenizer, out / "scratch")
    models["scratch"] = scratch

    train_stats = {"large": large_stats, "distilled": distill_stats, "scratch": scratch_stats}
    if config.charge_teacher_tokens:
        began = time.perf_counter()
        torch.manual_seed(config.seed + 1)
        charged = PlamoForCausalLM(plan.config)
        train_stats["scratch_charged"] = train_lm(charged, corpus.stream, _no_checkpoints(charged_schedule(config)),
                                                  RunDir(out / "train" / "scratch_charged"), seed=config.seed + 1,
                                                  device=device, desc="scratch_charged")
        timing["scratch_charged_train"] = time.perf_counter() - began
        paths["scratch_charged"] = _save(charged, corpus.tokenizer, out / "scratch_charged")
        models["scratch_charged"] = charged

    train_tokens = {"large": _tokens(config.large_train), "pruned": 0, "distilled": _tokens(small),
                    "scratch": _tokens(small), "scratch_charged": _tokens(charged_schedule(config))}
    results: dict[str, dict[str, Any]] = {}
    began = time.perf_counter()
    for label, model in models.items():
        real = evaluate_text(model, corpus.tokenizer, corpus.real_test, max_len=config.eval_max_len, device=device)
        synthetic = evaluate_text(model, corpus.tokenizer, corpus.synthetic_test, max_len=config.eval_max_len,
                                  device=device)
        results[label] = {"path": paths[label], "parameters": model.num_parameters(),
                          "layer_pattern": model.config.layer_pattern, "train_tokens": train_tokens[label],
                          "bits_per_char": real["bits_per_char"], "synthetic_bits_per_char": synthetic["bits_per_char"]}
    timing["eval_bits_per_char"] = time.perf_counter() - began
    if config.pfgen.enabled:
        began = time.perf_counter()
        for label, scores in score_pfgen(models, corpus.tokenizer, config, out).items():
            results[label]["pfgen"] = scores
        timing["pfgen"] = time.perf_counter() - began
    timing["total"] = time.perf_counter() - started

    result = {"config": asdict(config), "models": results, "comparison": compare(results),
              "plan": plan.to_dict(), "importance": importance.to_dict(), "timing_seconds": timing,
              "train": train_stats,
              "stream_tokens": len(corpus.stream), "vocab_size": vocab}
    atomic_write_json(out / "result.json", result)
    atomic_write_text(out / "report.md", report_markdown(result))
    return result


def _tokens(train: LMTrainConfig) -> int:
    return train.steps * train.batch_size * train.seq_len


def charged_schedule(config: PruneStudyConfig) -> LMTrainConfig:
    """small_train lengthened to at least the teacher's tokens plus the distillation tokens (whole steps)."""
    small = config.small_train
    per_step = small.batch_size * small.seq_len
    extra = -(-_tokens(config.large_train) // per_step)
    return LMTrainConfig(**{**asdict(small), "steps": small.steps + extra})


def _no_checkpoints(train: LMTrainConfig) -> LMTrainConfig:
    """The same recipe without mid-run checkpoints: a study run is short and always starts from step 0."""
    return LMTrainConfig(**{**asdict(train), "checkpoint_every": train.steps})


def compare(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Distilled vs scratch at equal tokens: bits/char saved (absolute and relative) and the pfgen difference."""
    distilled, scratch = results["distilled"], results["scratch"]
    gap = scratch["bits_per_char"] - distilled["bits_per_char"]
    comparison: dict[str, Any] = {
        "bits_per_char_gain": gap, "bits_per_char_gain_relative": gap / scratch["bits_per_char"],
        "synthetic_bits_per_char_gain": scratch["synthetic_bits_per_char"] - distilled["synthetic_bits_per_char"],
        "distilled_wins_bits_per_char": gap > 0,
    }
    if "pfgen" in distilled:
        comparison["pfgen_score_gain"] = distilled["pfgen"]["score"] - scratch["pfgen"]["score"]
        comparison["pfgen_score_gain_se"] = paired_difference(distilled["pfgen"]["per_question"],
                                                              scratch["pfgen"]["per_question"])["se"]
        comparison["distilled_wins_pfgen"] = comparison["pfgen_score_gain"] > 0
    if "scratch_charged" in results:
        charged = results["scratch_charged"]
        charged_gap = charged["bits_per_char"] - distilled["bits_per_char"]
        comparison["charged"] = {
            "bits_per_char_gain": charged_gap, "bits_per_char_gain_relative": charged_gap / charged["bits_per_char"],
            "synthetic_bits_per_char_gain": charged["synthetic_bits_per_char"] - distilled["synthetic_bits_per_char"],
            "distilled_wins_bits_per_char": charged_gap > 0}
        if "pfgen" in distilled:
            comparison["charged"]["pfgen_score_gain"] = distilled["pfgen"]["score"] - charged["pfgen"]["score"]
    return comparison


def report_markdown(result: dict[str, Any]) -> str:
    models, comparison, config = result["models"], result["comparison"], result["config"]
    pfgen = "pfgen" in models["distilled"]
    header = "| model | parameters | layers | train tokens | real bits/char | synthetic bits/char |"
    rule = "|---|---:|---|---:|---:|---:|"
    if pfgen:
        header += " pfgen score | F | T | H |"
        rule += "---:|---:|---:|---:|"
    lines = ["# Pruning + distillation vs training from scratch", "",
             f"Large model pruned to {json.dumps({k: v for k, v in config['target'].items() if v is not None})}, "
             f"then distilled (T={config['distill']['temperature']}, KL weight {config['distill']['kl_weight']}) "
             f"for {models['distilled']['train_tokens']} tokens; the same shape trained from scratch on the same "
             f"{models['scratch']['train_tokens']} tokens. Held-out real text: {config['data']['name']} "
             f"({config['data']['test_size']} documents).", "", header, rule]
    for label, row in models.items():
        line = (f"| {label} | {row['parameters']:,} | {row['layer_pattern']} | {row['train_tokens']:,} | "
                f"{row['bits_per_char']:.4f} | {row['synthetic_bits_per_char']:.4f} |")
        if pfgen:
            p = row["pfgen"]
            line += f" {p['score']:.4f} | {p['fluency']:.3f} | {p['truthfulness']:.3f} | {p['helpfulness']:.3f} |"
        lines.append(line)
    verdict = "wins" if comparison["distilled_wins_bits_per_char"] else "LOSES"
    lines += ["", f"Pruned + distilled {verdict} on held-out real bits/char by "
                  f"{comparison['bits_per_char_gain']:.4f} bits/char ({comparison['bits_per_char_gain_relative']:.1%} "
                  f"of the scratch model's), on synthetic by {comparison['synthetic_bits_per_char_gain']:.4f}."]
    if pfgen:
        lines.append(f"pfgen-style score: distilled - scratch = {comparison['pfgen_score_gain']:+.4f} "
                     f"(paired over questions, standard error {comparison['pfgen_score_gain_se']:.4f}).")
    if "charged" in comparison:
        charged = comparison["charged"]
        verdict = "still wins" if charged["distilled_wins_bits_per_char"] else "LOSES"
        lines += ["", f"Charged baseline (scratch_charged: the small shape from scratch for the teacher's tokens plus "
                      f"the distillation tokens, {models['scratch_charged']['train_tokens']:,}): pruned + distilled "
                      f"{verdict} on held-out real bits/char (scratch_charged - distilled = "
                      f"{charged['bits_per_char_gain']:+.4f}, {charged['bits_per_char_gain_relative']:+.1%}; on "
                      f"synthetic {charged['synthetic_bits_per_char_gain']:+.4f})."
                      + (f" pfgen-style score: distilled - scratch_charged = {charged['pfgen_score_gain']:+.4f}."
                         if pfgen else "")]
    lines += ["", f"The large teacher cost {models['large']['train_tokens']:,} training tokens on top; kept layers "
                  f"{result['plan']['layers']} (unit block influence {result['importance']['units']}).",
              f"Wall time: {', '.join(f'{k} {v:.0f} s' for k, v in result['timing_seconds'].items())}.", ""]
    return "\n".join(lines)


SEED_KEYS = ("seed", "root", "experiment")  # what may differ between the runs one summary pools
MODEL_ORDER = ("large", "pruned", "distilled", "scratch", "scratch_charged")


def load_results(runs: Sequence[Path | str]) -> list[dict[str, Any]]:
    """result.json of each run folder (the folder itself or its `experiment` subfolder), all of one recipe."""
    results = []
    for run in map(Path, runs):
        found = [path for path in (run / "result.json", *run.glob("*/result.json")) if path.is_file()]
        if len(found) != 1:
            raise FileNotFoundError(f"{run}: expected one prune-study result.json in it or one level down, "
                                    f"found {len(found)}")
        results.append(json.loads(found[0].read_text()))
    if len(results) < 2:
        raise ValueError(f"a seed summary needs >= 2 runs, got {len(results)}")
    recipe = {k: v for k, v in results[0]["config"].items() if k not in SEED_KEYS}
    for run, result in zip(runs[1:], results[1:]):
        other = {k: v for k, v in result["config"].items() if k not in SEED_KEYS}
        differing = sorted(k for k in recipe.keys() | other.keys() if recipe.get(k) != other.get(k))
        if differing:
            raise ValueError(f"{run}: its recipe differs from {runs[0]}'s in {differing}; pool runs of one recipe")
    seeds = [result["config"]["seed"] for result in results]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs repeat a seed: {seeds}")
    return results


def summarize_seeds(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Distilled vs each baseline over seeds: bits/char gains (mean, SE over seeds) and the pfgen difference
    paired over questions after averaging each question's difference over seeds (every run asks the same set)."""
    baselines = [name for name in ("scratch", "scratch_charged") if all(name in r["models"] for r in results)]
    summary: dict[str, Any] = {"seeds": [r["config"]["seed"] for r in results],
                               "models": {name: _over_seeds([r["models"][name]["bits_per_char"] for r in results])
                                          for name in MODEL_ORDER if name in results[0]["models"]},
                               "baselines": {}}
    for name in baselines:
        gains = [r["models"][name]["bits_per_char"] - r["models"]["distilled"]["bits_per_char"] for r in results]
        relative = [g / r["models"][name]["bits_per_char"] for g, r in zip(gains, results)]
        row: dict[str, Any] = {"bits_per_char_gain": _over_seeds(gains),
                               "bits_per_char_gain_relative": _over_seeds(relative),
                               "train_tokens": results[0]["models"][name]["train_tokens"]}
        if all("per_question" in r["models"][label].get("pfgen", {}) for r in results for label in ("distilled", name)):
            per_seed = [paired_difference(r["models"]["distilled"]["pfgen"]["per_question"],
                                          r["models"][name]["pfgen"]["per_question"]) for r in results]
            row["pfgen_score_gain_per_seed"] = per_seed
            row["pfgen_score_gain_over_seeds"] = _over_seeds([s["diff"] for s in per_seed])
            row["pfgen_score_gain"] = paired_difference(*(_seed_mean(results, label) for label in ("distilled", name)))
        summary["baselines"][name] = row
    summary["distilled_train_tokens"] = results[0]["models"]["distilled"]["train_tokens"]
    summary["teacher_train_tokens"] = results[0]["models"]["large"]["train_tokens"]
    return summary


def _over_seeds(values: Sequence[float]) -> dict[str, Any]:
    mean, se = mean_and_se(values)
    return {"mean": mean, "se": se, "per_seed": list(values)}


def _seed_mean(results: Sequence[dict[str, Any]], label: str) -> dict[str, float]:
    """question id -> the model's score on it, averaged over the seeds' runs."""
    tables = [r["models"][label]["pfgen"]["per_question"] for r in results]
    shared = set(tables[0]).intersection(*tables[1:])
    if shared != set(tables[0]):
        raise ValueError(f"{label}: the runs answered different question sets; pool runs of one question set")
    return {q: sum(table[q] for table in tables) / len(tables) for q in sorted(shared)}


def summary_markdown(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [f"# Pruning + distillation over {len(seeds)} seeds ({', '.join(map(str, seeds))})", "",
             "Held-out real bits/char (mean +- SE over seeds):", "",
             "| model | bits/char | per seed |", "|---|---:|---|"]
    for name, row in summary["models"].items():
        lines.append(f"| {name} | {row['mean']:.4f} +- {row['se']:.4f} | "
                     f"{', '.join(f'{v:.4f}' for v in row['per_seed'])} |")
    lines += ["", f"Distilled for {summary['distilled_train_tokens']:,} tokens from a teacher trained for "
                  f"{summary['teacher_train_tokens']:,}.", "",
              "| baseline | its tokens | bits/char: baseline - distilled | relative | pfgen: distilled - baseline "
              "(paired over questions) | pfgen (SE over seeds) | pfgen per seed |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for name, row in summary["baselines"].items():
        gain, relative = row["bits_per_char_gain"], row["bits_per_char_gain_relative"]
        line = (f"| {name} | {row['train_tokens']:,} | {gain['mean']:+.4f} +- {gain['se']:.4f} | "
                f"{relative['mean']:+.1%} |")
        if "pfgen_score_gain" in row:
            pooled, seeds_row = row["pfgen_score_gain"], row["pfgen_score_gain_over_seeds"]
            line += (f" {pooled['diff']:+.4f} +- {pooled['se']:.4f} ({pooled['diff'] / pooled['se']:+.1f} SE, "
                     f"{int(pooled['n'])} questions) | {seeds_row['mean']:+.4f} +- {seeds_row['se']:.4f} | "
                     + ", ".join(f"{s['diff']:+.4f} +- {s['se']:.4f}" for s in row["pfgen_score_gain_per_seed"])
                     + " |")
        else:
            line += " - | - | - |"
        lines.append(line)
    lines += ["", "Positive numbers favour the pruned + distilled model. The paired pfgen SE counts "
                  "question-to-question noise of the seed-averaged difference; the SE over seeds also counts "
                  "run-to-run noise.", ""]
    return "\n".join(lines)


def write_summary(summary: dict[str, Any], out: Path) -> None:
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", summary_markdown(summary))


def main(argv: Sequence[str] | None = None) -> int:
    """`lab post prune` (also `python -m experiments.prune_study`, with the same --help)."""
    from experiments.post_cli import action_parser

    args = action_parser("prune", "python -m experiments.prune_study").parse_args(
        sys.argv[1:] if argv is None else argv)
    config = load_prune_config(args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    result = run_prune_study(config)
    print(report_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
