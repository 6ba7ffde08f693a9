"""Figure 1 on one GPU in under 10 minutes: 3D scenes -> ResNet-18 -> Fashion-MNIST, the CPU study at GPU scale.

    python -m experiments.gpu_figure1 --out runs/gpu_figure1              # the full study (one H200: see
                                                                          # benchmarks/gpu/figure1.sh)
    python -m experiments.gpu_figure1 --out /tmp/toy --device cpu --toy   # the same recipe at toy size (seconds)

render the largest n (plus `holdout` scenes never trained on) with the torch engine straight into device memory
(grey uint8 images and multi-label targets; no shards) -> for every seed and n: pre-train a timm body on the
multi-label task for the same fixed number of steps (the paper's protocol; bf16 autocast and channels_last on
CUDA) and score it on the held-out scenes next to the trivial predictor -> fine-tune on Fashion-MNIST at every s,
once per learning rate of the grid, keep the rate with the lowest validation error, read the test set once ->
results.csv (the lab's tidy table, `lab.core.results.results_table`, with figure1's panel columns), report.md and
figure.png, rewritten after every seed (a run stopped by its time limit keeps the seeds it finished).

Scene i depends only on (renderer.seed, i): the CPU workers sample and `prepare` chunks of scenes, the main process
renders them (`TorchSceneRenderer.render_prepared`) and applies the writer's per-sample processing on the device
for a whole batch (`grey_and_multilabel`). The training pieces equal `lab.train`'s (batch order, warm-up + cosine,
normalisation, augmentation; tests/test_gpu_figure1.py checks them against it) but keep every tensor on the
device; the steps are taken by the lab's one loop (`lab.train.engine.run_steps`). This module does not import
`lab.stages.image`: it pulls in omegaconf and submitit, which the GPU machine does not have.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import multiprocessing
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from lab.data.real import RealDataConfig, finetune_subset, real_split
from lab.models import ModelConfig, create_model
from lab.tasks.pretrain import (LUMA, PRETRAIN_TASKS, HeadConfig, PretrainTask, SceneArrays, create_pretrain_task,
                                heldout_losses)
from lab.core.results import results_table, write_table
from lab.core.provenance import git_commit
from lab.train import augment_batch
from lab.train.engine import run_steps
from lab.core.rundir import atomic_write_text, config_hash
from synth_render.scene3d.renderers import create_scene_renderer
from synth_render.scene3d.sampler import SceneSamplerConfig, sample_scene, scene_sampler
from synth_render.scene3d.writer import Scene3DRendererConfig

EXPERIMENT = "gpu_figure1"
TARGET = "fashion_mnist"
NORM_MEAN, NORM_STD = 0.5, 0.5  # lab.train.to_tensor's
CONTROL_TASK = "multilabel_shuffled"


def flagship_renderer() -> Scene3DRendererConfig:
    """The CPU flagship's scenes: lv5 knobs, 20 visually distinct classes, 1-3 objects, 32 px, 2x2 supersampling."""
    return Scene3DRendererConfig(level="lv5", width=32, height=32, supersample=2,
                                 sampler=SceneSamplerConfig(class_sets=["distinct20"], objects_per_scene=[1, 3],
                                                            object_radius=[0.08, 0.14]))


@dataclass
class TrainRecipe:
    """AdamW with linear warm-up and cosine decay (`lab.train.TrainConfig`'s rule) for a fixed number of steps;
    fine-tunes train once per rate of `lr_grid` and keep the best on the validation split."""

    steps: int
    batch_size: int
    lr: float = 2e-3
    lr_grid: list[float] = field(default_factory=list)
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    augment: bool = False  # lab.train's light random affine (fine-tuning only)


