"""Scene -> world-space triangle meshes and camera maths: the geometry every renderer draws.

All renderers render exactly `scene_meshes(scene)` and use `camera_basis` / `camera_rays` for the view, so
their instance masks and depths agree. Depth is z-depth along the camera's forward axis; `camera_rays`
returns directions with forward component 1, so a ray parameter t is that depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth_render.scene3d.scene import Camera, Material, Room, Scene, SceneObject
from synth_render.scene3d.shapes import object_mesh

ROOM_INSTANCE = 0
ROOM_CLASS = -1


@dataclass
class WorldMesh:
    """One mesh in world coordinates. instance_id 0 = room surfaces; k >= 1 = scene.objects[k - 1].

    `texture_transform` (4x4) maps world points to texture space (object space for objects, identity for
    the room), where `textures.evaluate_texture` is defined.
    """

    instance_id: int
    class_id: int
    vertices: np.ndarray  # float64 [V, 3]
    faces: np.ndarray  # int64 [F, 3], CCW seen from outside
    material: Material
    texture_transform: np.ndarray  # float64 [4, 4]


def quaternion_matrix(q: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion (w, x, y, z); normalised first."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_quaternion(matrix: np.ndarray) -> tuple[float, float, float, float]:
    """A unit quaternion (w, x, y, z) with w >= 0 for a rotation matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        q = [s / 4, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * np.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = s / 4
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q_arr = np.asarray(q) / np.linalg.norm(q)
    q_arr = -q_arr if q_arr[0] < 0 else q_arr
    return tuple(float(v) for v in q_arr)  # type: ignore[return-value]


def object_transform(obj: SceneObject) -> np.ndarray:
    """4x4 matrix mapping the object's normalised frame to world coordinates."""
    transform = np.eye(4)
    transform[:3, :3] = quaternion_matrix(obj.rotation) * obj.scale
    transform[:3, 3] = obj.position
    return transform


def object_world_mesh(obj: SceneObject, instance_id: int) -> WorldMesh:
    vertices, faces = object_mesh(obj.kind, obj.params)
    transform = object_transform(obj)
    world = vertices @ transform[:3, :3].T + transform[:3, 3]
    return WorldMesh(instance_id, obj.class_id, world, np.array(faces), obj.material, np.linalg.inv(transform))


def room_meshes(room: Room) -> list[WorldMesh]:
    """The floor (2 triangles) and the 4 walls (8 triangles), normals pointing into the room."""
    hx, hy, h = room.half_x, room.half_y, room.height
    floor = np.array([[-hx, -hy, 0], [hx, -hy, 0], [hx, hy, 0], [-hx, hy, 0]], dtype=np.float64)
    top = floor + [0, 0, h]
    walls = np.concatenate([floor, top])
    wall_faces = []
    for i in range(4):
        j = (i + 1) % 4
        wall_faces += [[i, i + 4, j + 4], [i, j + 4, j]]  # seen from inside the room: counter-clockwise
    identity = np.eye(4)
    return [
        WorldMesh(
            ROOM_INSTANCE, ROOM_CLASS, floor, np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64), room.floor, identity
        ),
        WorldMesh(ROOM_INSTANCE, ROOM_CLASS, walls, np.array(wall_faces, dtype=np.int64), room.walls, identity.copy()),
    ]


def scene_meshes(scene: Scene) -> list[WorldMesh]:
    """Room surfaces first, then scene.objects[k] as instance k + 1."""
    return room_meshes(scene.room) + [object_world_mesh(o, k + 1) for k, o in enumerate(scene.objects)]


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    return normal / np.linalg.norm(normal, axis=1, keepdims=True)


def camera_basis(camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit (forward, right, up) of the image. Roll turns the image content counter-clockwise: a point on
    the unrolled image's right edge appears roll_deg above it."""
    forward = np.asarray(camera.look_at, dtype=np.float64) - np.asarray(camera.position, dtype=np.float64)
    norm = np.linalg.norm(forward)
    if norm < 1e-12:
        raise ValueError("camera position and look_at coincide")
    forward /= norm
    right = np.cross(forward, np.asarray(camera.up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any horizontal right will do
        right = np.cross(forward, [0.0, 1.0, 0.0] if abs(forward[1]) < 0.9 else [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    angle = np.deg2rad(camera.roll_deg)
    rolled_right = np.cos(angle) * right - np.sin(angle) * up
    rolled_up = np.sin(angle) * right + np.cos(angle) * up
    return forward, rolled_right, rolled_up


def image_plane(camera: Camera, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin_dir, d_col, d_row): the ray through pixel (i, j) centre is origin_dir + (j+0.5) d_col + (i+0.5) d_row."""
    forward, right, up = camera_basis(camera)
    half_h = np.tan(np.deg2rad(camera.fov_deg) / 2)
    half_w = half_h * width / height
    origin = forward - half_w * right + half_h * up
    return origin, right * (2 * half_w / width), -up * (2 * half_h / height)


def camera_rays(camera: Camera, width: int, height: int) -> np.ndarray:
    """Ray directions [H, W, 3] through pixel centres; their forward component is 1 (t = z-depth)."""
    origin, d_col, d_row = image_plane(camera, width, height)
    j = np.arange(width) + 0.5
    i = np.arange(height) + 0.5
    return origin + j[None, :, None] * d_col + i[:, None, None] * d_row


def project_points(camera: Camera, width: int, height: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates (col x, row y) [N, 2] and z-depths [N] of world points."""
    forward, right, up = camera_basis(camera)
    rel = np.asarray(points, dtype=np.float64) - np.asarray(camera.position)
    depth = rel @ forward
    half_h = np.tan(np.deg2rad(camera.fov_deg) / 2)
    half_w = half_h * width / height
    x = (rel @ right / depth / half_w + 1) * width / 2
    y = (1 - rel @ up / depth / half_h) * height / 2
    return np.stack([x, y], -1), depth


def camera_frame_matrix(camera: Camera) -> np.ndarray:
    """Rows: the camera frame's axes in world coordinates, from `camera_basis` (roll included): x = image right,
    y = image up, z = towards the camera (-forward). `world_vector @ M.T` is the vector in the camera frame."""
    forward, right, up = camera_basis(camera)
    return np.stack([right, up, -forward])


def camera_frame_normals(normals: np.ndarray, camera: Camera) -> np.ndarray:
    """World-space normals [..., 3] in the camera frame (x image right, y image up, z towards the camera),
    float32; a rotation, so unit normals stay unit and zeros (nothing hit) stay zero."""
    return (np.asarray(normals, dtype=np.float64) @ camera_frame_matrix(camera).T).astype(np.float32)
