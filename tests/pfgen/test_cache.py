"""Tables are cached on disk by content hash: reused when unchanged, rebuilt (and the old folder dropped) when not."""

from __future__ import annotations

import numpy as np

from lab.eval.pfgen.cache import cached_tables, default_cache_dir
from lab.eval.pfgen.data import load_question
from lab.eval.pfgen.ngram_table import build_table

from .conftest import write_question


def test_cached_tables_equal_fresh_ones_and_are_reused(tmp_path, small_data):
    question = load_question(small_data / "Q01.json")
    first = cached_tables(question, tmp_path / "cache")
    folders = list((tmp_path / "cache" / "pfgen").iterdir())
    assert len(folders) == 1 and question.sha1[:16] in folders[0].name
    mtime = (folders[0] / "meta.json").stat().st_mtime_ns
    again = cached_tables(question, tmp_path / "cache")
    assert (folders[0] / "meta.json").stat().st_mtime_ns == mtime
    for label, answers in question.answer_sets.items():
        fresh = build_table(answers)
        for table in (first[label], again[label]):
            np.testing.assert_array_equal(table.keys, fresh.keys)
            np.testing.assert_array_equal(table.df, fresh.df)
            assert table.baseline == fresh.baseline and table.n_answers == fresh.n_answers


def test_changed_data_rebuilds_and_drops_the_stale_folder(tmp_path):
    data = tmp_path / "data"
    old = cached_tables(load_question(write_question(data, 1)), tmp_path / "cache")
    new_question = load_question(write_question(data, 1, answers={"P": ["まったく別の答え"]}))
    new = cached_tables(new_question, tmp_path / "cache")
    folders = list((tmp_path / "cache" / "pfgen").iterdir())
    assert len(folders) == 1 and new_question.sha1[:16] in folders[0].name
    assert list(new) == ["P"] and new["P"].n_answers == 1 and old["P"].n_answers == 5


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("LAB_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "synth_transfer_lab")
