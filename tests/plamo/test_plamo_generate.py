"""Generation: cache equals no cache, batching equals single rows, seeds, sampling filters, stops, bad input."""

from __future__ import annotations

import pytest
import torch

from lab.models.plamo.generate import generate, sample_next_token

PROMPTS = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [3]]


def decode(tokens: list[int]) -> str:
    return "".join(chr(ord("a") + t % 26) for t in tokens)


def test_greedy_with_cache_equals_without(tiny64):
    cached = generate(tiny64, PROMPTS, max_new_tokens=24, temperature=0, eos_token_id=None)
    uncached = generate(tiny64, PROMPTS, max_new_tokens=24, temperature=0, eos_token_id=None, use_cache=False)
    assert [g.tokens for g in cached] == [g.tokens for g in uncached]
    assert all(len(g.tokens) == 24 and g.finish_reason == "length" for g in cached)


def test_batched_left_padding_equals_single_rows(tiny64):
    batched = generate(tiny64, PROMPTS, max_new_tokens=12, temperature=0, eos_token_id=None)
    for prompt, result in zip(PROMPTS, batched):
        single = generate(tiny64, [prompt], max_new_tokens=12, temperature=0, eos_token_id=None)[0]
        assert result.tokens == single.tokens


def test_sampling_is_deterministic_under_a_seed(tiny64):
    def run(seed):
        return [g.tokens for g in generate(tiny64, PROMPTS, max_new_tokens=16, top_k=50, top_p=0.9, seed=seed,
                                           eos_token_id=None)]  # fmt: skip

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_sample_next_token_filters():
    logits = torch.tensor([[0.0, 3.0, 2.9, 1.0, -1.0]]).repeat(400, 1)
    generator = torch.Generator().manual_seed(0)
    assert set(sample_next_token(logits, 1.0, top_k=2, generator=generator).tolist()) == {1, 2}
    assert set(sample_next_token(logits, 1.0, top_p=0.01, generator=generator).tolist()) == {1}
    assert set(sample_next_token(logits, 1.0, top_p=0.7, generator=generator).tolist()) == {1, 2}
    assert sample_next_token(logits[:1], 0.0).tolist() == [1]
    assert len(set(sample_next_token(logits, 100.0, generator=generator).tolist())) == 5


def test_top_k_one_is_greedy(tiny64):
    greedy = generate(tiny64, PROMPTS, max_new_tokens=8, temperature=0, eos_token_id=None)
    top1 = generate(tiny64, PROMPTS, max_new_tokens=8, top_k=1, seed=3, eos_token_id=None)
    assert [g.tokens for g in greedy] == [g.tokens for g in top1]


def test_eos_and_stop_strings(tiny64):
    free = generate(tiny64, PROMPTS, max_new_tokens=10, temperature=0, eos_token_id=None, decode=decode)
    first = free[0].tokens[0]
    stopped = generate(tiny64, PROMPTS[:1], max_new_tokens=10, temperature=0, eos_token_id=first)[0]
    assert stopped.tokens == [] and stopped.finish_reason == "eos"

    text = free[1].text
    stop = text[4:6]
    result = generate(tiny64, PROMPTS, max_new_tokens=10, temperature=0, eos_token_id=None, decode=decode,
                      stop_strings=[stop, "never"])  # fmt: skip
    cut = text.find(stop)
    assert result[1].finish_reason == "stop_string" and result[1].text == text[:cut]
    assert result[1].tokens == free[1].tokens[: cut + len(stop)]
    assert result[0].finish_reason in ("length", "stop_string")


def test_max_new_tokens_zero(tiny64):
    assert generate(tiny64, PROMPTS, max_new_tokens=0)[0].tokens == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": []}, "at least one prompt"),
        ({"prompts": [[1], []]}, "at least one token"),
        ({"prompts": [[1, 256]]}, "outside"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"stop_strings": ["x"]}, "decode function"),
    ],
)
def test_bad_arguments(tiny64, kwargs, message):
    arguments = {"prompts": [[1, 2]], "max_new_tokens": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(tiny64, **arguments)


def test_generate_restores_training_mode(tiny64):
    tiny64.train()
    generate(tiny64, [[1, 2]], max_new_tokens=2)
    assert tiny64.training
