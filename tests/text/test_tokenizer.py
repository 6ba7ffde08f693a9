"""The sentencepiece tokenizer: lossless round trips (byte fallback), save/load, and bits per character."""

from __future__ import annotations

import math
import pickle

import pytest

from lab.data.text import EmptyCorpusError, Tokenizer, TokenizerConfig, bits_per_character

UNSEEN = "未知の文字: 鬱蒼とした森🌲、Ωmega、ｶﾀｶﾅ、㍿\tタブ\n改行  二重空白 "


def test_round_trip_including_characters_never_seen(small_tokenizer):
    for text in [UNSEEN, "ミナセは青川町に住んでいる。", "", " leading and trailing ", "𠮷野家"]:
        assert small_tokenizer.decode(small_tokenizer.encode(text)) == text
    ids = small_tokenizer.encode("🌲")
    assert len(ids) == 4  # four UTF-8 bytes, each its own piece
    assert all(0 <= i < small_tokenizer.vocab_size for i in small_tokenizer.encode(UNSEEN))


def test_save_load_and_pickle_keep_the_model(tmp_path, small_tokenizer):
    small_tokenizer.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["tokenizer.model", "tokenizer_config.json"]
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.fingerprint == small_tokenizer.fingerprint
    assert loaded.encode(UNSEEN) == small_tokenizer.encode(UNSEEN)
    assert pickle.loads(pickle.dumps(small_tokenizer)).encode(UNSEEN) == small_tokenizer.encode(UNSEEN)
    (tmp_path / "tok" / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises((ValueError, RuntimeError, OSError)):
        Tokenizer.load(tmp_path / "tok")
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "nowhere")


def test_training_is_deterministic():
    texts = [f"{name}は{town}に住んでいる。{name}の趣味は{hobby}です。" for name in ("ミナセ", "カイト", "ヨシノ")
             for town in ("青川町", "北村", "森田市") for hobby in ("釣り", "読書", "将棋", "登山")] * 5
    config = TokenizerConfig(vocab_size=300, character_coverage=1.0)
    assert Tokenizer.train(texts, config).model_proto == Tokenizer.train(texts, config).model_proto


def test_empty_corpus_and_bad_configs_are_clear_errors():
    with pytest.raises(EmptyCorpusError, match="empty"):
        Tokenizer.train(["", "  \n "], TokenizerConfig(vocab_size=300))
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(["テスト"], TokenizerConfig(vocab_size=100))
    with pytest.raises(ValueError, match="model_type"):
        TokenizerConfig(model_type="wordpiece").validate()
    with pytest.raises(ValueError, match="character_coverage"):
        Tokenizer.train(["あいうえお" * 3, "かきくけこ"], TokenizerConfig(vocab_size=262, character_coverage=1.0))


def test_bits_per_character():
    assert bits_per_character(100 * math.log(2), 100) == pytest.approx(1.0)
    assert bits_per_character(0.0, 5) == 0.0
    with pytest.raises(ValueError, match="n_characters"):
        bits_per_character(1.0, 0)
    with pytest.raises(ValueError, match="finite"):
        bits_per_character(float("nan"), 3)