@dataclass
class GpuFigure1Config:
    out: str = "runs/gpu_figure1"
    device: str = "cuda"
    n: list[int] = field(default_factory=lambda: [0, 16000, 64000, 256000])
    s: list[int] = field(default_factory=lambda: [600, 6000])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    control: bool = False  # also pre-train the shuffled-label control (multilabel_shuffled) at the largest n
    model: str = "resnet18"
    renderer: Scene3DRendererConfig = field(default_factory=flagship_renderer)
    holdout: int = 2000  # scenes 0 .. holdout - 1: never trained on, the pre-training's held-out set
    flip: bool = True  # pre-training: mirror half of each batch (the flagship's augment.flip; labels unchanged)
    render_batch: int = 2048  # scenes per device render call
    workers: int = 0  # CPU processes that sample and prepare scenes (0: the main process does it)
    pretrain: TrainRecipe = field(default_factory=lambda: TrainRecipe(steps=1500, batch_size=512, lr=2e-3))
    finetune: TrainRecipe = field(default_factory=lambda: TrainRecipe(
        steps=300, batch_size=128, lr_grid=[1e-3, 3e-3, 1e-2], augment=True))
    val_size: int = 1000  # validation images carved from the Fashion-MNIST pool (the learning rate is chosen here)
    test_size: int = 0  # 0: the whole official 10k test set

    def tasks(self) -> dict[str, list[int]]:
        """Pre-training task -> its n values (the control arm: scratch and the largest n)."""
        tasks = {"multilabel": sorted(self.n)}
        if self.control:
            tasks[CONTROL_TASK] = sorted({0, max(self.n)})
        return tasks

    def validate(self) -> None:
        if not (self.n and self.s and self.seeds):
            raise ValueError("--n, --s and --seeds must each list at least one value")
        if min(self.n) < 0 or min(self.s) <= 0 or self.holdout < 1:
            raise ValueError(f"need n >= 0, s > 0 and holdout >= 1, got n={self.n} s={self.s} "
                             f"holdout={self.holdout}")
        if self.renderer.engine != "torch":
            raise ValueError(f"the GPU study renders with the torch engine, got {self.renderer.engine!r}")
        if not self.finetune.lr_grid or self.val_size <= 0:
            raise ValueError("fine-tuning chooses its learning rate on a validation split: give --lr-grid and "
                             "--val-size > 0")
        for task in self.tasks():
            PRETRAIN_TASKS.get(task)  # unknown names list the valid ones
        self.renderer.validate()


# --- 1. render into device memory -------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _cpu_engine() -> Any:
    return create_scene_renderer("torch", device="cpu")


def prepare_chunk(job: tuple[Scene3DRendererConfig, int, int]) -> Any:
    """The CPU half of rendering scenes start .. stop - 1: sample each from (seed, index), then `prepare` the
    batch (flat geometry, views, lights) at the supersampled size. Runs in a worker process; its tensors travel
    as numpy arrays (plain pickles through the pipe, not one shared-memory file descriptor per tensor)."""
    renderer, start, stop = job
    sampler = renderer.sampler_config()
    scenes = [sample_scene(sampler, renderer.seed, i) for i in range(start, stop)]
    k = int(renderer.supersample)
    return _convert(_cpu_engine().prepare(scenes, k * renderer.width, k * renderer.height), torch.Tensor,
                    torch.Tensor.numpy)


def _one_thread() -> None:
    torch.set_num_threads(1)  # one worker per core: torch threads inside each would oversubscribe


def _convert(value: Any, leaf: type, convert: Callable[[Any], Any]) -> Any:
    """A prepared batch (nested dataclasses) with every `leaf` (tensor or array) converted."""
    if isinstance(value, leaf):
        return convert(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: _convert(getattr(value, f.name), leaf, convert)
                                             for f in dataclasses.fields(value)})
    return value


def _blocks(t: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k H, k W, ...] -> [B, H, W, k * k, ...]: each output pixel's samples (supersample.blocks, batched)."""
    b, height, width = t.shape[0], t.shape[1] // k, t.shape[2] // k
    rest = t.shape[3:]
    return t.reshape(b, height, k, width, k, *rest).transpose(2, 3).reshape(b, height, width, k * k, *rest)


