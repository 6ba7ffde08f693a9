"""Shape kinds (mesh builders) and the catalogue of object classes built from them.

Two registries, as timm keeps models and their configs:
- `SHAPE_KINDS`: kind name -> builder `(params) -> (vertices, faces)`. Kinds are geometric families
  (box, frustum, superquadric, torus, capsule, convex, extrusion, glyph, mesh).
- Object classes: a `ShapeClass` is a named (kind, params) pair such as `hex_prism` = frustum with 6 segments.
  `default_classes()` is the built-in catalogue, `CLASS_SETS` names subsets of it, and
  `mesh_folder_classes(folder)` turns a BOP-style folder of OBJ/PLY files into classes of kind "mesh".

`object_mesh(kind, params)` returns the object-space mesh, normalised so the bounding box is centred on the
origin and the bounding radius is 1 (a pose's `scale` is then the object's radius in metres), faces CCW seen
from outside. Meshes are low-poly (tens to a few hundred triangles) and cached per (kind, params).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lab.core.registry import Registry

MeshArrays = tuple[np.ndarray, np.ndarray]  # vertices float64 [V, 3], faces int64 [F, 3]
SHAPE_KINDS: Registry[Callable[[dict[str, Any]], MeshArrays]] = Registry("shape kind")
MESH_SUFFIXES = (".ply", ".obj", ".stl", ".off")
GLYPH_FONT = "DejaVuSans-Bold.ttf"


@dataclass(frozen=True)
class ShapeClass:
    """A named object class: the shape kind and the parameters that make it this class."""

    name: str
    kind: str
    params: dict[str, Any]

    def __hash__(self) -> int:
        return hash((self.name, self.kind, _params_key(self.params)))


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def object_mesh(kind: str, params: dict[str, Any]) -> MeshArrays:
    """The normalised object-space mesh of a shape (cached; the arrays are read-only)."""
    builder = SHAPE_KINDS.get(kind)  # unknown kinds fail here, listing the valid ones
    return _cached_mesh(kind, _params_key(params), builder)


@lru_cache(maxsize=1024)
def _cached_mesh(kind: str, key: str, builder: Callable[[dict[str, Any]], MeshArrays]) -> MeshArrays:
    vertices, faces = builder(json.loads(key))
    vertices, faces = _normalise(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))
    vertices.flags.writeable = False
    faces.flags.writeable = False
    return vertices, faces


def _normalise(vertices: np.ndarray, faces: np.ndarray) -> MeshArrays:
    """Centre the bounding box on the origin, scale to bounding radius 1, drop degenerate faces."""
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    vertices = vertices - centre
    vertices /= np.linalg.norm(vertices, axis=1).max()
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    return vertices, faces[area > 1e-12]


def _orient_outwards(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip faces of a star-shaped (about its centroid) closed mesh so their normals point away from it."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    outward = np.einsum("ij,ij->i", normal, (a + b + c) / 3 - vertices.mean(axis=0)) >= 0
    return np.where(outward[:, None], faces, faces[:, ::-1])


def _grid_faces(rows: int, cols: int, offset: int = 0) -> np.ndarray:
    """Quads of a rows x cols vertex grid wrapping around in the column direction, as triangles."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols), indexing="ij")
    a = offset + r * cols + c
    b = offset + r * cols + (c + 1) % cols
    d = a + cols
    e = b + cols
    return np.concatenate([np.stack([a, b, e], -1).reshape(-1, 3), np.stack([a, e, d], -1).reshape(-1, 3)])


@SHAPE_KINDS.register("box")
def box_mesh(params: dict[str, Any]) -> MeshArrays:
    sx, sy, sz = (float(v) / 2 for v in params.get("size", (1.0, 1.0, 1.0)))
    corners = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for q in quads for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))])
    return corners, _orient_outwards(corners, faces)


