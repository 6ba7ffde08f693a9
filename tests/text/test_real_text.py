"""Real Japanese corpora: troff cleaning on a fixture, the corpus registry, a fixed held-out split."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from lab.data.text import (
    REAL_TEXT_CORPORA, EmptyCorpusError, RealTextConfig, is_japanese, load_corpus, text_split, troff_paragraphs,
    troff_to_sentences,
)
from lab.core.registry import UnknownNameError

MAN_PAGE = r""".\" comments are dropped
.ig
Copyright notices in ignored blocks are dropped
..
.TH LS "1" "2021年5月" "GNU coreutils" "ユーザーコマンド"
.de XX
.  this macro body is skipped
..
.SH 名前
ls \- ディレクトリの内容をリスト表示する
.SH 説明
.B ls
は
FILE (デフォルトは現在のディレクトリ) に関する情報を一覧表示します。
\fB\-cftuvSUX\fR のいずれも指定されず、 \fB\-\-sort\fR も指定されていない場合、
要素はアルファベット順でソートされます。\" trailing comment
.PP
Plain English lines are dropped.
.TP
\fB\-a\fR, \fB\-\-all\fR
\&. で始まる要素を無視しない
.IP \(bu 2
ソフトハイフン文字はデフォルトの
.BR \e(hy " になります。"
.TS
l l.
kill pid ...	リストされた全てのプロセスに SIGTERM を送る
.TE
.TS
center, tab(@);
l l.
1@ローマン体 (R フォント)
.TE
著作権 \(co 2021 \*(lqテスト\*(rq 文字\[u30A2]です。
"""


def test_troff_is_stripped_to_clean_japanese_sentences():
    sentences = troff_to_sentences(MAN_PAGE)
    assert "ls - ディレクトリの内容をリスト表示する" in sentences
    assert "ls は FILE (デフォルトは現在のディレクトリ) に関する情報を一覧表示します。" in sentences
    assert ("-cftuvSUX のいずれも指定されず、 --sort も指定されていない場合、要素はアルファベット順でソートされます。"
            in sentences)
    assert ". で始まる要素を無視しない" in sentences
    assert "リストされた全てのプロセスに SIGTERM を送る" in sentences
    assert "ローマン体 (R フォント)" in sentences
    assert "著作権 © 2021 “テスト” 文字アです。" in sentences
    assert any(s.startswith("ソフトハイフン文字はデフォルトの \\(hy") for s in sentences)
    joined = "\n".join(sentences)
    for leftover in ("\\f", ".TH", ".SH", "Copyright", "macro body", "trailing comment", "Plain English", ".TS", "l l."):
        assert leftover not in joined
    assert all(is_japanese(s) for s in sentences)
    assert "-a, --all" in troff_paragraphs(MAN_PAGE)  # the tag line of .TP stands alone


def _man_tree(root: Path) -> Path:
    (root / "man1").mkdir(parents=True)
    with gzip.open(root / "man1" / "ls.1.gz", "wt", encoding="utf-8") as handle:
        handle.write(MAN_PAGE)
    (root / "man1" / "dir.1.gz").symlink_to("ls.1.gz")  # an alias: counted once
    return root


def test_manpages_corpus_from_a_folder_and_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    config = RealTextConfig(name="manpages_ja", path=str(_man_tree(tmp_path / "ja")), test_size=1)
    docs = load_corpus(config)
    assert docs == list(dict.fromkeys(troff_to_sentences(MAN_PAGE)))
    assert len(list((tmp_path / "cache").glob("manpages_ja-*.txt"))) == 1
    assert load_corpus(config) == docs
    with pytest.raises(EmptyCorpusError, match="apt-get install -y manpages-ja"):
        load_corpus(RealTextConfig(name="manpages_ja", path=str(tmp_path / "empty")))


def test_jsonl_corpus_and_its_errors(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "id": k}, ensure_ascii=False)
                              for k, t in enumerate(["今日は晴れです。", "明日は雨です。", "短", "今日は晴れです。"])) + "\n\n")
    assert load_corpus(RealTextConfig(name="jsonl", path=str(path))) == ["今日は晴れです。", "明日は雨です。"]
    path.write_text(json.dumps({"body": "本文"}) + "\n")
    with pytest.raises(ValueError, match="corpus.jsonl:1"):
        load_corpus(RealTextConfig(name="jsonl", path=str(path)))
    path.write_text(json.dumps({"text": "短"}) + "\n")
    with pytest.raises(EmptyCorpusError, match="no document"):
        load_corpus(RealTextConfig(name="jsonl", path=str(path)))
    path.write_text("")
    with pytest.raises(EmptyCorpusError):
        load_corpus(RealTextConfig(name="jsonl", path=str(path)))
    with pytest.raises(ValueError, match="text.path"):
        load_corpus(RealTextConfig(name="jsonl"))


def test_split_is_fixed_by_seed_and_disjoint(tmp_path):
    path = tmp_path / "corpus.jsonl"
    texts = [f"これは{k}番目の文です。" for k in range(200)]
    path.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts))
    config = RealTextConfig(name="jsonl", path=str(path), test_size=30, split_seed=5)
    first, again = text_split(config), text_split(config)
    assert first == again and len(first.test) == 30 and len(first.train) == 170
    assert not set(first.test) & set(first.train) and sorted(first.test + first.train) == sorted(texts)
    assert text_split(RealTextConfig(name="jsonl", path=str(path), test_size=30, split_seed=6)).test != first.test
    with pytest.raises(ValueError, match="test_size"):
        text_split(RealTextConfig(name="jsonl", path=str(path), test_size=200))


def test_unknown_corpus_lists_the_valid_ones():
    assert {"manpages_ja", "hironsan", "jsonl"} <= set(REAL_TEXT_CORPORA.names())
    with pytest.raises(UnknownNameError, match="manpages_ja"):
        load_corpus(RealTextConfig(name="wikipedia"))


def _required(what: str) -> None:
    """Skip locally, fail loudly in CI: the real corpora are part of the environment there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing but CI=true: the setup must install it")
    pytest.skip(f"{what} is not installed")


def test_hironsan_corpus():
    try:
        import hironsan.corpus  # noqa: F401
    except ImportError:
        _required("hironsancorpus==0.1.2")
    docs = load_corpus(RealTextConfig(name="hironsan"))
    assert 490 <= len(docs) <= 500 and all(is_japanese(d) for d in docs)
    assert docs[0].startswith("2005年7月14日、南アフリカ共和国ダーバン")


def test_real_manpages_ja():
    """Parses ~1,100 pages once (5-20 s), then reads the shared on-disk cache like every study job does."""
    if not Path("/usr/share/man/ja/man1").is_dir():
        _required("manpages-ja (apt-get install -y manpages-ja)")
    split = text_split(RealTextConfig(name="manpages_ja", test_size=2000))
    assert len(split.train) > 30_000 and len(split.test) == 2000
    assert all(is_japanese(s) for s in split.test)
    leftovers = [s for s in split.train + split.test if re.search(r"\\f[BIRP]", s)]
    assert len(leftovers) < 10, leftovers[:10]  # a few pages document troff itself
