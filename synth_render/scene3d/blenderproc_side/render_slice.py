import blenderproc as bproc  # noqa: I001  (BlenderProc insists on being the first import of a run script)

"""Render one slice of lab scenes with BlenderProc: `blenderproc run render_slice.py SLICE_FOLDER`.

Runs inside the BlenderProc side environment (bpy, numpy 1.26; the lab is not importable there). The lab's
`blenderproc` engine (synth_render/scene3d/renderers/blenderproc_renderer.py) writes SLICE_FOLDER:

    spec.json         image size, samples, bounces, threads, exports, and per scene its camera, lights and
                      meshes (materials, texture parameters, object -> world matrices), all computed by the lab
                      from the same seeded scene description every engine renders
    scene-<n>.npz     scene n's mesh arrays: vertices_<k> (in the mesh's texture space), faces_<k>

and this script writes, per scene, `out-<n>.npz` (atomically, so a killed slice leaves whole files only):
rgb (linear float32 [H, W, 3], Cycles path tracing, `spp` samples, Blackman-Harris filter), and from a second,
pixel-centre render (1 sample, 0.01 px box filter, no bounces) position, normal (world, float32 [H, W, 3]) and
index (the Object Index pass: the lab's instance id). Row 0 is the top of the image. Scenes whose file exists
are skipped: re-running an interrupted slice renders only what is missing.

BlenderProc does the scene set-up (init, mesh objects, materials, lights, the camera's intrinsics from a K
matrix and its pose, render settings and the RGB render); the annotation passes go through Blender's
compositor, as BlenderProc's own outputs are filtered like the RGB image. Optional exports, BlenderProc's own
formats: `hdf5` (bproc.writer.write_hdf5, one container per scene) and `coco` (bproc.writer.write_coco_annotations,
BOP-style, one folder per slice, written once every scene of the slice is done).
"""

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix  # noqa: E402

ANNOTATION_PASSES = ("Position", "Normal", "IndexOB")


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)


def add_mesh(mesh: dict, vertices: np.ndarray, faces: np.ndarray) -> None:
    obj = bproc.object.create_with_empty_mesh(mesh["name"])
    data = obj.get_mesh()
    data.from_pydata(vertices.tolist(), [], faces.tolist())
    data.update()
    obj.set_local2world_mat(Matrix(mesh["matrix_world"]))
    obj.blender_obj.pass_index = int(mesh["instance_id"])
    obj.set_cp("category_id", int(mesh["category_id"]))
    obj.add_material(make_material(mesh["name"], mesh["material"]))


