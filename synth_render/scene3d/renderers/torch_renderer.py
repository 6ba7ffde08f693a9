"""A fast batched ray caster in PyTorch (CPU or GPU): Blinn-Phong shading, shadow-mapped point lights, procedural
textures, and every annotation of `RenderOutput`.

Why it is fast without a BVH: all primary rays of a view share the camera origin, so Möller-Trumbore's three
determinants are linear functions of the pixel coordinates (edge functions). Each triangle gets 9 coefficients
and a numerator; each triangle is tested only against the pixels inside its projected (near-clipped) bounding
box, as (pixel, triangle) pairs generated for a whole batch of scenes at once, and a 64-bit (depth bits,
triangle) key reduced with `scatter_reduce(amin)` is the depth buffer. The rooms (axis-aligned boxes seen from
inside) are intersected in closed form, which is the same surface as their triangles. Shadows reuse the same
pass from each point light (a shadow map over the objects, which are the only occluders: the room is convex).
Faces are culled when they face away from the camera, except for user meshes (kind "mesh"), which may be open
and are drawn two-sided. Shading is flat (face normals), one sample per pixel, so every pixel's annotations
are exact for the ray through its centre. Vectors are stored component-major ([3, N]) and tables are gathered
with `index_select` along their last axis: on a CPU that is several times faster than row-major [N, 3].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from synth_render.scene3d.geometry import room_meshes
from synth_render.scene3d.renderers.base import SCENE_RENDERERS, RenderOutput, SceneRenderer, check_size
from synth_render.scene3d.scene import Material, Room, Scene
from synth_render.scene3d.shapes import object_mesh
from synth_render.scene3d.textures import CELL_OFFSET, noise_waves, stripe_direction

NEAR = 1e-4  # metres: nearest hit accepted along a ray
EDGE_EPS = 1e-5  # relative tolerance on barycentrics so shared edges never leave cracks
NO_HIT = torch.iinfo(torch.int64).max
TEXTURE_CODES = {None: 0, "checker": 1, "stripes": 2, "noise": 3}
MATERIAL_WIDTH = 30  # colour 3, texture colour 3, roughness, specular, metallic, kind, scale, dir 3, waves 12, phases 4
SHADOW_SELF_BIAS = 0.3  # x object radius: an object shadows itself only past this depth gap (no acne)
SHADOW_BIAS = 1e-3  # metres, for shadows cast on other surfaces


@dataclass
class Views:
    """Pinhole views of a pass as a [15, V] table: origin, p0, dcol, drow, forward (3 rows each), where the ray
    through continuous pixel (x, y) is p0 + x * dcol + y * drow from origin, with forward component 1."""

    table: torch.Tensor
    width: int
    height: int

    @property
    def origin(self) -> torch.Tensor:
        return self.table[0:3]


@dataclass
class Packed:
    """A batch's geometry and materials as flat tensors on the device (component-major)."""

    tri: torch.Tensor  # [9, T] world vertices a, b, c
    tri_scene: torch.Tensor  # [T]
    tri_mesh: torch.Tensor  # [T] global mesh index
    two_sided: torch.Tensor  # [T] bool
    room_start: torch.Tensor  # [B] each scene's first room triangle (floor 0-1, walls 2-9 as room_meshes)
    room_size: torch.Tensor  # [3, B] half_x, half_y, height
    mesh_instance: torch.Tensor  # [M] int64
    mesh_class: torch.Tensor  # [M] int64
    mesh_table: torch.Tensor  # [MESH_ROWS, M]: material, world -> texture transform, radius


MESH_ROWS = MATERIAL_WIDTH + 12 + 1
ROOM_TEMPLATE = room_meshes(Room(half_x=1.0, half_y=1.0, height=1.0))  # scaled per scene by (half_x, half_y, height)
ROOM_CORNERS = np.concatenate([m.vertices[m.faces] for m in ROOM_TEMPLATE]).reshape(-1, 9)  # [10, 9]
ROOM_FACES = [len(m.faces) for m in ROOM_TEMPLATE]


@lru_cache(maxsize=4096)
def _material_row(material: Material) -> np.ndarray:
    row = np.zeros(MATERIAL_WIDTH)
    row[0:3] = material.color
    row[6:9] = material.roughness, material.specular, material.metallic
    texture = material.texture
    row[9] = TEXTURE_CODES[texture.kind if texture else None]
    if texture is not None:
        row[3:6] = texture.color
        row[10] = texture.scale
        if texture.kind == "stripes":
            row[11:14] = stripe_direction(texture.seed)
        if texture.kind == "noise":
            waves, phases = noise_waves(texture)
            row[14:26] = waves.reshape(-1)
            row[26:30] = phases
    return row