def grey_and_multilabel(out: dict[str, torch.Tensor], k: int, num_classes: int,
                        min_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The writer's per-sample processing for a batch, on the device: `supersample.downsample_outputs` (RGB block
    means rounded half up; each pixel's instance and class from its block's majority label, ties to objects, the
    smallest id, then the room), `lab.tasks.pretrain.grey` (ITU-R 601 luma) and `annotation_record`'s multi-label
    vector (the classes of objects with >= min_pixels visible pixels). -> uint8 [B, H, W], uint8 [B, C]."""
    samples = k * k
    rgb = (_blocks(out["rgb"], k).to(torch.int32).sum(3) + samples // 2) // samples
    luma = (rgb.float() / 255.0) @ torch.from_numpy(LUMA).to(rgb.device)
    grey = (luma * 255.0).round().clamp(0, 255).to(torch.uint8)

    labels = _blocks(torch.where(torch.isfinite(out["depth"]), out["instance"].long(), -1), k)  # -1: nothing hit
    votes = (labels.unsqueeze(-1) == labels.unsqueeze(-2)).sum(-1)
    tie_break = torch.where(labels > 0, 2**32 - labels, labels + 1)  # objects > room > nothing hit
    winner = (votes * 2**33 + tie_break).argmax(-1, keepdim=True)
    instance = labels.gather(-1, winner).squeeze(-1).clamp(min=0)
    semantic = _blocks(out["semantic"].long(), k).gather(-1, winner).squeeze(-1)  # class id + 1, 0 = room

    batch, ids = instance.shape[0], int(instance.max()) + 1
    key = (torch.arange(batch, device=instance.device)[:, None, None] * ids + instance).flatten()
    area = torch.bincount(key, minlength=batch * ids)
    class_of = torch.zeros(batch * ids, dtype=torch.long, device=key.device).scatter_reduce(
        0, key, semantic.flatten(), "amax")
    visible = ((area >= min_pixels) & (torch.arange(batch * ids, device=key.device) % ids != 0)).nonzero()[:, 0]
    targets = torch.zeros(batch, num_classes, dtype=torch.uint8, device=key.device)
    targets[visible // ids, class_of[visible] - 1] = 1
    return grey, targets


def render_scenes(renderer: Scene3DRendererConfig, count: int, device: str | torch.device, batch: int = 2048,
                  workers: int = 0) -> SceneArrays:
    """Scenes 0 .. count - 1 as grey images uint8 [count, H, W] and multi-label targets uint8 [count, C], both on
    `device`. Workers (spawned: the engine runs torch threads) sample and prepare chunks in order."""
    num_classes = len(scene_sampler(renderer.sampler_config()).class_names)
    engine = create_scene_renderer("torch", device=str(device))
    images = torch.empty(count, renderer.height, renderer.width, dtype=torch.uint8, device=engine.device)
    targets = torch.zeros(count, num_classes, dtype=torch.uint8, device=engine.device)
    jobs = [(renderer, start, min(start + batch, count)) for start in range(0, count, batch)]
    pool = (multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread)
            if workers > 0 else contextlib.nullcontext())
    with pool:
        chunks = pool.imap(prepare_chunk, jobs) if workers > 0 else map(prepare_chunk, jobs)
        for (_, start, stop), prepared in zip(jobs, chunks):
            prepared = _convert(prepared, np.ndarray, lambda a: torch.from_numpy(a).to(engine.device))
            out = engine.render_prepared(prepared)
            images[start:stop], targets[start:stop] = grey_and_multilabel(
                out, int(renderer.supersample), num_classes, renderer.label_min_pixels())
    return SceneArrays(images, targets)


# --- device training on the one loop (lab.train's rules, tensors on the device) ---------------------------------

def lr_at(step: int, recipe: TrainRecipe, lr: float) -> float:
    """Linear warm-up, then cosine decay to 0 (lab.train.lr_at)."""
    warmup = max(1, int(recipe.warmup_frac * recipe.steps))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, recipe.steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


class BatchOrder:
    """Epoch-wise shuffling as a pure function of (seed, step), equal to lab.train._batch_indices; the epoch's
    permutation is drawn once, not once per step (n is 256k here)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
        self.per_epoch = max(1, n // self.batch_size)
        self.epoch, self.order = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self.epoch, self.order = epoch, torch.randperm(self.n, generator=generator)
        return self.order[position * self.batch_size: (position + 1) * self.batch_size]


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W] (any device) -> float [N, 1, H, W] normalised as lab.train.to_tensor."""
    return ((images.float() / 255.0 - NORM_MEAN) / NORM_STD).unsqueeze(1)


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right: lab.tasks.pretrain.augment_batch with flip=True (the same
    draw), for multi-label targets, which a mirror leaves unchanged."""
    flipped = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flipped[:, None, None, None], x.flip(-1), x)


