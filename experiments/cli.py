"""The `lab` command: one entry point whose subcommands map onto the packages.

Subcommands take Hydra overrides (key=value, group=option, +experiment=NAME) after their own flags.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Callable, Sequence

CONF_DIR = Path(__file__).resolve().parent / "conf"

OVERRIDES_HELP = ("Hydra overrides such as n=[0,1000,4000] seeds=[0] data=sklearn_digits model=resnet18 "
                  "launcher=debug +experiment=toy; unknown keys are rejected with the valid ones")


def _load(config_name: str, schema: type, overrides: Sequence[str]):
    from lab.core.config import load_config

    return load_config(CONF_DIR, config_name, schema, overrides)


def cmd_demo(args: argparse.Namespace) -> int:
    from experiments.digits_demo import DemoConfig, run_demo
    from lab.core.config import to_yaml

    config = _load("demo", DemoConfig, args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    outcome = run_demo(config)
    print(outcome["report"])
    print(f"Wrote {outcome['dir']}/report.md, results.csv, fit.json, scaling.png")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from experiments.render import render_command
    from lab.core.config import to_yaml

    schema, run = render_command(args.overrides)
    config = _load("render", schema, args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    print(run(config))
    return 0


def cmd_render_preview(args: argparse.Namespace) -> int:
    from experiments.render import run_render_preview

    print(run_render_preview(args.folder, args.out, args.count, args.zoom))
    return 0


# --study NAME of `lab sweep` -> (config name, module, schema, planner)
SWEEP_STUDIES = {"digits": ("sweep", "experiments.sweep", "SweepConfig", "plan_sweep"),
                 "text": ("text_sweep", "experiments.text_study", "TextSweepConfig", "plan_text_sweep"),
                 "figure1": ("figure1", "experiments.figure1", "Figure1Config", "plan_figure1")}


def watch_command(args: argparse.Namespace) -> str:
    """The `lab sweep status` line that shows this sweep, ready to paste (study flag and quoting included)."""
    import shlex

    study = [] if args.study == "digits" else ["--study", args.study]
    return shlex.join(["lab", "sweep", *study, "status", *args.overrides])


def cmd_sweep(args: argparse.Namespace) -> int:
    from lab.run import sweep
    from lab.core.config import ConfigError, to_yaml
    from lab.core.rundir import atomic_write_text

    config_name, module_name, schema, planner = SWEEP_STUDIES[args.study]
    module = importlib.import_module(module_name)
    plan_sweep = getattr(module, planner)
    config = _load(config_name, getattr(module, schema), args.overrides)
    folder = Path(config.root) / config.name / "sweep"
    if args.action == "adapt":
        if args.study != "digits":
            raise ConfigError(f"lab sweep adapt runs the digits study's adaptive design; --study {args.study} "
                              f"has no adaptive planner yet")
        from experiments.adapt import check_adaptive, run_adaptive

        check_adaptive(config)
        atomic_write_text(folder / "config.yaml", to_yaml(config))
        print(run_adaptive(config)["report"])
        return 0
    if args.action == "launch":
        plan = plan_sweep(config)
        atomic_write_text(folder / "config.yaml", to_yaml(config))
        outcome = sweep.launch(plan, config.launcher)
        print(f"{config.name}: {len(plan.points)} points, {len(plan.tasks)} tasks; submitted {outcome['submitted']} "
              f"({outcome['skipped_done']} done, {outcome['skipped_active']} still queued or running) "
              f"with the {config.launcher.name} executor. Watch it: {watch_command(args)}")
        return 0
    if args.action == "status":
        view = sweep.SweepView.read(folder)  # one reading (one scheduler query) for the table and the summary
        table = sweep.status(view)
        with pd_display():
            print(table.drop(columns=["error", "log"]).to_string(index=False))
        swept = [c for c in table.columns if c not in ("state", "error", "log", "requeues", "job_id")]
        for _, row in table[table.error != ""].iterrows():  # whole reasons, not cut to the table's width
            print(f"{row.state} {' '.join(f'{c}={row[c]}' for c in swept)}: {row.error}"
                  + (f"\n    log: {row.log}" if row.log else ""))
        counts = table.state.value_counts().to_dict()
        print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        print(sweep.format_progress(sweep.stage_progress(view)))  # last: the bottom of the terminal
        return 0
    out = Path(args.out) if args.out else Path(config.root) / config.name / "results.csv"
    table = sweep.collect(folder, config.name, out)
    print(f"wrote {len(table)} rows ({table.run_hash.nunique() if len(table) else 0} runs) to {out}")
    return 0


def cmd_text_study(args: argparse.Namespace) -> int:
    from experiments.text_study import TextSweepConfig, run_text_study
    from lab.core.config import to_yaml

    config = _load("text_sweep", TextSweepConfig, args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    outcome = run_text_study(config)
    print(outcome["report"])
    print(f"Wrote {outcome['dir']}/report.md, results.csv, fit.json")
    return 0


def pd_display():
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.max_rows", 500)


def delegate(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A handler that imports `module.function` only when its subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), function)(args)

    return handler


class Deferred:
    """Subcommand arguments defined in modules that are slow to import (torch, timm, scipy): each is added only
    when its subcommand is the one invoked, so `lab --help` and every other command start without them."""

    def __init__(self) -> None:
        self.adders: list[tuple[tuple[str, ...], Callable[[], None]]] = []

    def add(self, path: tuple[str, ...], parser: argparse.ArgumentParser, module: str, function: str,
            handler: str | None = None) -> None:
        """`module.function(parser)` adds the arguments when `path` is invoked; `module.handler(args)` runs it
        (omit it where `function` sets the handlers itself, as for subcommands with actions)."""
        self.adders.append((path, lambda: getattr(importlib.import_module(module), function)(parser)))
        if handler is not None:
            parser.set_defaults(handler=delegate(module, handler))

    def load_for(self, argv: Sequence[str]) -> None:
        words = [a for a in argv if not a.startswith("-")]
        for path, adder in self.adders:
            if tuple(words[: len(path)]) == path:
                adder()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `lab` parser; only the invoked subcommand's slow-to-import arguments are loaded (all when argv is None)."""
    deferred = Deferred()
    parser = argparse.ArgumentParser(
        prog="lab",
        description="Synthetic-to-real transfer and scaling laws: render synthetic data, pre-train and fine-tune, "
                    "fit L(n) = D n^-alpha + C.",
        epilog="Run 'lab COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo", help="run (or resume) the demo scaling study: synthetic digits -> real MNIST",
        description="Render synthetic digits, pre-train at several n, fine-tune on s real MNIST images, measure the "
                    "held-out error, fit the scaling law. Writes runs/digits_demo/{report.md,results.csv,fit.json,"
                    "scaling.png}. Finished points are reused; an interrupted run resumes.")
    demo.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    demo.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    demo.set_defaults(handler=cmd_demo)

    render = commands.add_parser(
        "render", help="render a synthetic dataset to verified shards (+ a contact sheet)",
        description="Write `count` samples of a renderer into shards with a manifest; finished shards are kept, "
                    "so an interrupted render resumes. Example: lab render count=2000 out=data/digits "
                    "preview=digits.png renderer.rotation_deg=30")
    render.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    render.add_argument("overrides", nargs="*", help="Hydra overrides: count=, out=, workers=, preview=, renderer.*; "
                        "renderer=scenes3d for 3D scenes (renderer.engine=torch|mitsuba|blender, renderer.level=lv3)")
    render.set_defaults(handler=cmd_render)

    render_preview = commands.add_parser(
        "render-preview", help="draw a contact sheet PNG of a rendered dataset folder",
        description="One row per sample: for 3D scenes rgb with boxes, class mask, instance mask, depth, normals; "
                    "for digits a grid sorted by label. Example: lab render-preview data/scenes --out sheet.png")
    render_preview.add_argument("folder", help="a folder written by lab render")
    render_preview.add_argument("--out", default="preview.png", help="PNG to write (default preview.png)")
    render_preview.add_argument("--count", type=int, default=8, help="samples to show (default 8)")
    render_preview.add_argument("--zoom", type=int, default=4, help="pixel magnification (default 4)")
    render_preview.set_defaults(handler=cmd_render_preview)

    sweep = commands.add_parser(
        "sweep", help="launch, watch and collect a sweep (local, debug or Slurm executor)",
        description="A grid over the digits study as render / pre-train / fine-tune jobs. 'launch' returns at once "
                    "(re-launching submits only missing or failed points); 'status' prints one row per point; "
                    "'collect' writes the tidy results table; 'adapt' runs a study with design.kind=adaptive in "
                    "rounds, each launching the points that narrow the target's interval most per unit cost, "
                    "until the target width or the budget (resumable; decisions in sweep/adapt.jsonl). Example: "
                    "lab sweep launch +experiment=sweep_toy launcher=slurm; lab sweep adapt +experiment=adapt_toy")
    sweep.add_argument("action", choices=["launch", "status", "collect", "adapt"])
    sweep.add_argument("--study", choices=sorted(SWEEP_STUDIES), default="digits",
                       help="which study's grid, given before the action: digits (images, default), figure1 (3D-scene "
                            "pre-training tasks x real targets) or text (PLaMo on "
                            "synthetic Japanese), e.g. lab sweep --study text launch +experiment=text_toy")
    sweep.add_argument("--out", help="collect: output file (.csv, or .parquet with pyarrow installed)")
    sweep.add_argument("overrides", nargs="*", help="Hydra overrides of the sweep config (the same for every action)")
    sweep.set_defaults(handler=cmd_sweep)

    train = commands.add_parser(
        "train", help="train a batch-size-control recipe (ResNet-50 style, 2D-torus all-reduce) on any executor",
        description="Train one recipe of experiments/conf/recipe/ on a lab dataset as one job: the global batch "
                    "follows the recipe's schedule (gradient accumulation above the per-rank cap), with LR warm-up "
                    "and scaling, label smoothing and the chosen all-reduce. Example: lab train "
                    "recipe=batch_control_toy recipe.launcher.tasks_per_node=2 recipe.allreduce.kind=torus2d")
    train.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    train.add_argument("overrides", nargs="*", help="Hydra overrides: recipe=NAME, recipe.*, data=, image_size=, root=")
    train.set_defaults(handler=delegate("experiments.batch_control", "run_train_command"))

    model = commands.add_parser("model", help="inspect models (PLaMo language models)",
                                description="Inspect a model without allocating its weights.")
    model_commands = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    info = model_commands.add_parser(
        "info", help="parameter count (total and per block type) and layer pattern of a PLaMo config",
        description="Parameter count and layer pattern of a built-in PLaMo config (e.g. plamo-2-1b, plamo-2-tiny) "
                    "or a config.json, computed on the meta device (no weights are allocated).")
    deferred.add(("model", "info"), info, "lab.models.plamo.info", "add_model_info_arguments", "run_model_info")

    evaluate = commands.add_parser("eval", help="evaluate generated text (pfgen-bench metrics)",
                                   description="Evaluation of language-model outputs.")
    eval_commands = evaluate.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    score = eval_commands.add_parser(
        "pfgen-score", help="score answers generated elsewhere with the pfgen-bench n-gram and rule metrics",
        description="Fluency, truthfulness, helpfulness and the combined pfgen-bench score of answers in the "
                    "upstream result layout (trials.jsonl[.xz]), against a pfgen-bench data folder (Qxx.json). "
                    "Reference n-gram tables are cached on disk after the first run.")
    deferred.add(("eval", "pfgen-score"), score, "lab.eval.pfgen.cli", "add_pfgen_score_arguments", "run_pfgen_score")
    generate = eval_commands.add_parser(
        "pfgen", help="generate answers with a lab PLaMo model (pfgen-bench protocol) and score them",
        description="20-shot prompts from the other questions (sha1 order per seed and trial), sampling with "
                    "per-trial seeds in completion, qa or chat mode; writes config.json + trials.jsonl.xz in the "
                    "upstream layout, then scores them.")
    deferred.add(("eval", "pfgen"), generate, "lab.eval.pfgen.harness", "add_pfgen_arguments", "run_pfgen_cli")
    build_set = eval_commands.add_parser(
        "pfgen-build-set", help="build a pfgen-style question set from the synthetic text generators",
        description="Questions about the synthetic world (facts, arithmetic, dialogue, structured records) with "
                    "keyword rules and deterministic reference answers, written as Qxx.json + questions.jsonl so "
                    "pfgen-score and pfgen run on it unchanged. Example: lab eval pfgen-build-set --generator "
                    "world_facts,arithmetic --questions 50 --seed 0 --out data/pfgen-lab")
    deferred.add(("eval", "pfgen-build-set"), build_set, "lab.eval.pfgen.lab_sets", "add_build_set_arguments",
                 "run_build_set")

    text_study = commands.add_parser(
        "text-study", help="run (or resume) the text scaling study: synthetic Japanese -> real Japanese bits/char",
        description="Tokenizer, synthetic render, PLaMo pre-training on n tokens, fine-tuning on s real tokens, "
                    "held-out bits per character, fit of L(n) = D n^-alpha + C; through the sweep machinery (the "
                    "launcher decides where jobs run) and waits for it. Writes runs/<name>/{results.csv,fit.json,"
                    "report.md}. Example: lab text-study +experiment=text_toy launcher=debug")
    text_study.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    text_study.add_argument("overrides", nargs="*", help="Hydra overrides of the text sweep config")
    text_study.set_defaults(handler=cmd_text_study)

    long_context = commands.add_parser(
        "long-context", help="passkey retrieval before/after switching PLaMo's sliding-window layers to full attention",
        description="Train a small PLaMo on a passkey task at a short context (sliding-window attention), score "
                    "retrieval at a long context with the passkey beyond the window, switch the SWA layers to full "
                    "attention (full_attention_idx) and continue training at the long context, score again.")
    deferred.add(("long-context",), long_context, "experiments.passkey_study", "add_long_context_arguments",
                 "run_long_context_cli")

    fit = commands.add_parser(
        "fit", help="fit a scaling law to any tidy CSV (e.g. a study's results.csv)",
        description="Fit a scaling law (default L(n) = D n^-alpha + C) with bootstrap intervals; prints a table, "
                    "writes JSON and a figure.")
    deferred.add(("fit",), fit, "analysis.cli", "add_fit_arguments", "run_fit")
    task_finetune = commands.add_parser(
        "task-finetune", help="fine-tune a ResNet on your own data (ImageFolder, COCO, ADE20K), from a lab backbone",
        description="Fine-tune a ResNet from a pre-trained backbone or from scratch on ImageFolder classification, "
                    "COCO detection or ADE20K segmentation, evaluate on the validation split, print the result. "
                    "Example: lab task-finetune +experiment=coco_r50 data.root=/data/coco pretrained=PATH/model.pt")
    deferred.add(("task-finetune",), task_finetune, "experiments.task_finetune", "add_arguments", "run_cli")
    post = commands.add_parser(
        "post", help="post-training of PLaMo models: SFT/DPO pipeline, pruning, quantization, merging",
        description="Post-training stages on HF-layout PLaMo folders: 'pipeline' (base -> SFT -> DPO -> merges, "
                    "measured per stage), 'prune' (prune + distil vs the same shape from scratch), 'prune-summary', "
                    "'quantize' (weight-only int8/int4) and 'merge' (linear or task arithmetic). Example: lab post "
                    "quantize --model DIR --bits 4 --group-size 64 --out DIR; lab eval pfgen --model DIR scores the "
                    "result.")
    deferred.add(("post",), post, "experiments.post_cli", "add_post_arguments")

    paper = commands.add_parser(
        "paper", help="the paper reproduction: collect the studies' results, make the figures, build the PDF",
        description="collect: paper/results/<study>.csv from the finished sweeps of experiments/conf/experiment/"
                    "paper_*.yaml under --root. figures: run notebooks/paper_*.ipynb on --results (figures, LaTeX "
                    "tables, findings.md in --out). pdf: pdflatex paper/main.tex on what figures wrote. restore: the "
                    "finished run records that collect stored (--results/runs/) back under --root, so a relaunch "
                    "on a fresh machine runs only the missing points.")
    paper.add_argument("action", choices=["collect", "restore", "figures", "pdf"])
    paper.add_argument("--root", default="runs", help="collect: where the sweeps ran (their config's root)")
    paper.add_argument("--results", default="paper/results", help="the collected results tables")
    paper.add_argument("--out", default="paper/generated", help="figures/, tables/, findings/ for the paper")
    paper.add_argument("--bootstrap", type=int, default=200, help="seed-bootstrap resamples per fit")
    paper.set_defaults(handler=cmd_paper)
    if argv is None:
        for _, adder in deferred.adders:
            adder()
    else:
        deferred.load_for(argv)
    return parser


