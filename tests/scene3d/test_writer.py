"""3D-scene tar shards: deterministic bytes, annotations that agree with the masks, resume, subsets, COCO."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from torch.utils.data import DataLoader

from lab.data.shards import CorruptShardError
from lab.data.tar_shards import INDEX, KEY, TarShardDataset, iter_tar_samples, write_subset_manifest
from synth_render.dataset import render_dataset
from synth_render.scene3d.annotations import instance_boxes, visibility_threshold
from synth_render.scene3d.coco import export_coco, rle_to_mask
from synth_render.scene3d.sampler import SceneSamplerConfig
from synth_render.scene3d.shapes import class_set
from synth_render.scene3d.writer import SAMPLE_FIELDS, Scene3DGenerator, Scene3DRendererConfig

COUNT, SHARD = 12, 5  # three shards, the last one short
THRESHOLD = 6  # visible pixels an object needs for a box and a label at 32x32: ceil(0.005 * 32 * 32)


def toy_config(**overrides) -> Scene3DRendererConfig:
    """Several objects per scene (boxes, occlusion) at a toy size, torch engine."""
    sampler = SceneSamplerConfig(objects_per_scene=[2, 4])
    return Scene3DRendererConfig(engine="torch", level="lv5", width=32, height=32, shard_size=SHARD,
                                 sampler=sampler, **overrides)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "serial"
    render_dataset(toy_config(), COUNT, out, workers=1, progress=False)
    return out


def shard_bytes(folder) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("shard-*.tar"))]


def test_layout_and_manifest(rendered):
    manifest = json.loads((rendered / "manifest.json").read_text())
    assert manifest["shard_format"] == "tar" and manifest["count"] == COUNT and manifest["seed"] == 0
    assert [(s["file"], s["start"], s["count"]) for s in manifest["shards"]] == [
        ("shard-000000.tar", 0, 5), ("shard-000001.tar", 5, 5), ("shard-000002.tar", 10, 2)]
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"]) and len(manifest["content_hash"]) == 64
    assert manifest["generator"]["level"] == "lv5" and manifest["generator"]["engine"] == "torch"
    assert manifest["sampler"]["light"] == "random"  # the level's knobs, resolved
    assert len(manifest["class_names"]) == 84 and manifest["fields"] == list(SAMPLE_FIELDS)
    assert manifest["normals_frame"] == "camera" and manifest["normals_axes"].startswith("x = image right")
    assert manifest["label_min_pixels"] == THRESHOLD and manifest["supersample"] == 1

    with tarfile.open(rendered / "shard-000000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:6]] == [f"000000000.{f}" for f in sorted(SAMPLE_FIELDS)]
    assert len(members) == 5 * len(SAMPLE_FIELDS)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_fields_have_the_documented_types_and_agree_with_each_other(rendered):
    samples = list(TarShardDataset(rendered))
    assert [s[INDEX] for s in samples] == list(range(COUNT))
    assert [s[KEY] for s in samples[:2]] == ["000000000", "000000001"]
    boxes_seen = 0
    for sample in samples:
        rgb, depth, normals = sample["rgb.png"], sample["depth.npy"], sample["normals.npy"]
        instance, semantic, record = sample["instance.png"], sample["semantic.png"], sample["json"]
        assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
        assert depth.shape == (32, 32) and depth.dtype == np.float32
        assert normals.shape == (32, 32, 3) and normals.dtype == np.float32
        assert instance.dtype == semantic.dtype == np.uint16 and instance.shape == (32, 32)
        assert record["index"] == sample[INDEX] and record["scene"]["index"] == sample[INDEX]
        objects = record["scene"]["objects"]
        # the semantic mask is the instance mask mapped through the scene's classes
        lookup = np.array([0] + [o["class_id"] + 1 for o in objects])
        np.testing.assert_array_equal(semantic, lookup[instance])
        # every object with enough visible pixels has exactly its mask's box, area and class; the label vector
        # lists those classes; smaller ones stay in the masks but get no box and no label
        boxes = instance_boxes(instance)
        labelled = sorted(i for i, (_, area) in boxes.items() if area >= THRESHOLD)
        assert [o["instance_id"] for o in record["objects"]] == labelled
        for obj in record["objects"]:
            assert tuple(obj["bbox"]) == boxes[obj["instance_id"]][0]
            assert obj["area"] == int((instance == obj["instance_id"]).sum())
            assert obj["class_id"] == objects[obj["instance_id"] - 1]["class_id"]
            boxes_seen += 1
        assert record["labels"] == sorted({objects[i - 1]["class_id"] for i in labelled})
        assert np.flatnonzero(record["multilabel"]).tolist() == record["labels"]
        hit = np.isfinite(depth)
        np.testing.assert_allclose(np.linalg.norm(normals[hit], axis=-1), 1.0, atol=1e-3)
        assert record["normals_frame"] == "camera"
    assert boxes_seen >= COUNT  # several objects per scene: the check above is not vacuous


def test_one_and_two_workers_write_byte_identical_shards(rendered, tmp_path):
    parallel = tmp_path / "parallel"
    render_dataset(toy_config(), COUNT, parallel, workers=2, progress=False)
    assert shard_bytes(parallel) == shard_bytes(rendered)
    assert json.loads((parallel / "manifest.json").read_text())["content_hash"] == \
        json.loads((rendered / "manifest.json").read_text())["content_hash"]


def test_the_first_n_samples_are_a_nested_subset(rendered, tmp_path):
    small = tmp_path / "small"
    render_dataset(toy_config(), 7, small, progress=False)
    assert shard_bytes(small)[0] == shard_bytes(rendered)[0]
    raw_small = list(TarShardDataset(small, decode=False))
    raw_big = list(TarShardDataset(rendered, n=7, decode=False))
    assert len(raw_big) == 7 and raw_small == raw_big

    subset = write_subset_manifest(rendered, 7)
    from_manifest = list(TarShardDataset(rendered, manifest=subset.name, decode=False))
    assert from_manifest == raw_big
    assert json.loads(subset.read_text())["subset_of"]["count"] == COUNT
    with pytest.raises(ValueError, match="holds 12"):
        TarShardDataset(rendered, n=13)


def test_corrupt_and_truncated_shards_are_named_and_regenerated(rendered, tmp_path):
    out = tmp_path / "copy"
    render_dataset(toy_config(), COUNT, out, progress=False)
    reference = json.loads((out / "manifest.json").read_text())["content_hash"]
    corrupt = out / "shard-000001.tar"
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    truncated = out / "shard-000002.tar"
    truncated.write_bytes(truncated.read_bytes()[:700])
    (out / "shard-000000.tar.tmp").write_bytes(b"half a shard from a killed run")

    with pytest.raises(CorruptShardError, match="shard-000001.tar"):
        list(TarShardDataset(out))
    assert len(list(TarShardDataset(out, n=5))) == 5  # shard 0 alone is intact

    untouched = (out / "shard-000000.tar").stat().st_mtime_ns
    render_dataset(toy_config(), COUNT, out, progress=False)
    assert (out / "shard-000000.tar").stat().st_mtime_ns == untouched  # finished shards are kept
    assert json.loads((out / "manifest.json").read_text())["content_hash"] == reference
    assert shard_bytes(out) == shard_bytes(rendered)


def test_unverified_reads_still_catch_a_broken_tar(rendered, tmp_path):
    broken = tmp_path / "broken.tar"
    broken.write_bytes((rendered / "shard-000000.tar").read_bytes()[:1000])
    with pytest.raises(CorruptShardError, match="broken.tar"):
        list(iter_tar_samples(broken))


def test_dataloader_workers_split_the_shards(rendered):
    loader = DataLoader(TarShardDataset(rendered, decode=False, fields=("json",)), batch_size=None, num_workers=2)
    assert sorted(sample[INDEX] for sample in loader) == list(range(COUNT))


def test_unknown_fields_are_rejected(rendered):
    with pytest.raises(ValueError, match="rgb.png"):
        TarShardDataset(rendered, fields=("albedo.png",))


def test_coco_export_matches_the_masks(rendered, tmp_path):
    coco = json.loads(export_coco(rendered, tmp_path / "coco.json", n=6).read_text())
    assert [image["id"] for image in coco["images"]] == list(range(6))
    assert coco["images"][5]["shard"] == "shard-000001.tar" and coco["images"][0]["file_name"] == "000000000.rgb.png"
    assert coco["categories"][0] == {"id": 1, "name": "cube", "supercategory": "shape"}
    samples = {s[INDEX]: s for s in TarShardDataset(rendered, n=6)}
    assert coco["annotations"], "toy scenes should have visible objects"
    for ann in coco["annotations"]:
        instance = samples[ann["image_id"]]["instance.png"]
        mask = rle_to_mask(ann["segmentation"])
        assert mask.sum() == ann["area"] and ann["iscrowd"] == 0
        values = np.unique(instance[mask])
        assert len(values) == 1 and (instance == values[0]).sum() == ann["area"]
        rows, cols = np.nonzero(mask)
        assert ann["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
        semantic = samples[ann["image_id"]]["semantic.png"]
        assert set(np.unique(semantic[mask]).tolist()) == {ann["category_id"]}


def test_tar_members_open_with_plain_tools(rendered):
    """What a webdataset user gets: `<key>.<ext>` members decodable with PIL / numpy / json."""
    from PIL import Image

    with tarfile.open(rendered / "shard-000000.tar") as tar:
        png = tar.extractfile("000000003.rgb.png").read()
        depth = np.load(io.BytesIO(tar.extractfile("000000003.depth.npy").read()))
        record = json.loads(tar.extractfile("000000003.json").read())
    assert Image.open(io.BytesIO(png)).size == (32, 32) and depth.shape == (32, 32)
    assert record["key"] == "000000003"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own numpy 2 copy= warning
def test_pycocotools_reads_the_export(rendered, tmp_path):
    """The export is valid COCO: pycocotools' own API decodes the masks we wrote."""
    coco_api = pytest.importorskip("pycocotools.coco")
    path = export_coco(rendered, tmp_path / "coco.json", n=4)
    api = coco_api.COCO(str(path))
    samples = {s[INDEX]: s for s in TarShardDataset(rendered, n=4)}
    assert sorted(api.getImgIds()) == [0, 1, 2, 3]
    for ann in api.loadAnns(api.getAnnIds()):
        mask = api.annToMask(ann).astype(bool)
        instance = samples[ann["image_id"]]["instance.png"]
        assert mask.sum() == ann["area"] and len(np.unique(instance[mask])) == 1


