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

from lab.data.text import RealTextConfig, Tokenizer, text_split, unigram_bits_per_char
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


PRETRAIN_BUDGETS = ("epochs", "steps")


@dataclass
class TextPretrainConfig:
    """Pre-training on n synthetic tokens.

    budget "epochs" (the default): steps = max(min_steps, epochs * n / (batch_size * seq_len)), one pass over
    the n tokens; budget "steps" (the vision paper's protocol): `steps` optimiser steps for every n, so n changes
    the data and never the compute. With `holdout_tokens` > 0 the first documents of the render holding that
    many tokens are never trained on: every pre-training reports its bits per character on them next to a
    character-unigram model of its own training text (the trivial baseline it must beat); training reads the n
    tokens after them.
    """

    epochs: float = 1.0
    min_steps: int = 20
    budget: str = "epochs"
    steps: int = 0  # budget "steps" only
    holdout_tokens: int = 0
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 200

    def steps_for(self, n: int) -> int:
        if self.budget not in PRETRAIN_BUDGETS:
            raise ValueError(f"pretrain.budget must be one of {', '.join(PRETRAIN_BUDGETS)}, got {self.budget!r}")
        if self.budget == "steps":
            return self.steps  # LMTrainConfig.validate rejects a non-positive count
        return max(self.min_steps, math.ceil(self.epochs * n / (self.batch_size * self.seq_len)))

    def render_tokens(self, largest_n: int) -> int:
        """Tokens a study renders for pre-trainings up to `largest_n`: the held-out documents, then the n (twice
        the held-out budget, since the held-out documents end past `holdout_tokens` by up to one document)."""
        if self.holdout_tokens < 0:
            raise ValueError(f"pretrain.holdout_tokens must be >= 0, got {self.holdout_tokens}")
        return largest_n + 2 * self.holdout_tokens if largest_n > 0 else 0

    def train_config(self, n: int) -> LMTrainConfig:
        return LMTrainConfig(steps=self.steps_for(n), batch_size=self.batch_size, seq_len=self.seq_len, lr=self.lr,
                             weight_decay=self.weight_decay, warmup_frac=self.warmup_frac, grad_clip=self.grad_clip,
                             checkpoint_every=self.checkpoint_every)


@dataclass
class TextFinetuneConfig:
    """Fine-tuning on s real tokens for a fixed number of steps; a random-init model (n = 0) gets scratch_lr.

    Equal tuning for every arm: with a non-empty `lr_grid`, every run (from scratch and from every pre-training
    alike) trains once per rate of the grid from the same initial weights on the same s tokens, and keeps the
    rate with the lowest bits per character on the validation split (`data.val_size` real documents carved from
    the training pool); the test set is read once, by the chosen model. With an empty grid `lr` and `scratch_lr`
    are used as they are.
    """

    steps: int = 60
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    scratch_lr: float = 3e-3
    lr_grid: list[float] = field(default_factory=list)
    weight_decay: float = 0.1
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 200

    def train_config(self, from_scratch: bool = False, lr: float | None = None) -> LMTrainConfig:
        if lr is None:
            lr = self.scratch_lr if from_scratch else self.lr
        return LMTrainConfig(steps=self.steps, batch_size=self.batch_size, seq_len=self.seq_len, lr=lr,
                             weight_decay=self.weight_decay, warmup_frac=self.warmup_frac, grad_clip=self.grad_clip,
                             checkpoint_every=self.checkpoint_every)

    def validate(self, prefix: str, data: RealTextConfig | None = None) -> None:
        self.train_config().validate(prefix)
        if any(not lr > 0 for lr in self.lr_grid):
            raise ValueError(f"{prefix}.lr_grid must hold positive learning rates, got {self.lr_grid}")
        if self.lr_grid and data is not None and data.val_size <= 0:
            raise ValueError(f"{prefix}.lr_grid chooses the learning rate on a validation split: set "
                             f"data.val_size > 0 (documents carved from the {data.name} training pool)")


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
    eval_max_len: int = 256  # windows of the held-out synthetic check

    def identity(self) -> dict[str, Any]:
        return {"render": self.render.run_dir().hash, "n": self.n, "seed": self.seed, "model": self.model,
                "train": self.train, "device": self.device, "dtype": self.dtype, "eval_max_len": self.eval_max_len}

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
        heldout, documents = heldout_and_training(dataset, job.train.holdout_tokens, job.n)
        device = resolve_device(job.device)
        torch.manual_seed(job.seed)
        model = job.model.build(tokenizer.vocab_size)
        stream = TokenStream.pack(tokenizer.encode_batch(documents), eos=model.config.eos_token_id, limit=job.n)
        stats = train_lm(model, stream, job.train.train_config(job.n), run, seed=job.seed, device=device,
                         dtype=job.dtype, desc=f"pretrain n={job.n} seed={job.seed}", progress=progress)
        weights = save_pretrained(model, run.path / MODEL_DIR)
        tokenizer.save(weights)
        check = heldout_check(model, tokenizer, heldout, documents, job.eval_max_len, device, job.dtype)
        return {"run_hash": run.hash, "weights": str(weights), "dataset_hash": render["dataset_hash"], "n": job.n,
                "documents": len(documents), "seed": job.seed, "budget": job.train.budget, **check, **stats,
                "wall_seconds": time.perf_counter() - started, **provenance()}

    return run_stage(run, work, threads=job.threads)


