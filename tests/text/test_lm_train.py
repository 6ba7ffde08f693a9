"""The language-model loop: packing, deterministic batches, exact resume, NaN detection, bits per character."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lab.lm_train import LMTrainConfig, TokenStream, evaluate_text, stream_batch, train_lm
from lab.models.plamo import create_plamo
from lab.core.rundir import RunDir
from lab.train import NonFiniteLossError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(vocab_size=300, num_hidden_layers=2, full_attention_idx=())


def stream() -> TokenStream:
    rng = np.random.default_rng(0)
    return TokenStream.pack([rng.integers(3, 300, size=int(k)).tolist() for k in rng.integers(5, 40, size=30)], eos=2)


def test_pack_marks_documents_and_cuts_exactly():
    packed = TokenStream.pack([[5, 6], [7]], eos=2)
    assert packed.tokens.tolist() == [5, 6, 2, 7, 2] and packed.documents.tolist() == [0, 0, 0, 1, 1]
    assert len(TokenStream.pack([[5, 6], [7]], eos=2, limit=4)) == 4
    with pytest.raises(ValueError, match="asked for 9 tokens"):
        TokenStream.pack([[5, 6], [7]], eos=2, limit=9)


def test_batches_are_a_function_of_seed_and_step_and_never_cross_documents():
    data = stream()
    a, b = stream_batch(data, 3, 4, 16, seed=1), stream_batch(data, 3, 4, 16, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], stream_batch(data, 4, 4, 16, seed=1)[0])
    inputs, targets, documents = a
    follows_eos = inputs == 2
    assert (targets[follows_eos] == -100).all()  # the token after EOS starts another document: never a target


def test_resume_continues_exactly(tmp_path):
    config = LMTrainConfig(steps=6, batch_size=4, seq_len=16, checkpoint_every=3, log_every=3)
    torch.manual_seed(0)
    straight = create_plamo("plamo-2-tiny", **TINY)
    train_lm(straight, stream(), config, RunDir(tmp_path / "a"), seed=0)

    torch.manual_seed(0)
    first = create_plamo("plamo-2-tiny", **TINY)
    half = RunDir(tmp_path / "b")
    train_lm(first, stream(), config, half, seed=0)  # leaves its step-3 checkpoint behind
    assert (half.checkpoint_dir / "last.pt").exists()
    torch.manual_seed(1)  # a different fresh model: resuming must replace its weights
    resumed = create_plamo("plamo-2-tiny", **TINY)
    stats = train_lm(resumed, stream(), config, half, seed=0)
    assert stats["resumed_from_step"] == 3
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, msg=name)


def test_nan_weights_stop_training_with_a_clear_error(tmp_path):
    model = create_plamo("plamo-2-tiny", **TINY)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 0"):
        train_lm(model, stream(), LMTrainConfig(steps=2, batch_size=2, seq_len=8), RunDir(tmp_path), seed=0)


def test_bits_per_char_of_a_uniform_model_is_log2_vocab_per_char(small_tokenizer):
    model = create_plamo("plamo-2-tiny", **{**TINY, "vocab_size": small_tokenizer.vocab_size})
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()  # zero hidden states everywhere: logits 0, a uniform model
    texts = ["山田さんは東京に住んでいる。", "ファイルを削除する。", "これは長い文書です。" * 20]
    metrics = evaluate_text(model, small_tokenizer, texts, max_len=16, batch_size=2)
    tokens = sum(len(small_tokenizer.encode(t)) for t in texts)
    assert metrics["eval_tokens"] == tokens
    assert metrics["loss"] == pytest.approx(math.log(small_tokenizer.vocab_size), rel=1e-5)
    chars = sum(len(t) for t in texts)
    assert metrics["bits_per_char"] == pytest.approx(tokens * math.log2(small_tokenizer.vocab_size) / chars, rel=1e-5)
    with pytest.raises(ValueError, match="empty"):
        evaluate_text(model, small_tokenizer, [])