def test_visibility_threshold_is_the_larger_of_pixels_and_image_fraction():
    assert visibility_threshold(32, 32, 4, 0.005) == 6 == Scene3DRendererConfig(width=32, height=32).label_min_pixels()
    assert visibility_threshold(64, 64, 4, 0.005) == 21 == Scene3DRendererConfig().label_min_pixels()
    assert visibility_threshold(32, 32, 10, 0.005) == 10 and visibility_threshold(32, 32, 4, 0.0) == 4
    assert visibility_threshold(100, 100, 1, 0.01) == 100  # 0.01 * 100 * 100 is 100.00000000000001 in floats


@pytest.mark.parametrize("settings, threshold", [
    ({}, 6), ({"min_pixels": 1, "min_visible_fraction": 0.0}, 1), ({"min_pixels": 20}, 20),
    ({"min_visible_fraction": 0.02}, 21),
])  # fmt: skip
def test_only_objects_over_the_threshold_get_boxes_and_labels(settings, threshold):
    """lv7 at 32x32 (10 objects, many of them small): the masks are the same whatever the threshold; the
    record lists exactly the objects with at least `threshold` visible pixels."""
    generator = Scene3DGenerator(Scene3DRendererConfig(level="lv7", width=32, height=32, **settings))
    reference = Scene3DGenerator(Scene3DRendererConfig(level="lv7", width=32, height=32, min_pixels=1,
                                                       min_visible_fraction=0.0))  # fmt: skip
    assert generator.config.label_min_pixels() == threshold
    dropped = 0
    for index in range(4):
        sample, everything = generator(index), reference(index)
        np.testing.assert_array_equal(sample["instance.png"], everything["instance.png"])
        areas = {i: area for i, (_, area) in instance_boxes(sample["instance.png"]).items()}
        assert [o["instance_id"] for o in everything["json"]["objects"]] == sorted(areas)
        kept = [o["instance_id"] for o in sample["json"]["objects"]]
        assert kept == sorted(i for i, area in areas.items() if area >= threshold)
        objects = sample["json"]["scene"]["objects"]
        assert sample["json"]["labels"] == sorted({objects[i - 1]["class_id"] for i in kept})
        dropped += len(areas) - len(kept)
    assert dropped >= (1 if threshold > 1 else 0) and (dropped == 0) == (threshold == 1)


