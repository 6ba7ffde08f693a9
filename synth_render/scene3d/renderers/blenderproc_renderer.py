"""BlenderProc renderer: the paper's own renderer driver, run as a separate `blenderproc run` process per slice.

BlenderProc (GPL-3.0) and bpy (GPL) live only in a side environment that `make blenderproc-env`
(scripts/blenderproc-env.sh) builds offline: a folder laid out like a Blender 4.2 release whose Python is a
venv holding the bpy wheel, BlenderProc and its pinned packages. The lab never imports either: it writes a
slice folder and runs `blenderproc run render_slice.py SLICE` with an argument list (no shell), and reads back
plain npz arrays (loaded without pickle).

A slice is the list of scenes of one `render_batch` call (the writer renders one shard per call): BlenderProc's
~3.5 s start-up is paid once per slice, never per image. The slice holds, for each scene, the meshes
`geometry.scene_meshes` makes from the seeded scene description (the same meshes every engine draws) with
their materials and texture parameters, the lights in Cycles' units and the camera. The folder is named by a
hash of its content, so an interrupted slice (a killed job) finds its finished scenes on the next call and
renders only the rest; a finished slice is deleted. Cycles is seeded per (seed, index): renders are
deterministic. Annotations come from a second, pixel-centre render (see blenderproc_side/render_slice.py),
so masks, depth and normals follow the contract exactly; RGB is Cycles with `spp` samples per pixel.

`export` adds BlenderProc's own formats beside the lab's shards, in `export_dir`: "hdf5" (one container per
scene, `<index>.hdf5`) and/or "coco" (BOP-style COCO per slice).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lab.core.rundir import atomic_write_bytes, atomic_write_json
from synth_render.scene3d.geometry import WorldMesh, camera_basis, scene_meshes
from synth_render.scene3d.renderers.base import (
    SCENE_RENDERERS,
    RendererUnavailableError,
    RenderOutput,
    SceneRenderer,
    check_size,
)
from synth_render.scene3d.renderers.blender_renderer import AREA_WATTS_PER_RADIANCE_AREA, POINT_WATTS_PER_INTENSITY
from synth_render.scene3d.renderers.pixel_outputs import annotation_arrays, srgb_uint8
from synth_render.scene3d.scene import Material, Scene
from synth_render.scene3d.textures import CELL_OFFSET, noise_waves, stripe_direction

REPO = Path(__file__).resolve().parents[3]
SIDE_SCRIPTS = Path(__file__).resolve().parents[1] / "blenderproc_side"
SLICE_SCRIPT = SIDE_SCRIPTS / "render_slice.py"
INSTALL_COMMAND = "make blenderproc-env"
BLENDER_MAJOR = "4.2"
EXPORTS = ("hdf5", "coco")
LOG_TAIL_LINES = 40
SPEC_VERSION = 1


class BlenderProcError(RuntimeError):
    """A `blenderproc run` of a slice failed: the message holds its exit code and the end of its output."""

    def __init__(self, message: str, returncode: int, log: str) -> None:
        super().__init__(message)
        self.returncode, self.log = returncode, log


def side_environment(home: str | os.PathLike | None = None) -> Path:
    """The side environment's folder: `home`, else $BLENDERPROC_HOME, else .blenderproc/ in the repository."""
    return Path(home or os.environ.get("BLENDERPROC_HOME") or REPO / ".blenderproc").expanduser().resolve()


def side_python(home: Path) -> Path:
    return home / BLENDER_MAJOR / "python" / "bin" / "python3.11"


def check_side_environment(home: Path) -> None:
    """RendererUnavailableError naming the install command unless `home` holds a finished side environment."""
    needed = [home / ".installed", home / "blender", home / "blender_shim.py", side_python(home),
              home / "custom-python-packages" / "installed_packages_cache_v2.json"]  # fmt: skip
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise RendererUnavailableError(
            f"the 'blenderproc' renderer needs the BlenderProc side environment in {home} (missing: "
            f"{', '.join(missing)}); build it once, offline from the package registries, with `{INSTALL_COMMAND}` "
            "(or `bash scripts/blenderproc-env.sh`; BLENDERPROC_HOME puts it elsewhere). BlenderProc and bpy are "
            "GPL and stay out of the lab's own environment."
        )
    if (home / "blender_shim.py").read_bytes() != (SIDE_SCRIPTS / "blender_shim.py").read_bytes():
        raise RendererUnavailableError(
            f"the BlenderProc side environment in {home} was built from another blender_shim.py than this "
            f"checkout's; rebuild it with `{INSTALL_COMMAND}`"
        )


