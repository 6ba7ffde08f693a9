"""The digit renderer is deterministic per (seed, index) and its shards are verified on every read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from lab.data.shards import CorruptShardError, ShardedDataset
from lab.core.registry import UnknownNameError
from synth_render.dataset import contact_sheet, render_dataset
from synth_render.digits import DigitRenderer, DigitRendererConfig
from synth_render.registry import create_renderer


def small_config(**overrides) -> DigitRendererConfig:
    return DigitRendererConfig(shard_size=16, **overrides)


def test_sample_depends_only_on_seed_and_index():
    first = DigitRenderer(small_config(seed=3))
    second = DigitRenderer(small_config(seed=3))
    forward = [first(i)["image"] for i in range(6)]
    backward = [second(i)["image"] for i in reversed(range(6))][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)
    other_seed = DigitRenderer(small_config(seed=4))(0)["image"]
    assert not np.array_equal(forward[0], other_seed)
    assert [first(i)["label"] for i in range(12)] == [i % 10 for i in range(12)]


def test_images_are_mnist_like():
    sample = DigitRenderer(small_config())(7)
    image = sample["image"]
    assert image.shape == (28, 28) and image.dtype == np.uint8
    # a bright glyph on a dark background, centred: the border is darker than the centre
    assert image[10:18, 10:18].mean() > image[:3].mean()


def test_parallel_and_serial_renders_are_identical(tmp_path):
    serial = render_dataset(small_config(), 40, tmp_path / "serial", workers=1, progress=False)
    parallel = render_dataset(small_config(), 40, tmp_path / "parallel", workers=2, progress=False)
    assert serial.content_hash == parallel.content_hash
    assert serial.count == 40 and len(serial.manifest["shards"]) == 3


def test_first_n_samples_are_a_nested_subset(tmp_path):
    big = render_dataset(small_config(), 40, tmp_path / "big", progress=False).load(25)
    small = render_dataset(small_config(), 25, tmp_path / "small", progress=False).load()
    np.testing.assert_array_equal(big["image"], small["image"])
    np.testing.assert_array_equal(big["label"], small["label"])


def test_corrupt_shard_is_named_on_load_and_regenerated_on_rerender(tmp_path, capsys):
    out = tmp_path / "data"
    dataset = render_dataset(small_config(), 40, out, progress=False)
    shard = out / "shard-00001.npz"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match="shard-00001.npz"):
        ShardedDataset.open(out).load()
    assert len(ShardedDataset.open(out).load(16)["image"]) == 16  # shard 0 alone is still readable

    untouched = (out / "shard-00000.npz").stat().st_mtime_ns
    capsys.readouterr()
    repaired = render_dataset(small_config(), 40, out, progress=False)
    assert repaired.content_hash == dataset.content_hash
    regenerated = capsys.readouterr().err
    assert "regenerating shard 1: shard-00001.npz is corrupt or truncated" in regenerated  # said, not silent
    assert "shard 0" not in regenerated and "shard 2" not in regenerated
    assert (out / "shard-00000.npz").stat().st_mtime_ns == untouched  # finished shards are kept


def test_truncated_shard_is_detected(tmp_path):
    out = tmp_path / "data"
    render_dataset(small_config(), 20, out, progress=False)
    shard = out / "shard-00000.npz"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CorruptShardError, match="shard-00000.npz"):
        ShardedDataset.open(out).load()


def test_unfinished_dataset_and_oversized_request_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="never finished"):
        ShardedDataset.open(tmp_path)
    dataset = render_dataset(small_config(), 20, tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="holds 20"):
        dataset.load(21)


def test_manifest_records_seed_config_and_hashes(tmp_path):
    render_dataset(small_config(seed=5), 20, tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["count"] == 20 and manifest["seed"] == 5
    assert manifest["generator"]["rotation_deg"] == 15.0
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"image_size": 4}, "image_size"),
        ({"fonts": "comic"}, "fonts"),
        ({"glyph_fraction": [0.8, 0.5]}, "glyph_fraction"),
        ({"shard_size": 0}, "shard_size"),
    ],
)
def test_invalid_renderer_settings_fail_before_rendering(overrides, message):
    with pytest.raises(ValueError, match=message):
        DigitRenderer(DigitRendererConfig(**overrides))


def test_unknown_renderer_lists_valid_names():
    config = DigitRendererConfig(name="blender2")
    with pytest.raises(UnknownNameError, match="digits"):
        create_renderer(config)


def test_contact_sheet_has_one_cell_per_sample():
    images = np.zeros((20, 28, 28), np.uint8)
    sheet = contact_sheet(images, np.arange(20) % 10, columns=10, zoom=1)
    assert sheet.size == (10 * 29, 2 * 29)


def test_an_array_task_renders_its_slice_and_a_final_pass_writes_the_manifest(tmp_path):
    from synth_render.dataset import render_shards

    out = tmp_path / "data"
    assert render_shards(small_config(), 40, out, [1]) == [1]
    assert (out / "shard-00001.json").exists() and not (out / "shard-00000.json").exists()
    assert not (out / "manifest.json").exists()
    render_shards(small_config(), 40, out, [0, 2])
    finished = render_dataset(small_config(), 40, out, progress=False)
    reference = render_dataset(small_config(), 40, tmp_path / "whole", progress=False)
    assert finished.content_hash == reference.content_hash
    with pytest.raises(ValueError, match="only_shards"):
        render_shards(small_config(), 40, out, [3])


def test_a_folder_reused_with_another_config_is_rerendered_not_mixed(tmp_path):
    out = tmp_path / "data"
    render_dataset(small_config(seed=1), 20, out, progress=False)
    changed = render_dataset(small_config(seed=2), 20, out, progress=False)
    fresh = render_dataset(small_config(seed=2), 20, tmp_path / "fresh", progress=False)
    assert changed.content_hash == fresh.content_hash


@pytest.mark.parametrize("overrides, message", [
    (["count=0"], "count must be positive"),
    (["renderer.shard_size=0"], "renderer.shard_size must be positive"),
    (["out={tmp}/a_file"], "out={tmp}/a_file is a file, not a folder"),
    (["out={tmp}/a_file/sub"], "cannot be made: {tmp}/a_file is a file"),
    (["out="], "out is empty"),
    (["preview={tmp}"], "preview={tmp} is a folder"),
])
def test_lab_render_refuses_bad_settings_in_one_line(tmp_path, capsys, overrides, message):
    from experiments.cli import main

    (tmp_path / "a_file").write_text("")
    argv = ["render", f"out={tmp_path}/out", "count=20", "workers=1", *[o.format(tmp=tmp_path) for o in overrides]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_lab_render_into_an_unwritable_folder_says_so(tmp_path, capsys, monkeypatch):
    from experiments.cli import main

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    assert main(["render", f"out={locked}/data", "count=20", "workers=1"]) == 2
    assert f"cannot write in {locked} (permission denied)" in capsys.readouterr().err
