"""`lab` imports only what the invoked subcommand runs: help and light commands never pay for torch or scipy.
(The start-up time itself is measured by benchmarks/bench_cli_startup.py, not here.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "scipy", "lmfit", "matplotlib")


def modules_after(argv: list[str]) -> set[str]:
    code = ("import sys\nfrom experiments.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return set(result.stderr.strip().splitlines()[-1].split()) if result.stderr.strip() else set()


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["paper", "--help"], ["eval", "--help"]])
def test_help_imports_no_heavy_library(argv):
    assert modules_after(argv) == set()


def test_a_subcommand_still_gets_its_deferred_arguments(capsys):
    from experiments.cli import main

    with pytest.raises(SystemExit):
        main(["long-context", "--help"])
    assert "--long-lr" in capsys.readouterr().out  # the passkey study's options, loaded for this command only


@pytest.mark.parametrize("argv", [
    ["sweep", "--study", "figure1", "launch", "+experiment=paper_complexity", "grid={renderer.level:[lv0,lv3]}"],
    ["sweep", "--study", "text", "launch", "+experiment=text_toy", "launcher=debug"],
    ["sweep", "launch", "+experiment=sweep_toy"],
])
def test_the_printed_watch_command_parses_back_to_the_same_sweep(argv):
    import shlex

    from experiments.cli import build_parser, watch_command

    launched = build_parser(argv).parse_args(argv)
    words = shlex.split(watch_command(launched))
    assert words[0] == "lab"
    watched = build_parser(words[1:]).parse_args(words[1:])
    assert (watched.action, watched.study, watched.overrides) == ("status", launched.study, launched.overrides)


def test_task_finetune_is_a_lab_subcommand_with_help_and_config(capsys):
    from experiments.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["task-finetune", "--help"])
    assert exit_info.value.code == 0 and "COCO" in capsys.readouterr().out
    assert main(["task-finetune", "--show-config", "+experiment=coco_r50", "data.root=/nowhere"]) == 0
    assert "root: /nowhere" in capsys.readouterr().out
    assert modules_after(["task-finetune", "--help"]) == set()


def test_fit_help_and_importing_analysis_cli_load_no_fitting_or_plotting_library():
    """`lab fit --help` imports analysis.cli for its arguments; scipy, lmfit and matplotlib wait for a fit."""
    code = ("import sys\nimport analysis.cli\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert imported == []
    assert modules_after(["fit", "--help"]) == set()


def test_post_is_a_lab_subcommand_listing_its_actions_and_loaded_only_when_invoked(capsys):
    """`python -m experiments.post_training` as `lab post pipeline` (issue 19): help without a Hydra traceback."""
    from experiments.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "post-training of PLaMo models" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["post", "--help"])
    listing = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(action in listing for action in ("pipeline", "prune", "prune-summary", "quantize", "merge"))
    with pytest.raises(SystemExit) as exit_info:
        main(["post", "pipeline", "--help"])
    assert exit_info.value.code == 0 and "SFT" in capsys.readouterr().out
    assert modules_after(["post", "--help"]) == set()
    assert modules_after(["post", "quantize", "--help"]) == set()
    code = ("import sys\nfrom experiments.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('experiments.post_cli' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip().splitlines()[-1] == "False"  # deferred: `lab --help` does not import it


def test_post_pipeline_shows_its_resolved_config(capsys, tmp_path):
    from experiments.cli import main

    assert main(["post", "pipeline", "--show-config", f"root={tmp_path}"]) == 0
    assert f"root: {tmp_path}" in capsys.readouterr().out
    assert main(["post", "pipeline", "--show-config", "sft_exampels=3"]) == 2
    assert "sft_exampels" in capsys.readouterr().err


def test_a_post_recipe_run_as_a_module_has_the_same_help(capsys):
    from experiments.prune_study import main as prune_main

    with pytest.raises(SystemExit) as exit_info:
        prune_main(["--help"])
    shown = capsys.readouterr().out
    assert exit_info.value.code == 0 and shown.startswith("usage: python -m experiments.prune_study")
    assert "--show-config" in shown and "distil" in shown


def test_the_post_training_module_has_the_pipeline_help(capsys, tmp_path):
    from experiments.post_training import main as pipeline_main

    with pytest.raises(SystemExit) as exit_info:
        pipeline_main(["--help"])
    shown = capsys.readouterr().out
    assert exit_info.value.code == 0 and shown.startswith("usage: python -m experiments.post_training")
    assert pipeline_main(["--show-config", f"root={tmp_path}"]) == 0
    assert f"root: {tmp_path}" in capsys.readouterr().out
