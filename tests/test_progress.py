"""Long work in this process is never silent (issue 19): named stage bars with step bars under them."""

from __future__ import annotations

from experiments.cli import main


def test_a_stage_bar_names_each_stage_as_it_starts(capsys):
    from lab.core.progress import StageBar

    with StageBar("pipeline", 2) as bar:
        with bar.stage("base"):
            pass
        with bar.stage("SFT"):
            pass
    err = capsys.readouterr().err
    assert "pipeline: base" in err and "pipeline: SFT" in err and "2/2" in err
    with StageBar("quiet", 1, progress=False) as bar, bar.stage("base"):
        pass
    assert capsys.readouterr().err == ""


def test_long_context_shows_its_stages_and_training_steps(capsys):
    """A few steps of each training (seconds on 2 cores): the bars, not the accuracy."""
    assert main(["long-context", "--short-steps", "3", "--long-steps", "2", "--eval-examples", "4",
                 "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    for stage in ("train at 32 tokens", "score", "switch to full attention", "train at 128 tokens",
                  "score after the switch"):
        assert f"long-context: {stage}" in err
    assert "passkey training" in err and "0/3 [" in err  # the short training's step bar (drawn at its start)


def test_a_training_records_its_steps_for_whoever_waits_on_it(tmp_path):
    import torch

    from lab.core.progress import read_progress
    from lab.core.rundir import RunDir
    from lab.train.engine import Hooks, run_steps

    model, run = torch.nn.Linear(2, 1), RunDir(tmp_path / "run")
    seen = []
    run_steps(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda step: model(torch.ones(1, 2)).sum(),
              steps=3, lr_at=lambda step: 0.1, run=run, desc="toy",
              hooks=Hooks(after_step=lambda step, lr, loss: seen.append(read_progress(run.path)["step"])))
    assert seen[0] == 0  # written before the first step: a waiting process knows the total at once
    record = read_progress(run.path)
    assert (record["desc"], record["step"], record["steps"]) == ("toy", 3, 3)
    (run.path / "progress.json").write_text("{")
    assert read_progress(run.path) is None and read_progress(tmp_path / "nowhere") is None


def test_post_pipeline_names_each_stage_and_counts_training_steps(tmp_path, capsys):
    from experiments.post_training import main as post_pipeline
    from tests.post.test_sft_dpo import TOY

    assert post_pipeline([f"root={tmp_path}", *TOY]) == 0
    err = capsys.readouterr().err
    for stage in ("question set and instruction data", "pre-train the base", "SFT", "DPO", "merges",
                  "measure base", "measure DPO"):
        assert f"post pipeline: {stage}" in err
    assert "10/10" in err  # 4 stages, the merges, 5 models measured
    assert "pretrain" in err and "0/6 [" in err  # the base's step bar (drawn at its start)


def test_lab_train_counts_the_steps_of_its_job(tmp_path, capsys, monkeypatch):
    """The recipe's job runs in a local subprocess; the waiting command shows its steps (progress.json)."""
    from experiments.batch_control import load_run_config, run_recipe
    from lab.run import sweep

    waiting = sweep.wait_for
    monkeypatch.setattr(sweep, "wait_for", lambda plan, poll_seconds=2.0: waiting(plan, 0.1))
    small = ["recipe.batch.dataset_size=128", "recipe.batch.phases=[{start_epoch:0,global_batch:16},"
             "{start_epoch:2,global_batch:32}]", "recipe.batch.max_rank_batch=8", "recipe.lr.base_batch=16",
             "data.test_size=200", "image_size=12"]  # tests/parallel/test_batch_control_run.py's SMALL
    result = run_recipe(load_run_config([f"root={tmp_path}", "recipe.launcher.name=local", *small]))
    assert result["steps"] == 24
    err = capsys.readouterr().err
    assert "batch_control train" in err and "/24 [" in err  # a step bar, not only "0/1 task"


def test_text_study_names_each_stage_it_runs(tmp_path, capsys):
    """The toy text study cut to one pre-training (about 20 s on 2 cores), in-process with the debug executor."""
    assert main(["text-study", "+experiment=text_toy", "launcher=debug", "study.n=[0,1024]", f"root={tmp_path}"]) == 0
    err = capsys.readouterr().err
    assert "text_toy tokenizer" in err and "text_toy render" in err and "text_toy pretrain" in err
    # stages counted in the plan's order (the scratch fine-tune comes before the pre-training)
    assert "tokenizer 1/1, render 1/1, finetune 2/2, pretrain 1/1, failed 0" in err