def heldout_and_training(dataset: TextDataset, holdout_tokens: int, n: int) -> tuple[list[str], list[str]]:
    """The held-out documents (the first ones, holding `holdout_tokens` tokens; none when 0) and the documents
    after them that hold the n training tokens: nested prefixes for every n of the same render."""
    counts = np.cumsum(dataset.counts("n_tokens"))
    held = dataset.docs_for(tokens=holdout_tokens) if holdout_tokens > 0 else 0
    start = int(counts[held - 1]) if held else 0
    if start + n > counts[-1]:
        raise ValueError(f"the render holds {counts[-1]} tokens: too few for {start} held-out + n={n} training "
                         "tokens (render more: pretrain.render_tokens)")
    end = dataset.docs_for(tokens=start + n)
    documents = dataset.subset(end)
    return documents[:held], documents[held:]


def heldout_check(model: PlamoForCausalLM, tokenizer: Tokenizer, heldout: list[str], training: list[str],
                  max_len: int, device: torch.device, dtype: str) -> dict[str, Any]:
    """Held-out synthetic bits per character next to a character-unigram model of the training text: a
    pre-training that learned nothing beyond character frequencies is flagged. Empty when nothing is held out."""
    if not heldout:
        return {"pretrain_metric": None}
    bits = evaluate_text(model, tokenizer, heldout, max_len=max_len, device=device, dtype=dtype)["bits_per_char"]
    baseline = unigram_bits_per_char(training, heldout)
    return {"pretrain_metric": "heldout_bits_per_char", "heldout": bits, "heldout_baseline": baseline,
            "beats_baseline": bool(bits < baseline), "heldout_documents": len(heldout)}


def finetune_documents(documents: list[str], tokenizer: Tokenizer, s: int, seed: int, eos: int
                       ) -> tuple[TokenStream, list[str]]:
    """Exactly s tokens of real training text (documents in a seeded order, packed, the last one cut) and the
    text of those documents (the last one whole)."""
    order = np.random.default_rng(seed).permutation(len(documents))
    chosen, texts, total = [], [], 0
    for index in order:
        ids = tokenizer.encode(documents[index])
        chosen.append(ids)
        texts.append(documents[index])
        total += len(ids) + 1
        if total >= s:
            return TokenStream.pack(chosen, eos=eos, limit=s), texts
    raise ValueError(f"s={s} real tokens asked for, but the training split holds only {total}")