def _autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; float32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def train_steps(modules: torch.nn.Module, loss_of_batch: Callable[[torch.Tensor, int], torch.Tensor], n: int,
                recipe: TrainRecipe, lr: float, seed: int, device: torch.device) -> dict[str, Any]:
    """recipe.steps AdamW steps on batches of BatchOrder(n), on the one loop (`lab.train.engine.run_steps`): bf16
    autocast on CUDA, fused AdamW there; `loss_of_batch(index, step)` computes the loss of the samples `index` (a
    device LongTensor). The loss is checked for NaN every 100 steps (no sync per step); final_loss is the mean of
    the last window of (up to) 100 steps."""
    optimizer = torch.optim.AdamW(modules.parameters(), lr=lr, weight_decay=recipe.weight_decay,
                                  fused=device.type == "cuda")
    order = BatchOrder(n, recipe.batch_size, seed)
    started = _sync(device)
    stats = run_steps(modules, optimizer, lambda step: loss_of_batch(order(step).to(device, non_blocking=True), step),
                      steps=recipe.steps, lr_at=lambda step: lr_at(step, recipe, lr), desc="train",
                      log_every=100, check_every=100, autocast=lambda: _autocast(device),
                      hint="lower the learning rate")
    seconds = _sync(device) - started
    done = stats["steps"] - stats["resumed_from_step"]
    return {"steps": done, "train_seconds": seconds, "final_loss": stats["final_loss"],
            "images_per_second": done * order.batch_size / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Top-1, error and mean cross-entropy (lab.train.evaluate) on normalised device tensors."""
    model.eval()
    correct, total = 0, torch.zeros((), device=x.device)
    for start in range(0, len(y), batch_size):
        with _autocast(x.device):
            logits = model(x[start: start + batch_size]).float()
        target = y[start: start + batch_size]
        total += F.cross_entropy(logits, target, reduction="sum")
        correct += int((logits.argmax(1) == target).sum())
    top1 = correct / len(y)
    return {"top1": top1, "error": 1.0 - top1, "loss": total.item() / len(y)}


# --- 2. pre-train -----------------------------------------------------------------------------------------------

def model_config(config: GpuFigure1Config) -> ModelConfig:
    return ModelConfig(name=config.model, in_chans=1, channels_last=True)


def create_task(config: GpuFigure1Config, name: str, scenes: SceneArrays) -> PretrainTask:
    return create_pretrain_task(name, model_config(config), HeadConfig(), scenes.targets.shape[1],
                                config.renderer.width)


def task_targets(task: PretrainTask, targets: torch.Tensor) -> torch.Tensor:
    """The task's own targets of these scenes (`PretrainTask.targets`: the control shuffles them), stacked on the
    CPU (hundreds of thousands of rows) and returned to the scenes' device."""
    return task.targets(targets.cpu().unbind(0)).to(targets.device)


def pretrain(config: GpuFigure1Config, scenes: SceneArrays, targets: torch.Tensor, task_name: str, n: int, seed: int,
             dataset_hash: str) -> dict[str, Any]:
    """One pre-training on scenes holdout .. holdout + n - 1 (the first `holdout` scenes are held out), with the
    same recipe.steps for every n; `targets` = task_targets of scenes 0 .. holdout + n - 1. Returns the body's
    state dict and the held-out loss next to the trivial predictor's."""
    device, started = scenes.images.device, time.perf_counter()
    task = create_task(config, task_name, scenes)
    count = config.holdout + n
    heldout = SceneArrays(scenes.images[: config.holdout], targets[: config.holdout])
    train = SceneArrays(scenes.images[config.holdout: count], targets[config.holdout:])
    torch.manual_seed(seed)
    body, head = task.build()
    modules = torch.nn.ModuleDict({"body": body, "head": head}).to(device)

    def loss_of_batch(index: torch.Tensor, step: int) -> torch.Tensor:
        x = normalise(train.images[index])
        if config.flip:
            x = flip(x, torch.Generator().manual_seed(seed * 1_000_003 + step + 7))
        x = x.contiguous(memory_format=torch.channels_last)
        return task.loss_of(task.forward(body, head, x), task.batch(train.targets, index))

    stats = train_steps(modules, loss_of_batch, n, config.pretrain, config.pretrain.lr, seed, device)
    scores = heldout_losses(task, body, head, train, heldout, normalise)
    identity = {"dataset": dataset_hash, "task": task_name, "n": n, "seed": seed, "model": model_config(config),
                "train": config.pretrain, "holdout": config.holdout, "flip": config.flip}
    return {"run_hash": config_hash(identity), "weights": body.state_dict(), "dataset_hash": dataset_hash,
            "task": task_name, "control": getattr(task, "control", False), "n": n, "seed": seed, **stats, **scores,
            "wall_seconds": time.perf_counter() - started}


# --- 3. fine-tune -----------------------------------------------------------------------------------------------

@dataclass
class RealData:
    """Fashion-MNIST's split, its validation and test sets already normalised on the device."""

    split: Any
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    data: RealDataConfig


def load_real(config: GpuFigure1Config, device: torch.device) -> RealData:
    data = RealDataConfig(name=TARGET, test_size=config.test_size, val_size=config.val_size)
    split = real_split(data, config.renderer.width)

    def on_device(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return normalise(torch.from_numpy(np.asarray(images)).to(device)), torch.from_numpy(labels).to(device)

    return RealData(split, on_device(split.val_images, split.val_labels),
                    on_device(split.test_images, split.test_labels), data)


def initial_model(config: GpuFigure1Config, parent: dict[str, Any] | None, seed: int,
                  device: torch.device) -> torch.nn.Module:
    """The seeded fine-tuning model with the pre-trained body (its classifier dropped: a fresh head), as
    lab.stages.image._initial_model + _load_backbone; every learning rate of the grid starts from these weights."""
    torch.manual_seed(seed)
    model = create_model(model_config(config), num_classes=10)
    if parent is not None:
        head = getattr(model, "pretrained_cfg", {}).get("classifier", "fc") + "."
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in parent["weights"].items() if not k.startswith(head)}, strict=False)
        if unexpected or any(not k.startswith(head) for k in missing):
            raise RuntimeError(f"pre-trained weights do not fit: missing {missing}, unexpected {unexpected}")
    return model.to(device)


