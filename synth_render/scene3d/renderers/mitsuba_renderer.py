"""Mitsuba 3 renderer: a physically based path tracer for the RGB image, Mitsuba's own AOVs for annotations.

Two Mitsuba scenes are built per view from `geometry.scene_meshes`:
- RGB: the meshes with their textures baked into face/vertex colours (`texture_bake`), a two-sided
  `principled` BSDF, point lights, the emissive ceiling as a downward area light (hidden from camera rays,
  as the contract says it is not geometry), `path` integrator with `spp` random samples per pixel and
  Mitsuba's default Gaussian pixel filter (anti-aliased).
- Annotations: the plain meshes, an `aov` integrator (position, geometric normal, shape index) sampled once
  per pixel exactly at its centre (stratified sampler without jitter, box filter), so masks are exact and
  agree with every other renderer's pixel-centre convention. Depth is `(position - camera) . forward`.

Variant: `scalar_rgb` (default) or `llvm_ad_rgb`. The LLVM variant needs Dr.Jit to find LLVM >= 19 (Debian:
`apt-get install libllvm19`; older LLVMs abort the process inside Dr.Jit's code generator, so it is checked
first) and it compiles new kernels for every new scene (3-4 s each on one core, measured with lv7 scenes),
which makes it slower than `scalar_rgb` for a dataset of distinct scenes; it pays off only when one scene is
rendered many times. Mitsuba's variant and Dr.Jit's thread count are process-wide, so they are set again on
every render.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synth_render.scene3d.geometry import WorldMesh, camera_basis, scene_meshes
from synth_render.scene3d.renderers.base import (
    INSTALL_HINT,
    SCENE_RENDERERS,
    RendererUnavailableError,
    RenderOutput,
    SceneRenderer,
    check_size,
)
from synth_render.scene3d.renderers.pixel_outputs import annotation_arrays, srgb_uint8
from synth_render.scene3d.renderers.texture_bake import bake_texture
from synth_render.scene3d.scene import Material, Scene

MITSUBA_PIN = "mitsuba==3.9.1"
VARIANTS = ("scalar_rgb", "llvm_ad_rgb")
MIN_LLVM_MAJOR = 19
# The contract's lights are "colour * intensity / d^2" applied to the colour as an albedo (no 1/pi of a
# Lambertian BRDF); scaling radiometric intensities by pi gives the same brightness for a matte surface.
LIGHT_SCALE = float(np.pi)
_ALL_THREADS = 0


def import_mitsuba() -> Any:
    """The `mitsuba` module, or RendererUnavailableError saying how to install it."""
    try:
        import mitsuba
    except ImportError as error:
        raise RendererUnavailableError(
            f"the 'mitsuba' renderer needs the mitsuba package ({error}); install it with "
            f"{INSTALL_HINT} or `pip install {MITSUBA_PIN}`"
        ) from error
    return mitsuba


def llvm_usable(mi: Any) -> bool:
    """True when Dr.Jit's LLVM backend loads an LLVM new enough for Mitsuba's kernels."""
    import drjit as dr

    if "llvm_ad_rgb" not in mi.variants():
        return False
    previous = mi.variant()
    try:
        mi.set_variant("llvm_ad_rgb")
        usable = bool(dr.has_backend(dr.JitBackend.LLVM)) and dr.detail.llvm_version()[0] >= MIN_LLVM_MAJOR
    except Exception:  # noqa: BLE001  (any failure to bring the backend up means: do not use it)
        usable = False
    if previous is not None:
        mi.set_variant(previous)
    return usable


@SCENE_RENDERERS.register("mitsuba")
class MitsubaRenderer(SceneRenderer):
    """Mitsuba 3 path tracer. Options: spp (samples per pixel of the RGB image), variant ("scalar_rgb",
    "llvm_ad_rgb"), threads (Dr.Jit worker threads; None = all cores), max_depth (path length)."""

    name = "mitsuba"

    def __init__(
        self, spp: int = 64, variant: str = "scalar_rgb", threads: int | None = None, max_depth: int = 4
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown mitsuba variant {variant!r}; valid: {', '.join(VARIANTS)}")
        if int(spp) != spp or spp < 1:
            raise ValueError(f"spp must be a positive integer, got {spp!r}")
        if threads is not None and (int(threads) != threads or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        if int(max_depth) != max_depth or max_depth < 1:
            raise ValueError(f"max_depth must be a positive integer, got {max_depth!r}")
        self._mi = import_mitsuba()
        import drjit as dr

        global _ALL_THREADS
        _ALL_THREADS = _ALL_THREADS or dr.thread_count()  # before anyone changes it: what "threads=None" means
        self.spp, self.threads, self.max_depth = int(spp), threads, int(max_depth)
        if variant == "llvm_ad_rgb" and not llvm_usable(self._mi):
            raise RendererUnavailableError(
                f"mitsuba variant 'llvm_ad_rgb' needs Dr.Jit to find LLVM >= {MIN_LLVM_MAJOR} (Debian/Ubuntu: "
                "`apt-get install libllvm19`, or point DRJIT_LIBLLVM_PATH at libLLVM.so); use variant='scalar_rgb'"
            )
        self.variant = variant
        self._activate()

    def _activate(self) -> None:
        import drjit as dr

        if self._mi.variant() != self.variant:
            self._mi.set_variant(self.variant)
        threads = self.threads or _ALL_THREADS
        if dr.thread_count() != threads:
            dr.set_thread_count(int(threads))

    def render(self, scene: Scene, width: int, height: int) -> RenderOutput:
        check_size(width, height)
        self._activate()
        meshes = scene_meshes(scene)
        depth, normals, instance, semantic = self._annotations(scene, meshes, width, height)
        return RenderOutput(self._rgb(scene, meshes, width, height), depth, normals, instance, semantic)

    def _sensor(self, scene: Scene, width: int, height: int, film: dict[str, Any], sampler: dict[str, Any]) -> dict:
        mi = self._mi
        forward, _, up = camera_basis(scene.camera)
        position = np.asarray(scene.camera.position, dtype=np.float64)
        to_world = mi.ScalarTransform4f().look_at(
            origin=position.tolist(), target=(position + forward).tolist(), up=up.tolist()
        )
        film = {"type": "hdrfilm", "width": int(width), "height": int(height), **film}
        return {"type": "perspective", "fov": float(scene.camera.fov_deg), "fov_axis": "y", "to_world": to_world,
                "near_clip": 1e-3, "film": film, "sampler": sampler}  # fmt: skip

    def _buffer(self, array: np.ndarray, dtype: type) -> Any:
        """A flat Mitsuba buffer: numpy itself in scalar variants, a Dr.Jit array in JIT ones."""
        flat = np.ascontiguousarray(array, dtype=dtype).ravel()
        if self.variant.startswith("scalar"):
            return flat
        return (self._mi.UInt32 if dtype == np.uint32 else self._mi.Float)(flat)

    def _mesh(self, name: str, vertices: np.ndarray, faces: np.ndarray) -> Any:
        mi = self._mi
        mesh = mi.Mesh(name, vertex_count=len(vertices), face_count=len(faces), has_vertex_normals=False,
                       has_vertex_texcoords=False)  # fmt: skip
        params = mi.traverse(mesh)
        params["vertex_positions"] = self._buffer(vertices, np.float32)
        params["faces"] = self._buffer(faces, np.uint32)
        params.update()
        return mesh

    def _annotations(
        self, scene: Scene, meshes: list[WorldMesh], width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mi = self._mi
        centre_sampler = {"type": "stratified", "sample_count": 1, "jitter": False}
        scene_dict: dict[str, Any] = {
            "type": "scene",
            "integrator": {"type": "aov", "aovs": "p:position,n:geo_normal,s:shape_index"},
            "sensor": self._sensor(scene, width, height, {"rfilter": {"type": "box"}}, centre_sampler),
        }
        for k, mesh in enumerate(meshes):
            scene_dict[f"mesh{k}"] = self._mesh(f"mesh{k}", mesh.vertices, mesh.faces)
        mi_scene = mi.load_dict(scene_dict)
        image = np.array(mi.render(mi_scene, spp=1), dtype=np.float64)
        shape_index = np.rint(image[..., 6]).astype(np.int64)
        lookup = {self._shape_index(mi_scene, shape, position): meshes[int(shape.id()[4:])].instance_id
                  for position, shape in enumerate(mi_scene.shapes())}  # fmt: skip
        keys = np.array(sorted(lookup), dtype=np.int64)
        slot = np.clip(np.searchsorted(keys, shape_index), 0, len(keys) - 1)
        hit = keys[slot] == shape_index
        instance = np.where(hit, np.array([lookup[k] for k in keys], dtype=np.int64)[slot], 0)
        return annotation_arrays(scene, image[..., 0:3], image[..., 3:6], instance, hit)

    def _shape_index(self, mi_scene: Any, shape: Any, position: int) -> int:
        """The value Mitsuba's `shape_index` AOV writes for `shape`: its 1-based position in scalar variants,
        its Dr.Jit registry id (process-wide, so not the position) in JIT variants."""
        if self.variant.startswith("scalar"):
            return position + 1
        import drjit as dr

        return int(dr.reinterpret_array(self._mi.UInt32, self._mi.ShapePtr(shape))[0])

    def _bsdf(self, material: Material, base_color: dict[str, Any]) -> dict[str, Any]:
        """Principled BSDF, two-sided: Mitsuba's BSDFs are black from behind, and user meshes may be open."""
        principled = {"type": "principled", "base_color": base_color, "roughness": float(material.roughness),
                      "specular": float(material.specular), "metallic": float(material.metallic)}  # fmt: skip
        return {"type": "twosided", "material": principled}

    def _rgb(self, scene: Scene, meshes: list[WorldMesh], width: int, height: int) -> np.ndarray:
        mi = self._mi
        scene_dict: dict[str, Any] = {
            "type": "scene",
            "integrator": {"type": "path", "max_depth": self.max_depth, "hide_emitters": True},
            "sensor": self._sensor(scene, width, height, {"pixel_format": "rgb"},
                                   {"type": "independent", "sample_count": self.spp}),  # fmt: skip
        }
        for k, mesh in enumerate(meshes):
            baked = bake_texture(mesh)
            shape = self._mesh(f"mesh{k}", baked.vertices, baked.faces)
            if baked.vertex_colors is not None:
                shape.add_attribute("vertex_color", 3, self._buffer(baked.vertex_colors, np.float32))
                color = {"type": "mesh_attribute", "name": "vertex_color"}
            else:
                shape.add_attribute("face_color", 3, self._buffer(baked.face_colors, np.float32))
                color = {"type": "mesh_attribute", "name": "face_color"}
            shape.set_bsdf(mi.load_dict(self._bsdf(mesh.material, color)))
            scene_dict[f"mesh{k}"] = shape
        for k, light in enumerate(scene.lights):
            intensity = (np.asarray(light.color) * light.intensity * LIGHT_SCALE).tolist()
            scene_dict[f"light{k}"] = {"type": "point", "position": list(light.position),
                                       "intensity": {"type": "rgb", "value": intensity}}  # fmt: skip
        if scene.ceiling is not None:
            room = scene.room
            radiance = (np.asarray(scene.ceiling.color) * scene.ceiling.strength).tolist()
            to_world = (mi.ScalarTransform4f().translate([0.0, 0.0, room.height])
                        .scale([room.half_x, room.half_y, 1.0]).rotate([1.0, 0.0, 0.0], 180.0))  # fmt: skip
            emitter = {"type": "area", "radiance": {"type": "rgb", "value": radiance}}
            scene_dict["ceiling"] = {"type": "rectangle", "to_world": to_world, "emitter": emitter}
        mi_scene = mi.load_dict(scene_dict)
        seed = (int(scene.seed) * 1_000_003 + int(scene.index)) % 2**32
        image = np.array(mi.render(mi_scene, seed=seed), dtype=np.float64)
        return srgb_uint8(image[..., :3])