@pytest.mark.parametrize("settings, message", [
    ({"min_visible_fraction": 1.0}, r"min_visible_fraction must lie in \[0, 1\), got 1.0"),
    ({"min_visible_fraction": -0.01}, "min_visible_fraction must lie in"),
    ({"min_pixels": 0}, "min_pixels must be >= 1"),
    ({"supersample": 0}, r"supersample must be an integer in \[1, 8\], got 0"),
    ({"supersample": 9}, r"supersample must be an integer in \[1, 8\]"),
    ({"supersample": 1.5}, r"supersample must be an integer in \[1, 8\]"),
])  # fmt: skip
def test_bad_label_and_supersample_settings_fail_before_any_work(settings, message):
    with pytest.raises(ValueError, match=message):
        Scene3DRendererConfig(**settings).validate()


def test_fewer_larger_objects_and_a_class_subset_pass_through_the_sampler_knobs():
    """The issue's "tasks learnable at the study's resolution" knobs: 1-2 larger objects of a 20-class set,
    seen from closer; the writer's class list, the manifest's sampler and the scenes all follow them."""
    sampler = SceneSamplerConfig(class_sets=["distinct20"], objects_per_scene=[1, 2], object_radius=[0.12, 0.18],
                                 camera_radius=[0.5, 0.7])  # fmt: skip
    generator = Scene3DGenerator(Scene3DRendererConfig(level="lv4", width=32, height=32, sampler=sampler))
    assert generator.class_names == [c.name for c in class_set("distinct20")] and len(generator.class_names) == 20
    extra = generator.manifest_extra()
    assert extra["sampler"]["objects_per_scene"] == [1, 2] and extra["sampler"]["class_sets"] == ["distinct20"]
    assert extra["sampler"]["light"] == "random"  # the rest still comes from the level
    for index in range(4):
        scene = generator.scene(index)
        assert 1 <= len(scene.objects) <= 2
        assert all(0.12 <= o.scale <= 0.18 and o.class_name in generator.class_names for o in scene.objects)
        target = np.mean([o.position for o in scene.objects], axis=0)
        assert 0.5 <= np.linalg.norm(np.subtract(scene.camera.position, target)) <= 0.7
        sample = generator(index)
        assert sample["json"]["objects"] and max(o["area"] for o in sample["json"]["objects"]) >= 40
