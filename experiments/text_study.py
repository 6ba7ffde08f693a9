"""The text scaling study: synthetic Japanese -> real Japanese, as sweep points of the lab's sweep machinery.

tokenizer (once, synthetic + real training text) -> render the largest n synthetic tokens once -> for every
(n, seed): pre-train a PLaMo on the first n tokens -> for every s: fine-tune on s real tokens, score held-out
real bits per character -> the same tidy results table as the image sweeps (metrics `bits_per_char`, `loss`,
`zero_shot_bits_per_char`; error = the value: lower is better) -> `lab fit` fits L(n) = D n^-alpha + C.
Run it with `lab sweep --study text launch|status|collect` (any executor) or `lab text-study` (launch, wait,
collect, fit and report in one go).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from lab.run import sweep
from lab.core.config import ConfigError, grid_configs, to_yaml
from lab.data.text import RealTextConfig, TokenizerConfig, load_corpus
from lab.run.launch import LauncherConfig, validate_launcher
from lab.core.launcher import extensible_dict, plain_dict
from lab.lm_train import DTYPES
from lab.models.plamo import PlamoConfigError, get_plamo_config
from lab.core.rundir import atomic_write_json, atomic_write_text
from lab.run.sweep import Plan, Task
from lab.stages.text import (
    PlamoSpec, TextFinetuneConfig, TextFinetuneJob, TextPretrainConfig, TextPretrainJob, run_text_finetune,
    run_text_pretrain,
)
from experiments.text_corpus import TextRenderJob, TokenizerJob, run_text_render, run_tokenizer

METRIC = "bits_per_char"
MAX_TOKENS_PER_CHAR = 3  # byte fallback: a character outside the vocabulary costs at most its UTF-8 bytes


@dataclass
class TextStudyConfig:
    """The text study. Defaults run on 2 CPU cores in a few minutes; the `text_gpu` experiment scales it up."""

    experiment: str = "text_study"
    n: list[int] = field(default_factory=lambda: [0, 8192, 16384, 32768, 65536])  # synthetic pre-training tokens
    s: list[int] = field(default_factory=lambda: [8192])  # real fine-tuning tokens
    seeds: list[int] = field(default_factory=lambda: [0])
    generator: dict[str, Any] = field(default_factory=lambda: {"name": "world_facts", "shard_size": 200})
    # the synthetic text the tokenizer learns from (None: `generator`); naming one for every arm of a study gives
    # all arms one tokenizer, so the from-scratch arm is shared and every pairing is against the same model
    tokenizer_generator: Optional[dict[str, Any]] = None
    data: RealTextConfig = field(default_factory=lambda: RealTextConfig(test_size=300))
    # sentencepiece refuses character_coverage < 0.98; 1000 pieces cover that much of the text's characters
    tokenizer: TokenizerConfig = field(
        default_factory=lambda: TokenizerConfig(vocab_size=1000, character_coverage=0.98))
    tokenizer_synthetic_docs: int = 1000
    tokenizer_real_docs: int = 3000
    model: PlamoSpec = field(default_factory=PlamoSpec)
    pretrain: TextPretrainConfig = field(default_factory=TextPretrainConfig)
    finetune: TextFinetuneConfig = field(default_factory=TextFinetuneConfig)
    eval_max_len: int = 256
    max_docs: int = 1_000_000  # a render stops with an error past this many synthetic documents
    render_workers: int = 1
    device: str = "cpu"  # cpu | cuda | auto
    dtype: str = "float32"  # float32 | bfloat16 (autocast)


@dataclass
class TextSweepConfig:
    name: str = "text_study"
    root: str = "runs"
    study: TextStudyConfig = field(default_factory=TextStudyConfig)
    grid: dict[str, list[Any]] = field(default_factory=extensible_dict)  # dotted study key -> values
    # named extra cells beside the grid's: cell name -> {dotted study key: value} applied to `study` (e.g. a
    # budget-convention check at two n, an s sweep for one arm); each point records its cell ("main": the grid)
    cells: dict[str, dict[str, Any]] = field(default_factory=extensible_dict)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    fit_bootstrap: int = 200

    def __post_init__(self) -> None:
        self.grid = plain_dict(self.grid)
        self.cells = plain_dict(self.cells)


def validate(config: TextStudyConfig) -> None:
    """Every check that can fail before any work: names, sizes, the corpus, and what the generator can give."""
    from synth_render.text import create_text_generator

    sweep.check_axes(config.n, config.s, config.seeds, n_unit="synthetic tokens", s_unit="real fine-tuning tokens")
    if config.dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}")
    if config.device not in ("cpu", "cuda", "auto") and not config.device.startswith("cuda:"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {config.device!r}")
    try:
        get_plamo_config(config.model.name, **{**config.model.overrides, "vocab_size": config.tokenizer.vocab_size})
        config.tokenizer.validate()
        for n in config.n:
            config.pretrain.train_config(n).validate("pretrain")
        config.finetune.validate("finetune", config.data)
        generator = create_text_generator(config.generator)
        if config.tokenizer_generator is not None:
            create_text_generator(config.tokenizer_generator)
    except (ValueError, TypeError, PlamoConfigError) as error:
        raise ConfigError(str(error)) from None
    if config.eval_max_len <= 0 or config.max_docs <= 0 or config.render_workers <= 0:
        raise ConfigError("eval_max_len, max_docs and render_workers must be positive")
    mean_chars = float(np.mean([len(generator.document(i)) for i in range(32)]))
    ceiling = int(config.max_docs * mean_chars * MAX_TOKENS_PER_CHAR)
    if config.pretrain.render_tokens(max(config.n)) > ceiling:
        raise ConfigError(
            f"n={max(config.n)} tokens (+ {2 * config.pretrain.holdout_tokens} held-out) is more than generator {config.generator['name']!r} can provide within "
            f"max_docs={config.max_docs} documents (~{mean_chars:.0f} characters each, so at most ~{ceiling} "
            "tokens); raise max_docs or lower n")
    try:
        documents = load_corpus(config.data)
    except (ValueError, FileNotFoundError) as error:  # EmptyCorpusError is a ValueError
        raise ConfigError(f"real corpus {config.data.name!r}: {error}") from None
    held = config.data.test_size + config.data.val_size
    if held >= len(documents):
        raise ConfigError(f"data.test_size + data.val_size = {held} leaves no training text: {config.data.name} "
                          f"has {len(documents)} documents")
    train_chars = sum(len(d) for d in documents) * (len(documents) - held) / len(documents)
    if max(config.s) > train_chars * MAX_TOKENS_PER_CHAR:
        raise ConfigError(f"s={max(config.s)} tokens is more than the {config.data.name} training split holds "
                          f"(~{train_chars:.0f} characters)")


MAIN_CELL = "main"


def grid_cells(config: TextSweepConfig) -> list[tuple[str, dict[str, Any], TextStudyConfig]]:
    """Every combination of the grid's values applied to the study config (cell "main"), then each named extra
    cell; every one validated."""
    cells = [(MAIN_CELL, overrides, study) for overrides, study in grid_configs(config.grid, config.study,
                                                                                 TextStudyConfig)]
    for name, overrides in config.cells.items():
        if name == MAIN_CELL:
            raise ConfigError(f"cells: {MAIN_CELL!r} names the grid's cells; give the extra cell another name")
        for _, study in grid_configs({key: [value] for key, value in overrides.items()}, config.study,
                                     TextStudyConfig):
            cells.append((name, {}, study))
    for _, _, study in cells:
        validate(study)
    return cells


def plan_text_sweep(config: TextSweepConfig) -> Plan:
    """tokenizer -> render -> pre-train -> fine-tune tasks; shared parents appear once."""
    try:
        validate_launcher(config.launcher)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    threads = config.launcher.threads()
    tasks: dict[str, Task] = {}
    points: list[dict[str, Any]] = []

    def add(key: str, stage: str, fn: Any, job: Any, run: Any, depends: list[str]) -> str:
        tasks.setdefault(key, Task(key=key, stage=stage, fn=fn, job=job, outputs=[str(run.result_path)],
                                   depends=depends))
        return key

    for cell, overrides, study in grid_cells(config):
        tokenizer = TokenizerJob(root=config.root, experiment=config.name,
                                 generator=study.tokenizer_generator or study.generator, data=study.data,
                                 tokenizer=study.tokenizer, synthetic_docs=study.tokenizer_synthetic_docs,
                                 real_docs=study.tokenizer_real_docs)
        tokenizer_key = add(f"tokenizer/{tokenizer.run_dir().hash}", "tokenizer", run_tokenizer, tokenizer,
                            tokenizer.run_dir(), [])
        render = TextRenderJob(tokenizer=tokenizer, generator=study.generator,
                               tokens=study.pretrain.render_tokens(max(study.n)),
                               max_docs=study.max_docs, workers=study.render_workers)
        render_key = None
        if max(study.n) > 0:
            render_key = add(f"render/{render.run_dir().hash}", "render", run_text_render, render, render.run_dir(),
                             [tokenizer_key])
        for n in study.n:
            for seed in study.seeds:
                pretrain = None
                if n > 0:
                    pretrain = TextPretrainJob(root=config.root, experiment=config.name, render=render, n=n,
                                               seed=seed, model=study.model, train=study.pretrain,
                                               device=study.device, dtype=study.dtype, threads=threads,
                                               eval_max_len=study.eval_max_len)
                    add(f"pretrain/{pretrain.run_dir().hash}", "pretrain", run_text_pretrain, pretrain,
                        pretrain.run_dir(), [render_key])
                for s in study.s:
                    job = TextFinetuneJob(root=config.root, experiment=config.name, data=study.data, s=s, seed=seed,
                                          tokenizer=tokenizer, model=study.model, train=study.finetune,
                                          pretrain=pretrain, eval_max_len=study.eval_max_len, device=study.device,
                                          dtype=study.dtype, threads=threads)
                    depends = [f"pretrain/{pretrain.run_dir().hash}"] if pretrain else [tokenizer_key]
                    key = add(f"finetune/{job.run_dir().hash}", "finetune", run_text_finetune, job, job.run_dir(),
                              depends)
                    points.append({"n": n, "s": s, "seed": seed, "model": study.model.name,
                                   "data": study.data.name, "generator": study.generator["name"],
                                   "budget": study.pretrain.budget, "cell": cell, **overrides, "task": key})
    # the from-scratch fine-tunes first (every gain is paired with them), then seed by seed within a stage: a
    # study stopped early has the scratch arm and whole curves for its first seeds
    by_seed = sorted(tasks.values(), key=lambda task: getattr(task.job, "seed", -1))
    rank = {stage: i for i, stage in enumerate(("tokenizer", "render", "scratch", "pretrain", "finetune"))}
    ordered = sorted(by_seed, key=lambda task: rank["scratch" if is_scratch(task) else task.stage])
    return Plan(name=config.name, root=config.root, points=points, tasks=ordered)


def is_scratch(task: Task) -> bool:
    return task.stage == "finetune" and getattr(task.job, "pretrain", 0) is None


ARM_COLUMNS = ("cell", "generator", "budget")  # what tells one curve from another besides s


def curve_groups(table: pd.DataFrame) -> list[str]:
    """The columns that split the table into curves: s, and each arm column that takes more than one value."""
    return [c for c in ARM_COLUMNS if c in table and table[c].nunique() > 1] + ["s"]


def fit_text_curves(table: pd.DataFrame, bootstrap: int = 200, seed: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
    """L(n) = D n^-alpha + C on bits/char (n > 0), one curve per s and arm (named "arm/.../s"); bits/char is not
    an error rate in [0, 1], so the floor C may take any non-negative value."""
    from analysis.fit import fit_law
    from analysis.validation import InputError

    fits, unfitted = {}, {}
    rows = table[(table.metric == METRIC) & (table.n > 0)]
    groups = curve_groups(rows)
    for values, curve in rows.groupby(groups):
        values = values if isinstance(values, tuple) else (values,)
        name = "/".join([*map(str, values[:-1]), str(int(values[-1]))])
        y = curve.error.to_numpy(float)
        try:
            fits[name] = fit_law(curve.n.to_numpy(float), y, law="power_floor", target_range=None,
                                 bounds={"C": (0.0, float(y.max()))}, bootstrap=bootstrap, seed=seed)
        except InputError as error:
            unfitted[name] = str(error)
    return fits, unfitted


def write_report(config: TextSweepConfig, table: pd.DataFrame, fits: dict[str, Any], unfitted: dict[str, str]) -> str:
    study = config.study
    lines = [f"# {config.name}: synthetic Japanese ({study.generator['name']}) -> real {study.data.name}", "",
             f"PLaMo `{study.model.name}` {dict(study.model.overrides) or ''}; pre-training on n synthetic tokens, "
             f"fine-tuning on s real tokens, bits per character on {study.data.test_size} held-out real documents.",
             "", "| curve | n | bits/char (fine-tuned) | unigram baseline | zero-shot bits/char | token loss | seeds |",
             "|---|---|---|---|---|---|---|"]
    groups = curve_groups(table)
    index = [*groups, "n", "seed"]
    wide = table.pivot_table(index=index, columns="metric", values="value").reset_index()
    baseline = table[table.metric == METRIC].groupby(index).baseline_error.first() if "baseline_error" in table \
        else None
    for values, group in wide.groupby([*groups, "n"]):
        name = "/".join(map(str, values[:-1]))
        base = baseline.loc[[tuple(values) + (seed,) for seed in group.seed]].mean() if baseline is not None \
            else float("nan")
        lines.append(f"| {name} | {values[-1]} | {group[METRIC].mean():.4f} | {base:.4f} | "
                     f"{group['zero_shot_bits_per_char'].mean():.4f} | {group['loss'].mean():.4f} | {len(group)} |")
    for s, result in sorted(fits.items()):
        lines += ["", f"## Fit of L(n) = D n^-alpha + C to bits/char, curve {s} (n > 0)", "", "```", result.report(),
                  "```"]
    for s, reason in sorted(unfitted.items()):
        lines += ["", f"## curve {s}: not fitted", "", reason]
    lines += ["", "Same fit from the command line: `lab fit results.csv --where metric=bits_per_char --no-range-check "
              "--bounds C=0:10 --group s`", ""]
    return "\n".join(lines)


def run_text_study(config: TextSweepConfig) -> dict[str, Any]:
    """Launch (or resume) the sweep, wait for it, collect the table, fit and report."""
    plan = plan_text_sweep(config)
    out = Path(config.root) / config.name
    atomic_write_text(plan.folder / "config.yaml", to_yaml(config))
    launched, table = sweep.run_to_completion(plan, config.launcher, config.name, out / "results.csv")
    fits, unfitted = fit_text_curves(table, bootstrap=config.fit_bootstrap)
    atomic_write_json(out / "fit.json", {s: r.to_dict() for s, r in fits.items()})
    report = write_report(config, table, fits, unfitted)
    atomic_write_text(out / "report.md", report)
    return {"table": table, "fits": fits, "unfitted": unfitted, "report": report, "dir": out, "launch": launched}
