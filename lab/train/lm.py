"""Language-model training on the one loop (`lab.train.engine`): packed token streams, resumable, loud about bad numbers.

Documents are packed into one token stream (each ends with EOS) with a document id per token, so attention
and the Mamba state never cross a boundary. The batch at step t is drawn from a generator seeded by
(seed, t), so a run resumed from its checkpoint at step t continues exactly as the uninterrupted run would.
`train_steps` is that resumable loop for any per-step loss (pre-training, SFT, DPO); `train_lm` gives it the
next-token loss on a packed stream.
Evaluation scores every document on its own and reports bits per character, which compares models whose
tokenizers differ, next to the mean token loss.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lab.data.text import bits_per_character
from lab.core.distributed import resolve_device  # noqa: F401  (imported from here by earlier code)
from lab.models.plamo.model import IGNORE_INDEX
from lab.core.rundir import RunDir
from lab.train.engine import NonFiniteLossError, StepLoss, run_steps
from lab.train.schedule import warmup_cosine

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class LMTrainConfig:
    """AdamW with linear warm-up and cosine decay to `min_lr_frac * lr`, on windows of `seq_len` tokens."""

    steps: int = 100
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    warmup_frac: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 25

    def validate(self, prefix: str) -> None:
        for key in ("steps", "batch_size", "seq_len", "checkpoint_every", "log_every"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{prefix}.{key} must be positive, got {getattr(self, key)}")
        if not self.lr > 0 or not 0 <= self.min_lr_frac <= 1 or self.grad_clip < 0:
            raise ValueError(f"{prefix}: lr > 0, 0 <= min_lr_frac <= 1 and grad_clip >= 0 "
                             f"(got {self.lr}, {self.min_lr_frac}, {self.grad_clip})")


@dataclass(frozen=True)
class TokenStream:
    """Packed documents: `tokens` and, per token, the index of its document."""

    tokens: np.ndarray  # int64 (N,)
    documents: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def pack(cls, documents: Sequence[Sequence[int]], eos: int, limit: int | None = None) -> "TokenStream":
        """Each document followed by EOS, concatenated; `limit` keeps exactly the first `limit` tokens."""
        pieces = [np.append(np.asarray(doc, dtype=np.int64), eos) for doc in documents]
        if not pieces:
            raise ValueError("cannot pack an empty list of documents")
        tokens = np.concatenate(pieces)
        ids = np.repeat(np.arange(len(pieces), dtype=np.int64), [len(p) for p in pieces])
        if limit is not None:
            if limit > len(tokens):
                raise ValueError(f"asked for {limit} tokens, the documents hold {len(tokens)}")
            tokens, ids = tokens[:limit], ids[:limit]
        return cls(tokens, ids)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def lr_at(step: int, config: LMTrainConfig) -> float:
    return warmup_cosine(step, config.steps, config.lr, config.warmup_frac, config.min_lr_frac)


def stream_batch(stream: TokenStream, step: int, batch_size: int, seq_len: int, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, document_ids), each (b, L): random windows, a pure function of (seed, step).

    A stream shorter than a window is tiled; a target in another document than its input is ignored.
    """
    tokens, documents = stream.tokens, stream.documents
    if len(tokens) < seq_len + 1:
        repeats = math.ceil((seq_len + 1) / len(tokens))
        tokens = np.tile(tokens, repeats)
        documents = np.concatenate([documents + k * (documents[-1] + 1) for k in range(repeats)])
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)
    index = starts[:, None] + np.arange(seq_len + 1)
    window, docs = torch.from_numpy(tokens[index]), torch.from_numpy(documents[index])
    targets = window[:, 1:].clone()
    targets[docs[:, 1:] != docs[:, :-1]] = IGNORE_INDEX
    return window[:, :-1], targets, docs[:, :-1]


