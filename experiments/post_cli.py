"""`lab post`: the PLaMo post-training stages. `pipeline` (base -> SFT -> DPO -> merges) and `prune` run the
recipes of experiments/post_training.py and experiments/prune_study.py; `quantize` and `merge` work on HF-layout
folders; `prune-summary` pools prune-study runs.

    lab post pipeline root=runs/post
    lab post quantize --model runs/x/model --bits 4 --group-size 64 --out runs/x/model-int4-g64
    lab post merge --method linear --models sft dpo --weights 0.5 0.5 --out merged
    lab post merge --method task --base base --models sft dpo --scales 0.7 0.3 --out merged
    lab post prune-summary runs/prune_lab/s0 runs/prune_lab/s1 --out runs/prune_lab

A tokenizer stored next to the first input model (tokenizer.model + tokenizer_config.json) is copied to --out.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json")


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The parser's sub-command group, created when no other module has added one yet."""
    existing = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if existing:
        return existing[0]
    return parser.add_subparsers(dest="post_command", metavar="ACTION", required=True)


def add_post_commands(subparsers: argparse._SubParsersAction) -> None:
    """`post` with its actions under an existing sub-command group (the `lab` parser defers this to
    `add_post_arguments`, so that `lab --help` does not import this module)."""
    add_post_arguments(subparsers.choices.get("post") or subparsers.add_parser(
        "post", help="post-training of PLaMo models (SFT/DPO pipeline, pruning, quantization, merging)"))


def add_post_arguments(post: argparse.ArgumentParser) -> None:
    """`lab post pipeline|prune|prune-summary|quantize|merge`: the PLaMo post-training stages."""
    actions = _subcommands(post)

    for name, handler, help_text, description in (
        ("pipeline", _run_main("experiments.post_training"), "base -> SFT -> DPO -> merges, measured per stage",
         "Pre-train (or load) a base PLaMo, SFT on synthetic instructions (loss on responses only), DPO against the "
         "frozen SFT model, linear and task-arithmetic merges; task accuracy and the pfgen-style score per stage "
         "(<root>/<experiment>/report/{report.md,stages.json}). Hydra overrides of "
         "experiments/conf/post_training.yaml, e.g. lab post pipeline root=runs/post sft.steps=100; "
         "base_checkpoint=DIR starts from a saved PLaMo folder that holds its tokenizer."),
        ("prune", _run_main("experiments.prune_study"),
         "prune a trained PLaMo, distil it, compare with the same shape from scratch",
         "Train a larger PLaMo, prune layers/heads/channels by measured importance, distil (KL on logits) and "
         "compare at equal tokens with the small shape trained from scratch (bits/char, pfgen-style score). "
         "Hydra overrides of experiments/conf/prune.yaml, e.g. lab post prune +experiment=prune_lab seed=0."),
    ):
        stage = actions.add_parser(name, help=help_text, description=description)
        stage.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
        stage.add_argument("overrides", nargs="*", help="Hydra overrides (key=value)")
        stage.set_defaults(handler=handler)

    summary = actions.add_parser(
        "prune-summary", help="pool prune-study runs of one recipe over seeds",
        description="Distilled vs each from-scratch baseline over seeds: bits/char gains (mean +- SE over seeds) and "
                    "the pfgen-style difference paired over questions after averaging each question over seeds. "
                    "Refuses runs of different recipes or question sets.")
    summary.add_argument("runs", nargs="+", help="prune-study run folders (root/experiment, or root)")
    summary.add_argument("--out", help="also write summary.json and summary.md into this folder")
    summary.set_defaults(handler=run_prune_summary)

    quantize = actions.add_parser(
        "quantize", help="weight-only int8/int4 quantization of a PLaMo folder's linear layers",
        description="Symmetric round-to-nearest int8 or int4 (two per byte) with float32 scales per group of "
                    "--group-size input columns (or per output channel); embeddings, lm_head and dt_proj stay float. "
                    "Writes config.json with quantization_config and model.safetensors of packed weights.")
    quantize.add_argument("--model", required=True, help="an HF-layout float PLaMo folder")
    quantize.add_argument("--bits", type=int, choices=[4, 8], default=8)
    quantize.add_argument("--group-size", default="128",
                          help="input columns per scale (must divide every quantized layer), or 'channel'")
    quantize.add_argument("--skip", default="embed_tokens,lm_head,dt_proj",
                          help="comma-separated name parts of linear layers to keep in float")
    quantize.add_argument("--out", required=True, help="folder to write")
    quantize.add_argument("--report", action="store_true",
                          help="also measure float vs quantized (size, speed, held-out bits/char, pfgen-style score) "
                               "into --out/quantization_report.md; needs the model folder's tokenizer")
    quantize.add_argument("--eval-docs", type=int, default=150, help="report: held-out manpages-ja documents")
    quantize.add_argument("--pfgen-set", help="report: a lab question set folder (default: built from "
                                              "--pfgen-generators)")
    quantize.add_argument("--pfgen-generators", default="arithmetic,dialogue,structured,world_facts",
                          help="report: synthetic families (seed 0) the built question set is about")
    quantize.add_argument("--pfgen-questions", type=int, default=24, help="report: questions answered (0: none)")
    quantize.add_argument("--pfgen-trials", type=int, default=1)
    quantize.set_defaults(handler=run_quantize)

    merge = actions.add_parser(
        "merge", help="merge same-architecture PLaMo folders: weighted average or task arithmetic",
        description="linear: sum_i w_i theta_i (weights >= 0 summing to 1, or --normalize); task: theta_base + "
                    "sum_i s_i (theta_i - theta_base). Different configs or tensor shapes are errors naming the "
                    "first mismatch.")
    merge.add_argument("--method", choices=["linear", "task"], required=True)
    merge.add_argument("--models", nargs="+", required=True, help="HF-layout folders (fine-tuned ones for task)")
    merge.add_argument("--weights", nargs="+", type=float, help="linear: one weight per model (default: equal)")
    merge.add_argument("--normalize", action="store_true", help="linear: divide the weights by their sum")
    merge.add_argument("--base", help="task: the base model folder")
    merge.add_argument("--scales", nargs="+", type=float, default=[1.0],
                       help="task: one scale per model, or one for all (default 1)")
    merge.add_argument("--out", required=True, help="folder to write")
    merge.set_defaults(handler=run_merge)


