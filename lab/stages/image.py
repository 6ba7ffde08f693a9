"""Stages: plain functions `run(job) -> result`, idempotent and resumable.

A stage's run directory is keyed by the hash of what determines its output (its config and its parents'
hashes, never paths), so a finished stage is found and reused, and a shared parent (one pre-training used
by several fine-tunes) runs once under a lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lab.data.real import RealDataConfig, finetune_subset, real_split
from lab.data.shards import ShardedDataset
from lab.core.distributed import DistributedContext
from lab.models import ModelConfig, create_model
from lab.parallel import AllReduceConfig
from lab.core.provenance import provenance
from lab.core.rundir import RunDir
from lab.stages.skeleton import run_stage, set_threads
from lab.train import TrainConfig, evaluate, train_classifier


PRETRAIN_BUDGETS = ("steps", "epochs")


@dataclass
class PretrainConfig:
    """Pre-training on n synthetic images.

    budget "steps" (the default, the paper's protocol): the same `steps` optimiser steps for every n, so n
    changes the data and never the compute (Mikami et al. train every n for 112,500 iterations); budget
    "epochs": steps = max(min_steps, epochs * n / batch_size), the lab's old rule, kept as an option.
    The first `holdout` samples of the render are never trained on: every pre-training reports its loss (or
    error) on them next to the trivial predictor's (class frequencies, majority class, mean normal), so a
    pre-training that learned nothing is flagged. Training uses samples holdout .. holdout + n.
    """

    budget: str = "steps"
    steps: int = 400
    epochs: float = 10.0
    min_steps: int = 150
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    augment: bool = False  # the renderer already randomises every image
    holdout: int = 500
    checkpoint_every: int = 250
    allreduce: AllReduceConfig = field(default_factory=AllReduceConfig)  # jobs with several tasks (DDP)

    def render_count(self, largest_n: int) -> int:
        """Samples a study must render for pre-trainings up to `largest_n`: the held-out ones, then the n."""
        return self.holdout + largest_n if largest_n > 0 else 0

    def steps_for(self, n: int) -> int:
        if self.budget not in PRETRAIN_BUDGETS:
            raise ValueError(f"pretrain.budget must be one of {', '.join(PRETRAIN_BUDGETS)}, got {self.budget!r}")
        if self.budget == "steps":
            return self.steps
        return max(self.min_steps, int(round(self.epochs * n / self.batch_size)))

    def train_config(self, n: int) -> TrainConfig:
        if self.holdout < 0:
            raise ValueError(f"pretrain.holdout must be >= 0, got {self.holdout}")
        return TrainConfig(steps=self.steps_for(n), batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, warmup_frac=self.warmup_frac, augment=self.augment,
                           checkpoint_every=self.checkpoint_every, log_every=50, allreduce=self.allreduce)


@dataclass
class FinetuneConfig:
    """Fine-tuning on s real images (the head is re-initialised; every layer trains).

    Equal tuning for every arm: with a non-empty `lr_grid`, every run (from scratch and from every
    pre-training alike) trains once per learning rate in the grid on the same subset from the same initial
    weights, and keeps the one with the lowest error on the validation set (`data.val_size` images carved from
    the real pool; the test set is read once, by the chosen model). The chosen rate is stored per run.
    With an empty grid the fixed rates below are used: `lr` for pre-trained backbones and `scratch_lr` from
    scratch (measured on MNIST, s = 50, 3 seeds: scratch error 19.6% / 16.5% / 16.1% at lr 3e-3 / 1e-2 / 3e-2;
    pre-trained (n = 2000) 9.4% at 3e-3 vs 12.6% at 1e-2).
    """

    steps: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    scratch_lr: float = 1e-2
    lr_grid: list[float] = field(default_factory=list)
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    augment: bool = True
    checkpoint_every: int = 100
    allreduce: AllReduceConfig = field(default_factory=AllReduceConfig)

    def train_config(self, from_scratch: bool = False, lr: float | None = None) -> TrainConfig:
        if lr is None:
            lr = self.scratch_lr if from_scratch else self.lr
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=lr, weight_decay=self.weight_decay,
                           warmup_frac=self.warmup_frac, augment=self.augment,
                           checkpoint_every=self.checkpoint_every, log_every=25, allreduce=self.allreduce)

    def validate(self, prefix: str, data: RealDataConfig | None = None) -> None:
        """Both recipes, the grid, and (given the data) that a grid has a validation set to choose on."""
        self.train_config().validate(prefix)
        self.train_config(from_scratch=True).validate(prefix)
        if any(not lr > 0 for lr in self.lr_grid):
            raise ValueError(f"{prefix}.lr_grid must hold positive learning rates, got {self.lr_grid}")
        if self.lr_grid and data is not None and data.val_size <= 0:
            raise ValueError(f"{prefix}.lr_grid chooses the learning rate on a validation split: set "
                             f"data.val_size > 0 (images carved from the {data.name} pool; never the test set)")


@dataclass
class PretrainJob:
    """Pre-train on the first n samples of a rendered synthetic dataset."""

    root: str
    experiment: str
    dataset: str  # folder of a sharded synthetic dataset
    dataset_id: str  # hash of the renderer config: rendering is deterministic, so it names the content
    n: int
    seed: int
    model: ModelConfig = field(default_factory=ModelConfig)
    train: PretrainConfig = field(default_factory=PretrainConfig)
    num_classes: int = 10
    threads: int = 0

    def identity(self) -> dict[str, Any]:
        return {"dataset": self.dataset_id, "n": self.n, "seed": self.seed, "model": self.model,
                "train": self.train, "num_classes": self.num_classes}

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.root, self.experiment, "pretrain", self.identity())


@dataclass
class FinetuneJob:
    """One study point (n, s, seed): pre-train on n synthetic images (none when n = 0), fine-tune, evaluate."""

    root: str
    experiment: str
    data: RealDataConfig
    s: int
    seed: int
    image_size: int
    model: ModelConfig = field(default_factory=ModelConfig)
    train: FinetuneConfig = field(default_factory=FinetuneConfig)
    pretrain: PretrainJob | None = None  # or another pre-training job with `execute` (see `run_parent`)
    threads: int = 0  # torch threads; 0 leaves torch's default
    progress: bool = False

    @property
    def n(self) -> int:
        return 0 if self.pretrain is None else self.pretrain.n

    def identity(self) -> dict[str, Any]:
        return {"data": self.data, "s": self.s, "seed": self.seed, "image_size": self.image_size,
                "model": self.model, "train": self.train,
                "pretrain": self.pretrain.run_dir().hash if self.pretrain else None}

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.root, self.experiment, "finetune", self.identity())


def run_pretrain(job: PretrainJob, progress: bool = False) -> dict[str, Any]:
    """Pre-train (or return the stored result of) one (dataset, n, model, seed)."""
    set_threads(job.threads)
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        started = time.perf_counter()
        dataset = ShardedDataset.open(job.dataset)
        if context.is_main:
            run.write_config({**job.identity(), "dataset_path": job.dataset, "dataset_hash": dataset.content_hash})
        holdout = job.train.holdout
        if dataset.count < holdout + job.n:
            raise ValueError(f"{job.dataset} holds {dataset.count} samples; pre-training n={job.n} after the "
                             f"{holdout} held-out ones needs {holdout + job.n}")
        arrays = dataset.load(holdout + job.n)
        torch.manual_seed(job.seed)
        model = create_model(job.model, job.num_classes)
        stats = train_classifier(model, arrays["image"][holdout:], arrays["label"][holdout:],
                                 job.train.train_config(job.n), run, seed=job.seed,
                                 desc=f"pretrain n={job.n} seed={job.seed}", channels_last=job.model.channels_last,
                                 progress=progress, context=context)
        heldout = heldout_classification(model, arrays["image"][:holdout], arrays["label"][:holdout],
                                         arrays["label"][holdout:])
        weights = run.path / "model.pt"
        if context.is_main:
            torch.save(model.state_dict(), weights)
        return {"run_hash": run.hash, "weights": str(weights), "dataset_hash": dataset.content_hash, "n": job.n,
                "seed": job.seed, **stats, **heldout, "wall_seconds": time.perf_counter() - started,
                **provenance()}

    return run_stage(run, work, threads=job.threads)


def heldout_classification(model: torch.nn.Module, images: Any, labels: Any, train_labels: Any) -> dict[str, Any]:
    """Held-out synthetic top-1 error next to the majority class's (of the training labels): the trivial
    baseline a pre-training must beat to have learned anything. Empty when nothing is held out."""
    if len(labels) == 0:
        return {"pretrain_metric": None}
    error = evaluate(model, images, labels)["error"]
    baseline = majority_class_error(train_labels, labels)
    return {"pretrain_metric": "heldout_top1_error", "heldout": error, "heldout_baseline": baseline,
            "beats_baseline": bool(error < baseline)}


def majority_class_error(train_labels: Any, labels: Any) -> float:
    """Error on `labels` of always predicting the most frequent training label (the label prior's guess)."""
    majority = int(np.bincount(np.asarray(train_labels)).argmax())
    return float(np.mean(np.asarray(labels) != majority))


def run_parent(pretrain: Any, progress: bool = False) -> dict[str, Any]:
    """A fine-tune's pre-training: digit classification (`PretrainJob`), or any job that runs its own stage
    through `execute(progress)` (e.g. `lab.stages.scenes3d.Pretrain3DJob`); both write `weights` and `run_hash`."""
    execute = getattr(pretrain, "execute", None)
    return execute(progress) if execute is not None else run_pretrain(pretrain, progress)


# fine-tune result key -> its pre-training's result key: each point carries whether its body learned anything
PARENT_SUMMARY = {"pretrain_metric": "pretrain_metric", "pretrain_heldout": "heldout",
                  "pretrain_heldout_baseline": "heldout_baseline", "pretrain_beats_baseline": "beats_baseline"}


def run_finetune(job: FinetuneJob) -> dict[str, Any]:
    """Run one study point; safe to call again (a finished point returns its stored result)."""
    set_threads(job.threads)
    parent = run_parent(job.pretrain, job.progress) if job.pretrain is not None else None
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        started = time.perf_counter()
        if context.is_main:
            run.write_config(job.identity())
        split = real_split(job.data, job.image_size)
        images, labels = finetune_subset(split, job.s, job.seed)
        num_classes = int(split.pool_labels.max()) + 1
        if job.train.lr_grid:
            model, stats, search = _choose_lr(job, parent, split, images, labels, num_classes, run, context)
        else:
            model = _initial_model(job, parent, num_classes)
            config = job.train.train_config(parent is None)
            stats = train_classifier(model, images, labels, config, run, seed=job.seed,
                                     desc=f"finetune n={job.n} s={job.s} seed={job.seed}",
                                     channels_last=job.model.channels_last, progress=job.progress, context=context)
            search = {"lr": config.lr, "val_error": None, "lr_search": []}
        metrics = evaluate(model, split.test_images, split.test_labels)
        if context.is_main:
            run.log_metrics({"stage": "eval", "step": stats["steps"], **metrics})
        baseline = majority_class_error(labels, split.test_labels)  # the label prior of the fine-tuning subset
        return {
            "run_hash": run.hash, "n": job.n, "s": job.s, "seed": job.seed, "model": job.model.name,
            "data": job.data.name, "metrics": metrics, "test_size": len(split.test_labels),
            "baseline_error": baseline, "beats_baseline": bool(metrics["error"] < baseline), **search,
            "pretrain_hash": parent["run_hash"] if parent else None,
            "dataset_hash": parent["dataset_hash"] if parent else None,
            "pretrain_seconds": parent["wall_seconds"] if parent else 0.0,
            **{key: parent.get(source) if parent else None for key, source in PARENT_SUMMARY.items()},
            "finetune_seconds": time.perf_counter() - started, **stats, **provenance(),
        }

    return run_stage(run, work, threads=job.threads)


def _initial_model(job: FinetuneJob, parent: dict[str, Any] | None, num_classes: int) -> torch.nn.Module:
    """The same initial weights for every trial of a run: seeded head (and body from scratch), loaded body."""
    torch.manual_seed(job.seed)
    model = create_model(job.model, num_classes=num_classes)
    if parent is not None:
        _load_backbone(model, parent["weights"])
    return model


def _trial(run: RunDir, lr: float) -> RunDir:
    """The sub-run of one learning rate of the grid: its checkpoints, metrics, weights and result."""
    return RunDir(run.path / "lr_search" / f"lr{lr:g}")


def _choose_lr(job: FinetuneJob, parent: dict[str, Any] | None, split: Any, images: Any, labels: Any,
               num_classes: int, run: RunDir, context: DistributedContext) -> tuple[torch.nn.Module, dict, dict]:
    """Train once per rate of the grid (each a resumable sub-run), keep the lowest validation error.

    Ties go to the first rate in the grid. Only the validation set is read here; the test set never is."""
    if split.val_images is None:
        raise ValueError(f"finetune.lr_grid needs a validation split: set data.val_size > 0 for {job.data.name}")
    trials = []
    for lr in job.train.lr_grid:
        trial = _trial(run, lr)
        if trial.done:
            trials.append(trial.read_result())
            continue
        model = _initial_model(job, parent, num_classes)
        stats = train_classifier(model, images, labels, job.train.train_config(parent is None, lr=lr), trial,
                                 seed=job.seed, desc=f"finetune n={job.n} s={job.s} seed={job.seed} lr={lr:g}",
                                 channels_last=job.model.channels_last, progress=job.progress, context=context)
        val = evaluate(model, split.val_images, split.val_labels)
        result = {"lr": lr, "val_error": val["error"], "val_loss": val["loss"], **stats}
        if context.is_main:
            torch.save(model.state_dict(), trial.path / "model.pt")
            trial.write_result(result)
        trials.append(result)
    best = min(range(len(trials)), key=lambda i: (trials[i]["val_error"], i))
    chosen = trials[best]
    model = create_model(job.model, num_classes=num_classes)
    weights = _trial(run, chosen["lr"]).path / "model.pt"
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    stats = {k: chosen[k] for k in ("steps", "resumed_from_step", "train_seconds", "world_size") if k in chosen}
    stats["train_seconds"] = sum(t.get("train_seconds", 0.0) for t in trials)
    search = {"lr": chosen["lr"], "val_error": chosen["val_error"],
              "lr_search": [{"lr": t["lr"], "val_error": t["val_error"]} for t in trials]}
    return model, stats, search


def _load_backbone(model: torch.nn.Module, weights: str) -> None:
    """Pre-trained weights without the classifier head (fine-tuning gets a fresh head)."""
    head = _head_prefix(model)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)},
                                                strict=False)
    if unexpected or any(not k.startswith(head) for k in missing):
        raise RuntimeError(f"pre-trained weights do not fit the model: missing {missing}, unexpected {unexpected}")


def _head_prefix(model: torch.nn.Module) -> str:
    """The classifier's parameter prefix (timm models name it in `default_cfg['classifier']`)."""
    return getattr(model, "pretrained_cfg", {}).get("classifier", "fc") + "."
