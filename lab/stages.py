"""Stages: plain functions `run(job) -> result`, idempotent and resumable.

A stage's run directory is keyed by the hash of what determines its output (its config and its parents'
hashes, never paths), so a finished stage is found and reused, and a shared parent (one pre-training used
by several fine-tunes) runs once under a lock.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from lab.data.real import RealDataConfig, finetune_subset, real_split
from lab.data.shards import ShardedDataset
from lab.distributed import DistributedContext, init_distributed
from lab.models import ModelConfig, create_model
from lab.parallel import AllReduceConfig
from lab.rundir import RunDir
from lab.train import TrainConfig, evaluate, train_classifier


@dataclass
class PretrainConfig:
    """Pre-training on n synthetic images: steps = max(min_steps, epochs * n / batch_size)."""

    epochs: float = 10.0
    min_steps: int = 150
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    augment: bool = False  # the renderer already randomises every image
    checkpoint_every: int = 250
    allreduce: AllReduceConfig = field(default_factory=AllReduceConfig)  # jobs with several tasks (DDP)

    def train_config(self, n: int) -> TrainConfig:
        steps = max(self.min_steps, int(round(self.epochs * n / self.batch_size)))
        return TrainConfig(steps=steps, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           warmup_frac=self.warmup_frac, augment=self.augment,
                           checkpoint_every=self.checkpoint_every, log_every=50, allreduce=self.allreduce)


@dataclass
class FinetuneConfig:
    """Fine-tuning on s real images (the head is re-initialised; every layer trains).

    From-scratch runs (n = 0) get their own learning rate: the rate that suits a pre-trained backbone
    under-trains a random one and would inflate the apparent transfer. Measured on MNIST, s = 50, 3 seeds:
    scratch error 19.6% / 16.5% / 16.1% at lr 3e-3 / 1e-2 / 3e-2 (a plateau, so 1e-2 is not under-trained);
    pre-trained (n = 2000) 9.4% at 3e-3 vs 12.6% at 1e-2.
    """

    steps: int = 200
    batch_size: int = 32
    lr: float = 3e-3
    scratch_lr: float = 1e-2
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    augment: bool = True
    checkpoint_every: int = 100
    allreduce: AllReduceConfig = field(default_factory=AllReduceConfig)

    def train_config(self, from_scratch: bool = False) -> TrainConfig:
        lr = self.scratch_lr if from_scratch else self.lr
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=lr, weight_decay=self.weight_decay,
                           warmup_frac=self.warmup_frac, augment=self.augment,
                           checkpoint_every=self.checkpoint_every, log_every=25, allreduce=self.allreduce)


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


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the lab's checkout, with '-dirty' when tracked files differ from it (results must say so)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=here)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True, timeout=10, cwd=here)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip()
    if not commit:
        return "unknown"
    return commit + ("-dirty" if dirty.returncode == 1 else "")


def provenance() -> dict[str, Any]:
    return {"git_commit": git_commit(), "host": socket.gethostname(), "python": platform.python_version(),
            "torch": torch.__version__, "pid": os.getpid()}


def run_once(run: RunDir, context: DistributedContext, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`work()` unless `run` is done. Rank 0 holds the run's lock and writes; all ranks agree on 'done'."""
    with run.lock() if context.is_main else contextlib.nullcontext():
        if context.broadcast_flag(run.done):
            return run.read_result()
        if context.is_main:
            run.record_attempt()
        result = work()
        if context.is_main:
            run.write_result(result)
    context.barrier()
    return result


def run_pretrain(job: PretrainJob, progress: bool = False) -> dict[str, Any]:
    """Pre-train (or return the stored result of) one (dataset, n, model, seed)."""
    if job.threads > 0:
        torch.set_num_threads(job.threads)
    context = init_distributed()
    run = job.run_dir()

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        dataset = ShardedDataset.open(job.dataset)
        if context.is_main:
            run.write_config({**job.identity(), "dataset_path": job.dataset, "dataset_hash": dataset.content_hash})
        arrays = dataset.load(job.n)
        torch.manual_seed(job.seed)
        model = create_model(job.model, job.num_classes)
        stats = train_classifier(model, arrays["image"], arrays["label"], job.train.train_config(job.n), run,
                                 seed=job.seed, desc=f"pretrain n={job.n} seed={job.seed}",
                                 channels_last=job.model.channels_last, progress=progress, context=context)
        weights = run.path / "model.pt"
        if context.is_main:
            torch.save(model.state_dict(), weights)
        return {"run_hash": run.hash, "weights": str(weights), "dataset_hash": dataset.content_hash, "n": job.n,
                "seed": job.seed, **stats, "wall_seconds": time.perf_counter() - started, **provenance()}

    return run_once(run, context, work)


def run_parent(pretrain: Any, progress: bool = False) -> dict[str, Any]:
    """A fine-tune's pre-training: digit classification (`PretrainJob`), or any job that runs its own stage
    through `execute(progress)` (e.g. `lab.stages3d.Pretrain3DJob`); both write `weights` and `run_hash`."""
    execute = getattr(pretrain, "execute", None)
    return execute(progress) if execute is not None else run_pretrain(pretrain, progress)


def run_finetune(job: FinetuneJob) -> dict[str, Any]:
    """Run one study point; safe to call again (a finished point returns its stored result)."""
    if job.threads > 0:
        torch.set_num_threads(job.threads)
    context = init_distributed()
    parent = run_parent(job.pretrain, job.progress) if job.pretrain is not None else None
    run = job.run_dir()

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        if context.is_main:
            run.write_config(job.identity())
        split = real_split(job.data, job.image_size)
        images, labels = finetune_subset(split, job.s, job.seed)
        torch.manual_seed(job.seed)
        model = create_model(job.model, num_classes=int(split.pool_labels.max()) + 1)
        if parent is not None:
            _load_backbone(model, parent["weights"])
        stats = train_classifier(model, images, labels, job.train.train_config(parent is None), run, seed=job.seed,
                                 desc=f"finetune n={job.n} s={job.s} seed={job.seed}",
                                 channels_last=job.model.channels_last, progress=job.progress, context=context)
        metrics = evaluate(model, split.test_images, split.test_labels)
        if context.is_main:
            run.log_metrics({"stage": "eval", "step": stats["steps"], **metrics})
        return {
            "run_hash": run.hash, "n": job.n, "s": job.s, "seed": job.seed, "model": job.model.name,
            "data": job.data.name, "metrics": metrics, "test_size": len(split.test_labels),
            "pretrain_hash": parent["run_hash"] if parent else None,
            "dataset_hash": parent["dataset_hash"] if parent else None,
            "pretrain_seconds": parent["wall_seconds"] if parent else 0.0,
            "finetune_seconds": time.perf_counter() - started, **stats, **provenance(),
        }

    return run_once(run, context, work)


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