def train_steps(model: Any, step_loss: StepLoss, config: LMTrainConfig, run: RunDir, *,
                device: torch.device = torch.device("cpu"), dtype: str = "float32", desc: str = "train",
                progress: bool = False) -> dict[str, Any]:
    """Minimise `step_loss(step)` over `model`'s trainable parameters for `config.steps`, resuming from `run`.

    AdamW (betas 0.9, 0.95), warm-up + cosine (`lr_at`), clipping, a checkpoint every `checkpoint_every` steps,
    NaN/inf -> error: the one loop (`lab.train.engine.run_steps`) with the language models' recipe.
    """
    config.validate(desc)
    model.to(device)
    optimizer = torch.optim.AdamW(model.optimizer_param_groups(config.weight_decay), lr=config.lr, betas=(0.9, 0.95))
    stats = run_steps(model, optimizer, step_loss, steps=config.steps, lr_at=lambda step: lr_at(step, config),
                      run=run, desc=desc, log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                      grad_clip=config.grad_clip, autocast=lambda: autocast(device, dtype), progress=progress,
                      hint="lower the learning rate")
    return {key: stats[key] for key in ("steps", "resumed_from_step", "first_loss", "last_loss", "train_seconds")}


def train_lm(model: Any, stream: TokenStream, config: LMTrainConfig, run: RunDir, *, seed: int,
             device: torch.device = torch.device("cpu"), dtype: str = "float32", desc: str = "train",
             progress: bool = False) -> dict[str, Any]:
    """Train a causal LM on `stream` for `config.steps` steps, resuming from `run`'s last checkpoint."""

    def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        batch = stream_batch(stream, step, config.batch_size, config.seq_len, seed)
        inputs, targets, documents = (t.to(device) for t in batch)
        return model(inputs, targets, document_ids=documents).loss, {}

    stats = train_steps(model, step_loss, config, run, device=device, dtype=dtype, desc=desc, progress=progress)
    tokens_seen = (config.steps - stats["resumed_from_step"]) * config.batch_size * config.seq_len
    stats["train_tokens_per_second"] = tokens_seen / max(stats["train_seconds"], 1e-9)
    return stats


@torch.no_grad()
def evaluate_text(model: Any, tokenizer: Any, texts: Sequence[str], *, max_len: int = 256, batch_size: int = 32,
                  device: torch.device = torch.device("cpu"), dtype: str = "float32") -> dict[str, float]:
    """Bits per character and mean token loss of `texts`, each scored alone after BOS (EOS not scored).

    A document longer than `max_len` tokens is scored in consecutive windows (each window starts fresh).
    """
    if not texts:
        raise ValueError("cannot evaluate on an empty set of texts")
    bos = model.config.bos_token_id
    windows: list[np.ndarray] = []
    for ids in tokenizer.encode_batch(list(texts)):
        sequence = np.asarray([bos, *ids], dtype=np.int64)
        for first in range(0, len(sequence) - 1, max_len):
            windows.append(sequence[first : first + max_len + 1])
    windows.sort(key=len)  # similar lengths share a batch: less padding
    model.to(device).eval()
    total_nll, total_tokens = 0.0, 0
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        width = max(len(w) for w in chunk) - 1
        inputs = torch.zeros(len(chunk), width, dtype=torch.long)
        targets = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        for row, window in enumerate(chunk):
            inputs[row, : len(window) - 1] = torch.from_numpy(window[:-1])
            targets[row, : len(window) - 1] = torch.from_numpy(window[1:])
        with autocast(device, dtype):
            logits = model(inputs.to(device)).logits
        targets = targets.to(device)
        total_nll += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                     ignore_index=IGNORE_INDEX, reduction="sum").item()
        total_tokens += int((targets != IGNORE_INDEX).sum())
    if not math.isfinite(total_nll):
        raise NonFiniteLossError(f"evaluation loss is {total_nll}: the model's weights hold NaN or inf")
    characters = sum(len(t) for t in texts)
    return {"bits_per_char": bits_per_character(total_nll, characters), "loss": total_nll / total_tokens,
            "eval_tokens": float(total_tokens), "eval_chars": float(characters)}
