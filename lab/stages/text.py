"""Language-model stages: pre-train on n synthetic tokens, fine-tune on s real tokens + eval.

Each stage is a plain function `run_*(job) -> result`, idempotent and resumable like the image stages in
`lab.stages.image`: its run directory is keyed by the hash of its config and its parents' hashes, result.json is
written last, and a stage calls its parents first (a finished parent returns its stored result at once), so a
fine-tune job alone, in-process or on Slurm, runs whatever of its chain is missing. The tokenizer is trained
once on synthetic and real training text (never the held-out text) and saved next to every model; it and the
synthetic render are the study's parent stages (experiments.text_corpus), passed in as jobs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from lab.data.text import RealTextConfig, Tokenizer, text_split
from lab.data.text_shards import TextDataset
from lab.core.distributed import DistributedContext
from lab.lm_train import LMTrainConfig, TokenStream, evaluate_text, resolve_device, train_lm
from lab.models.plamo import PlamoForCausalLM, create_plamo, load_pretrained, save_pretrained
from lab.core.rundir import RunDir
from lab.core.provenance import provenance
from lab.stages.skeleton import run_stage, set_threads

MODEL_DIR = "model"  # config.json + model.safetensors + tokenizer.model + tokenizer_config.json


class CorpusJob(Protocol):
    """A parent stage that makes text (the tokenizer, the synthetic render): its run directory and its result.

    The generators live in synth_render, which the stages do not import: the study passes the jobs in
    (experiments.text_corpus), and a stage runs its parents through them (a finished one returns its result).
    """

    def run_dir(self) -> RunDir: ...

    def run(self) -> dict[str, Any]: ...


@dataclass
class PlamoSpec:
    """A registered PLaMo config plus overrides; the vocabulary size always comes from the tokenizer."""

    name: str = "plamo-2-tiny"
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self, vocab_size: int) -> PlamoForCausalLM:
        return create_plamo(self.name, **{**self.overrides, "vocab_size": vocab_size})


@dataclass
class TextPretrainConfig:
    """Pre-training on n synthetic tokens: steps = max(min_steps, epochs * n / (batch_size * seq_len))."""

    epochs: float = 1.0
    min_steps: int = 20
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 200

    def train_config(self, n: int) -> LMTrainConfig:
        steps = max(self.min_steps, math.ceil(self.epochs * n / (self.batch_size * self.seq_len)))
        return LMTrainConfig(steps=steps, batch_size=self.batch_size, seq_len=self.seq_len, lr=self.lr,
                             weight_decay=self.weight_decay, warmup_frac=self.warmup_frac, grad_clip=self.grad_clip,
                             checkpoint_every=self.checkpoint_every)


@dataclass
class TextFinetuneConfig:
    """Fine-tuning on s real tokens for a fixed number of steps; a random-init model (n = 0) gets scratch_lr.

    The two rates default to the same value: no measurement yet says the text study needs them apart.
    """

    steps: int = 60
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    scratch_lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 200

    def train_config(self, from_scratch: bool = False) -> LMTrainConfig:
        return LMTrainConfig(steps=self.steps, batch_size=self.batch_size, seq_len=self.seq_len,
                             lr=self.scratch_lr if from_scratch else self.lr, weight_decay=self.weight_decay,
                             warmup_frac=self.warmup_frac, grad_clip=self.grad_clip,
                             checkpoint_every=self.checkpoint_every)


@dataclass
class TextPretrainJob:
    """Pre-train a fresh PLaMo on exactly the first n tokens of the render (packed, EOS between documents)."""

    root: str
    experiment: str
    render: CorpusJob  # experiments.text_corpus.TextRenderJob: the synthetic text, rendered by its own stage
    n: int
    seed: int
    model: PlamoSpec = field(default_factory=PlamoSpec)
    train: TextPretrainConfig = field(default_factory=TextPretrainConfig)
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 0

    def identity(self) -> dict[str, Any]:
        return {"render": self.render.run_dir().hash, "n": self.n, "seed": self.seed, "model": self.model,
                "train": self.train, "device": self.device, "dtype": self.dtype}

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.root, self.experiment, "pretrain", self.identity())


@dataclass
class TextFinetuneJob:
    """One study point (n, s, seed): the pre-trained model (or a fresh one) fine-tuned on s real tokens, scored."""

    root: str
    experiment: str
    data: RealTextConfig
    s: int
    seed: int
    tokenizer: CorpusJob  # experiments.text_corpus.TokenizerJob
    model: PlamoSpec = field(default_factory=PlamoSpec)
    train: TextFinetuneConfig = field(default_factory=TextFinetuneConfig)
    pretrain: TextPretrainJob | None = None
    eval_max_len: int = 256
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 0

    @property
    def n(self) -> int:
        return 0 if self.pretrain is None else self.pretrain.n

    def identity(self) -> dict[str, Any]:
        return {"data": self.data, "s": self.s, "seed": self.seed, "tokenizer": self.tokenizer.run_dir().hash,
                "model": self.model, "train": self.train, "eval_max_len": self.eval_max_len, "device": self.device,
                "dtype": self.dtype, "pretrain": self.pretrain.run_dir().hash if self.pretrain else None}

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.root, self.experiment, "finetune", self.identity())


def run_text_pretrain(job: TextPretrainJob, progress: bool = False) -> dict[str, Any]:
    """Pre-train on n synthetic tokens; the model and its tokenizer are saved in the Hugging Face layout."""
    set_threads(job.threads)
    render = job.render.run()
    tokenizer_result = job.render.tokenizer.run()
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        started = time.perf_counter()
        run.write_config({**job.identity(), "dataset_hash": render["dataset_hash"]})
        tokenizer = Tokenizer.load(tokenizer_result["path"])
        dataset = TextDataset.open(render["path"])
        documents = dataset.subset(dataset.docs_for(tokens=job.n))
        device = resolve_device(job.device)
        torch.manual_seed(job.seed)
        model = job.model.build(tokenizer.vocab_size)
        stream = TokenStream.pack(tokenizer.encode_batch(documents), eos=model.config.eos_token_id, limit=job.n)
        stats = train_lm(model, stream, job.train.train_config(job.n), run, seed=job.seed, device=device,
                         dtype=job.dtype, desc=f"pretrain n={job.n} seed={job.seed}", progress=progress)
        weights = save_pretrained(model, run.path / MODEL_DIR)
        tokenizer.save(weights)
        return {"run_hash": run.hash, "weights": str(weights), "dataset_hash": render["dataset_hash"], "n": job.n,
                "documents": len(documents), "seed": job.seed, **stats,
                "wall_seconds": time.perf_counter() - started, **provenance()}

    return run_stage(run, work, threads=job.threads)


def finetune_stream(documents: list[str], tokenizer: Tokenizer, s: int, seed: int, eos: int) -> TokenStream:
    """Exactly s tokens of real training text: documents in a seeded order, packed, the last one cut."""
    order = np.random.default_rng(seed).permutation(len(documents))
    chosen, total = [], 0
    for index in order:
        ids = tokenizer.encode(documents[index])
        chosen.append(ids)
        total += len(ids) + 1
        if total >= s:
            return TokenStream.pack(chosen, eos=eos, limit=s)
    raise ValueError(f"s={s} real tokens asked for, but the training split holds only {total}")


def run_text_finetune(job: TextFinetuneJob) -> dict[str, Any]:
    """Run one study point; safe to call again (a finished point returns its stored result)."""
    set_threads(job.threads)
    parent = run_text_pretrain(job.pretrain) if job.pretrain is not None else None
    tokenizer_result = job.tokenizer.run()
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        started = time.perf_counter()
        run.write_config(job.identity())
        tokenizer = Tokenizer.load(tokenizer_result["path"])
        split = text_split(job.data)
        device = resolve_device(job.device)
        torch.manual_seed(job.seed)
        model = load_pretrained(parent["weights"]) if parent else job.model.build(tokenizer.vocab_size)
        stream = finetune_stream(split.train, tokenizer, job.s, job.seed, eos=model.config.eos_token_id)
        before = evaluate_text(model, tokenizer, split.test, max_len=job.eval_max_len, device=device,
                               dtype=job.dtype)
        stats = train_lm(model, stream, job.train.train_config(from_scratch=parent is None), run, seed=job.seed,
                         device=device, dtype=job.dtype, desc=f"finetune n={job.n} s={job.s} seed={job.seed}")
        metrics = evaluate_text(model, tokenizer, split.test, max_len=job.eval_max_len, device=device,
                                dtype=job.dtype)
        run.log_metrics({"stage": "eval", "step": stats["steps"], **metrics})
        return {
            "run_hash": run.hash, "n": job.n, "s": job.s, "seed": job.seed, "model": job.model.name,
            "data": job.data.name, "test_size": len(split.test),
            "metrics": {"bits_per_char": metrics["bits_per_char"], "loss": metrics["loss"],
                        "zero_shot_bits_per_char": before["bits_per_char"]},
            "eval": metrics, "tokenizer_hash": tokenizer.fingerprint,
            "pretrain_hash": parent["run_hash"] if parent else None,
            "dataset_hash": parent["dataset_hash"] if parent else None,
            "pretrain_seconds": parent["wall_seconds"] if parent else 0.0,
            "finetune_seconds": time.perf_counter() - started, **stats, **provenance(),
        }

    return run_stage(run, work, threads=job.threads)
