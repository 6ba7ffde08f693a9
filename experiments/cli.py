"""The `lab` command: one entry point whose subcommands map onto the packages.

Subcommands take Hydra overrides (key=value, group=option, +experiment=NAME) after their own flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

CONF_DIR = Path(__file__).resolve().parent / "conf"

OVERRIDES_HELP = ("Hydra overrides such as n=[0,1000,4000] seeds=[0] data=sklearn_digits model=resnet18 "
                  "launcher=debug +experiment=toy; unknown keys are rejected with the valid ones")


def _load(config_name: str, schema: type, overrides: Sequence[str]):
    from lab.config import load_config

    return load_config(CONF_DIR, config_name, schema, overrides)


def cmd_demo(args: argparse.Namespace) -> int:
    from experiments.digits_demo import DemoConfig, run_demo
    from lab.config import to_yaml

    config = _load("demo", DemoConfig, args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    outcome = run_demo(config)
    print(outcome["report"])
    print(f"Wrote {outcome['dir']}/report.md, results.csv, fit.json, scaling.png")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from experiments.render import RenderConfig, run_render
    from lab.config import to_yaml

    config = _load("render", RenderConfig, args.overrides)
    if args.show_config:
        print(to_yaml(config), end="")
        return 0
    print(run_render(config))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from analysis.cli import run_fit

    return run_fit(args)


def build_parser() -> argparse.ArgumentParser:
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
    render.add_argument("overrides", nargs="*", help="Hydra overrides: count=, out=, workers=, preview=, renderer.*")
    render.set_defaults(handler=cmd_render)

    from analysis.cli import add_fit_arguments

    fit = commands.add_parser(
        "fit", help="fit a scaling law to any tidy CSV (e.g. a study's results.csv)",
        description="Fit a scaling law (default L(n) = D n^-alpha + C) with bootstrap intervals; prints a table, "
                    "writes JSON and a figure.")
    add_fit_arguments(fit)
    fit.set_defaults(handler=cmd_fit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from lab.config import ConfigError
    from lab.registry import UnknownNameError

    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (ConfigError, UnknownNameError) as error:
        print(f"lab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print(f"\nlab {args.command}: {error or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