def make_material(name: str, spec: dict):
    material = bproc.material.create(name)
    material.set_principled_shader_value("Roughness", float(spec["roughness"]))
    material.set_principled_shader_value("Metallic", float(spec["metallic"]))
    material.set_principled_shader_value("Specular IOR Level", float(spec["specular"]))
    base = (*spec["color"], 1.0)
    texture = spec.get("texture")
    if texture is None:
        material.set_principled_shader_value("Base Color", base)
        return material
    mix = material.new_node("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MIX"
    sockets = {socket.identifier: socket for socket in (*mix.inputs, *mix.outputs)}  # names repeat per data type
    sockets["A_Color"].default_value = base
    sockets["B_Color"].default_value = (*texture["color"], 1.0)
    material.link(texture_weight(material, texture), sockets["Factor_Float"])
    material.link(sockets["Result_Color"], material.get_the_one_node_with_type("BsdfPrincipled").inputs["Base Color"])
    return material


def texture_weight(material, texture: dict):
    """A socket holding the lab's texture weight (synth_render.scene3d.textures.texture_weight) at the shading
    point, from Object coordinates (the mesh is stored in its texture space)."""
    point = material.new_node("ShaderNodeTexCoord").outputs["Object"]

    def op(operation: str, a, b=None, vector: bool = False):
        node = material.new_node("ShaderNodeVectorMath" if vector else "ShaderNodeMath")
        node.operation = operation
        for socket, value in zip(node.inputs, (a, b)):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                socket.default_value = float(value)
            elif isinstance(value, (tuple, list)):
                socket.default_value = tuple(value)
            else:
                material.link(value, socket)
        return node.outputs["Value"] if operation == "DOT_PRODUCT" or not vector else node.outputs["Vector"]

    offset = float(texture["cell_offset"])
    if texture["kind"] == "noise":
        total = None
        for wave, phase in zip(texture["waves"], texture["phases"]):
            term = op("SINE", op("ADD", op("DOT_PRODUCT", point, tuple(wave), vector=True), float(phase)))
            total = term if total is None else op("ADD", total, term)
        return op("ADD", op("MULTIPLY", total, 0.5 / len(texture["phases"])), 0.5)
    if texture["kind"] == "checker":
        scaled = op("SCALE", point, vector=True)
        scaled.node.inputs["Scale"].default_value = 1.0 / float(texture["scale"])
        cells = op("FLOOR", op("ADD", scaled, (offset,) * 3, vector=True), vector=True)
        index = op("DOT_PRODUCT", cells, (1.0, 1.0, 1.0), vector=True)
    else:
        along = op("DOT_PRODUCT", point, tuple(texture["direction"]), vector=True)
        index = op("FLOOR", op("ADD", op("MULTIPLY", along, 1.0 / float(texture["scale"])), offset))
    return op("FLOORED_MODULO", index, 2.0)


def add_lights(scene: dict) -> None:
    for k, spec in enumerate(scene["lights"]):
        light = bproc.types.Light(light_type="POINT", name=f"light{k}")
        light.set_location(spec["position"])
        light.set_color(spec["color"])
        light.set_energy(float(spec["watts"]))
        light.blender_obj.data.shadow_soft_size = 0.0
    ceiling = scene.get("ceiling")
    if ceiling is not None:
        light = bproc.types.Light(light_type="AREA", name="ceiling")
        data = light.blender_obj.data
        data.shape, data.size, data.size_y = "RECTANGLE", float(ceiling["size_x"]), float(ceiling["size_y"])
        light.set_color(ceiling["color"])
        light.set_energy(float(ceiling["watts"]))
        light.set_location((0.0, 0.0, float(ceiling["height"])))  # area lights shine along their local -z: down
        light.blender_obj.visible_camera = False


def set_camera(scene: dict, width: int, height: int) -> None:
    """Intrinsics from a K matrix and the pose, through BlenderProc. BlenderProc's K puts pixel centres at
    integer coordinates (the image centre is ((W - 1) / 2, (H - 1) / 2)); the lab's pixel (col, row) spans
    [col, col + 1), so the lab's centred principal point W / 2 is (W - 1) / 2 here: passing W / 2 would shift
    every annotation by half a pixel."""
    focal = (height / 2.0) / np.tan(float(scene["camera"]["angle_y"]) / 2.0)
    K = np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    bproc.camera.set_intrinsics_from_K_matrix(K, width, height, clip_start=1e-3, clip_end=1e4)
    bproc.camera.add_camera_pose(np.array(scene["camera"]["matrix"]), frame=0)


def build(spec: dict, scene: dict, arrays) -> None:
    bproc.clean_up(clean_up_camera=True)
    bproc.renderer.set_world_background([0.0, 0.0, 0.0], strength=0.0)  # the open top shows black, as elsewhere
    for k, mesh in enumerate(scene["meshes"]):
        add_mesh(mesh, arrays[f"vertices_{k}"], arrays[f"faces_{k}"])
    add_lights(scene)
    set_camera(scene, int(spec["width"]), int(spec["height"]))
    bpy.context.scene.cycles.seed = int(scene["cycles_seed"])
    # BlenderProc turns on Cycles' persistent data, which keeps the previous scene's render state: with it a
    # scene's noise depended on the scene rendered before it in the same process (measured: mean |diff| 2.9/255
    # at 64 spp). Off, a render depends only on (seed, index), whatever the slice it belongs to.
    bpy.context.scene.render.use_persistent_data = False


def render_rgb(spec: dict) -> np.ndarray:
    cycles = bpy.context.scene.cycles
    bproc.renderer.set_max_amount_of_samples(int(spec["spp"]))
    bproc.renderer.set_noise_threshold(0)  # every pixel gets all its samples: the same noise level everywhere
    depth = int(spec["max_depth"])
    bproc.renderer.set_light_bounces(diffuse_bounces=depth, glossy_bounces=depth, max_bounces=depth,
                                     transmission_bounces=depth, transparent_max_bounces=depth)
    cycles.pixel_filter_type, cycles.filter_width = "BLACKMAN_HARRIS", 1.5
    bproc.renderer.set_output_format(file_format="OPEN_EXR", color_depth=32, enable_transparency=False,
                                     view_transform="Standard")
    set_annotation_nodes(None)
    data = bproc.renderer.render(load_keys={"colors"})
    return np.asarray(data["colors"][0], dtype=np.float32)[..., :3]


def set_annotation_nodes(folder: Path | None) -> None:
    """The compositor writing the annotation passes to `folder`, or none (the RGB render needs none)."""
    bl_scene = bpy.context.scene
    layer = bl_scene.view_layers[0]
    wanted = folder is not None
    layer.use_pass_position = layer.use_pass_normal = layer.use_pass_object_index = wanted
    bl_scene.use_nodes = wanted
    if not wanted:
        return
    tree = bl_scene.node_tree
    for node in list(tree.nodes):
        tree.nodes.remove(node)
    layers = tree.nodes.new("CompositorNodeRLayers")
    output = tree.nodes.new("CompositorNodeOutputFile")
    output.base_path = str(folder)
    output.format.file_format, output.format.color_depth, output.format.color_mode = "OPEN_EXR", "32", "RGBA"
    output.file_slots.clear()
    for name in ANNOTATION_PASSES:
        output.file_slots.new(name)
        tree.links.new(layers.outputs[name], output.inputs[name])


def render_annotations(folder: Path) -> dict:
    """Position, Normal and Object Index sampled once at each pixel's centre (within 0.005 px)."""
    bl_scene = bpy.context.scene
    cycles = bl_scene.cycles
    cycles.samples, cycles.max_bounces = 1, 0
    cycles.pixel_filter_type, cycles.filter_width = "BOX", 0.01
    shutil.rmtree(folder, ignore_errors=True)
    set_annotation_nodes(folder)
    bl_scene.frame_set(0)
    bpy.ops.render.render(write_still=False)
    set_annotation_nodes(None)
    return {name: read_exr(folder, name) for name in ANNOTATION_PASSES}


def read_exr(folder: Path, name: str) -> np.ndarray:
    files = sorted(folder.glob(f"{name}*.exr"))
    if len(files) != 1:
        raise RuntimeError(f"Blender wrote {len(files)} files for pass {name!r} in {folder}, expected 1")
    image = bpy.data.images.load(str(files[0]))
    try:
        width, height = image.size
        pixels = np.empty(width * height * image.channels, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, -1)[::-1].copy()  # row 0 of a Blender image is its bottom


def srgb_bytes(linear: np.ndarray) -> np.ndarray:
    x = np.clip(np.nan_to_num(linear, nan=0.0), 0.0, 1.0)
    encoded = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(encoded * 255).astype(np.uint8)


def instance_map(outputs) -> np.ndarray:
    hit = np.linalg.norm(outputs["normal"], axis=-1) > 0.5
    return np.where(hit, np.rint(outputs["index"]), 0).astype(np.int32)


def export_hdf5(spec: dict, scene: dict, outputs) -> None:
    """One BlenderProc HDF5 container per scene, named by its key (written through a folder of its own: BlenderProc
    numbers its containers by frame)."""
    folder = Path(spec["export_dir"]) / "hdf5"
    staging = folder / f".{scene['key']}"
    shutil.rmtree(staging, ignore_errors=True)
    bproc.writer.write_hdf5(str(staging), {
        "colors": [srgb_bytes(outputs["rgb"])],
        "position": [outputs["position"]],
        "normals": [outputs["normal"]],
        "instance_segmaps": [instance_map(outputs)],
    })
    os.replace(staging / "0.hdf5", folder / f"{scene['key']}.hdf5")
    shutil.rmtree(staging)


def export_coco(spec: dict, slice_folder: Path) -> None:
    """BlenderProc's BOP-style COCO annotations of the whole slice, once all of its scenes are rendered."""
    scenes = spec["scenes"]
    target = Path(spec["export_dir"]) / "coco" / f"{scenes[0]['key']}-{scenes[-1]['key']}"
    if (target / "coco_annotations.json").exists():
        return
    staging = target.with_name(f".{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    colors, segmaps, attributes = [], [], []
    for n, scene in enumerate(scenes):
        with np.load(slice_folder / f"out-{n}.npz", allow_pickle=False) as outputs:
            colors.append(srgb_bytes(outputs["rgb"]))
            segmaps.append(instance_map(outputs))
        attributes.append([{"idx": int(m["instance_id"]), "category_id": int(m["category_id"]), "name": m["class_name"]}
                           for m in scene["meshes"] if int(m["category_id"]) > 0])
    bl_scene = bpy.context.scene
    bl_scene.frame_start, bl_scene.frame_end = 0, len(scenes)  # BlenderProc's writer walks the frame range
    bproc.writer.write_coco_annotations(str(staging), instance_segmaps=segmaps, instance_attribute_maps=attributes,
                                        colors=colors, append_to_existing_output=False)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def main() -> None:
    slice_folder = Path(sys.argv[1])
    spec = json.loads((slice_folder / "spec.json").read_text())
    bproc.init()
    bproc.renderer.set_cpu_threads(int(spec["threads"]))
    bproc.renderer.set_denoiser(None)
    exports = set(spec.get("export", []))
    passes = slice_folder / "passes"
    rendered = 0
    for n, scene in enumerate(spec["scenes"]):
        target = slice_folder / f"out-{n}.npz"
        if target.exists():
            continue
        with np.load(slice_folder / f"scene-{n}.npz", allow_pickle=False) as arrays:
            build(spec, scene, arrays)
        rgb = render_rgb(spec)
        aov = render_annotations(passes)
        outputs = {"rgb": rgb, "position": aov["Position"][..., :3], "normal": aov["Normal"][..., :3],
                   "index": aov["IndexOB"][..., 0]}
        if "hdf5" in exports:
            export_hdf5(spec, scene, outputs)
        atomic_savez(target, **outputs)
        rendered += 1
        print(f"lab-blenderproc: rendered scene {n + 1}/{len(spec['scenes'])} (key {scene['key']})", flush=True)
    if "coco" in exports:
        export_coco(spec, slice_folder)
    shutil.rmtree(passes, ignore_errors=True)
    print(f"lab-blenderproc: slice done, {rendered} rendered, {len(spec['scenes']) - rendered} already there",
          flush=True)


if __name__ == "__main__":
    main()