def finetune(config: GpuFigure1Config, real: RealData, parent: dict[str, Any] | None, n: int, s: int,
             seed: int) -> dict[str, Any]:
    """One study point: train once per rate of the grid on the same s images from the same weights, keep the
    lowest validation error (ties: the first rate), read the test set once. The keys of lab.stages.image.run_finetune's
    result, so lab.core.results.results_table builds the lab's table."""
    device, started = real.test[0].device, time.perf_counter()
    recipe = config.finetune
    images, labels = finetune_subset(real.split, s, seed)
    x_train, y_train = normalise(torch.from_numpy(np.asarray(images)).to(device)), torch.from_numpy(labels).to(device)
    initial = initial_model(config, parent, seed, device)

    def loss_of(model: torch.nn.Module) -> Callable[[torch.Tensor, int], torch.Tensor]:
        def loss_of_batch(index: torch.Tensor, step: int) -> torch.Tensor:
            x = x_train[index]
            if recipe.augment:
                x = augment_batch(x, torch.Generator().manual_seed(seed * 1_000_003 + step + 7))
            return F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y_train[index])
        return loss_of_batch

    trials, best, train_seconds = [], None, 0.0
    for lr in recipe.lr_grid:
        model = copy.deepcopy(initial)
        stats = train_steps(model, loss_of(model), s, recipe, lr, seed, device)
        val = evaluate(model, *real.val)
        trials.append({"lr": lr, "val_error": val["error"], "val_loss": val["loss"]})
        train_seconds += stats["train_seconds"]
        if best is None or val["error"] < best[0]["val_error"]:
            best = (trials[-1], model)
    chosen, model = best
    metrics = evaluate(model, *real.test)
    test_labels = real.split.test_labels
    baseline = float(np.mean(test_labels != int(np.bincount(labels).argmax())))  # the fine-tuning label prior
    identity = {"data": real.data, "s": s, "seed": seed, "image_size": config.renderer.width,
                "model": model_config(config), "train": recipe, "pretrain": parent["run_hash"] if parent else None}
    summary = {} if parent is None else {"pretrain_metric": parent["pretrain_metric"],
                                         "pretrain_heldout": parent["heldout"],
                                         "pretrain_heldout_baseline": parent["heldout_baseline"],
                                         "pretrain_beats_baseline": parent["beats_baseline"]}
    return {"run_hash": config_hash(identity), "n": n, "s": s, "seed": seed, "model": config.model, "data": TARGET,
            "metrics": metrics, "test_size": len(test_labels), "baseline_error": baseline,
            "beats_baseline": bool(metrics["error"] < baseline), "lr": chosen["lr"], "val_error": chosen["val_error"],
            "lr_search": trials, "pretrain_hash": parent["run_hash"] if parent else None,
            "dataset_hash": parent["dataset_hash"] if parent else None,
            "pretrain_seconds": parent["wall_seconds"] if parent else 0.0,
            "pretrain_metric": None, "pretrain_heldout": None, "pretrain_heldout_baseline": None,
            "pretrain_beats_baseline": None, **summary, "pretrain_steps": parent["steps"] if parent else 0,
            "finetune_seconds": time.perf_counter() - started, "steps": recipe.steps, "train_seconds": train_seconds,
            **provenance(device)}


def provenance(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"git_commit": git_commit(), "host": socket.gethostname(), "python": platform.python_version(),
            "torch": torch.__version__, "device": name}


# --- 4. the study, its table, report and figure -----------------------------------------------------------------