@SHAPE_KINDS.register("frustum")
def frustum_mesh(params: dict[str, Any]) -> MeshArrays:
    """Cylinders, cones, pyramids and prisms: a `segments`-gon at the bottom and one of `top_radius` on top."""
    segments = int(params.get("segments", 16))
    bottom, top, height = (
        float(params.get("radius", 0.5)),
        float(params.get("top_radius", 0.5)),
        float(params.get("height", 1.0)),
    )
    angle = 2 * np.pi * (np.arange(segments) + 0.5) / segments
    ring = np.stack([np.cos(angle), np.sin(angle)], -1)
    rings = [np.column_stack([ring * bottom, np.full(segments, -height / 2)])]
    rings.append(
        np.column_stack([ring * top, np.full(segments, height / 2)]) if top > 0 else np.array([[0, 0, height / 2]])
    )
    vertices = np.concatenate(rings + [np.array([[0, 0, -height / 2]])])
    bottom_centre = len(vertices) - 1
    i = np.arange(segments)
    j = (i + 1) % segments
    faces = [np.stack([np.full(segments, bottom_centre), j, i], -1)]
    if top > 0:
        top_centre = len(vertices)
        vertices = np.concatenate([vertices, [[0, 0, height / 2]]])
        faces += [
            np.stack([i, j, segments + j], -1),
            np.stack([i, segments + j, segments + i], -1),
            np.stack([np.full(segments, top_centre), segments + i, segments + j], -1),
        ]
    else:
        faces.append(np.stack([i, j, np.full(segments, segments)], -1))
    return vertices, _orient_outwards(vertices, np.concatenate(faces))


def _signed_power(x: np.ndarray, exponent: float) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** exponent


@SHAPE_KINDS.register("superquadric")
def superquadric_mesh(params: dict[str, Any]) -> MeshArrays:
    """Barr's superquadric: e1 shapes the profile along z, e2 the cross-section (1, 1 = ellipsoid)."""
    e1, e2 = float(params.get("e1", 1.0)), float(params.get("e2", 1.0))
    sx, sy, sz = (float(v) for v in params.get("size", (1.0, 1.0, 1.0)))
    rings, segments = int(params.get("rings", 9)), int(params.get("segments", 16))
    eta = np.linspace(-np.pi / 2, np.pi / 2, rings + 2)[1:-1]
    omega = 2 * np.pi * np.arange(segments) / segments
    eta, omega = np.meshgrid(eta, omega, indexing="ij")
    ce, se = _signed_power(np.cos(eta), e1), _signed_power(np.sin(eta), e1)
    grid = np.stack(
        [sx * ce * _signed_power(np.cos(omega), e2), sy * ce * _signed_power(np.sin(omega), e2), sz * se], -1
    )
    vertices = np.concatenate([grid.reshape(-1, 3), [[0, 0, -sz], [0, 0, sz]]])
    south, north = len(vertices) - 2, len(vertices) - 1
    c = np.arange(segments)
    caps = [
        np.stack([np.full(segments, south), (c + 1) % segments, c], -1),
        np.stack(
            [np.full(segments, north), (rings - 1) * segments + c, (rings - 1) * segments + (c + 1) % segments], -1
        ),
    ]
    faces = np.concatenate([_grid_faces(rings, segments)] + caps)
    return vertices, _orient_outwards(vertices, faces) if e1 <= 1.5 and e2 <= 1.5 else faces


@SHAPE_KINDS.register("torus")
def torus_mesh(params: dict[str, Any]) -> MeshArrays:
    major, minor = float(params.get("major", 1.0)), float(params.get("minor", 0.35))
    rings, segments = int(params.get("rings", 16)), int(params.get("segments", 8))
    u = 2 * np.pi * np.arange(rings) / rings
    v = 2 * np.pi * np.arange(segments) / segments
    u, v = np.meshgrid(u, v, indexing="ij")
    radius = major + minor * np.cos(v)
    vertices = np.stack([radius * np.cos(u), radius * np.sin(u), minor * np.sin(v)], -1).reshape(-1, 3)
    r, s = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a = r * segments + s
    b = ((r + 1) % rings) * segments + s
    c = ((r + 1) % rings) * segments + (s + 1) % segments
    d = r * segments + (s + 1) % segments
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices, faces


