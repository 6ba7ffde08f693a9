"""Shape kinds and the class catalogue: closed, outward, normalised, low-poly meshes; user mesh folders."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from lab.core.registry import UnknownNameError
from synth_render.scene3d.shapes import (
    CLASS_SETS,
    DISTINCT20_CLASSES,
    class_set,
    default_classes,
    mesh_folder_classes,
    object_mesh,
)


def test_catalogue_has_at_least_fifty_distinct_classes():
    classes = default_classes()
    assert len(classes) >= 50
    assert len({c.name for c in classes}) == len(classes)
    assert len(class_set("digits")) == 10 and len(class_set("basic")) == 10
    assert set(CLASS_SETS) >= {"all", "basic", "distinct20", "primitives", "superquadrics", "polyhedra", "digits",
                               "letters"}  # fmt: skip


def test_distinct20_names_twenty_catalogue_classes():
    assert [c.name for c in class_set("distinct20")] == [c.name for c in default_classes()
                                                         if c.name in DISTINCT20_CLASSES]  # fmt: skip
    assert len(class_set("distinct20")) == len(set(DISTINCT20_CLASSES)) == 20


@pytest.mark.parametrize("shape", default_classes(), ids=lambda c: c.name)
def test_every_class_mesh_is_closed_outward_normalised_and_low_poly(shape):
    vertices, faces = object_mesh(shape.kind, shape.params)
    assert vertices.dtype == np.float64 and faces.dtype == np.int64
    assert np.linalg.norm(vertices, axis=1).max() == pytest.approx(1.0)
    assert np.allclose((vertices.min(0) + vertices.max(0)) / 2, 0, atol=1e-9)
    assert 4 <= len(faces) <= 400
    mesh = trimesh.Trimesh(vertices, faces)  # merges duplicate vertices
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert trimesh.Trimesh(vertices, faces, process=False).volume > 0  # CCW from outside


def test_glyphs_differ_and_meshes_are_cached_and_deterministic():
    digits = [object_mesh(c.kind, c.params) for c in class_set("digits")]
    assert len({(len(v), len(f)) for v, f in digits}) >= 7
    first = object_mesh("convex", {"seed": 3, "points": 12})
    assert object_mesh("convex", {"points": 12, "seed": 3}) is first  # same params, any key order
    assert not first[0].flags.writeable


def test_unknown_kind_and_profile_fail_clearly():
    with pytest.raises(UnknownNameError, match="valid names: box, capsule, convex"):
        object_mesh("blob", {})
    with pytest.raises(ValueError, match="unknown extrusion profile 'moon'; valid: arrow"):
        object_mesh("extrusion", {"profile": "moon"})


def test_mesh_folder_becomes_classes_named_by_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    trimesh.creation.box(extents=(2, 1, 1)).export(models / "obj_000002.ply")
    trimesh.creation.icosphere(subdivisions=1).export(models / "obj_000001.obj")
    (models / "models_info.json").write_text("{}")
    classes = mesh_folder_classes(models)
    assert [c.name for c in classes] == ["obj_000001", "obj_000002"]
    assert all(c.kind == "mesh" for c in classes)
    vertices, faces = object_mesh(classes[1].kind, classes[1].params)
    assert len(faces) == 12 and np.linalg.norm(vertices, axis=1).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="has no"):
        mesh_folder_classes(tmp_path / "models" / ".." / "models" / "..")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mesh_folder_classes(tmp_path / "missing")