def action_parser(action: str, prog: str) -> argparse.ArgumentParser:
    """The parser of one `lab post` action under another name, so that `python -m <module> --help` of a recipe
    shows the same arguments and help as `lab post <action> --help`."""
    parser = argparse.ArgumentParser(prog="lab post")
    add_post_arguments(parser)
    stage = _subcommands(parser).choices[action]
    stage.prog = prog
    return stage


def _run_main(module: str):
    """A handler that passes the overrides to `module.main` (imported only when the subcommand runs)."""

    def handler(args: argparse.Namespace) -> int:
        show = ["--show-config"] if getattr(args, "show_config", False) else []
        return importlib.import_module(module).main([*args.overrides, *show])

    return handler


def _copy_tokenizer(source: Path, out: Path) -> None:
    if all((source / name).exists() for name in TOKENIZER_FILES):
        for name in TOKENIZER_FILES:
            shutil.copy2(source / name, out / name)


def _fail(command: str, error: Exception) -> int:
    print(f"lab post {command}: error: {error}", file=sys.stderr)
    return 2


def run_prune_summary(args: argparse.Namespace) -> int:
    from experiments.prune_study import load_results, summarize_seeds, summary_markdown, write_summary

    try:
        summary = summarize_seeds(load_results(args.runs))
    except (FileNotFoundError, ValueError) as error:
        return _fail("prune-summary", error)
    if args.out:
        write_summary(summary, Path(args.out))
    print(summary_markdown(summary))
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    from lab.models.plamo import CheckpointError, load_pretrained
    from lab.post.quantize import QuantizationError, model_size_bytes, quantize_model, save_quantized

    group_size = None if args.group_size == "channel" else args.group_size
    try:
        group_size = None if group_size is None else int(group_size)
        model = load_pretrained(args.model)
        float_bytes = model_size_bytes(model)
        skip = tuple(part for part in args.skip.split(",") if part)
        source = copy.deepcopy(model) if args.report else None  # quantize_model works in place
        quantized = quantize_model(model, bits=args.bits, group_size=group_size, skip=skip)
        report = _quantization_report(args, source, group_size, skip) if args.report else None
    except (ValueError, CheckpointError, QuantizationError, FileNotFoundError) as error:
        return _fail("quantize", error)
    out = save_quantized(quantized, args.out)
    _copy_tokenizer(Path(args.model), out)
    if report is not None:
        from lab.post.quant_table import write_report

        print(f"report: {write_report(*report, out)}")
    config = quantized.quantization_config
    print(f"quantized {len(config.modules)} linear layers to int{args.bits} "
          f"(group {group_size or 'per channel'}): {float_bytes / 2**20:.2f} MB -> "
          f"{model_size_bytes(quantized) / 2**20:.2f} MB; wrote {out}")
    return 0


def _quantization_report(args: argparse.Namespace, model, group_size: int | None, skip: tuple[str, ...]
                         ) -> tuple[list[dict], str]:
    """Rows (float, quantized) of lab.post.quant_table and a note, measured before `model` is quantized in place."""
    import tempfile

    from lab.data.text import Tokenizer
    from lab.post.measure import build_question_set
    from lab.post.quant_table import PfgenSetup, Variant, heldout_texts, quantization_table

    tokenizer = Tokenizer.load(args.model)
    texts = heldout_texts(args.eval_docs)
    with tempfile.TemporaryDirectory() as work:
        pfgen = None
        if args.pfgen_questions > 0:
            set_dir = Path(args.pfgen_set) if args.pfgen_set else build_question_set(
                args.pfgen_generators.split(","), Path(work) / "questions", questions=max(21, args.pfgen_questions))
            pfgen = PfgenSetup(set_dir, Path(work) / "pfgen", questions=args.pfgen_questions, trials=args.pfgen_trials)
        rows = quantization_table(model, tokenizer, [Variant("float32"), Variant.of(args.bits, group_size)], texts,
                                  pfgen=pfgen, skip=skip)
    note = (f"Held-out: {len(texts)} manpages-ja documents. pfgen: "
            + (f"{pfgen.questions} questions x {pfgen.trials} trial(s), same sampling seed, delta paired over "
               f"questions." if pfgen else "not measured."))
    return rows, note


def run_merge(args: argparse.Namespace) -> int:
    from lab.models.plamo import CheckpointError
    from lab.post.merge import MergeError, merge_linear, merge_task_arithmetic

    try:
        if args.method == "linear":
            if args.base:
                raise MergeError("--base is for --method task; a linear merge averages --models")
            merge_linear(args.models, args.weights, normalize=args.normalize, out=args.out)
        else:
            if not args.base:
                raise MergeError("--method task needs --base (the model the fine-tuned ones started from)")
            scales = args.scales[0] if len(args.scales) == 1 else args.scales
            merge_task_arithmetic(args.base, args.models, scales, out=args.out)
    except (MergeError, CheckpointError) as error:
        return _fail("merge", error)
    _copy_tokenizer(Path(args.base or args.models[0]), Path(args.out))
    print(f"merged {len(args.models)} model(s) ({args.method}); wrote {args.out}")
    return 0