@SHAPE_KINDS.register("capsule")
def capsule_mesh(params: dict[str, Any]) -> MeshArrays:
    """A cylinder of `length` with hemispherical caps of `radius`, along z."""
    radius, length = float(params.get("radius", 0.5)), float(params.get("length", 1.0))
    rings, segments = int(params.get("rings", 4)), int(params.get("segments", 12))
    eta = np.concatenate([np.linspace(-np.pi / 2, 0, rings + 1)[1:], np.linspace(0, np.pi / 2, rings + 1)[:-1]])
    shift = np.where(np.arange(2 * rings) < rings, -length / 2, length / 2)
    omega = 2 * np.pi * np.arange(segments) / segments
    e, o = np.meshgrid(eta, omega, indexing="ij")
    grid = np.stack(
        [radius * np.cos(e) * np.cos(o), radius * np.cos(e) * np.sin(o), radius * np.sin(e) + shift[:, None]], -1
    )
    total = radius + length / 2
    vertices = np.concatenate([grid.reshape(-1, 3), [[0, 0, -total], [0, 0, total]]])
    n_rings = 2 * rings
    c = np.arange(segments)
    caps = [
        np.stack([np.full(segments, len(vertices) - 2), (c + 1) % segments, c], -1),
        np.stack(
            [
                np.full(segments, len(vertices) - 1),
                (n_rings - 1) * segments + c,
                (n_rings - 1) * segments + (c + 1) % segments,
            ],
            -1,
        ),
    ]
    return vertices, _orient_outwards(vertices, np.concatenate([_grid_faces(n_rings, segments)] + caps))


