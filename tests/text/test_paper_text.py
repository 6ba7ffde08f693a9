"""The paper text study (issue 23) at toy size: arms sharing one tokenizer and one scratch run, the budget check
and s sweep cells, learning rates chosen on the validation split, unigram baselines next to every bits/char and
the held-out synthetic check of every pre-training; plus the pieces it is built from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import CONF_DIR, main
from experiments.text_study import TextSweepConfig, plan_text_sweep
from lab.core.config import ConfigError, load_config

TOY = ["+experiment=paper_text_toy", "launcher=debug", "study.seeds=[0]"]


def toy_config(root: Path, *overrides: str) -> TextSweepConfig:
    return load_config(CONF_DIR, "text_sweep", TextSweepConfig, [*TOY, f"root={root}", *overrides])


@pytest.fixture(scope="module")
def paper_text_toy(tmp_path_factory):
    """`lab text-study` on paper_text_toy with one seed, in-process (about a minute on 2 shared cores)."""
    root = tmp_path_factory.mktemp("paper_text_runs")
    assert main(["text-study", *TOY, f"root={root}"]) == 0
    table = pd.read_csv(root / "paper_text_toy" / "results.csv")
    return root, table[table.metric == "bits_per_char"]


def test_every_cell_and_arm_lands_in_the_table(paper_text_toy):
    _, bpc = paper_text_toy
    cells = {cell: set(zip(rows.generator, rows.n, rows.s, rows.budget)) for cell, rows in bpc.groupby("cell")}
    assert cells["main"] == {(g, n, 1024, "steps") for g in ("arithmetic", "mixture") for n in (0, 1024, 2048)}
    assert cells["budget_check"] == {("mixture", n, 1024, "epochs") for n in (1024, 2048)}
    assert cells["s_sweep"] == {("mixture", n, 512, "steps") for n in (0, 2048)}
    scratch = bpc[(bpc.n == 0) & (bpc.cell == "main")]
    assert scratch.run_hash.nunique() == 1  # one tokenizer for every arm: the arms share their scratch run


def test_learning_rate_chosen_on_validation_and_baselines_recorded(paper_text_toy):
    root, bpc = paper_text_toy
    assert set(bpc.lr) <= {0.001, 0.004} and bpc.val_error.notna().all()
    assert (bpc.baseline_error > 0).all() and bpc.beats_baseline.notna().all()
    for path in (root / "paper_text_toy" / "finetune").glob("*/result.json"):
        result = json.loads(path.read_text())
        trials = {t["lr"]: t["val_error"] for t in result["lr_search"]}
        assert set(trials) == {0.001, 0.004} and result["val_error"] == min(trials.values())
        assert result["lr"] == min(trials, key=lambda lr: (trials[lr], [0.001, 0.004].index(lr)))
    pretrained = bpc[bpc.n > 0]
    assert (pretrained.pretrain_metric == "heldout_bits_per_char").all()
    assert np.isfinite(pretrained[["pretrain_heldout", "pretrain_heldout_baseline"]].to_numpy(float)).all()
    assert bpc[bpc.n == 0].pretrain_heldout.isna().all()


def test_budget_conventions_set_the_step_counts(paper_text_toy):
    root, _ = paper_text_toy
    steps = {}
    for path in (root / "paper_text_toy" / "pretrain").glob("*/result.json"):
        result = json.loads(path.read_text())
        steps[(result["budget"], result["n"])] = result["steps"]
    # fixed steps for every n; one pass = n / (batch 8 x 16 tokens)
    assert steps == {("steps", 1024): 6, ("steps", 2048): 6, ("epochs", 1024): 8, ("epochs", 2048): 16}


def test_relaunch_runs_nothing_and_report_names_each_curve(paper_text_toy, capsys):
    root, _ = paper_text_toy
    capsys.readouterr()
    assert main(["sweep", "--study", "text", "launch", *TOY, f"root={root}"]) == 0
    assert "submitted 0" in capsys.readouterr().out
    report = (root / "paper_text_toy" / "report.md").read_text()
    assert "main/mixture/steps" in report and "unigram baseline" in report


def test_bad_cells_and_grids_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="validation split"):
        plan_text_sweep(toy_config(tmp_path, "study.data.val_size=0"))
    with pytest.raises(ConfigError, match="another name"):
        plan_text_sweep(toy_config(tmp_path, "+cells.main={n: [0, 1024]}"))
    with pytest.raises(ConfigError, match="budget must be one of"):
        plan_text_sweep(toy_config(tmp_path, "study.pretrain.budget=tokens"))
    assert not (tmp_path / "paper_text_toy").exists()


def test_plan_runs_scratch_first_then_seed_by_seed_and_renders_the_held_out_documents_too(tmp_path):
    plan = plan_text_sweep(toy_config(tmp_path, "study.seeds=[0,1]"))
    pretrain_seeds = [t.job.seed for t in plan.tasks if t.stage == "pretrain"]
    assert pretrain_seeds == sorted(pretrain_seeds)
    stages = [t.stage if t.stage != "finetune" or t.job.pretrain else "scratch" for t in plan.tasks]
    first = {stage: stages.index(stage) for stage in stages}  # the scratch arm runs before any pre-training
    assert first["tokenizer"] < first["render"] < first["scratch"] < first["pretrain"] < first["finetune"]
    assert stages.count("scratch") == 4  # s = 1024 and the s sweep's 512, two seeds
    renders = [t for t in plan.tasks if t.stage == "render"]
    assert {t.job.generator["name"] for t in renders} == {"arithmetic", "mixture"}
    assert {t.job.tokens for t in renders} == {2048 + 2 * 256}
    assert len({t.job.tokenizer.run_dir().hash for t in renders}) == 1


def test_unigram_baseline_by_hand():
    from lab.data.text import UNSEEN_CHARACTERS, unigram_bits_per_char

    # counts a:2 b:2, total 4 + 2 seen + 1 escape = 7: p(a) = 3/7, p(z) = 1/7 / |Unicode|
    assert unigram_bits_per_char(["abab"], ["a"]) == pytest.approx(-math.log2(3 / 7))
    assert unigram_bits_per_char(["abab"], ["az"]) == pytest.approx(
        (-math.log2(3 / 7) - math.log2(1 / 7 / UNSEEN_CHARACTERS)) / 2)
    with pytest.raises(ValueError, match="non-empty training text"):
        unigram_bits_per_char([""], ["a"])


def test_validation_split_leaves_the_test_set_as_it_was():
    from lab.data.text import RealTextConfig, text_split

    plain = text_split(RealTextConfig(test_size=50))
    with_val = text_split(RealTextConfig(test_size=50, val_size=40))
    assert with_val.test == plain.test and len(with_val.val) == 40
    assert len(with_val.train) + len(with_val.val) == len(plain.train)


def test_mixture_interleaves_the_families_documents():
    from synth_render.text import create_text_generator

    mixture = create_text_generator({"name": "mixture", "families": ["arithmetic", "dialogue"], "seed": 3})
    arithmetic = create_text_generator({"name": "arithmetic", "seed": 3})
    dialogue = create_text_generator({"name": "dialogue", "seed": 3})
    assert [mixture.document(i) for i in range(4)] == [arithmetic.document(0), dialogue.document(0),
                                                       arithmetic.document(1), dialogue.document(1)]
    with pytest.raises(ValueError, match="distinct families"):
        create_text_generator({"name": "mixture", "families": ["dialogue", "dialogue"]})


def test_held_out_documents_precede_every_training_prefix(tmp_path):
    from lab.data.text import Tokenizer, TokenizerConfig
    from lab.data.text_shards import TextDataset
    from lab.stages.text import heldout_and_training
    from synth_render.text import create_text_generator, render_until

    generator = {"name": "world_facts", "shard_size": 20}
    docs = [create_text_generator(generator).document(i) for i in range(60)]
    tokenizer = Tokenizer.train(docs, TokenizerConfig(vocab_size=800, character_coverage=0.98))
    render_until(generator, tmp_path / "text", tokens=3000, tokenizer=tokenizer)
    dataset = TextDataset.open(tmp_path / "text")
    held, small = heldout_and_training(dataset, 500, 800)
    held_again, large = heldout_and_training(dataset, 500, 1600)
    assert held == held_again and large[: len(small)] == small  # nested prefixes after the same held-out set
    assert sum(len(tokenizer.encode(d)) for d in held) >= 500
    assert not set(held) & set(large)
    with pytest.raises(ValueError, match="render more"):
        heldout_and_training(dataset, 500, 10**6)


def test_notebooks_make_the_text_figures_and_findings(paper_text_toy, tmp_path):
    """The two text notebooks regenerate their figures, tables and findings rows from the collected table (with
    one seed no paired test is possible, which the findings must say rather than fail on)."""
    from experiments.paper import make_figures

    root, _ = paper_text_toy
    results, out = tmp_path / "results", tmp_path / "generated"
    results.mkdir()
    (results / "text.csv").write_text((root / "paper_text_toy" / "results.csv").read_text())
    outcome = make_figures(results, out, bootstrap=0, only=["paper_text", "paper_text_s_sweep"])
    assert outcome == {"paper_text": "ran", "paper_text_s_sweep": "ran"}
    for name in ("text", "text_s_sweep"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0 and (out / "tables" / f"{name}.tex").exists()
    findings = (out / "findings.md").read_text()
    assert "lowers real-text bits/char below training from scratch" in findings
    assert "pre-trainings beat the unigram of their own text" in findings and "shrinks as s grows" in findings


@pytest.mark.slow
def test_gpu_slice_script_runs_at_toy_size_on_cpu(tmp_path):
    """benchmarks/gpu/text_slice.sh end to end on the toy config: the slice runs, then its measured FLOP rate
    costs the whole study."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OUT": str(tmp_path), "PY": sys.executable, "EXPERIMENT": "paper_text_toy",
           "SLICE": "launcher=debug study.seeds=[0] study.n=[0,2048] ~cells"}
    run = subprocess.run(["bash", str(repo / "benchmarks" / "gpu" / "text_slice.sh")], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    cost = (tmp_path / "text_slice_cost.txt").read_text()
    assert "paper_text_toy: pretrain 12 tasks" in cost and "GFLOP/s measured" in cost
