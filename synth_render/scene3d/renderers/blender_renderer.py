"""Blender (bpy, Cycles on the CPU) renderer: RGB from a Cycles path-traced render, annotations from Cycles'
own render passes.

Each view is rendered twice from the same Blender scene:
- RGB: `spp` samples per pixel, Blackman-Harris pixel filter (anti-aliased), up to `max_depth` bounces.
- Annotations: 1 sample per pixel with a 0.01-pixel box filter, so every pixel is sampled within 0.005 px of
  its centre (the contract's pixel-centre convention) and the Position, Normal and Object Index passes hold
  exact, non-blended values. Depth is `(position - camera) . forward`; normals are flipped towards the camera.
Passes are written by a compositor File Output node to single-layer OpenEXR files in a temporary folder and
read back with Blender's own image loader (row 0 of a Blender image is the bottom: flipped).

Procedural textures are evaluated in the shader from Object texture coordinates: each mesh is stored in its
texture space with `matrix_world` = the inverse texture transform, and the node graph reproduces
`textures.texture_weight` exactly (checker, stripes, noise).

Blender's state is reset once (factory settings, empty) at construction; every render then removes the
data-blocks of the previous scene, which is several times cheaper than a factory reset per image.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

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
from synth_render.scene3d.scene import Material, Scene, TextureSpec
from synth_render.scene3d.textures import CELL_OFFSET, noise_waves, stripe_direction

BPY_PIN = "bpy==4.2.23"
ANNOTATION_PASSES = ("Position", "Normal", "IndexOB")
# Cycles point lights: radiant intensity = watts / (4 pi); matching the contract's "colour * intensity / d^2"
# applied as an albedo (see mitsuba_renderer.LIGHT_SCALE) needs watts = 4 pi^2 * intensity.
POINT_WATTS_PER_INTENSITY = float(4 * np.pi**2)
# Cycles area lights: radiance = watts / (pi * area); the ceiling's strength is its radiance.
AREA_WATTS_PER_RADIANCE_AREA = float(np.pi)


def import_bpy() -> Any:
    """The `bpy` module, or RendererUnavailableError saying how to install it."""
    try:
        import bpy
    except ImportError as error:
        raise RendererUnavailableError(
            f"the 'blender' renderer needs Blender as a Python module, bpy ({error}); install it with "
            f"{INSTALL_HINT} or `pip install {BPY_PIN}` (Python 3.11)"
        ) from error
    return bpy


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Send the process's stdout/stderr file descriptors to /dev/null: Blender prints from C, per tile."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@SCENE_RENDERERS.register("blender")
class BlenderRenderer(SceneRenderer):
    """Blender Cycles (CPU). Options: spp (samples per pixel of the RGB image), threads (None = all cores),
    max_depth (light bounces)."""

    name = "blender"

    def __init__(self, spp: int = 64, threads: int | None = None, max_depth: int = 4) -> None:
        if int(spp) != spp or spp < 1:
            raise ValueError(f"spp must be a positive integer, got {spp!r}")
        if threads is not None and (int(threads) != threads or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        if int(max_depth) != max_depth or max_depth < 0:
            raise ValueError(f"max_depth must be a non-negative integer, got {max_depth!r}")
        self.spp, self.threads, self.max_depth = int(spp), threads, int(max_depth)
        self._bpy = import_bpy()
        with silenced():
            self._bpy.ops.wm.read_factory_settings(use_empty=True)

    def render(self, scene: Scene, width: int, height: int) -> RenderOutput:
        check_size(width, height)
        with tempfile.TemporaryDirectory(prefix="blender_render_") as folder, silenced():
            self._build(scene, width, height)
            rgb = self._render_passes(Path(folder) / "rgb", ("Image",), annotation=False)["Image"]
            passes = self._render_passes(Path(folder) / "aov", ANNOTATION_PASSES, annotation=True)
        hit = np.linalg.norm(passes["Normal"][..., :3], axis=-1) > 0.5  # Cycles writes 0 where nothing is hit
        instance = np.rint(passes["IndexOB"][..., 0]).astype(np.int64)
        depth, normals, instance, semantic = annotation_arrays(
            scene, passes["Position"][..., :3], passes["Normal"][..., :3], instance, hit
        )
        return RenderOutput(srgb_uint8(rgb[..., :3]), depth, normals, instance, semantic)

    # -- scene construction -------------------------------------------------------------------------------------

    def _clear(self) -> None:
        data = self._bpy.data
        for collection in (data.objects, data.meshes, data.materials, data.lights, data.cameras, data.images,
                           data.node_groups, data.worlds):  # fmt: skip
            for block in list(collection):
                collection.remove(block)

    def _build(self, scene: Scene, width: int, height: int) -> None:
        bpy = self._bpy
        self._clear()
        bl_scene = bpy.context.scene
        render = bl_scene.render
        render.engine = "CYCLES"
        render.resolution_x, render.resolution_y, render.resolution_percentage = int(width), int(height), 100
        render.pixel_aspect_x = render.pixel_aspect_y = 1.0
        render.threads_mode = "AUTO" if self.threads is None else "FIXED"
        if self.threads is not None:
            render.threads = int(self.threads)
        render.film_transparent = False
        bl_scene.view_settings.view_transform = "Standard"
        cycles = bl_scene.cycles
        cycles.device = "CPU"
        cycles.use_denoising = False
        cycles.use_adaptive_sampling = False
        cycles.seed = (int(scene.seed) * 1_000_003 + int(scene.index)) % 2**31
        bl_scene.frame_current = 1
        for mesh in scene_meshes(scene):
            self._add_mesh(mesh)
        for k, light in enumerate(scene.lights):
            data = bpy.data.lights.new(f"light{k}", "POINT")
            data.color = tuple(light.color)
            data.energy = light.intensity * POINT_WATTS_PER_INTENSITY
            data.shadow_soft_size = 0.0
            self._link(bpy.data.objects.new(f"light{k}", data)).location = tuple(light.position)
        if scene.ceiling is not None:
            room = scene.room
            data = bpy.data.lights.new("ceiling", "AREA")
            data.shape = "RECTANGLE"
            data.size, data.size_y = 2 * room.half_x, 2 * room.half_y
            data.color = tuple(scene.ceiling.color)
            data.energy = scene.ceiling.strength * AREA_WATTS_PER_RADIANCE_AREA * data.size * data.size_y
            ceiling = self._link(bpy.data.objects.new("ceiling", data))
            ceiling.location = (0.0, 0.0, room.height)  # area lights shine along their local -z: down
            ceiling.visible_camera = False
        self._add_camera(scene)

    def _link(self, obj: Any) -> Any:
        self._bpy.context.scene.collection.objects.link(obj)
        return obj

    def _add_mesh(self, mesh: WorldMesh) -> None:
        import mathutils

        bpy = self._bpy
        to_texture = mesh.texture_transform
        local = mesh.vertices @ to_texture[:3, :3].T + to_texture[:3, 3]
        data = bpy.data.meshes.new(f"mesh{len(bpy.data.meshes)}")
        data.from_pydata(local.tolist(), [], mesh.faces.tolist())
        data.update()
        data.materials.append(self._material(mesh.material))
        obj = self._link(bpy.data.objects.new(data.name, data))
        obj.matrix_world = mathutils.Matrix(np.linalg.inv(to_texture).tolist())
        obj.pass_index = int(mesh.instance_id)

    def _add_camera(self, scene: Scene) -> None:
        import mathutils

        bpy = self._bpy
        data = bpy.data.cameras.new("camera")
        data.type = "PERSP"
        data.sensor_fit = "VERTICAL"
        data.angle_y = float(np.deg2rad(scene.camera.fov_deg))
        data.shift_x = data.shift_y = 0.0
        data.clip_start, data.clip_end = 1e-3, 1e4
        forward, right, up = camera_basis(scene.camera)
        matrix = np.eye(4)
        matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = right, up, -forward  # Blender cameras look along -z
        matrix[:3, 3] = scene.camera.position
        camera = self._link(bpy.data.objects.new("camera", data))
        camera.matrix_world = mathutils.Matrix(matrix.tolist())
        bpy.context.scene.camera = camera

    # -- materials ----------------------------------------------------------------------------------------------

    def _material(self, material: Material) -> Any:
        bpy = self._bpy
        data = bpy.data.materials.new("material")
        data.use_nodes = True
        nodes, links = data.node_tree.nodes, data.node_tree.links
        bsdf = nodes["Principled BSDF"]
        bsdf.inputs["Roughness"].default_value = float(material.roughness)
        bsdf.inputs["Metallic"].default_value = float(material.metallic)
        bsdf.inputs["Specular IOR Level"].default_value = float(material.specular)
        base = (*material.color, 1.0)
        if material.texture is None:
            bsdf.inputs["Base Color"].default_value = base
            return data
        mix = nodes.new("ShaderNodeMix")
        mix.data_type, mix.blend_type = "RGBA", "MIX"
        sockets = {socket.identifier: socket for socket in (*mix.inputs, *mix.outputs)}  # names repeat per type
        sockets["A_Color"].default_value = base
        sockets["B_Color"].default_value = (*material.texture.color, 1.0)
        links.new(self._texture_weight(data.node_tree, material.texture), sockets["Factor_Float"])
        links.new(sockets["Result_Color"], bsdf.inputs["Base Color"])
        return data

    def _texture_weight(self, tree: Any, texture: TextureSpec) -> Any:
        """A node socket holding `textures.texture_weight` at the shading point (Object coordinates)."""
        nodes, links = tree.nodes, tree.links
        point = nodes.new("ShaderNodeTexCoord").outputs["Object"]

        def math(operation: str, a: Any, b: Any = None, vector: bool = False) -> Any:
            node = nodes.new("ShaderNodeVectorMath" if vector else "ShaderNodeMath")
            node.operation = operation
            for socket, value in zip(node.inputs, (a, b)):
                if value is None:
                    continue
                if isinstance(value, (int, float)):
                    socket.default_value = float(value)
                elif isinstance(value, tuple):
                    socket.default_value = value
                else:
                    links.new(value, socket)
            return node.outputs["Value"] if operation == "DOT_PRODUCT" or not vector else node.outputs["Vector"]

        if texture.kind == "noise":
            waves, phases = noise_waves(texture)
            total: Any = None
            for wave, phase in zip(waves, phases):
                term = math("SINE", math("ADD", math("DOT_PRODUCT", point, tuple(wave), vector=True), float(phase)))
                total = term if total is None else math("ADD", total, term)
            return math("ADD", math("MULTIPLY", total, 0.5 / len(phases)), 0.5)
        if texture.kind == "checker":
            scaled = math("SCALE", point, vector=True)
            scaled.node.inputs["Scale"].default_value = 1.0 / texture.scale
            cells = math("FLOOR", math("ADD", scaled, (CELL_OFFSET,) * 3, vector=True), vector=True)
            index = math("DOT_PRODUCT", cells, (1.0, 1.0, 1.0), vector=True)
        else:
            along = math("DOT_PRODUCT", point, tuple(stripe_direction(texture.seed)), vector=True)
            index = math("FLOOR", math("ADD", math("MULTIPLY", along, 1.0 / texture.scale), CELL_OFFSET))
        return math("FLOORED_MODULO", index, 2.0)

    # -- rendering ----------------------------------------------------------------------------------------------

    def _render_passes(self, folder: Path, names: tuple[str, ...], annotation: bool) -> dict[str, np.ndarray]:
        """Render once and return the requested passes as float32 [H, W, 4] arrays, row 0 at the top."""
        bpy = self._bpy
        bl_scene = bpy.context.scene
        cycles = bl_scene.cycles
        if annotation:
            cycles.samples, cycles.max_bounces = 1, 0
            cycles.pixel_filter_type, cycles.filter_width = "BOX", 0.01
        else:
            cycles.samples, cycles.max_bounces = self.spp, self.max_depth
            cycles.pixel_filter_type, cycles.filter_width = "BLACKMAN_HARRIS", 1.5
        layer = bl_scene.view_layers[0]
        layer.use_pass_position = layer.use_pass_normal = layer.use_pass_object_index = annotation
        bl_scene.use_nodes = True
        tree = bl_scene.node_tree
        for node in list(tree.nodes):
            tree.nodes.remove(node)
        layers = tree.nodes.new("CompositorNodeRLayers")
        output = tree.nodes.new("CompositorNodeOutputFile")
        output.base_path = str(folder)
        output.format.file_format = "OPEN_EXR"
        output.format.color_depth = "32"
        output.format.color_mode = "RGBA"
        output.file_slots.clear()
        for name in names:
            output.file_slots.new(name)
            tree.links.new(layers.outputs[name], output.inputs[name])
        bpy.ops.render.render(write_still=False)
        return {name: self._read_exr(folder, name) for name in names}

    def _read_exr(self, folder: Path, name: str) -> np.ndarray:
        files = sorted(folder.glob(f"{name}*.exr"))
        if len(files) != 1:
            raise RuntimeError(f"Blender wrote {len(files)} files for pass {name!r} in {folder}, expected 1")
        image = self._bpy.data.images.load(str(files[0]))
        try:
            width, height = image.size
            pixels = np.empty(width * height * image.channels, dtype=np.float32)
            image.pixels.foreach_get(pixels)
        finally:
            self._bpy.data.images.remove(image)
        return pixels.reshape(height, width, -1)[::-1].copy()