@lru_cache(maxsize=1024)
def _corners(kind: str, key: str) -> np.ndarray:
    """Triangle corners [9, F] (float32, component-major) of an object-space mesh."""
    vertices, faces = object_mesh(kind, json.loads(key))
    return np.ascontiguousarray(vertices[faces].reshape(-1, 9).T, dtype=np.float32)


def _quaternion_matrices(q: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] of unit quaternions [N, 4] (w, x, y, z), as geometry.quaternion_matrix."""
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def pack_scenes(scenes: Sequence[Scene], device: torch.device) -> Packed:
    """Flatten a batch: all rooms' triangles first (10 per scene), then every object's, posed on the device."""
    count = len(scenes)
    materials: list[np.ndarray] = []
    for scene in scenes:
        materials += [_material_row(scene.room.floor), _material_row(scene.room.walls)]
    corners, faces = [], []
    rotation, pose, obj_scene, obj_instance, obj_class, obj_two_sided = [], [], [], [], [], []
    for s, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            local = _corners(obj.kind, json.dumps(obj.params, sort_keys=True))
            corners.append(local)
            faces.append(local.shape[1])
            rotation.append(obj.rotation)
            pose.append((*obj.position, obj.scale))
            obj_scene.append(s)
            obj_instance.append(k + 1)
            obj_class.append(obj.class_id)
            obj_two_sided.append(obj.kind == "mesh")
            materials.append(_material_row(obj.material))
    objects = len(pose)
    pose_array = np.array(pose, dtype=np.float64).reshape(-1, 4)
    matrices = (
        _quaternion_matrices(np.array(rotation, dtype=np.float64).reshape(-1, 4)) if objects else np.zeros((0, 3, 3))
    )
    transform = np.zeros((objects, 3, 4))  # world -> texture space (object frame): R^T (p - t) / s
    transform[:, :, :3] = matrices.transpose(0, 2, 1) / pose_array[:, 3, None, None]
    transform[:, :, 3] = -np.einsum("nij,nj->ni", transform[:, :, :3], pose_array[:, :3])
    room_transform = np.tile(np.eye(4)[:3], (2 * count, 1, 1))
    mesh_table = np.zeros((MESH_ROWS, 2 * count + objects))
    mesh_table[:MATERIAL_WIDTH] = np.stack(materials, 1)
    mesh_table[MATERIAL_WIDTH:-1] = np.concatenate([room_transform, transform]).reshape(-1, 12).T
    mesh_table[-1] = np.concatenate([np.full(2 * count, np.inf), pose_array[:, 3]])

    faces_array = np.array(faces, dtype=np.int64)
    room_mesh = np.tile(np.repeat([0, 1], ROOM_FACES), count) + 2 * np.repeat(np.arange(count), sum(ROOM_FACES))
    object_mesh_index = 2 * count + np.repeat(np.arange(objects), faces_array)
    mesh_instance = np.concatenate([np.zeros(2 * count, dtype=np.int64), np.array(obj_instance, dtype=np.int64)])
    mesh_class = np.concatenate([np.full(2 * count, -1, dtype=np.int64), np.array(obj_class, dtype=np.int64)])
    room_scene = np.repeat(np.arange(count), sum(ROOM_FACES))
    tri_scene = np.concatenate([room_scene, np.repeat(np.array(obj_scene, dtype=np.int64), faces_array)])
    two_sided = np.concatenate([np.zeros(len(room_scene), bool), np.repeat(np.array(obj_two_sided, bool), faces_array)])
    size = np.array([[sc.room.half_x, sc.room.half_y, sc.room.height] for sc in scenes])

    def tensor(array, dtype=torch.float32):
        return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype)

    room_tri = tensor(ROOM_CORNERS.T)[:, None, :] * tensor(np.tile(size, 3).T)[:, :, None]  # [9, B, 10]
    tri = room_tri.reshape(9, -1)
    if objects:
        local = tensor(np.concatenate(corners, axis=1))  # [9, F]
        owner = tensor(np.repeat(np.arange(objects), faces_array), torch.int64)
        affine = tensor(
            np.concatenate([matrices * pose_array[:, 3, None, None], pose_array[:, None, :3].transpose(0, 2, 1)], 2)
            .reshape(-1, 12)
            .T
        ).index_select(1, owner)  # [12, F]: s R | t
        posed = []
        for corner in range(3):
            p = local[3 * corner : 3 * corner + 3]
            posed += [
                affine[4 * i] * p[0] + affine[4 * i + 1] * p[1] + affine[4 * i + 2] * p[2] + affine[4 * i + 3]
                for i in range(3)
            ]
        tri = torch.cat([tri, torch.stack(posed)], 1)
    return Packed(
        tri=tri,
        tri_scene=tensor(tri_scene, torch.int64),
        tri_mesh=tensor(np.concatenate([room_mesh, object_mesh_index]), torch.int64),
        two_sided=tensor(two_sided, torch.bool),
        room_start=tensor(np.arange(count) * sum(ROOM_FACES), torch.int64),
        room_size=tensor(size.T),
        mesh_instance=tensor(mesh_instance, torch.int64),
        mesh_class=tensor(mesh_class, torch.int64),
        mesh_table=tensor(mesh_table),
    )


def image_planes(
    position: np.ndarray,
    look_at: np.ndarray,
    up: np.ndarray,
    fov_deg: np.ndarray,
    roll_deg: np.ndarray,
    width: int,
    height: int,
) -> np.ndarray:
    """geometry.image_plane for N cameras at once: a [N, 15] table (origin, p0, dcol, drow, forward)."""
    forward = look_at - position
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, up)
    degenerate = np.linalg.norm(right, axis=1) < 1e-9
    if degenerate.any():
        fallback = np.where((np.abs(forward[:, 1]) < 0.9)[:, None], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0])
        right = np.where(degenerate[:, None], np.cross(forward, fallback), right)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    true_up = np.cross(right, forward)
    angle = np.deg2rad(roll_deg)[:, None]
    right, true_up = np.cos(angle) * right - np.sin(angle) * true_up, np.sin(angle) * right + np.cos(angle) * true_up
    half_h = np.tan(np.deg2rad(fov_deg) / 2)[:, None]
    half_w = half_h * width / height
    p0 = forward - half_w * right + half_h * true_up
    dcol, drow = right * (2 * half_w / width), -true_up * (2 * half_h / height)
    return np.concatenate([position, p0, dcol, drow, p0 + dcol * width / 2 + drow * height / 2], 1)


def _views(table: np.ndarray, width: int, height: int, device: torch.device) -> Views:
    return Views(torch.from_numpy(np.ascontiguousarray(table.T)).to(device=device, dtype=torch.float32), width, height)


def camera_views(scenes: Sequence[Scene], width: int, height: int, device: torch.device) -> Views:
    cams = [s.camera for s in scenes]
    table = image_planes(
        np.array([c.position for c in cams], dtype=np.float64),
        np.array([c.look_at for c in cams], dtype=np.float64),
        np.array([c.up for c in cams], dtype=np.float64),
        np.array([c.fov_deg for c in cams]),
        np.array([c.roll_deg for c in cams]),
        width,
        height,
    )
    return _views(table, width, height, device)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot products of component-major vectors [3, N]."""
    return torch.addcmul(torch.addcmul(a[0] * b[0], a[1], b[1]), a[2], b[2])


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _normalise(a: torch.Tensor) -> torch.Tensor:
    return a * torch.rsqrt(_dot(a, a).clamp_min(1e-30))