@SHAPE_KINDS.register("convex")
def convex_mesh(params: dict[str, Any]) -> MeshArrays:
    """The convex hull of `points` random points on an ellipsoid drawn from `seed` (a class = a seed)."""
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng([int(params.get("seed", 0)), 7])
    points = rng.normal(size=(int(params.get("points", 12)), 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    points *= rng.uniform(0.5, 1.0, size=3)
    hull = ConvexHull(points)
    vertices = points[hull.vertices]
    remap = np.full(len(points), -1)
    remap[hull.vertices] = np.arange(len(hull.vertices))
    return vertices, _orient_outwards(vertices, remap[hull.simplices])


def extrude_rings(rings: list[np.ndarray], depth: float) -> MeshArrays:
    """Extrude one polygon with holes (rings[0] outer, the rest holes; [N, 2] each, unclosed) along z."""
    import mapbox_earcut

    oriented = []
    for k, ring in enumerate(rings):
        ring = np.asarray(ring, dtype=np.float64)
        signed_area = np.sum(ring[:, 0] * np.roll(ring[:, 1], -1) - np.roll(ring[:, 0], -1) * ring[:, 1]) / 2
        oriented.append(ring if (signed_area > 0) == (k == 0) else ring[::-1])  # outer CCW, holes CW
    flat = np.concatenate(oriented)
    ends = np.cumsum([len(r) for r in oriented]).astype(np.uint32)
    caps = np.asarray(mapbox_earcut.triangulate_float64(flat, ends), dtype=np.int64).reshape(-1, 3)
    a, b, c = (flat[caps[:, k]] for k in range(3))
    ccw = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) > 0
    caps = np.where(ccw[:, None], caps, caps[:, ::-1])
    n = len(flat)
    vertices = np.concatenate(
        [np.column_stack([flat, np.full(n, -depth / 2)]), np.column_stack([flat, np.full(n, depth / 2)])]
    )
    faces = [caps[:, ::-1], caps + n]
    start = 0
    for ring in oriented:
        i = start + np.arange(len(ring))
        j = start + (np.arange(len(ring)) + 1) % len(ring)
        faces += [np.stack([i, j, j + n], -1), np.stack([i, j + n, i + n], -1)]
        start += len(ring)
    return vertices, np.concatenate(faces)


def _polygon_rings(polygon: Any) -> list[np.ndarray]:
    return [np.asarray(polygon.exterior.coords)[:-1]] + [np.asarray(h.coords)[:-1] for h in polygon.interiors]


def _extrude_shapely(geometry: Any, depth: float) -> MeshArrays:
    polygons = list(getattr(geometry, "geoms", [geometry]))
    vertices, faces, offset = [], [], 0
    for polygon in polygons:
        v, f = extrude_rings(_polygon_rings(polygon), depth)
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


def _star(points: int, inner: float) -> list[tuple[float, float]]:
    angles = np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return list(zip(radii * np.cos(angles), radii * np.sin(angles)))


def _profile(name: str) -> Any:
    from shapely.geometry import Point, Polygon, box

    profiles: dict[str, Callable[[], Any]] = {
        "star5": lambda: Polygon(_star(5, 0.45)),
        "star6": lambda: Polygon(_star(6, 0.6)),
        "cross": lambda: box(-1, -0.3, 1, 0.3).union(box(-0.3, -1, 0.3, 1)),
        "ell": lambda: box(0, 0, 1, 0.35).union(box(0, 0, 0.35, 1.2)),
        "tee": lambda: box(-0.9, 0.6, 0.9, 1).union(box(-0.25, -0.9, 0.25, 0.6)),
        "arrow": lambda: Polygon([(-1, -0.25), (0.2, -0.25), (0.2, -0.6), (1, 0), (0.2, 0.6), (0.2, 0.25), (-1, 0.25)]),
        "ring": lambda: Point(0, 0).buffer(1, quad_segs=5).difference(Point(0, 0).buffer(0.55, quad_segs=5)),
        "crescent": lambda: Point(0, 0).buffer(1, quad_segs=5).difference(Point(0.45, 0.2).buffer(0.85, quad_segs=5)),
        "heart": lambda: (
            Point(-0.45, 0.3)
            .buffer(0.55, quad_segs=4)
            .union(Point(0.45, 0.3).buffer(0.55, quad_segs=4))
            .union(Polygon([(-0.95, 0.15), (0.95, 0.15), (0, -1)]))
        ),
        "gear": lambda: Polygon(
            [
                (r * np.cos(a), r * np.sin(a))
                for a, r in zip(np.linspace(0, 2 * np.pi, 32, endpoint=False), np.tile([1, 1, 0.75, 0.75], 8))
            ]
        ),
    }
    try:
        return profiles[name]()
    except KeyError:
        raise ValueError(f"unknown extrusion profile {name!r}; valid: {', '.join(sorted(profiles))}") from None


@SHAPE_KINDS.register("extrusion")
def extrusion_mesh(params: dict[str, Any]) -> MeshArrays:
    """A named 2D profile (star5, cross, ring, ...) extruded to `depth` (profile units, about 2 across)."""
    return _extrude_shapely(_profile(str(params.get("profile", "star5"))), float(params.get("depth", 0.5)))


@lru_cache(maxsize=None)
def _font_path(font: str) -> Path:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / font
    if not path.exists():
        path = Path(font)
    if not path.exists():
        raise ValueError(f"glyph font {font!r} not found (a file name in matplotlib's bundled fonts or a path)")
    return path


@SHAPE_KINDS.register("glyph")
def glyph_mesh(params: dict[str, Any]) -> MeshArrays:
    """Extruded text (a digit or letter) from an offline font: outlines -> polygons with holes -> caps + walls."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath
    from shapely.geometry import Polygon

    text = str(params.get("text", "0"))
    path = TextPath(
        (0, 0), text, size=1.0, prop=FontProperties(fname=str(_font_path(str(params.get("font", GLYPH_FONT)))))
    )
    outline = None
    for ring in path.to_polygons(closed_only=True):
        polygon = Polygon(ring).buffer(0)
        outline = polygon if outline is None else outline.symmetric_difference(polygon)
    if outline is None or outline.is_empty:
        raise ValueError(f"glyph {text!r} has no outline in font {params.get('font', GLYPH_FONT)!r}")
    outline = outline.simplify(float(params.get("tolerance", 0.012)), preserve_topology=True)
    return _extrude_shapely(outline, float(params.get("depth", 0.25)))


@SHAPE_KINDS.register("mesh")
def file_mesh(params: dict[str, Any]) -> MeshArrays:
    """A user mesh file (OBJ/PLY/STL/OFF via trimesh), simplified to `max_faces` when it has more."""
    import trimesh

    path = Path(str(params["path"]))
    if not path.exists():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    mesh = trimesh.load(path, force="mesh", process=True)
    max_faces = int(params.get("max_faces", 2000))
    if len(mesh.faces) > max_faces:
        try:
            mesh = mesh.simplify_quadric_decimation(face_count=max_faces)
        except (ImportError, ModuleNotFoundError, ValueError) as error:
            raise ValueError(
                f"{path} has {len(mesh.faces)} faces (> max_faces={max_faces}) and could not be "
                f"simplified ({error}); pip install fast-simplification or pass a larger max_faces"
            ) from None
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _primitive_classes() -> list[ShapeClass]:
    f = "frustum"
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("cube", "box", {"size": [1, 1, 1]}),
        ("slab", "box", {"size": [1, 1, 0.35]}),
        ("beam", "box", {"size": [1, 0.3, 0.3]}),
        ("sphere", "superquadric", {"e1": 1, "e2": 1}),
        ("ellipsoid", "superquadric", {"e1": 1, "e2": 1, "size": [1, 0.6, 0.45]}),
        ("cylinder", f, {"radius": 0.5, "top_radius": 0.5, "height": 1, "segments": 16}),
        ("disc", f, {"radius": 0.5, "top_radius": 0.5, "height": 0.25, "segments": 16}),
        ("tube", f, {"radius": 0.2, "top_radius": 0.2, "height": 1, "segments": 12}),
        ("cone", f, {"radius": 0.5, "top_radius": 0, "height": 1, "segments": 16}),
        ("frustum", f, {"radius": 0.5, "top_radius": 0.25, "height": 0.7, "segments": 16}),
        ("pyramid", f, {"radius": 0.7, "top_radius": 0, "height": 0.8, "segments": 4}),
        ("tetrahedron", f, {"radius": 0.7, "top_radius": 0, "height": 0.9, "segments": 3}),
        ("tri_prism", f, {"radius": 0.55, "top_radius": 0.55, "height": 1, "segments": 3}),
        ("pent_prism", f, {"radius": 0.5, "top_radius": 0.5, "height": 0.8, "segments": 5}),
        ("hex_prism", f, {"radius": 0.5, "top_radius": 0.5, "height": 0.5, "segments": 6}),
        ("hex_frustum", f, {"radius": 0.5, "top_radius": 0.3, "height": 0.6, "segments": 6}),
        ("torus", "torus", {"major": 1, "minor": 0.4}),
        ("ring_torus", "torus", {"major": 1, "minor": 0.18, "segments": 6}),
        ("capsule", "capsule", {"radius": 0.35, "length": 1}),
        ("pill", "capsule", {"radius": 0.45, "length": 0.3}),
    ]
    return [ShapeClass(name, kind, params) for name, kind, params in specs]


SUPERQUADRIC_EXPONENTS = [
    (0.2, 0.2),
    (0.2, 1.0),
    (1.0, 0.2),
    (0.5, 0.5),
    (0.5, 1.0),
    (1.0, 0.5),
    (2.0, 2.0),
    (1.0, 2.0),
    (2.0, 1.0),
    (0.3, 2.0),
]
EXTRUSION_PROFILES = ["star5", "star6", "cross", "ell", "tee", "arrow", "ring", "crescent", "heart", "gear"]
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # I and O left out: too close to 1 and 0


def default_classes() -> list[ShapeClass]:
    """The built-in catalogue: primitives, superquadrics, convex polyhedra, extrusions, digits, letters."""
    classes = _primitive_classes()
    classes += [
        ShapeClass(f"superquadric_{e1:g}_{e2:g}", "superquadric", {"e1": e1, "e2": e2})
        for e1, e2 in SUPERQUADRIC_EXPONENTS
    ]
    classes += [
        ShapeClass(f"polyhedron_{seed:02d}", "convex", {"seed": seed, "points": 10 + seed % 5}) for seed in range(10)
    ]
    classes += [ShapeClass(f"extrusion_{p}", "extrusion", {"profile": p, "depth": 0.5}) for p in EXTRUSION_PROFILES]
    classes += [ShapeClass(f"digit_{d}", "glyph", {"text": str(d), "depth": 0.3}) for d in range(10)]
    classes += [ShapeClass(f"letter_{c}", "glyph", {"text": c, "depth": 0.3}) for c in LETTERS]
    return classes


BASIC_CLASSES = ("cube", "sphere", "cylinder", "cone", "pyramid", "torus", "capsule", "hex_prism", "tri_prism", "disc")
# 20 classes picked by eye for distinct silhouettes: no near-twins such as cylinder / hex_prism / pent_prism
DISTINCT20_CLASSES = (
    "cube", "beam", "slab", "sphere", "cylinder", "tube", "disc", "cone", "pyramid", "tetrahedron", "torus",
    "capsule", "tri_prism", "extrusion_star5", "extrusion_cross", "extrusion_ell", "extrusion_tee",
    "extrusion_arrow", "extrusion_crescent", "extrusion_heart",
)
CLASS_SETS: dict[str, Callable[[list[ShapeClass]], list[ShapeClass]]] = {
    "all": lambda c: c,
    "basic": lambda c: [s for s in c if s.name in BASIC_CLASSES],
    "distinct20": lambda c: [s for s in c if s.name in DISTINCT20_CLASSES],
    "primitives": lambda c: c[: len(_primitive_classes())],
    "superquadrics": lambda c: [s for s in c if s.kind == "superquadric" and s.name.startswith("superquadric_")],
    "polyhedra": lambda c: [s for s in c if s.kind == "convex"],
    "extrusions": lambda c: [s for s in c if s.kind == "extrusion"],
    "digits": lambda c: [s for s in c if s.name.startswith("digit_")],
    "letters": lambda c: [s for s in c if s.name.startswith("letter_")],
}


def class_set(name: str) -> list[ShapeClass]:
    """A named subset of the built-in catalogue (see CLASS_SETS)."""
    if name not in CLASS_SETS:
        raise ValueError(f"unknown class set {name!r}; valid: {', '.join(CLASS_SETS)}")
    return CLASS_SETS[name](default_classes())


def mesh_folder_classes(folder: str | Path) -> list[ShapeClass]:
    """One class per mesh file in a BOP-style folder (models/obj_000001.ply, ...), named by file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"mesh folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise ValueError(f"mesh folder {folder} has no {'/'.join(MESH_SUFFIXES)} files")
    return [ShapeClass(p.stem, "mesh", {"path": str(p.resolve())}) for p in files]


def resolve_classes(
    names: list[str] | None = None, sets: list[str] | None = None, mesh_folders: list[str] | None = None
) -> list[ShapeClass]:
    """The classes a sampler draws from: named sets, then single names, then mesh folders, without repeats."""
    catalogue = {c.name: c for c in default_classes()}
    chosen: list[ShapeClass] = []
    for set_name in sets or []:
        chosen += class_set(set_name)
    for name in names or []:
        if name not in catalogue:
            raise ValueError(
                f"unknown object class {name!r}; valid: {', '.join(catalogue)} (or a set: {', '.join(CLASS_SETS)})"
            )
        chosen.append(catalogue[name])
    for folder in mesh_folders or []:
        chosen += mesh_folder_classes(folder)
    unique = list({c.name: c for c in chosen}.values())
    if not unique:
        raise ValueError("no object classes chosen: give class sets, class names or mesh folders")
    return unique