def cmd_paper(args: argparse.Namespace) -> int:
    from experiments import paper

    results, out = Path(args.results), Path(args.out)
    if args.action == "collect":
        results.mkdir(parents=True, exist_ok=True)
        for study, line in paper.collect(Path(args.root), results).items():
            print(f"{study}: {line}")
        return 0
    if args.action == "restore":
        for experiment, line in paper.restore_runs(results, Path(args.root)).items():
            print(f"{experiment}: {line}")
        return 0
    if args.action == "pdf":
        try:
            print(f"Wrote {paper.build_pdf()}")
        except RuntimeError as error:
            print(f"lab paper: error: {error}", file=sys.stderr)
            return 2
        return 0
    if not results.is_dir():
        print(f"lab paper: error: no results folder {results}; run `lab paper collect` first", file=sys.stderr)
        return 2
    for notebook, line in paper.make_figures(results, out, bootstrap=args.bootstrap).items():
        print(f"{notebook}: {line}")
    print(f"Wrote {out}/figures, {out}/tables, {out}/findings.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from lab.core.config import ConfigError
    from lab.core.registry import UnknownNameError
    from lab.run.slurm import SlurmError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ConfigError, UnknownNameError, SlurmError) as error:
        print(f"lab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print(f"\nlab {args.command}: {error or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
