"""The text study's corpus stages: a tokenizer trained on synthetic + real training text, and the synthetic
render to a token budget. They use synth_render's generators, so they live here and are passed to the lab's
text stages (lab.stages.text) as jobs; run directories, hashes and results are as before (issue 17 moved them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lab.core.distributed import DistributedContext
from lab.core.provenance import provenance
from lab.core.rundir import RunDir
from lab.data.text import RealTextConfig, Tokenizer, TokenizerConfig, text_split
from lab.stages.skeleton import run_stage
from synth_render.text import create_text_generator, render_until


@dataclass
class TokenizerJob:
    """A sentencepiece model trained on the first `synthetic_docs` generated documents + `real_docs` real ones."""

    root: str
    experiment: str
    generator: dict[str, Any]
    data: RealTextConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    synthetic_docs: int = 2000
    real_docs: int = 5000

    def identity(self) -> dict[str, Any]:
        return {"generator": self.generator, "data": self.data, "tokenizer": self.tokenizer,
                "synthetic_docs": self.synthetic_docs, "real_docs": self.real_docs}

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.root, self.experiment, "tokenizer", self.identity())

    def run(self) -> dict[str, Any]:
        return run_tokenizer(self)


@dataclass
class TextRenderJob:
    """Synthetic documents of one generator until they hold `tokens` tokens (counted by the tokenizer)."""

    tokenizer: TokenizerJob
    generator: dict[str, Any]
    tokens: int
    max_docs: int = 1_000_000
    workers: int = 1

    def identity(self) -> dict[str, Any]:
        return {"generator": self.generator, "tokenizer": self.tokenizer.run_dir().hash, "tokens": self.tokens,
                "max_docs": self.max_docs}

    def run_dir(self) -> RunDir:
        return RunDir.for_config(self.tokenizer.root, self.tokenizer.experiment, "render", self.identity())

    def run(self) -> dict[str, Any]:
        return run_text_render(self)



def run_tokenizer(job: TokenizerJob) -> dict[str, Any]:
    """Train (or return the stored) tokenizer; the held-out real text never reaches it."""
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        started = time.perf_counter()
        run.write_config(job.identity())
        generator = create_text_generator(job.generator)
        synthetic = [generator.document(i) for i in range(job.synthetic_docs)]
        real = text_split(job.data).train[: job.real_docs]
        tokenizer = Tokenizer.train(synthetic + real, job.tokenizer)
        path = tokenizer.save(run.path / "tokenizer")
        return {"run_hash": run.hash, "path": str(path), "sha256": tokenizer.fingerprint,
                "vocab_size": tokenizer.vocab_size, "synthetic_docs": len(synthetic), "real_docs": len(real),
                "wall_seconds": time.perf_counter() - started, **provenance()}

    return run_stage(run, work)


def run_text_render(job: TextRenderJob) -> dict[str, Any]:
    """Render whole shards until the documents hold `tokens` tokens (a larger render of the same config
    starts with the same documents, so every n reads a nested prefix)."""
    parent = job.tokenizer.run()
    run = job.run_dir()

    def work(context: DistributedContext) -> dict[str, Any]:
        started = time.perf_counter()
        run.write_config(job.identity())
        tokenizer = Tokenizer.load(parent["path"])
        dataset = render_until(job.generator, run.path / "text", tokens=job.tokens, tokenizer=tokenizer,
                               workers=job.workers, max_docs=job.max_docs)
        return {"run_hash": run.hash, "path": str(run.path / "text"), "dataset_hash": dataset.content_hash,
                "documents": dataset.count, "tokens": dataset.stats["total_n_tokens"],
                "wall_seconds": time.perf_counter() - started, **provenance()}

    return run_stage(run, work)
