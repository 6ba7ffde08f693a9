"""Rendering synthetic text to verified shards: determinism across workers, nested subsets, budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.data.shards import CorruptShardError
from synth_render.text import TextDataset, create_text_generator, render_text, render_until, text_config


def _config(name: str = "world_facts", **knobs):
    return text_config(name, shard_size=10, **knobs)


def test_workers_and_order_do_not_change_a_single_byte(tmp_path, small_tokenizer):
    serial = render_text(_config("dialogue"), tmp_path / "serial", 35, tokenizer=small_tokenizer)
    parallel = render_text(_config("dialogue"), tmp_path / "parallel", 35, tokenizer=small_tokenizer, workers=2)
    assert serial.content_hash == parallel.content_hash
    generator = create_text_generator(_config("dialogue"))
    assert list(serial.documents()) == [generator.document(i) for i in range(35)]


def test_documents_round_trip_with_counts(tmp_path, small_tokenizer):
    dataset = render_text(_config("arithmetic"), tmp_path / "d", 25, tokenizer=small_tokenizer)
    docs = list(dataset.documents())
    assert len(docs) == 25 and all(docs)
    assert dataset.counts("n_chars").tolist() == [len(d) for d in docs]
    assert dataset.counts("n_tokens").tolist() == [len(small_tokenizer.encode(d)) for d in docs]
    reopened = TextDataset.open(tmp_path / "d")
    assert reopened.stats["total_n_tokens"] == sum(len(small_tokenizer.encode(d)) for d in docs)
    assert reopened.stats["tokenizer"] == small_tokenizer.fingerprint
    with np.load(tmp_path / "d" / "shard-00000.npz", allow_pickle=False) as shard:
        assert shard["text"].dtype.kind == "U"  # plain unicode arrays: no pickle needed to read them


def test_first_n_documents_are_nested_subsets(tmp_path):
    small = render_text(_config(), tmp_path / "small", 15)
    large = render_text(_config(), tmp_path / "large", 42)
    assert small.subset(15) == large.subset(15)
    assert large.subset(7) == small.subset(7) == list(large.documents(7))
    with pytest.raises(ValueError, match="holds 15"):
        small.subset(16)


def test_render_until_reaches_the_budget_and_docs_for_gives_the_prefix(tmp_path, small_tokenizer):
    dataset = render_until(_config("structured"), tmp_path / "t", tokens=3000, tokenizer=small_tokenizer)
    tokens = dataset.counts("n_tokens")
    assert tokens.sum() >= 3000 and dataset.count % 10 == 0
    n = dataset.docs_for(tokens=3000)
    assert tokens[:n].sum() >= 3000 > tokens[: n - 1].sum()
    chars = render_until(_config("structured"), tmp_path / "c", chars=5000)
    n = chars.docs_for(chars=5000)
    assert chars.counts("n_chars")[:n].sum() >= 5000 > chars.counts("n_chars")[: n - 1].sum()
    with pytest.raises(ValueError, match="tokenizer"):
        render_until(_config(), tmp_path / "x", tokens=100)
    with pytest.raises(ValueError, match="exactly one"):
        render_until(_config(), tmp_path / "x", tokens=100, chars=100, tokenizer=small_tokenizer)
    with pytest.raises(KeyError, match="n_tokens"):
        chars.counts("n_tokens")


def test_a_corrupt_shard_is_detected(tmp_path):
    dataset = render_text(_config(), tmp_path / "d", 25)
    shard = tmp_path / "d" / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[:-50])
    assert dataset.subset(10)  # shard 0 is intact
    with pytest.raises(CorruptShardError, match="shard-00001"):
        list(dataset.documents())
    shard.unlink()
    with pytest.raises(CorruptShardError, match="missing"):
        TextDataset.open(tmp_path / "d").subset(25)


def test_a_re_render_repairs_and_keeps_the_content_hash(tmp_path):
    first = render_text(_config(), tmp_path / "d", 25)
    (tmp_path / "d" / "shard-00002.npz").write_bytes(b"garbage")
    assert render_text(_config(), tmp_path / "d", 25).content_hash == first.content_hash


def test_a_folder_never_mixes_configs(tmp_path):
    render_text(_config(seed=0), tmp_path / "d", 12)
    with pytest.raises(ValueError, match="another config"):
        render_text(_config(seed=1), tmp_path / "d", 12)


def test_stats_must_describe_the_shards(tmp_path):
    render_text(_config(), tmp_path / "d", 12)
    stats = tmp_path / "d" / "text_stats.json"
    stats.write_text(json.dumps({**json.loads(stats.read_text()), "content_hash": "0" * 64}))
    with pytest.raises(ValueError, match="does not describe"):
        TextDataset.open(tmp_path / "d")
