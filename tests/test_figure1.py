"""Figure 1 machinery: 3D-scene pre-training tasks, transfer of their bodies, and the study end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from experiments.cli import SWEEP_STUDIES, main
from experiments.figure1 import Figure1Config, plan_figure1, run_figure1
from lab.run import sweep
from lab.core.config import ConfigError, load_config
from lab.models import ModelConfig, create_model
from lab.tasks.pretrain import PRETRAIN_TASKS, HeadConfig, create_pretrain_task, load_scene_arrays
from lab.core.registry import UnknownNameError
from lab.stages.image import PretrainConfig, _load_backbone
from lab.stages.scenes3d import Pretrain3DJob, run_pretrain_3d
from lab.train import engine, to_tensor
from synth_render.dataset import render_dataset
from synth_render.scene3d.writer import Scene3DRendererConfig
from tests.conftest import CONF_DIR

SIZE, COUNT, CLASSES = 32, 16, 84


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    torch.set_num_threads(1)  # the test machine's cores are shared: one thread is the fastest here
    out = tmp_path_factory.mktemp("figure1") / "scenes"
    render_dataset(Scene3DRendererConfig(level="lv3", width=SIZE, height=SIZE, shard_size=8), COUNT, out,
                   progress=False)
    return out


FIGURE1_STUDY = ("figure1", "experiments.figure1", "Figure1Config", "plan_figure1")
TOY_OVERRIDES = ["launcher.threads_per_job=1", "study.tasks=[multilabel,normals]", "study.n=[0,16,32]",
                 "study.s=[20]", "study.test_size.sklearn_digits=200", "study.pretrain.steps=6", "study.pretrain.holdout=8",
                 "study.finetune.steps=10", "study.renderer.shard_size=16"]


def toy_config(root, *overrides: str) -> Figure1Config:
    return load_config(CONF_DIR, "figure1", Figure1Config,
                       ["+experiment=figure1_toy", f"root={root}", "launcher=debug", *TOY_OVERRIDES, *overrides])


@pytest.mark.parametrize("name", ["multilabel", "segmentation", "normals", "detection"])
def test_each_pretraining_loss_decreases(name, scenes):
    torch.manual_seed(0)
    task = create_pretrain_task(name, ModelConfig(), HeadConfig(decoder_channels=32), CLASSES, SIZE)
    arrays = load_scene_arrays(task, scenes, 8)
    assert arrays.images.shape == (8, SIZE, SIZE) and arrays.images.dtype.name == "uint8"
    body, head = task.build()
    optimizer = torch.optim.AdamW([*body.parameters(), *head.parameters()], lr=3e-3)
    x, index = to_tensor(arrays.images), torch.arange(8)
    losses = []
    for _ in range(8):
        loss = task.loss(body, head, x, task.batch(arrays.targets, index))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) / 2 < 0.9 * losses[0], losses  # segmentation starts at ln 85 and falls slowest


def test_registry_names_the_four_paper_tasks():
    assert PRETRAIN_TASKS.names() == ["detection", "multilabel", "multilabel_shuffled", "normals", "segmentation"]
    with pytest.raises(UnknownNameError, match="multilabel"):
        PRETRAIN_TASKS.get("classification")


@pytest.mark.parametrize("name", ["multilabel", "normals"])  # a body with its own fc, and one without
def test_pretrained_body_transfers_to_the_finetuning_model(name, scenes, tmp_path):
    job = Pretrain3DJob(root=str(tmp_path), experiment="t", dataset=str(scenes), dataset_id="x", task=name, n=8,
                        seed=0, image_size=SIZE, num_classes=CLASSES, head=HeadConfig(decoder_channels=16),
                        train=PretrainConfig(steps=3, batch_size=8, checkpoint_every=2, holdout=4), threads=1)
    result = run_pretrain_3d(job)
    assert result["steps"] == 3 and result["task"] == name
    assert run_pretrain_3d(job)["wall_seconds"] == result["wall_seconds"]  # done: the stored result comes back
    saved = torch.load(result["weights"], weights_only=True)

    torch.manual_seed(123)
    model = create_model(ModelConfig(), num_classes=10)  # the fine-tuning model (sklearn_digits: 10 classes)
    stem = next(k for k in saved if k.startswith("conv1") and k.endswith("weight"))  # test_resnet: a deep stem
    fresh = model.state_dict()[stem].clone()
    _load_backbone(model, result["weights"])
    state = model.state_dict()
    assert not torch.equal(state[stem], fresh)
    body = [k for k in saved if not k.startswith("fc.")]
    assert len(body) > 20 and all(torch.equal(state[k], saved[k]) for k in body)
    assert state["fc.weight"].shape[0] == 10


class Preempted(Exception):
    pass


def test_an_interrupted_pretraining_resumes_to_the_same_weights(scenes, tmp_path, monkeypatch):
    def job(root):
        return Pretrain3DJob(root=str(root), experiment="t", dataset=str(scenes), dataset_id="x", task="detection",
                             n=8, seed=1, image_size=SIZE, num_classes=CLASSES, head=HeadConfig(decoder_channels=16),
                             train=PretrainConfig(steps=4, batch_size=4, checkpoint_every=2, holdout=4), threads=1)

    straight = run_pretrain_3d(job(tmp_path / "a"))
    real_save = engine.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        raise Preempted

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(Preempted):
        run_pretrain_3d(job(tmp_path / "b"))
    assert not job(tmp_path / "b").run_dir().done
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    resumed = run_pretrain_3d(job(tmp_path / "b"))
    assert resumed["resumed_from_step"] == 2 and straight["resumed_from_step"] == 0
    a, b = (torch.load(r["weights"], weights_only=True) for r in (straight, resumed))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_toy_study_end_to_end_then_fit_and_relaunch(tmp_path, capsys, monkeypatch):
    config = toy_config(tmp_path)
    outcome = run_figure1(config)
    table = outcome["table"]
    for column in ("pretrain_task", "target", "n", "s", "seed", "level", "model", "metric", "error"):
        assert column in table.columns
    top1 = table[table.metric == "top1"]
    assert len(top1) == 2 * 3  # 2 tasks x n in {0, 16, 32}; n = 0 is one scratch run shown in both panels
    assert set(top1.pretrain_task) == {"multilabel", "normals"} and set(top1.target) == {"sklearn_digits"}
    assert sorted(top1.n.unique()) == [0, 16, 32] and (top1.level == "lv3").all()
    assert top1[top1.n == 0].run_hash.nunique() == 1 and top1[top1.n > 0].pretrain_hash.nunique() == 4
    assert top1.error.between(0, 1).all()
    assert all((tmp_path / "figure1_toy" / f).exists() for f in ("report.md", "figure1.png", "fit.json"))

    csv = tmp_path / "figure1_toy" / "results.csv"
    assert pd.read_csv(csv).pretrain_task.notna().all()
    code = main(["fit", str(csv), "--where", "metric=top1", "--group", "pretrain_task,target,s", "--fix", "D=1",
                 "--bootstrap", "0", "--out", str(tmp_path / "fit")])
    assert code in (0, 3) and (tmp_path / "fit" / "fit.json").exists()  # 3: ran, did not converge (2 points)

    assert SWEEP_STUDIES["figure1"] == FIGURE1_STUDY  # `lab sweep --study figure1`, through the real command
    args = ["+experiment=figure1_toy", f"root={tmp_path}", "launcher=debug", *TOY_OVERRIDES]
    capsys.readouterr()
    assert main(["sweep", "--study", "figure1", "launch", *args]) == 0
    tasks = len(plan_figure1(config).tasks)
    assert f"submitted 0 ({tasks} done" in capsys.readouterr().out
    assert (sweep.status(tmp_path / "figure1_toy" / "sweep").state == "done").all()


@pytest.mark.parametrize("override, message", [
    ("study.tasks=[multilabel,classification]", "classification"),
    ("study.targets=[mnist,cifar]", "cifar"),
    ("study.s=[5000]", "fine-tuning pool"),
    ("study.model.in_chans=3", "in_chans"),
    ("study.renderer.width=48", "square"),
])
def test_bad_studies_fail_before_any_work(tmp_path, override, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        plan_figure1(toy_config(tmp_path, override))
    assert not (tmp_path / "figure1_toy").exists()


def test_grid_over_level_and_model_plans_one_render_per_level_and_shares_scratch(tmp_path):
    config = toy_config(tmp_path, "study.tasks=[multilabel]",
                        "+grid={renderer.level: [lv0, lv7], model.name: [test_resnet, resnet10t]}")
    plan = plan_figure1(config)
    stages = pd.Series([t.stage for t in plan.tasks]).value_counts()
    renders = {t.key.split("/")[1] for t in plan.tasks if t.stage == "render"}
    assert len(renders) == 2  # lv0 and lv7 differ; the two models share each render
    assert stages["pretrain"] == 2 * 2 * 2  # level x model x n in {16, 32}
    # fine-tunes: per model, scratch once (no renderer in it) + one per pre-training
    assert stages["finetune"] == 2 * 1 + 8
    points = pd.DataFrame(plan.points)
    assert set(points.level) == {"lv0", "lv7"} and set(points.model) == {"test_resnet", "resnet10t"}
    assert "renderer.level" not in points.columns and len(points) == 2 * 2 * 3


def test_bad_grid_cell_names_the_cell(tmp_path):
    with pytest.raises(ConfigError, match="lv9|level"):
        plan_figure1(toy_config(tmp_path, "+grid={renderer.level: [lv0, lv9]}"))
    with pytest.raises(ConfigError, match="no_such_key"):
        plan_figure1(toy_config(tmp_path, "+grid={no_such_key: [1]}"))