def rasterize(
    tri: torch.Tensor,
    tri_view: torch.Tensor,
    two_sided: torch.Tensor,
    views: Views,
    max_pairs: int = 1 << 22,
    tri_id: torch.Tensor | None = None,
    zbuf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depth buffer of keys (float32 depth bits << 32 | triangle id) [V * H * W]; NO_HIT where empty.

    `tri` is [9, T]; `tri_id` (default: position in `tri`) is what the keys store; `zbuf` a buffer to draw over.
    """
    width, height = views.width, views.height
    device = tri.device
    if zbuf is None:
        zbuf = torch.full((views.table.shape[1] * height * width,), NO_HIT, dtype=torch.int64, device=device)
    if tri.shape[1] == 0:
        return zbuf
    tri_id = torch.arange(tri.shape[1], device=device) if tri_id is None else tri_id
    cam = views.table.index_select(1, tri_view)
    origin = cam[0:3]
    a, b, c = tri[0:3] - origin, tri[3:6] - origin, tri[6:9] - origin  # camera-relative
    facing = _dot(_cross(b - a, c - a), a) < 0
    if bool(two_sided.any()):
        flip = two_sided & ~facing
        b, c = torch.where(flip, c, b), torch.where(flip, b, c)
    keep = (facing | two_sided).nonzero().squeeze(1)
    a, b, c, cam, tri_id = (t.index_select(-1, keep) for t in (a, b, c, cam, tri_id))
    view = tri_view.index_select(0, keep)
    p0, dcol, drow, forward = cam[3:6], cam[6:9], cam[9:12], cam[12:15]

    # Projected bounding box of the part of the triangle in front of the near plane.
    ax = dcol / _dot(dcol, dcol)
    ay = drow / _dot(drow, drow)
    x_off, y_off = _dot(p0, ax), _dot(p0, ay)
    corners = (a, b, c)
    depth = [_dot(v, forward) for v in corners]
    inf = torch.full_like(depth[0], float("inf"))
    lo_x, hi_x, lo_y, hi_y = inf, -inf, inf, -inf
    candidates = []
    for k in range(3):
        candidates.append((corners[k], depth[k], depth[k] > NEAR))
        u, v, zu, zv = corners[k], corners[(k + 1) % 3], depth[k], depth[(k + 1) % 3]
        crossing = (zu > NEAR) != (zv > NEAR)
        s = ((NEAR - zu) / torch.where(crossing, zv - zu, torch.ones_like(zu))).clamp(0, 1)
        candidates.append((u + s * (v - u), torch.full_like(zu, NEAR), crossing))
    for point, z, valid in candidates:
        inv = 1 / z.clamp_min(NEAR)
        x = _dot(point, ax) * inv - x_off
        y = _dot(point, ay) * inv - y_off
        lo_x, hi_x = torch.where(valid, torch.minimum(lo_x, x), lo_x), torch.where(valid, torch.maximum(hi_x, x), hi_x)
        lo_y, hi_y = torch.where(valid, torch.minimum(lo_y, y), lo_y), torch.where(valid, torch.maximum(hi_y, y), hi_y)
    x0 = torch.ceil(lo_x - 0.5 - 1e-3).clamp(0, width)
    x1 = torch.floor(hi_x - 0.5 + 1e-3).clamp(-1, width - 1)
    y0 = torch.ceil(lo_y - 0.5 - 1e-3).clamp(0, height)
    y1 = torch.floor(hi_y - 0.5 + 1e-3).clamp(-1, height - 1)
    w = (x1 - x0 + 1).clamp_min(0)
    count = (w * (y1 - y0 + 1).clamp_min(0)).long()
    visible = (count > 0).nonzero().squeeze(1)
    if visible.numel() == 0:
        return zbuf

    # Edge functions: det, u * det, v * det are linear in the pixel (col, row) relative to the box origin.
    a, b, c, p0, dcol, drow, x0, y0, w, count, view, tri_id = (
        t.index_select(-1, visible) for t in (a, b, c, p0, dcol, drow, x0, y0, w, count, view, tri_id)
    )
    e1, e2, tvec = b - a, c - a, -a
    rows = []
    for form in (_cross(e2, e1), _cross(e2, tvec), _cross(tvec, e1)):
        c_col, c_row = _dot(form, dcol), _dot(form, drow)
        rows += [_dot(form, p0) + (x0 + 0.5) * c_col + (y0 + 0.5) * c_row, c_col, c_row]
    rows.append(_dot(e2, _cross(tvec, e1)))
    coef = torch.stack(rows)  # [10, T]
    ends = torch.cumsum(count, 0)
    base = view * (height * width) + y0.long() * width + x0.long()
    ints = torch.stack([ends - count, w.long(), base, tri_id])  # [4, T]
    first, total = 0, count.shape[0]
    while first < total:  # chunks of triangles with at most max_pairs pairs (or one triangle)
        done = int(ends[first - 1]) if first else 0
        last = int(torch.searchsorted(ends, torch.tensor(done + max_pairs, device=device), right=True))
        last = min(max(first + 1, last), total)
        _pairs(zbuf, coef[:, first:last], ints[:, first:last], count[first:last], done, width)
        first = last
    return zbuf


def _pairs(
    zbuf: torch.Tensor, coef: torch.Tensor, ints: torch.Tensor, count: torch.Tensor, offset: int, width: int
) -> None:
    """Test every (pixel in bounding box, triangle) pair of these triangles and fold the hits into zbuf.

    ints rows: first pair index (global, `offset` = this chunk's first), box width, base pixel, triangle id."""
    device = coef.device
    n = int(count.sum())
    owner = torch.repeat_interleave(torch.arange(coef.shape[1], device=device), count, output_size=n)
    c = coef.index_select(1, owner)
    start, w, base, tri_id = ints.index_select(1, owner)
    local = torch.arange(offset, offset + n, device=device) - start
    row = torch.div(local, w, rounding_mode="floor")
    col = local - row * w
    colf, rowf = col.to(torch.float32), row.to(torch.float32)
    det = torch.addcmul(torch.addcmul(c[0], colf, c[1]), rowf, c[2])
    u = torch.addcmul(torch.addcmul(c[3], colf, c[4]), rowf, c[5])
    v = torch.addcmul(torch.addcmul(c[6], colf, c[7]), rowf, c[8])
    eps = EDGE_EPS * det
    hit = (u >= -eps) & (v >= -eps) & (u + v <= det + eps) & (c[9] > NEAR * det) & (det > 0)
    depth = c[9] / det
    key = torch.where(hit, (depth.view(torch.int32).to(torch.int64) << 32) | tri_id, NO_HIT)
    zbuf.scatter_reduce_(0, base + row * width + col, key, reduce="amin")


def room_buffer(packed: Packed, views: Views) -> torch.Tensor | None:
    """The depth buffer of the rooms alone, exactly (each room is the axis-aligned box of room_meshes, seen
    from inside); None when a camera is outside its room and the room must be rasterised like any mesh."""
    device = views.table.device
    size = packed.room_size
    origin = views.origin
    inside = (origin[0].abs() < size[0]) & (origin[1].abs() < size[1]) & (origin[2] > 0) & (origin[2] < size[2])
    if not bool(inside.all()):
        return None
    width, height = views.width, views.height
    cols = (torch.arange(width, device=device, dtype=torch.float32) + 0.5).repeat(height)
    rows = (torch.arange(height, device=device, dtype=torch.float32) + 0.5).repeat_interleave(width)
    p0, dcol, drow = views.table[3:6, :, None], views.table[6:9, :, None], views.table[9:12, :, None]
    direction = p0 + cols * dcol + rows * drow  # [3, B, H * W]
    o, extent = origin[:, :, None], size[:, :, None]
    inf = torch.tensor(float("inf"), device=device)

    def exit_distance(axis: int) -> torch.Tensor:
        d = direction[axis]
        wall = torch.where(d > 0, extent[axis], -extent[axis])
        return torch.where(d.abs() > 1e-12, (wall - o[axis]) / d, inf)

    tx, ty = exit_distance(0), exit_distance(1)
    dz = direction[2]
    tz = torch.where(dz < 0, -o[2] / dz.clamp_max(-1e-12), inf)
    top = torch.where(dz > 0, (extent[2] - o[2]) / dz.clamp_min(1e-12), inf)
    t = torch.minimum(torch.minimum(tx, ty), tz)
    # Triangle of the plane hit: floor 0; wall faces 2 + 2i for wall i (y<0: 0, x>0: 1, y>0: 2, x<0: 3).
    wall_x = torch.where(direction[0] > 0, 4, 8)
    wall_y = torch.where(direction[1] > 0, 6, 2)
    local = torch.where(tz <= torch.minimum(tx, ty), 0, torch.where(tx <= ty, wall_x, wall_y))
    key = (t.view(torch.int32).to(torch.int64) << 32) | (packed.room_start[:, None] + local)
    return torch.where(t < top, key, NO_HIT).reshape(-1)


def light_views(scenes: Sequence[Scene], lights: int, size: int, device: torch.device) -> Views:
    """One square shadow-map view per (scene, light slot), from the light towards the objects' bounding spheres."""
    most = max(1, max(len(s.objects) for s in scenes))
    centres = np.zeros((len(scenes), most, 3))
    radii = np.zeros((len(scenes), most))
    valid = np.zeros((len(scenes), most), dtype=bool)
    positions = np.tile([0.0, 0.0, 1.0], (len(scenes), lights, 1))
    for s, scene in enumerate(scenes):
        if scene.objects:
            centres[s, : len(scene.objects)] = [o.position for o in scene.objects]
            radii[s, : len(scene.objects)] = [o.scale for o in scene.objects]
            valid[s, : len(scene.objects)] = True
        else:
            radii[s, 0], valid[s, 0] = 0.1, True  # no objects: a small sphere at the origin
        if scene.lights:
            positions[s, : len(scene.lights)] = [light.position for light in scene.lights]
    target = (centres * valid[..., None]).sum(1) / valid.sum(1, keepdims=True)
    position = positions.reshape(-1, 3)
    forward = np.repeat(target, lights, axis=0) - position
    norm = np.linalg.norm(forward, axis=1, keepdims=True)
    forward = np.where(norm < 1e-6, [0.0, 0.0, -1.0], forward / np.maximum(norm, 1e-12))
    offsets = np.repeat(centres, lights, axis=0) - position[:, None, :]
    distance = np.maximum(np.linalg.norm(offsets, axis=2), 1e-6)
    cosine = np.clip(np.einsum("nkj,nj->nk", offsets, forward) / distance, -1, 1)
    angle = np.arccos(cosine) + np.arcsin(np.clip(1.05 * np.repeat(radii, lights, axis=0) / distance, 0, 1))
    half = np.clip(np.where(np.repeat(valid, lights, axis=0), angle, 0).max(1), np.deg2rad(1), np.deg2rad(80))
    up = np.where((np.abs(forward[:, 2]) < 0.99)[:, None], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    table = image_planes(position, position + forward, up, np.rad2deg(2 * half), np.zeros(len(position)), size, size)
    return _views(table, size, size, device)


def _decode(zbuf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(depth float32, triangle index int64) of depth-buffer keys."""
    depth = (zbuf >> 32).to(torch.int32).view(torch.float32)
    return depth, zbuf & 0xFFFFFFFF


TRANSFORM_ROWS = list(range(MATERIAL_WIDTH, MATERIAL_WIDTH + 12))
TEXTURE_ROWS = {  # mesh-table rows each texture kind reads: texture colour, scale, its own parameters, transform
    1: [3, 4, 5, 10] + TRANSFORM_ROWS,
    2: [3, 4, 5, 10, 11, 12, 13] + TRANSFORM_ROWS,
    3: [3, 4, 5, 10] + list(range(14, 30)) + TRANSFORM_ROWS,
}
SHADING_ROWS = [0, 1, 2, 6, 7, 8, 9, MATERIAL_WIDTH + 12]  # colour, roughness, specular, metallic, kind, radius


def _texture_albedo(
    mesh_table: torch.Tensor, mesh: torch.Tensor, kind: torch.Tensor, color: torch.Tensor, points: torch.Tensor
) -> torch.Tensor:
    """Base colour [3, N] mixed with each pixel's procedural texture (same maths as textures.texture_weight).

    Each texture kind gathers only its own parameters, for only the pixels that show it."""
    for code, rows in TEXTURE_ROWS.items():
        pixels = (kind == code).nonzero().squeeze(1)
        if pixels.numel() == 0:
            continue
        m = mesh_table[rows].index_select(1, mesh.index_select(0, pixels))
        world = points.index_select(1, pixels)
        t = m[-12:]
        p = torch.stack([_dot(t[4 * i : 4 * i + 3], world) + t[4 * i + 3] for i in range(3)])  # texture space
        inverse_scale = 1 / m[3].clamp_min(1e-9)
        if code == 1:
            weight = torch.floor(p * inverse_scale + CELL_OFFSET).sum(0).remainder(2)
        elif code == 2:
            weight = torch.floor(_dot(p, m[4:7]) * inverse_scale + CELL_OFFSET).remainder(2)
        else:
            weight = 0.5 + 0.125 * sum(torch.sin(_dot(p, m[4 + 3 * k : 7 + 3 * k]) + m[16 + k]) for k in range(4))
        base = color.index_select(1, pixels)
        color = color.index_copy(1, pixels, base + weight * (m[0:3] - base))
    return color


def _lights_table(scenes: Sequence[Scene], slots: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Point lights [6, B * slots] (position, colour * intensity; 0 for empty slots) and ceiling light [3, B]."""
    lights = np.zeros((len(scenes), slots, 6))
    ceiling = np.zeros((len(scenes), 3))
    for s, scene in enumerate(scenes):
        for k, light in enumerate(scene.lights):
            lights[s, k] = (*light.position, *(np.asarray(light.color) * light.intensity))
        if scene.ceiling is not None:
            ceiling[s] = np.asarray(scene.ceiling.color) * scene.ceiling.strength
    to = dict(device=device, dtype=torch.float32)
    return torch.from_numpy(lights.reshape(-1, 6).T.copy()).to(**to), torch.from_numpy(ceiling.T.copy()).to(**to)


@dataclass
class PreparedBatch:
    """A batch ready for the device half of rendering."""

    packed: Packed
    views: Views
    shadow_views: Views | None
    lights: torch.Tensor  # [6, B * slots]
    ceiling: torch.Tensor  # [3, B]
    slots: int


@SCENE_RENDERERS.register("torch")
class TorchSceneRenderer(SceneRenderer):
    """Batched ray caster; `device` is any torch device ("cpu", "cuda", "cuda:1")."""

    name = "torch"

    def __init__(
        self,
        device: str = "cpu",
        shadows: bool = True,
        shadow_map_size: int | None = None,
        max_batch_pixels: int | None = None,
        max_pairs: int = 1 << 22,
    ) -> None:
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"torch renderer: invalid device {device!r} ({error})") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"torch renderer: device {device!r} requested but CUDA is not available")
        if shadow_map_size is not None and shadow_map_size < 8:
            raise ValueError(f"torch renderer: shadow_map_size must be >= 8, got {shadow_map_size}")
        if max_pairs < 1 or (max_batch_pixels is not None and max_batch_pixels < 1):
            raise ValueError("torch renderer: max_pairs and max_batch_pixels must be positive")
        self.shadows = shadows
        self.shadow_map_size = shadow_map_size
        self.max_batch_pixels = max_batch_pixels or (1 << 24 if self.device.type == "cuda" else 1 << 18)
        self.max_pairs = max_pairs if self.device.type == "cpu" or max_pairs != 1 << 22 else 1 << 26

    def render(self, scene: Scene, width: int, height: int) -> RenderOutput:
        return self.render_batch([scene], width, height)[0]

    def render_batch(self, scenes: Sequence[Scene], width: int, height: int) -> list[RenderOutput]:
        check_size(width, height)
        per_chunk = max(1, self.max_batch_pixels // (width * height))
        outputs: list[RenderOutput] = []
        for start in range(0, len(scenes), per_chunk):
            outputs += self._render_chunk(scenes[start : start + per_chunk], width, height)
        return outputs

    @torch.no_grad()
    def render_tensors(self, scenes: Sequence[Scene], width: int, height: int) -> dict[str, torch.Tensor]:
        """All outputs as device tensors [B, H, W, ...] (rgb uint8, depth, normals, instance, semantic)."""
        return self.render_prepared(self.prepare(scenes, width, height))

    def prepare(self, scenes: Sequence[Scene], width: int, height: int) -> PreparedBatch:
        """The CPU half of rendering: scenes -> flat geometry, views and lights on the device. A data loader
        can run it in worker processes and leave only `render_prepared` to the main one."""
        check_size(width, height)
        device = self.device
        slots = max(len(scene.lights) for scene in scenes)
        lights, ceiling = _lights_table(scenes, slots, device)
        size = self.shadow_map_size or min(1024, max(64, width))
        shadow_views = light_views(scenes, slots, size, device) if self.shadows else None
        return PreparedBatch(
            pack_scenes(scenes, device),
            camera_views(scenes, width, height, device),
            shadow_views,
            lights,
            ceiling,
            slots,
        )

    def render_prepared(self, batch: PreparedBatch) -> dict[str, torch.Tensor]:
        """The device half of rendering (see `prepare`)."""
        with torch.no_grad():
            return self._render_prepared(batch)

    def _render_prepared(self, batch: PreparedBatch) -> dict[str, torch.Tensor]:
        packed, views, slots, lights, ceiling = batch.packed, batch.views, batch.slots, batch.lights, batch.ceiling
        width, height = views.width, views.height
        device = packed.tri.device
        scenes = packed.room_start.shape[0]
        zbuf = room_buffer(packed, views)
        if zbuf is None:
            zbuf = rasterize(packed.tri, packed.tri_scene, packed.two_sided, views, self.max_pairs)
        else:
            objects = torch.arange(scenes * sum(ROOM_FACES), packed.tri.shape[1], device=device)
            zbuf = rasterize(
                packed.tri[:, objects],
                packed.tri_scene[objects],
                packed.two_sided[objects],
                views,
                self.max_pairs,
                tri_id=objects,
                zbuf=zbuf,
            )

        pixels = width * height
        hit = (zbuf != NO_HIT).nonzero().squeeze(1)
        depth_hit, tri = _decode(zbuf.index_select(0, hit))
        view = torch.div(hit, pixels, rounding_mode="floor")
        in_view = hit - view * pixels
        row = torch.div(in_view, width, rounding_mode="floor")
        col = in_view - row * width
        cam = views.table.index_select(1, view)
        direction = cam[3:6] + (col.to(torch.float32) + 0.5) * cam[6:9] + (row.to(torch.float32) + 0.5) * cam[9:12]
        point = cam[0:3] + depth_hit * direction
        corners = packed.tri.index_select(1, tri)
        normal = _normalise(_cross(corners[3:6] - corners[0:3], corners[6:9] - corners[0:3]))
        normal = torch.where(_dot(normal, direction) > 0, -normal, normal)
        mesh = packed.tri_mesh.index_select(0, tri)
        instance = packed.mesh_instance.index_select(0, mesh)
        shading = packed.mesh_table[SHADING_ROWS].index_select(1, mesh)
        albedo = _texture_albedo(packed.mesh_table, mesh, shading[6], shading[0:3], point)
        visible = self._visibility(batch, point, instance, shading[7], view)
        color = _shade(point, normal, direction, albedo, shading[3:6], view, lights, ceiling, slots, visible)

        count = scenes * pixels
        sky = (ceiling * 2).clamp(0, 1)
        rgb = sky.repeat_interleave(pixels, dim=1).index_copy(1, hit, color)
        rgb8 = (rgb.clamp(0, 1).pow(1 / 2.2) * 255 + 0.5).to(torch.uint8)
        depth = torch.full((count,), float("inf"), device=device).index_copy(0, hit, depth_hit)
        normals = torch.zeros((3, count), device=device).index_copy(1, hit, normal)
        zero = torch.zeros(count, dtype=torch.int64, device=device)
        instance_map = zero.index_copy(0, hit, instance)
        semantic = zero.index_copy(0, hit, torch.where(instance > 0, packed.mesh_class.index_select(0, mesh) + 1, 0))
        shape = (scenes, height, width)
        return {
            "rgb": rgb8.T.reshape(*shape, 3),
            "depth": depth.reshape(shape),
            "normals": normals.T.reshape(*shape, 3),
            "instance": instance_map.to(torch.int32).reshape(shape),
            "semantic": semantic.to(torch.int32).reshape(shape),
        }

    def _render_chunk(self, scenes: Sequence[Scene], width: int, height: int) -> list[RenderOutput]:
        arrays = {k: v.cpu().numpy() for k, v in self.render_tensors(scenes, width, height).items()}
        return [RenderOutput(**{k: np.ascontiguousarray(v[b]) for k, v in arrays.items()}) for b in range(len(scenes))]

    def _visibility(self, batch: PreparedBatch, point, instance, radius, view) -> list[torch.Tensor | None]:
        """Per light slot, 1 where the point light reaches the hit point (shadow map of the objects), else 0."""
        packed, shadow_views, slots = batch.packed, batch.shadow_views, batch.slots
        if shadow_views is None:
            return [None] * slots
        size = shadow_views.width
        objects = torch.arange(packed.room_start.shape[0] * sum(ROOM_FACES), packed.tri.shape[1], device=point.device)
        tri_view = packed.tri_scene.index_select(0, objects) * slots
        visible: list[torch.Tensor | None] = []
        for slot in range(slots):
            smap = rasterize(
                packed.tri[:, objects],
                tri_view + slot,
                packed.two_sided[objects],
                shadow_views,
                self.max_pairs,
                tri_id=objects,
            )
            light_view = view * slots + slot
            cam = shadow_views.table.index_select(1, light_view)
            rel = point - cam[0:3]
            z = _dot(rel, cam[12:15])
            ray = rel / z.clamp_min(NEAR)
            x = torch.floor(_dot(ray - cam[3:6], cam[6:9]) / _dot(cam[6:9], cam[6:9]))
            y = torch.floor(_dot(ray - cam[3:6], cam[9:12]) / _dot(cam[9:12], cam[9:12]))
            inside = (z > NEAR) & (x >= 0) & (x < size) & (y >= 0) & (y < size)
            texel = light_view * (size * size) + (y.clamp(0, size - 1) * size + x.clamp(0, size - 1)).long()
            key = smap.index_select(0, texel)
            occluder_depth, occluder_tri = _decode(key)
            found = inside & (key != NO_HIT)
            occluder = packed.mesh_instance.index_select(
                0, packed.tri_mesh.index_select(0, torch.where(found, occluder_tri, 0))
            )
            bias = torch.where(occluder == instance, SHADOW_SELF_BIAS * radius, SHADOW_BIAS)
            visible.append(1 - (found & (occluder_depth < z - bias)).to(torch.float32))
        return visible


def _shade(point, normal, direction, albedo, surface, view, lights, ceiling, slots, visible) -> torch.Tensor:
    """Linear RGB [3, N]: hemispherical ceiling light + Blinn-Phong point lights, shadowed by `visible`.

    `surface` rows: roughness, specular, metallic."""
    roughness, specular, metallic = surface[0], surface[1], surface[2]
    diffuse_albedo = albedo * (1 - metallic)
    spec_color = 1 + metallic * (albedo - 1)
    color = diffuse_albedo * ceiling.index_select(1, view) * (0.55 + 0.45 * normal[2])
    to_eye = -_normalise(direction)
    shininess = (2 / roughness.clamp_min(0.03) ** 2 - 2).clamp(1, 2000)
    for slot in range(slots):
        light = lights.index_select(1, view * slots + slot)
        to_light = light[0:3] - point
        distance2 = _dot(to_light, to_light).clamp_min(1e-6)
        to_light = to_light * torch.rsqrt(distance2)
        n_dot_l = _dot(normal, to_light).clamp_min(0)
        n_dot_h = _dot(normal, _normalise(to_light + to_eye)).clamp_min(0)
        highlight = specular * torch.where(n_dot_l > 0, n_dot_h.pow(shininess), 0)
        irradiance = light[3:6] / distance2
        if visible[slot] is not None:
            irradiance = irradiance * visible[slot]
        color = color + irradiance * (diffuse_albedo * n_dot_l + spec_color * highlight)
    return color