def _positive(name: str, value: Any, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")


@SCENE_RENDERERS.register("blenderproc")
class BlenderProcRenderer(SceneRenderer):
    """BlenderProc 2.8 + Cycles (CPU) in a separate process per slice. Options: spp (samples per pixel of the
    RGB image), threads (Cycles threads, None = all cores), max_depth (light bounces), home (the side
    environment, default $BLENDERPROC_HOME or .blenderproc/), work_dir (where slices are staged; default the
    system's temporary folder), export ("hdf5", "coco" or both, as "hdf5,coco" or a list: BlenderProc's own
    formats, into export_dir), script (another BlenderProc run script reading the same slice folder), timeout
    (seconds per slice, None = no limit)."""

    name = "blenderproc"

    def __init__(
        self,
        spp: int = 64,
        threads: int | None = None,
        max_depth: int = 4,
        home: str | None = None,
        work_dir: str | None = None,
        export: str | Sequence[str] = "",
        export_dir: str = "",
        script: str | None = None,
        timeout: float | None = None,
    ) -> None:
        _positive("spp", spp)
        _positive("threads", threads, allow_none=True)
        _positive("max_depth", max_depth, minimum=0)
        parts = str(export or "").split(",") if isinstance(export, str) else [str(part) for part in export]
        exports = [part.strip() for part in parts if part.strip()]
        unknown = sorted(set(exports) - set(EXPORTS))
        if unknown:
            raise ValueError(f"export: unknown format(s) {', '.join(unknown)}; valid: {', '.join(EXPORTS)}")
        if exports and not export_dir:
            raise ValueError(f"export={export!r} needs export_dir, the folder for BlenderProc's own formats")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive seconds or None, got {timeout!r}")
        self.spp, self.threads, self.max_depth = int(spp), threads, int(max_depth)
        self.exports = exports
        self.export_dir = str(Path(export_dir).resolve()) if export_dir else ""
        self.script = Path(script).resolve() if script else SLICE_SCRIPT
        if not self.script.is_file():
            raise ValueError(f"script: no such file {self.script}")
        self.timeout = timeout
        self.home = side_environment(home)
        check_side_environment(self.home)
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.gettempdir()) / "lab-blenderproc"

    # -- the lab's side: scenes -> a slice folder -> RenderOutputs ------------------------------------------------

    def render(self, scene: Scene, width: int, height: int) -> RenderOutput:
        return self.render_batch([scene], width, height)[0]

    def render_batch(self, scenes: Sequence[Scene], width: int, height: int) -> list[RenderOutput]:
        check_size(width, height)
        if not scenes:
            return []
        folder = self.prepare_slice(scenes, width, height)
        self.run_slice(folder)
        outputs = self.collect_slice(folder, scenes)
        shutil.rmtree(folder, ignore_errors=True)
        return outputs

    def collect_slice(self, folder: Path, scenes: Sequence[Scene]) -> list[RenderOutput]:
        """A finished slice's renders in the RenderOutput convention (shared with the other path tracers)."""
        return [self._read_output(folder, n, scene) for n, scene in enumerate(scenes)]

    def slice_spec(self, scenes: Sequence[Scene], width: int, height: int) -> tuple[dict[str, Any], list[dict]]:
        """(spec.json's content, per scene the mesh arrays) for `scenes`."""
        described, arrays = [], []
        for scene in scenes:
            meshes = scene_meshes(scene)
            described.append(self._scene_record(scene, meshes))
            arrays.append(_mesh_arrays(meshes))
        spec = {"version": SPEC_VERSION, "width": int(width), "height": int(height), "spp": self.spp,
                "max_depth": self.max_depth, "threads": self.threads or 0, "export": self.exports,
                "export_dir": self.export_dir, "scenes": described}  # fmt: skip
        return spec, arrays

    def prepare_slice(self, scenes: Sequence[Scene], width: int, height: int) -> Path:
        """The slice folder for `scenes` (named by a hash of everything that decides its pixels), written unless it
        is there already, e.g. from an interrupted run whose finished scenes are then kept."""
        spec, arrays = self.slice_spec(scenes, width, height)
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
        digest.update(hashlib.sha256(self.script.read_bytes()).digest())
        folder = self.work_dir / f"slice-{scenes[0].index:09d}-{digest.hexdigest()[:20]}"
        if (folder / "spec.json").exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        for n, mesh_arrays in enumerate(arrays):
            buffer = _npz_bytes(mesh_arrays)
            atomic_write_bytes(folder / f"scene-{n}.npz", buffer)
        atomic_write_json(folder / "spec.json", spec)  # last: a folder with spec.json is complete
        return folder

    def command(self, folder: Path) -> list[str]:
        """The argument list of one slice's `blenderproc run` (BlenderProc's CLI in the side environment)."""
        # the console script, not `python -m blenderproc`: BlenderProc refuses a module call from Python 3.11's
        # frozen runpy ("can only be run by blenderproc run")
        return [str(self.home / BLENDER_MAJOR / "python" / "bin" / "blenderproc"), "run", str(self.script),
                "--custom-blender-path", str(self.home), "--temp-dir", str(folder / "tmp"), str(folder)]  # fmt: skip

    def run_slice(self, folder: Path) -> None:
        """Run BlenderProc on the slice; BlenderProcError with its exit code and output when it fails."""
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        log_path = folder / "blenderproc.log"
        with open(log_path, "wb") as log:
            # a session of its own, so that a timeout or Ctrl-C stops BlenderProc's CLI and the Blender it started
            process = subprocess.Popen(self.command(folder), stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
            timed_out = False
            try:
                returncode = process.wait(timeout=self.timeout)
            except BaseException as error:
                os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
                if not isinstance(error, subprocess.TimeoutExpired):
                    raise
                timed_out = True
        log_text = log_path.read_text(errors="replace")
        tail = "\n".join(log_text.splitlines()[-LOG_TAIL_LINES:])
        spec = json.loads((folder / "spec.json").read_text())
        missing = [n for n in range(len(spec["scenes"])) if not (folder / f"out-{n}.npz").exists()]
        if timed_out or returncode != 0 or missing:
            if timed_out:
                why = f"timed out after {self.timeout} s"
            elif returncode != 0:
                why = f"exited with code {returncode}"
            else:
                why = f"exited with code 0 but left {len(missing)} scene(s) unrendered"
            raise BlenderProcError(
                f"blenderproc run {self.script.name} {why} on slice {folder} (its scenes rendered so far are kept: "
                f"the next render of this slice resumes). Last lines of {log_path}:\n{tail}",
                returncode, log_text,
            )

    def _read_output(self, folder: Path, n: int, scene: Scene) -> RenderOutput:
        with np.load(folder / f"out-{n}.npz", allow_pickle=False) as data:
            rgb, position, normal, index = data["rgb"], data["position"], data["normal"], data["index"]
        hit = np.linalg.norm(normal, axis=-1) > 0.5  # Cycles writes a zero normal where nothing is hit
        instance = np.rint(index).astype(np.int64)
        depth, normals, instance, semantic = annotation_arrays(scene, position, normal, instance, hit)
        return RenderOutput(srgb_uint8(rgb), depth, normals, instance, semantic)

    # -- what the BlenderProc script builds ---------------------------------------------------------------------

    def _scene_record(self, scene: Scene, meshes: list[WorldMesh]) -> dict[str, Any]:
        forward, right, up = camera_basis(scene.camera)
        camera = np.eye(4)
        camera[:3, 0], camera[:3, 1], camera[:3, 2] = right, up, -forward  # Blender cameras look along -z
        camera[:3, 3] = scene.camera.position
        lights = [{"position": list(light.position), "color": list(light.color),
                   "watts": light.intensity * POINT_WATTS_PER_INTENSITY} for light in scene.lights]  # fmt: skip
        ceiling = None
        if scene.ceiling is not None:
            room = scene.room
            size_x, size_y = 2 * room.half_x, 2 * room.half_y
            ceiling = {"size_x": size_x, "size_y": size_y, "height": room.height, "color": list(scene.ceiling.color),
                       "watts": scene.ceiling.strength * AREA_WATTS_PER_RADIANCE_AREA * size_x * size_y}  # fmt: skip
        class_names = {k + 1: obj.class_name for k, obj in enumerate(scene.objects)}
        return {
            "key": f"{scene.index:09d}",
            "cycles_seed": (int(scene.seed) * 1_000_003 + int(scene.index)) % 2**31,
            "camera": {"matrix": camera.tolist(), "angle_y": float(np.deg2rad(scene.camera.fov_deg))},
            "lights": lights,
            "ceiling": ceiling,
            "meshes": [{"name": f"mesh{k}", "instance_id": int(mesh.instance_id),
                        "category_id": int(mesh.class_id) + 1 if mesh.instance_id > 0 else 0,
                        "class_name": class_names.get(int(mesh.instance_id), "room"),
                        "matrix_world": np.linalg.inv(mesh.texture_transform).tolist(),
                        "material": _material_record(mesh.material)} for k, mesh in enumerate(meshes)],  # fmt: skip
        }


def _material_record(material: Material) -> dict[str, Any]:
    record: dict[str, Any] = {"color": list(material.color), "roughness": material.roughness, "texture": None,
                              "metallic": material.metallic, "specular": material.specular}  # fmt: skip
    texture = material.texture
    if texture is not None:
        waves, phases = noise_waves(texture) if texture.kind == "noise" else (np.zeros((0, 3)), np.zeros(0))
        record["texture"] = {"kind": texture.kind, "color": list(texture.color), "scale": texture.scale,
                             "cell_offset": CELL_OFFSET, "waves": np.asarray(waves).tolist(),
                             "phases": np.asarray(phases).tolist(),
                             "direction": stripe_direction(texture.seed).tolist()}  # fmt: skip
    return record


def _mesh_arrays(meshes: list[WorldMesh]) -> dict[str, np.ndarray]:
    """Each mesh's vertices in its texture space (the Blender object's matrix maps them back to the world)."""
    arrays = {}
    for k, mesh in enumerate(meshes):
        to_texture = mesh.texture_transform
        arrays[f"vertices_{k}"] = mesh.vertices @ to_texture[:3, :3].T + to_texture[:3, 3]
        arrays[f"faces_{k}"] = np.asarray(mesh.faces, dtype=np.int64)
    return arrays


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
