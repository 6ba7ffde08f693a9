"""Batched sampling from PLaMo 2: temperature, top-k, top-p, stop strings, EOS, with or without a cache.

Prompts of different lengths are left-padded; the padding is its own document (document id 0, the prompt is 1),
so it resets the Mamba state, is invisible to attention and does not shift positions. Sampling draws from a
`torch.Generator` seeded by `seed`, so a seed fixes the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch

from lab.models.plamo.model import PlamoForCausalLM


@dataclass
class Generation:
    tokens: list[int]  # the new tokens, without the prompt and without a final EOS
    text: str | None  # decode(tokens), cut before the first stop string; None without a decode function
    finish_reason: Literal["eos", "stop_string", "length"]


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (b, vocab) -> token ids (b,). temperature 0 is greedy; top-k then top-p narrow the candidates."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the mass before this token already reaches top_p
        logits = logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_arguments(
    model: PlamoForCausalLM,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stop_strings: Sequence[str],
    decode: Callable[[list[int]], str] | None,
) -> None:
    if not prompts or any(len(prompt) == 0 for prompt in prompts):
        raise ValueError("generate needs at least one prompt, each with at least one token")
    vocab = model.config.vocab_size
    for row, prompt in enumerate(prompts):
        if any(not 0 <= int(token) < vocab for token in prompt):
            raise ValueError(f"prompt {row} has token ids outside [0, {vocab})")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if stop_strings and decode is None:
        raise ValueError("stop_strings need a decode function (token ids -> text)")


def _stop_index(text: str, stop_strings: Sequence[str]) -> int | None:
    found = [i for i in (text.find(stop) for stop in stop_strings if stop) if i >= 0]
    return min(found) if found else None


@torch.no_grad()
def generate(
    model: PlamoForCausalLM,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_strings: Sequence[str] = (),
    decode: Callable[[list[int]], str] | None = None,
    eos_token_id: int | None | Literal["config"] = "config",
    seed: int | None = None,
    use_cache: bool = True,
) -> list[Generation]:
    """Continue each prompt by up to `max_new_tokens` tokens; rows stop at EOS or at a stop string.

    `use_cache=False` reruns the whole sequence every step (the reference the cached path is tested against).
    """
    _check_arguments(model, prompts, max_new_tokens, temperature, top_k, top_p, stop_strings, decode)
    eos = model.config.eos_token_id if eos_token_id == "config" else eos_token_id
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else model.config.eos_token_id
    device = model.output_weight.device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()

    width = max(len(prompt) for prompt in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=device)
    documents = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
        documents[row, width - len(prompt) :] = 1

    out = model(ids, document_ids=documents, use_cache=use_cache, last_logits_only=True)
    results = [Generation([], None, "length") for _ in prompts]
    done = [False] * len(prompts)
    for step in range(max_new_tokens):
        next_tokens = sample_next_token(out.logits[:, -1], temperature, top_k, top_p, generator)
        for row, token in enumerate(next_tokens.tolist()):
            if done[row]:
                continue
            if token == eos:
                done[row], results[row].finish_reason = True, "eos"
                continue
            results[row].tokens.append(token)
            if stop_strings and _stop_index(decode(results[row].tokens), stop_strings) is not None:
                done[row], results[row].finish_reason = True, "stop_string"
        if all(done) or step == max_new_tokens - 1:
            break
        if use_cache:
            out = model(next_tokens[:, None], cache=out.cache, last_logits_only=True)
        else:
            ids, documents = torch.cat([ids, next_tokens[:, None]], 1), torch.cat([documents, documents[:, -1:]], 1)
            out = model(ids, document_ids=documents, last_logits_only=True)

    if decode is not None:
        for result in results:
            text = decode(result.tokens)
            cut = _stop_index(text, stop_strings) if stop_strings else None
            result.text = text if cut is None else text[:cut]
    model.train(was_training)
    return results
