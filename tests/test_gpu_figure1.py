"""The GPU Figure 1 recipe (experiments/gpu_figure1.py) run whole on a CPU at toy size: the table, the held-out
pre-training scores, the learning-rate choice, the fixed budget, determinism of the in-memory render, and that its
device-side pieces equal the lab's CPU ones (the writer's per-sample processing, lab.train's loop rules)."""

from __future__ import annotations

import gzip
import itertools
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from experiments import gpu_figure1 as gf
from lab.data.real import load_fashion_mnist
from lab.tasks.pretrain import grey
from synth_render.scene3d.annotations import annotation_record
from synth_render.scene3d.renderers import RenderOutput
from synth_render.scene3d.supersample import downsample_outputs
from synth_render.scene3d.tasks import image_tensor
from synth_render.scene3d.writer import Scene3DGenerator

ROOT = Path(__file__).resolve().parents[1]
PANEL = ["model", "level", "pretrain_task", "target", "s"]  # experiments.figure1.PANEL


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The whole recipe at --toy size on a 10-class Fashion-MNIST look-alike (200 train, 50 test images)."""
    torch.set_num_threads(1)
    fashion = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for part, count in (("train", 200), ("t10k", 50)):
        write_idx(fashion / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 255, (count, 28, 28)))
        write_idx(fashion / f"{part}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_FASHION_MNIST_DIR", str(fashion))
        load_fashion_mnist.cache_clear()
        config = gf.parse_args(["--out", str(tmp_path_factory.mktemp("gpu_figure1")), "--device", "cpu", "--toy"])
        result = gf.run_study(config, log=lambda line: None)
    load_fashion_mnist.cache_clear()
    return config, result


def test_the_table_has_the_panel_columns_and_one_top1_row_per_point(study):
    config, result = study
    table = result["table"]
    assert set(PANEL + ["n", "seed", "metric", "value", "error", "lr", "val_error", "run_hash"]) <= set(table.columns)
    top1 = table[table.metric == "top1"]
    points = sorted(itertools.product(config.n, config.s, config.seeds))
    assert sorted(map(tuple, top1[["n", "s", "seed"]].to_numpy().tolist())) == points  # exactly one row each
    assert (top1.pretrain_task == "multilabel").all() and (top1.target == "fashion_mnist").all()
    assert (top1.level == "lv5").all() and (top1.model == config.model).all()
    assert np.allclose(top1.error, 1 - top1.value)
    stored = pd.read_csv(result["dir"] / "results.csv")
    assert len(stored) == len(table) and stored.run_hash.tolist() == table.run_hash.tolist()
    report = (result["dir"] / "report.md").read_text()
    for section in ("## Top-1 error", "## Did pre-training learn?", "## Gains at the largest n", "## Time"):
        assert section in report
    assert (result["dir"] / "figure.png").stat().st_size > 0


def test_every_pretraining_records_its_held_out_loss_next_to_the_trivial_baseline(study):
    config, result = study
    assert len(result["pretrains"]) == len([n for n in config.n if n > 0]) * len(config.seeds)
    top1 = result["table"][result["table"].metric == "top1"]
    trained, scratch = top1[top1.n > 0], top1[top1.n == 0]
    assert (trained.pretrain_metric == "heldout_multilabel_loss").all()
    assert np.isfinite(trained.pretrain_heldout).all() and np.isfinite(trained.pretrain_heldout_baseline).all()
    assert (trained.pretrain_beats_baseline == (trained.pretrain_heldout < trained.pretrain_heldout_baseline)).all()
    assert scratch.pretrain_heldout.isna().all() and scratch.pretrain_hash.isna().all()
    # the trivial predictor is scored on the same held-out scenes, estimated on each n's own training scenes
    assert trained.groupby("n").pretrain_heldout_baseline.nunique().eq(1).all()


def test_the_learning_rate_of_every_run_is_chosen_on_validation_from_the_grid(study):
    config, result = study
    grid = config.finetune.lr_grid
    assert len(grid) > 1
    for run in result["results"]:
        errors = [trial["val_error"] for trial in run["lr_search"]]
        assert [trial["lr"] for trial in run["lr_search"]] == grid
        assert run["lr"] == grid[int(np.argmin(errors))] and run["val_error"] == min(errors)  # ties: the first
        assert 0 < run["baseline_error"] <= 1 and run["test_size"] == 50


def test_the_fixed_budget_gives_every_n_the_same_steps(study):
    config, result = study
    pretrains = pd.DataFrame(result["pretrains"])
    assert sorted(pretrains.n.unique()) == [n for n in config.n if n > 0]
    assert pretrains.steps.tolist() == [config.pretrain.steps] * len(pretrains)  # steps actually taken
    top1 = result["table"][result["table"].metric == "top1"]
    assert top1[top1.n > 0].pretrain_steps.unique().tolist() == [config.pretrain.steps]
    assert pretrains.run_hash.nunique() == len(pretrains)  # every (n, seed) its own pre-training


@pytest.fixture(scope="module")
def renderer():
    return gf.flagship_renderer()


@pytest.fixture(scope="module")
def rendered(renderer):
    torch.set_num_threads(1)
    return gf.render_scenes(renderer, 16, "cpu", batch=8)


def test_scene_i_is_the_same_in_a_batch_of_4_or_8(renderer, rendered):
    in_fours = gf.render_scenes(renderer, 8, "cpu", batch=4, workers=1)  # prepared in a spawned worker
    assert rendered.images.shape == (16, 32, 32) and rendered.images.dtype == torch.uint8
    assert rendered.targets.shape == (16, 20)
    assert torch.equal(in_fours.images, rendered.images[:8]) and torch.equal(in_fours.targets, rendered.targets[:8])
    assert rendered.targets.sum() > 0 and len({im.numpy().tobytes() for im in rendered.images}) == 16


def test_the_device_processing_equals_the_writers_per_sample_processing(renderer, rendered):
    """downsample_outputs + annotation_record + grey of the tar-shard path, batched on the device."""
    writer = Scene3DGenerator(renderer)
    for i in range(16):
        sample = writer(i)
        expected = grey(image_tensor(sample["rgb.png"]))
        difference = np.abs(expected.astype(int) - rendered.images[i].numpy().astype(int))
        assert difference.max() <= 1 and (difference == 0).mean() > 0.99  # float luma rounding at exact halves
        assert rendered.targets[i].tolist() == sample["json"]["multilabel"]


@pytest.mark.parametrize("min_pixels", [1, 10, 16])
def test_the_batched_majority_vote_and_labels_equal_the_writers_on_ties(min_pixels):
    """Random label maps (every 2x2 block a likely tie between objects, the room and nothing hit)."""
    rng = np.random.default_rng(min_pixels)
    batch, k, classes = 6, 2, 5
    instance = rng.integers(0, 4, (batch, 16, 16)).astype(np.int32)
    depth = np.where((instance == 0) & (rng.random(instance.shape) < 0.5), np.inf, 1.0).astype(np.float32)
    class_of = np.concatenate([np.full((batch, 1), -1), rng.integers(0, classes, (batch, 3))], 1)
    semantic = (np.take_along_axis(class_of, instance.reshape(batch, -1), 1).reshape(instance.shape) + 1
                ).astype(np.int32)
    rgb = rng.integers(0, 256, (batch, 16, 16, 3)).astype(np.uint8)
    out = {"rgb": torch.from_numpy(rgb), "depth": torch.from_numpy(depth), "semantic": torch.from_numpy(semantic),
           "instance": torch.from_numpy(instance)}
    images, targets = gf.grey_and_multilabel(out, k, classes, min_pixels)
    for b in range(batch):
        small = downsample_outputs(RenderOutput(rgb[b], depth[b], np.zeros((16, 16, 3), np.float32), instance[b],
                                                semantic[b]), k)
        objects = [SimpleNamespace(class_id=int(c), class_name=str(c)) for c in class_of[b, 1:]]
        record = annotation_record(SimpleNamespace(objects=objects), small.instance, num_classes=classes,
                                   min_pixels=min_pixels)
        assert targets[b].tolist() == record["multilabel"]
        assert np.abs(grey(image_tensor(small.rgb)).astype(int) - images[b].numpy()).max() <= 1


def test_the_device_loop_follows_lab_train(tmp_path):
    from lab.models import ModelConfig
    from lab.tasks.pretrain import AugmentConfig, HeadConfig, create_pretrain_task
    from lab.tasks.pretrain import augment_batch as augment_scenes
    from lab.train import TrainConfig, _batch_indices, lr_at, to_tensor

    order = gf.BatchOrder(37, 8, seed=3)
    for step in range(20):
        assert torch.equal(order(step), _batch_indices(step, 37, 8, 3))
    recipe = gf.TrainRecipe(steps=50, batch_size=8, warmup_frac=0.1)
    reference = TrainConfig(steps=50, batch_size=8, lr=0.1, warmup_frac=0.1)
    assert [gf.lr_at(step, recipe, 0.1) for step in range(50)] == [lr_at(step, reference) for step in range(50)]
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16)).astype(np.uint8)
    x = gf.normalise(torch.from_numpy(images))
    assert torch.equal(x, to_tensor(images))
    task = create_pretrain_task("multilabel", ModelConfig(), HeadConfig(), 20, 16)
    x = torch.randn(64, 1, 16, 16)
    mirrored, _ = augment_scenes(task, x, torch.zeros(64, 20), AugmentConfig(flip=True),
                                 torch.Generator().manual_seed(9))
    assert torch.equal(gf.flip(x, torch.Generator().manual_seed(9)), mirrored) and not torch.equal(mirrored, x)



def test_the_device_loop_is_the_lab_loop_checking_the_loss_every_100_steps():
    from lab.train.engine import NonFiniteLossError

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=generator), torch.randint(0, 3, (300,), generator=generator)
    torch.manual_seed(0)
    model, seen = torch.nn.Linear(8, 3), []

    def loss_of_batch(index: torch.Tensor, step: int) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        seen.append((step, loss.item()))
        return loss

    stats = gf.train_steps(model, loss_of_batch, 300, gf.TrainRecipe(steps=250, batch_size=16), 1e-2, 3,
                           torch.device("cpu"))
    assert stats["steps"] == 250 and [step for step, _ in seen] == list(range(250))
    assert stats["final_loss"] == pytest.approx(np.mean([loss for _, loss in seen[200:]]), rel=1e-5)  # last window
    with pytest.raises(NonFiniteLossError, match="in the 100 steps before step 100"):
        gf.train_steps(model, lambda index, step: model(x[index]).sum() * float("nan"), 300,
                       gf.TrainRecipe(steps=150, batch_size=16), 1e-2, 0, torch.device("cpu"))

def test_the_defaults_are_the_full_study_and_explicit_flags_beat_the_toy_preset(capsys):
    full = gf.parse_args(["--out", "x", "--device", "cpu"])
    assert max(full.n) >= 256_000 and 0 in full.n and full.s == [600, 6000] and full.seeds == [0, 1, 2]
    assert full.model == "resnet18" and full.pretrain.batch_size == 512 and len(full.finetune.lr_grid) > 1
    assert (full.renderer.level, full.renderer.width, full.renderer.supersample) == ("lv5", 32, 2)
    assert full.renderer.sampler_config().resolved().objects_per_scene == [1, 3]
    toy = gf.parse_args(["--out", "x", "--device", "cpu", "--toy", "--steps", "5", "--control"])
    assert toy.pretrain.steps == 5 and toy.n == [0, 8, 16] and toy.finetune.steps == 3
    assert toy.tasks() == {"multilabel": [0, 8, 16], gf.CONTROL_TASK: [0, 16]}  # the control: scratch + largest n
    with pytest.raises(SystemExit) as exit_info:
        gf.parse_args(["--help"])
    assert exit_info.value.code == 0 and "--lr-grid" in capsys.readouterr().out
    with pytest.raises(ValueError, match="validation split"):
        gf.parse_args(["--out", "x", "--device", "cpu", "--toy", "--val-size", "0"]).validate()


def test_the_recipe_and_its_gpu_script_need_nothing_the_gpu_machine_lacks():
    """The GPU machine has torch, timm, pandas, matplotlib, scipy, but not the lab's omegaconf/hydra/submitit/lmfit."""
    code = ("import sys, experiments.gpu_figure1; print(sorted(m for m in ('omegaconf', 'hydra', 'submitit', "
            "'lmfit', 'mlxtend', 'antlr4') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    script = ROOT / "benchmarks" / "gpu" / "figure1.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert "experiments.gpu_figure1" in script.read_text()
