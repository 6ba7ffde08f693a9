"""The quantization table: size, speed, held-out bits/char and pfgen-style score of float vs int8 vs int4.

A variant is named `float32`, `bf16`, `int8` / `int4` (one scale per output channel) or `int8-g128` / `int4-g32`
(one scale per group of that many input columns). Every row is measured on the same model, held-out texts and
question set; the first row is the reference the deltas are taken against. The pfgen-style score samples with
the same seed for every variant, so a quantized row differs from the float row only where the weights changed
a sampled token; its delta is reported as a paired difference over questions with a standard error.
Forward speed runs whole batches without gradients; generation is greedy with the cache (prefill included);
both keep the fastest of `repeats` runs, the one least disturbed by other processes.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lab.lm_train import evaluate_text
from lab.models.plamo import generate
from lab.post.measure import paired_difference, pfgen_score
from lab.post.quantize import DEFAULT_SKIP, model_size_bytes, quantize_model

VARIANT_PATTERN = re.compile(r"^(?:(float32|bf16)|int(8|4)(?:-g(\d+))?)$")
DEFAULT_VARIANTS = ("float32", "bf16", "int8", "int8-g128", "int4-g32", "int4-g64", "int4-g128")


@dataclass(frozen=True)
class Variant:
    """One row of the table: a float dtype, or weight-only `bits` with `group_size` columns per scale."""

    name: str
    bits: int | None = None
    group_size: int | None = None

    @classmethod
    def parse(cls, text: str) -> Variant:
        match = VARIANT_PATTERN.match(text)
        if not match:
            raise ValueError(f"unknown quantization variant {text!r}; valid: float32, bf16, int8, int4, "
                             f"int8-g<N>, int4-g<N> (e.g. {', '.join(DEFAULT_VARIANTS)})")
        dtype, bits, group = match.groups()
        if dtype:
            return cls(dtype)
        return cls(text, int(bits), int(group) if group else None)

    @classmethod
    def of(cls, bits: int, group_size: int | None) -> Variant:
        return cls.parse(f"int{bits}" + (f"-g{group_size}" if group_size else ""))

    def build(self, model: Any, skip: Sequence[str] = DEFAULT_SKIP) -> Any:
        """A copy of `model` in this variant (float32 is `model` itself)."""
        if self.name == "bf16":
            return copy.deepcopy(model).to(torch.bfloat16)
        if self.bits is None:
            return model
        return quantize_model(copy.deepcopy(model), bits=self.bits, group_size=self.group_size, skip=tuple(skip))


@dataclass(frozen=True)
class PfgenSetup:
    """Where the lab question set lies and how much of it each variant answers."""

    set_dir: Path
    out_dir: Path
    questions: int = 24
    trials: int = 2
    max_new_tokens: int = 40
    batch_size: int = 8
    seed: str = "quantize"


def best_seconds(work: Callable[[], Any], repeats: int) -> float:
    """The fastest of `repeats` timed calls: the least disturbed by other processes on a shared machine."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