def run_study(config: GpuFigure1Config, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Render -> (per seed) pre-train every n, fine-tune every s -> results.csv, report.md, figure.png."""
    config.validate()
    device = torch.device(config.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed batch shapes: let cuDNN pick its kernels once
    out = Path(config.out)
    wall = time.perf_counter()
    times: dict[str, float] = {"render": 0.0, "pretrain": 0.0, "finetune": 0.0}

    real = load_real(config, device)  # before the long stages: a missing Fashion-MNIST fails now
    if max(config.s) > len(real.split.pool_labels):
        raise ValueError(f"s = {max(config.s)} is larger than the Fashion-MNIST fine-tuning pool "
                         f"({len(real.split.pool_labels)} images after {config.val_size} for validation)")
    count = config.holdout + max(config.n)
    started = _sync(device)
    scenes = render_scenes(config.renderer, count, device, config.render_batch, config.workers)
    times["render"] = _sync(device) - started
    log(f"rendered {count} scenes in {times['render']:.1f} s ({count / times['render']:.0f} img/s) on {device}")
    dataset_hash = config_hash(config.renderer)

    results, extras, pretrains, scratch, labels = [], [], [], {}, {}
    for seed in config.seeds:
        for task, n_values in config.tasks().items():
            for n in n_values:
                parent = None
                if n > 0:
                    started = _sync(device)
                    if (task, n) not in labels:  # the same for every seed
                        labels[(task, n)] = task_targets(create_task(config, task, scenes),
                                                         scenes.targets[: config.holdout + n])
                    parent = pretrain(config, scenes, labels[(task, n)], task, n, seed, dataset_hash)
                    times["pretrain"] += _sync(device) - started
                    pretrains.append({k: v for k, v in parent.items() if k != "weights"})
                    log(f"pretrain {task} n={n} seed={seed}: {parent['steps']} steps, "
                        f"{parent['images_per_second']:.0f} img/s, held-out {parent['heldout']:.4f} "
                        f"vs trivial {parent['heldout_baseline']:.4f}")
                for s in config.s:
                    if n == 0 and (s, seed) in scratch:  # one scratch run, shown in every task's panel
                        result = scratch[(s, seed)]
                    else:
                        started = _sync(device)
                        result = finetune(config, real, parent, n, s, seed)
                        times["finetune"] += _sync(device) - started
                        if n == 0:
                            scratch[(s, seed)] = result
                        log(f"finetune {task} n={n} s={s} seed={seed}: error {result['metrics']['error']:.4f} "
                            f"(lr {result['lr']:g}, val {result['val_error']:.4f})")
                    results.append(result)
                    extras.append({"pretrain_task": task, "target": TARGET, "level": config.renderer.level,
                                   "pretrain_steps": result["pretrain_steps"]})
        times["total"] = time.perf_counter() - wall
        table = results_table(results, EXPERIMENT, extras)
        write_table(table, out / "results.csv")
        atomic_write_text(out / "report.md", report(config, table, results, pretrains, times, count))
        plot(table, out / "figure.png")
        log(f"seed {seed} done at {times['total']:.0f} s; wrote {out}/results.csv, report.md, figure.png")
    return {"table": table, "results": results, "pretrains": pretrains, "times": times, "dir": out,
            "scenes": scenes}


def paired_gain(top1: pd.DataFrame, s: int, before: tuple[str, int], after: tuple[str, int]) -> dict[str, Any]:
    """error(before) - error(after), (pretrain_task, n) arms compared seed by seed (a seed fixes the real subset
    and the head's init in both), its mean and standard error over the seeds both arms have."""
    def errors(task: str, n: int) -> pd.Series:
        rows = top1[(top1.s == s) & (top1.pretrain_task == task) & (top1.n == n)]
        return rows.set_index("seed").error

    gain = (errors(*before) - errors(*after)).dropna()
    se = gain.std(ddof=1) / math.sqrt(len(gain)) if len(gain) > 1 else math.nan
    return {"gain": gain.mean() if len(gain) else math.nan, "se": se, "seeds": len(gain)}


def report(config: GpuFigure1Config, table: pd.DataFrame, results: list[dict[str, Any]],
           pretrains: list[dict[str, Any]], times: dict[str, float], count: int) -> str:
    top1 = table[table.metric == "top1"]
    r, p, f = config.renderer, config.pretrain, config.finetune
    lines = [f"# {EXPERIMENT}: {r.level} scenes ({r.width} px grey, {r.supersample}x{r.supersample} supersampled) "
             f"-> {TARGET}, {config.model}", "",
             f"Pre-training: multi-label, the same {p.steps} steps x batch {p.batch_size} for every n (AdamW, lr "
             f"{p.lr:g}, warm-up + cosine{', left-right flips' if config.flip else ''}), {config.holdout} held-out "
             f"scenes. Fine-tuning: {f.steps} steps x batch "
             f"{f.batch_size}, lr chosen per run from {f.lr_grid} on {config.val_size} validation images; top-1 "
             f"error on {results[0]['test_size']} test images. Seeds {sorted(top1.seed.unique().tolist())}; "
             f"{results[0]['device']}, torch {torch.__version__}"
             f"{', bf16 autocast' if config.device.startswith('cuda') else ', float32'}.", "",
             "## Top-1 error (mean +- std over seeds)", "",
             "| pretrain_task | n | " + " | ".join(f"s = {s}" for s in config.s) + " |",
             "|---|---|" + "---|" * len(config.s)]
    stats = top1.groupby(["pretrain_task", "n", "s"]).error.agg(["mean", "std", "count"])
    for (task, n), _ in top1.groupby(["pretrain_task", "n"]):
        cells = []
        for s in config.s:
            if (task, n, s) in stats.index:
                row = stats.loc[(task, n, s)]
                std = "" if pd.isna(row["std"]) else f" +- {row['std']:.2%}"
                cells.append(f"{row['mean']:.2%}{std} ({int(row['count'])})")
            else:
                cells.append("")
        lines.append(f"| {task} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Did pre-training learn? Held-out loss vs the trivial predictor (class frequencies)", "",
              "| task | n | seed | held-out | trivial | beats | steps | img/s |", "|---|---|---|---|---|---|---|---|"]
    for row in sorted(pretrains, key=lambda r: (r["task"], r["n"], r["seed"])):
        mark = "yes" if row["beats_baseline"] else "**no**"
        mark += " (control: not expected to)" if row.get("control") else ""
        lines.append(f"| {row['task']} | {row['n']} | {row['seed']} | {row['heldout']:.4f} | "
                     f"{row['heldout_baseline']:.4f} | {mark} | {row['steps']} | {row['images_per_second']:.0f} |")
    largest = max(config.n)
    comparisons = [(f"{task} n = {largest} vs scratch", (task, 0), (task, largest)) for task in config.tasks()]
    if config.control:
        comparisons.append((f"multilabel vs {CONTROL_TASK}, n = {largest}", (CONTROL_TASK, largest),
                            ("multilabel", largest)))
    lines += ["", "## Gains at the largest n, seed-paired (error before - error after, points; + = better)", "",
              "| comparison | s | gain | SE | seeds |", "|---|---|---|---|---|"]
    for name, before, after in comparisons:
        for s in config.s:
            gain = paired_gain(top1, s, before, after)
            se = "n/a" if math.isnan(gain["se"]) else f"{100 * gain['se']:.2f}"
            lines.append(f"| {name} | {s} | {100 * gain['gain']:+.2f} | {se} | {gain['seeds']} |")
    pre = sum(r["steps"] for r in pretrains) * p.batch_size
    lines += ["", "## Time", "", "| stage | seconds | throughput |", "|---|---|---|",
              f"| render ({count} scenes, torch engine) | {times['render']:.1f} | "
              f"{count / max(times['render'], 1e-9):.0f} img/s |",
              f"| pre-train ({len(pretrains)} runs) | {times['pretrain']:.1f} | "
              f"{pre / max(times['pretrain'], 1e-9):.0f} img/s incl. held-out scoring |",
              f"| fine-tune ({top1.run_hash.nunique()} runs x {len(f.lr_grid)} rates) | {times['finetune']:.1f} | |",
              f"| total wall | {times.get('total', 0.0):.1f} | |", ""]
    return "\n".join(lines)


def plot(table: pd.DataFrame, path: Path) -> None:
    """Error vs n (log) per s, one line per pre-training task with the seed spread; scratch dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top1 = table[table.metric == "top1"]
    sizes = sorted(top1.s.unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.8 * len(sizes), 3.8), squeeze=False)
    for ax, s in zip(axes[0], sizes):
        panel = top1[top1.s == s]
        for task, rows in panel[panel.n > 0].groupby("pretrain_task"):
            stats = rows.groupby("n").error.agg(["mean", "std"]).reset_index()
            line = ax.errorbar(stats.n, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=task)
            ax.scatter(rows.n, rows.error, s=8, alpha=0.4, color=line[0].get_color())  # every seed
        scratch = panel[panel.n == 0].drop_duplicates("run_hash").error
        if len(scratch):
            ax.axhline(scratch.mean(), color="grey", ls="--", label=f"scratch {scratch.mean():.1%}")
        ax.set(xscale="log", xlabel="n synthetic scenes", ylabel="top-1 error", title=f"{TARGET}, s = {s}")
        ax.set_xticks(sorted(panel[panel.n > 0].n.unique()), minor=False)
        ax.set_xticklabels([f"{n:,}" for n in sorted(panel[panel.n > 0].n.unique())])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


# --- command line -----------------------------------------------------------------------------------------------

TOY = {"model": "test_resnet", "n": "0,8,16", "s": "20,40", "seeds": "0,1", "holdout": 8, "steps": 3, "batch": 8,
       "ft_steps": 3, "ft_batch": 8, "lr_grid": "1e-3,1e-2", "val_size": 20, "render_batch": 4, "workers": 0}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def parse_args(argv: list[str] | None = None) -> GpuFigure1Config:
    default = GpuFigure1Config()
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        prog="python -m experiments.gpu_figure1", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Figure 1 on one GPU: render the largest n scenes into device memory, pre-train a ResNet-18 "
                    "(bf16 on CUDA) for the same number of steps at every n, fine-tune Fashion-MNIST at every s "
                    "with the learning rate chosen on a validation split, write results.csv, report.md and "
                    "figure.png into --out. Fashion-MNIST is read from $LAB_FASHION_MNIST_DIR (the four .gz files)"
                    " or /usr/share/datasets/fashion-mnist.")
    arg = parser.add_argument
    arg("--out", required=True, help="output folder")
    arg("--device", default="cuda" if cuda else "cpu", help="torch device (cuda, cuda:1, cpu)")
    arg("--toy", action="store_true", help=f"toy sizes for a CPU smoke run (explicit flags still win): {TOY}")
    arg("--n", default=None, help=f"synthetic sizes, 0 = from scratch [{','.join(map(str, default.n))}]")
    arg("--s", default=None, help=f"Fashion-MNIST fine-tuning sizes [{','.join(map(str, default.s))}]")
    arg("--seeds", default=None, help=f"seeds (pre-training and fine-tuning) [{','.join(map(str, default.seeds))}]")
    arg("--control", action=argparse.BooleanOptionalAction, default=False,
        help=f"also pre-train {CONTROL_TASK} (each scene gets another scene's labels) at the largest n")
    arg("--model", default=None, help=f"timm model name, in_chans=1 [{default.model}]")
    arg("--flip", action=argparse.BooleanOptionalAction, default=default.flip,
        help="pre-training augmentation: mirror half of each batch left-right")
    arg("--holdout", type=int, default=None, help=f"held-out scenes, never trained on [{default.holdout}]")
    arg("--steps", type=int, default=None, help=f"pre-training steps, the same for every n [{default.pretrain.steps}]")
    arg("--batch", type=int, default=None, help=f"pre-training batch [{default.pretrain.batch_size}]")
    arg("--lr", type=float, default=default.pretrain.lr, help="pre-training peak learning rate (AdamW)")
    arg("--ft-steps", type=int, default=None, help=f"fine-tuning steps [{default.finetune.steps}]")
    arg("--ft-batch", type=int, default=None, help=f"fine-tuning batch [{default.finetune.batch_size}]")
    arg("--lr-grid", default=None, help="fine-tuning learning rates, chosen per run on the validation split "
                                        f"[{','.join(map(str, default.finetune.lr_grid))}]")
    arg("--val-size", type=int, default=None, help=f"validation images from the pool [{default.val_size}]")
    arg("--test-size", type=int, default=default.test_size, help="test images (0 = the whole 10k test set)")
    arg("--level", default=default.renderer.level, help="scene level lv0..lv7 (the knobs below override it)")
    arg("--classes", default="distinct20", help="class sets, comma-separated")
    arg("--objects", default="1,3", help="objects per scene, low,high")
    arg("--radius", default="0.08,0.14", help="object radius in metres, low,high")
    arg("--size", type=int, default=default.renderer.width, help="image size in pixels (square)")
    arg("--supersample", type=int, default=default.renderer.supersample, help="k: render k x the size, downsample")
    arg("--render-seed", type=int, default=default.renderer.seed, help="scene stream: scene i = (seed, i)")
    arg("--render-batch", type=int, default=None, help=f"scenes per device render call [{default.render_batch}]")
    arg("--workers", type=int, default=None,
        help="CPU processes that sample and prepare scenes [cores - 1 on CUDA, 0 on CPU]")
    args = parser.parse_args(argv)
    preset = TOY if args.toy else {}

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(args, name)
        return value if value is not None else preset.get(name, fallback)

    renderer = Scene3DRendererConfig(
        level=args.level, width=args.size, height=args.size, supersample=args.supersample, seed=args.render_seed,
        sampler=SceneSamplerConfig(class_sets=args.classes.split(","), objects_per_scene=_ints(args.objects),
                                   object_radius=_floats(args.radius)))
    workers = pick("workers", len(os.sched_getaffinity(0)) - 1 if args.device.startswith("cuda") else 0)
    return GpuFigure1Config(
        out=args.out, device=args.device, n=_ints(str(pick("n", ",".join(map(str, default.n))))),
        s=_ints(str(pick("s", ",".join(map(str, default.s))))),
        seeds=_ints(str(pick("seeds", ",".join(map(str, default.seeds))))), control=args.control,
        model=pick("model", default.model),
        renderer=renderer, holdout=int(pick("holdout", default.holdout)), flip=args.flip,
        render_batch=int(pick("render_batch", default.render_batch)), workers=int(workers),
        pretrain=TrainRecipe(steps=int(pick("steps", default.pretrain.steps)),
                             batch_size=int(pick("batch", default.pretrain.batch_size)), lr=args.lr),
        finetune=TrainRecipe(steps=int(pick("ft_steps", default.finetune.steps)),
                             batch_size=int(pick("ft_batch", default.finetune.batch_size)),
                             lr_grid=_floats(str(pick("lr_grid", ",".join(map(str, default.finetune.lr_grid))))),
                             augment=True),
        val_size=int(pick("val_size", default.val_size)), test_size=args.test_size)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    started = time.perf_counter()
    result = run_study(config, log=lambda line: print(f"[{time.perf_counter() - started:6.1f} s] {line}",
                                                      flush=True))
    top1 = result["table"][result["table"].metric == "top1"]
    print(top1[["pretrain_task", "n", "s", "seed", "error", "lr", "val_error", "pretrain_heldout",
                "pretrain_heldout_baseline"]].to_string(index=False))
    print((result["dir"] / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
