"""`lab eval pfgen-score RESULT_FILE --data DIR [--out per_answer.jsonl] [--figure PNG]`.

Also runnable as `python -m lab.eval.pfgen.cli pfgen-score ...` (or without the subcommand name).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.eval.pfgen.data import PfgenDataError


def add_pfgen_score_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("result_file", type=Path, help="trials.jsonl[.xz] (or a folder holding one)")
    parser.add_argument("--data", type=Path, required=True, help="folder of upstream Qxx.json files")
    parser.add_argument("--out", type=Path, default=None, help="write per-answer scores as JSONL")
    parser.add_argument("--figure", type=Path, default=None, help="write the report figure (PNG)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="n-gram table cache (default $LAB_CACHE_DIR or ~/.cache/...)"
    )
    return parser


def run_pfgen_score(args: argparse.Namespace) -> int:
    """Score the answers, print the report; 2 on bad input (the message names file, question and rule)."""
    from lab.eval.pfgen.results import read_answers, score_answers, summarize, write_scores
    from lab.eval.pfgen.scorer import load_scorers

    try:
        answers = read_answers(args.result_file)
        scorers = load_scorers(args.data, args.cache_dir)
        scores = score_answers(answers, scorers, source=str(args.result_file))
    except PfgenDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = summarize(scores)
    print(report.text())
    if args.out is not None:
        write_scores(scores, args.out)
        print(f"per-answer scores: {args.out}")
    if args.figure is not None:
        from lab.eval.pfgen.plot import plot_report

        plot_report(report, scores, args.figure)
        print(f"figure: {args.figure}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pfgen-score"]:
        argv = argv[1:]
    parser = add_pfgen_score_arguments(argparse.ArgumentParser(prog="lab eval pfgen-score"))
    return run_pfgen_score(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