def finetune_stream(documents: list[str], tokenizer: Tokenizer, s: int, seed: int, eos: int) -> TokenStream:
    """Exactly s tokens of real training text: documents in a seeded order, packed, the last one cut."""
    return finetune_documents(documents, tokenizer, s, seed, eos)[0]


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
        model = initial_model(job, parent, tokenizer)
        stream, texts = finetune_documents(split.train, tokenizer, job.s, job.seed, eos=model.config.eos_token_id)
        before = evaluate_text(model, tokenizer, split.test, max_len=job.eval_max_len, device=device,
                               dtype=job.dtype)
        if job.train.lr_grid:
            model, stats, search = choose_lr(job, parent, tokenizer, stream, split.val, run, device)
        else:
            config = job.train.train_config(from_scratch=parent is None)
            stats = train_lm(model, stream, config, run, seed=job.seed, device=device, dtype=job.dtype,
                             desc=f"finetune n={job.n} s={job.s} seed={job.seed}")
            search = {"lr": config.lr, "val_error": None, "lr_search": []}
        metrics = evaluate_text(model, tokenizer, split.test, max_len=job.eval_max_len, device=device,
                                dtype=job.dtype)
        run.log_metrics({"stage": "eval", "step": stats["steps"], **metrics})
        baseline = unigram_bits_per_char(texts, split.test)  # character frequencies of the fine-tuning text
        return {
            "run_hash": run.hash, "n": job.n, "s": job.s, "seed": job.seed, "model": job.model.name,
            "data": job.data.name, "test_size": len(split.test),
            "metrics": {"bits_per_char": metrics["bits_per_char"], "loss": metrics["loss"],
                        "zero_shot_bits_per_char": before["bits_per_char"]},
            "eval": metrics, "tokenizer_hash": tokenizer.fingerprint,
            "baseline_error": baseline, "beats_baseline": bool(metrics["bits_per_char"] < baseline), **search,
            "pretrain_hash": parent["run_hash"] if parent else None,
            "dataset_hash": parent["dataset_hash"] if parent else None,
            "pretrain_seconds": parent["wall_seconds"] if parent else 0.0,
            **{key: parent.get(source) if parent else None for key, source in PARENT_SUMMARY.items()},
            "finetune_seconds": time.perf_counter() - started, **stats, **provenance(),
        }

    return run_stage(run, work, threads=job.threads)


# fine-tune result key -> its pre-training's result key: each point carries whether its body learned anything
PARENT_SUMMARY = {"pretrain_metric": "pretrain_metric", "pretrain_heldout": "heldout",
                  "pretrain_heldout_baseline": "heldout_baseline", "pretrain_beats_baseline": "beats_baseline"}


def initial_model(job: TextFinetuneJob, parent: dict[str, Any] | None, tokenizer: Tokenizer) -> PlamoForCausalLM:
    """The same initial weights for every trial of a run: the pre-trained model, or a fresh one seeded."""
    torch.manual_seed(job.seed)
    return load_pretrained(parent["weights"]) if parent else job.model.build(tokenizer.vocab_size)


def choose_lr(job: TextFinetuneJob, parent: dict[str, Any] | None, tokenizer: Tokenizer, stream: TokenStream,
              val: list[str], run: RunDir, device: torch.device) -> tuple[PlamoForCausalLM, dict, dict]:
    """Train once per rate of the grid (each a resumable sub-run), keep the lowest validation bits/char.

    Ties go to the first rate of the grid. Only the validation documents are read here, never the test set."""
    if not val:
        raise ValueError(f"finetune.lr_grid needs a validation split: set data.val_size > 0 for {job.data.name}")
    trials = []
    for lr in job.train.lr_grid:
        trial = RunDir(run.path / "lr_search" / f"lr{lr:g}")
        if not trial.done:
            model = initial_model(job, parent, tokenizer)
            stats = train_lm(model, stream, job.train.train_config(parent is None, lr=lr), trial, seed=job.seed,
                             device=device, dtype=job.dtype,
                             desc=f"finetune n={job.n} s={job.s} seed={job.seed} lr={lr:g}")
            score = evaluate_text(model, tokenizer, val, max_len=job.eval_max_len, device=device, dtype=job.dtype)
            save_pretrained(model, trial.path / MODEL_DIR)
            trial.write_result({"lr": lr, "val_error": score["bits_per_char"], "val_loss": score["loss"], **stats})
        trials.append(trial.read_result())
    best = min(range(len(trials)), key=lambda i: (trials[i]["val_error"], i))
    chosen = trials[best]
    model = load_pretrained(run.path / "lr_search" / f"lr{chosen['lr']:g}" / MODEL_DIR)
    stats = {key: chosen[key] for key in ("steps", "resumed_from_step") if key in chosen}
    stats["train_seconds"] = sum(t.get("train_seconds", 0.0) for t in trials)
    search = {"lr": chosen["lr"], "val_error": chosen["val_error"],
              "lr_search": [{"lr": t["lr"], "val_error": t["val_error"]} for t in trials]}
    return model, stats, search