@torch.no_grad()
def forward_speed(model: Any, batch: int = 4, seq_len: int = 256, repeats: int = 3) -> float:
    ids = torch.randint(3, model.config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    model(ids[:1, :16])  # warm-up
    return batch * seq_len / best_seconds(lambda: model(ids), repeats)


def generation_speed(model: Any, batch: int = 4, prompt_len: int = 16, new_tokens: int = 16,
                     repeats: int = 3) -> float:
    vocab = model.config.vocab_size
    prompts = torch.randint(3, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(1)).tolist()
    generate(model, prompts[:1], max_new_tokens=2, temperature=0)  # warm-up
    seconds = best_seconds(lambda: generate(model, prompts, max_new_tokens=new_tokens, temperature=0,
                                            eos_token_id=None), repeats)
    return batch * new_tokens / seconds


def quantization_table(model: Any, tokenizer: Any, variants: Sequence[Variant], texts: Sequence[str], *,
                       pfgen: PfgenSetup | None = None, repeats: int = 3, eval_max_len: int = 256,
                       speed: bool = True, skip: Sequence[str] = DEFAULT_SKIP) -> list[dict[str, Any]]:
    """One row per variant of `model` (a float PLaMo): size, speeds, bits/char and pfgen score, deltas vs row 0."""
    if not variants:
        raise ValueError("the quantization table needs at least one variant")
    model.eval()
    built = [(variant, variant.build(model, skip)) for variant in variants]  # bad group sizes fail before any timing
    rows: list[dict[str, Any]] = []
    reference: dict[str, Any] = {}
    for variant, candidate in built:
        evaluation = evaluate_text(candidate, tokenizer, texts, max_len=eval_max_len, batch_size=32)
        row: dict[str, Any] = {
            "variant": variant.name, "bits": variant.bits or "",
            "group_size": variant.group_size or ("channel" if variant.bits else ""),
            "size_mb": round(model_size_bytes(candidate) / 2**20, 3),
            "bits_per_char": round(evaluation["bits_per_char"], 4), "eval_chars": int(evaluation["eval_chars"]),
        }
        if speed:
            row["forward_tokens_per_s"] = round(forward_speed(candidate, repeats=repeats))
            row["generate_tokens_per_s"] = round(generation_speed(candidate, repeats=repeats), 1)
        if pfgen is not None:
            measured = pfgen_score(candidate, tokenizer, pfgen.set_dir, pfgen.out_dir / variant.name,
                                   questions=pfgen.questions, trials=pfgen.trials,
                                   max_new_tokens=pfgen.max_new_tokens, batch_size=pfgen.batch_size, seed=pfgen.seed)
            row["pfgen_score"] = round(measured["score"], 4)
            reference.setdefault("per_question", measured["per_question"])
            paired = paired_difference(measured["per_question"], reference["per_question"])
            row["delta_pfgen"], row["delta_pfgen_se"] = round(paired["diff"], 4) + 0.0, round(paired["se"], 4)
        reference.setdefault("bits_per_char", evaluation["bits_per_char"])
        row["delta_bits_per_char"] = round(evaluation["bits_per_char"] - reference["bits_per_char"], 4) + 0.0
        rows.append(row)
    return rows


def table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (speed and pfgen columns only when measured)."""
    columns = [("variant", "variant", "{}"), ("size_mb", "size MB", "{:.3f}"),
               ("forward_tokens_per_s", "fwd tok/s", "{}"), ("generate_tokens_per_s", "gen tok/s", "{}"),
               ("bits_per_char", "bits/char", "{:.4f}"), ("delta_bits_per_char", "Δ bits/char", "{:+.4f}"),
               ("pfgen_score", "pfgen", "{:.4f}"), ("delta_pfgen", "Δ pfgen", "{:+.4f}"),
               ("delta_pfgen_se", "± se", "{:.4f}")]
    shown = [c for c in columns if c[0] in rows[0]]
    lines = ["| " + " | ".join(c[1] for c in shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in shown) + " |")
    return "\n".join(lines)


def heldout_texts(docs: int) -> list[str]:
    """The first `docs` held-out manpages-ja documents (the benchmark's held-out set)."""
    from lab.data.text import RealTextConfig, text_split

    if docs < 1:
        raise ValueError(f"--eval-docs must be >= 1, got {docs}")
    return text_split(RealTextConfig(test_size=2000)).test[:docs]


def write_report(rows: Sequence[dict[str, Any]], note: str, out: Path | str) -> Path:
    """quantization_report.json (the rows) and quantization_report.md (the table and `note`) in `out`."""
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantization_report.json").write_text(json.dumps({"rows": list(rows), "note": note}, indent=2) + "\n",
                                                  encoding="utf-8")
    text = f"# Quantization: float vs quantized\n\n{table_markdown(rows)}\n\n{note}\n"
    (out / "quantization_report.md").write_text(text, encoding="utf-8")
    return out / "quantization_report.md"
