"""3D scene rendering throughput: images/s (and per CPU core) at 64x64 and 224x224, all annotations included.

    python benchmarks/bench_render3d.py                          # every renderer in SCENE_RENDERERS, CPU, 1 thread
    python benchmarks/bench_render3d.py --renderers torch --threads 2
    python benchmarks/bench_render3d.py --device cuda            # the torch renderer on a GPU, large batches

Scenes are sampled first (their sampling rate is its own row; on a GPU 2048 distinct scenes are repeated to
fill the batches) and rendered with `render_batch`, which returns
host numpy arrays (rgb, depth, normals, instance, semantic). On a GPU a second row times `render_tensors`
(outputs left on the device, as a training loop that renders on the fly would use them) and a third
`render_prepared` alone: the device half, once data-loader workers have run the CPU half (`prepare`). Renderers whose
optional package is missing get a row saying so. img/cpu-s divides by the CPU time of the process and its
child processes (the blenderproc engine renders in a `blenderproc run` per slice), which other jobs on a shared
machine do not inflate. The blenderproc rows time one slice of `images` scenes, its ~3.5 s start-up
included, and a third row times the start-up alone (a slice of one 8x8 image). Prints a table and writes
benchmarks/results/render3d_<hardware>_py<version>_torch<version>.csv; with --renderers, the rows of renderers
not run this time are kept from that file.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import RESULTS, cpu_name, slug  # noqa: E402

from synth_render.scene3d import SceneSamplerConfig, sample_scene  # noqa: E402
from synth_render.scene3d.renderers import SCENE_RENDERERS, RendererUnavailableError, create_scene_renderer  # noqa: E402

FIELDS = [
    "renderer",
    "device",
    "level",
    "size",
    "images",
    "threads",
    "images_per_second",
    "images_per_second_per_core",
    "images_per_cpu_second",
    "detail",
]
# Images per timed run, per renderer kind: path tracers are orders of magnitude slower than the ray caster.
CPU_IMAGES = {"torch": {64: 256, 224: 32}, "blenderproc": {64: 16, 224: 4}, "default": {64: 4, 224: 2}}
STARTUP_SIZE = 8  # the blenderproc start-up row: a slice of one image this small
CUDA_IMAGES = {64: 16384, 224: 2048}
UNIQUE_CUDA_SCENES = 2048  # sampled once and repeated: sampling is CPU work, not the renderer's


def hardware_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()


def results_path(device: str) -> Path:
    version = torch.__version__.split("+")[0]
    return RESULTS / f"render3d_{slug(hardware_name(device))}_py{platform.python_version()}_torch{version}.csv"


def make_renderer(name: str, device: str, threads: int):
    options: dict[str, object] = {}
    parameters = inspect.signature(SCENE_RENDERERS.get(name)).parameters
    if name == "torch":
        options["device"] = device
    if "threads" in parameters:
        options["threads"] = threads
    return create_scene_renderer(name, **options)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (a renderer may render in a child)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def time_call(function, device: str, repeats: int) -> tuple[float, float]:
    """Best wall seconds and best CPU seconds (process + children) of `repeats` calls (after one warm-up call).

    CPU seconds matter on a shared machine: other processes stretch the wall time, not our CPU time."""
    function()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), cpu_seconds()
        function()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, cpu_seconds() - start_cpu)
    return best, best_cpu


def row(
    renderer: str,
    args: argparse.Namespace,
    size: int,
    images: int,
    seconds: tuple[float, float],
    threads: int,
    detail: str,
) -> dict[str, object]:
    rate = images / seconds[0]
    per_core = rate / threads if args.device == "cpu" else ""
    return {
        "renderer": renderer,
        "device": hardware_name(args.device),
        "level": args.level,
        "size": size,
        "images": images,
        "threads": threads,
        "images_per_second": rate,
        "images_per_second_per_core": per_core,
        "images_per_cpu_second": images / seconds[1] if args.device == "cpu" else "",
        "detail": detail,
    }


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    torch.set_num_threads(args.threads)
    config = SceneSamplerConfig(level=args.level, class_sets=args.class_sets)
    most = UNIQUE_CUDA_SCENES if args.device == "cuda" else max(CPU_IMAGES["torch"].values())
    start, start_cpu = time.perf_counter(), time.process_time()
    scenes = [sample_scene(config, args.seed, i) for i in range(most)]
    sampling = (time.perf_counter() - start, time.process_time() - start_cpu)
    classes = " ".join(args.class_sets) if args.class_sets else "the level's"
    rows = [row("sampler", args, 0, most, sampling, 1, f"sample_scene, {args.level}, classes: {classes}")]
    if args.device == "cuda":
        scenes = scenes * (max(CUDA_IMAGES.values()) // len(scenes))
    names = args.renderers or SCENE_RENDERERS.names()
    for name in names:
        if args.device == "cuda" and name != "torch":
            continue
        try:
            renderer = make_renderer(name, args.device, args.threads)
        except RendererUnavailableError as error:
            rows.append(
                {
                    **row(name, args, 0, 1, (1.0, 1.0), args.threads, f"unavailable: {error}"),
                    "images_per_second": "",
                    "images_per_second_per_core": "",
                    "images_per_cpu_second": "",
                }
            )
            continue
        for size in args.sizes:
            if args.device == "cuda":
                images = CUDA_IMAGES.get(size, 1024)
            else:
                images = CPU_IMAGES.get(name, CPU_IMAGES["default"]).get(size, 4)
            batch = scenes[:images]
            seconds = time_call(lambda: renderer.render_batch(batch, size, size), args.device, args.repeats)
            detail = "render_batch -> host numpy, all annotations"
            if name == "blenderproc":
                detail += f"; one slice (one blenderproc run, start-up included), {renderer.spp} spp"
            if args.device == "cuda":
                detail += f"; {UNIQUE_CUDA_SCENES} distinct scenes repeated"
            rows.append(row(name, args, size, images, seconds, args.threads, detail))
            if args.device == "cuda":
                per_chunk = max(1, renderer.max_batch_pixels // (size * size))
                chunks = [batch[i : i + per_chunk] for i in range(0, images, per_chunk)]
                seconds = time_call(
                    lambda: [renderer.render_tensors(c, size, size) for c in chunks], args.device, args.repeats
                )
                rows.append(row(name, args, size, images, seconds, args.threads, "render_tensors, outputs on the GPU"))
                prepared = [renderer.prepare(c, size, size) for c in chunks]
                seconds = time_call(lambda: [renderer.render_prepared(p) for p in prepared], args.device, args.repeats)
                rows.append(
                    row(
                        name,
                        args,
                        size,
                        images,
                        seconds,
                        args.threads,
                        "render_prepared: the device half only (prepare() done by loader workers)",
                    )
                )
                del prepared
        if name == "blenderproc":
            seconds = time_call(lambda: renderer.render_batch(scenes[:1], STARTUP_SIZE, STARTUP_SIZE), args.device,
                                args.repeats)  # fmt: skip
            rows.append(row(name, args, STARTUP_SIZE, 1, seconds, args.threads,
                            f"start-up per slice: {seconds[0]:.2f} s wall, {seconds[1]:.2f} s CPU (one blenderproc "
                            f"run of a single {STARTUP_SIZE}x{STARTUP_SIZE} image)"))  # fmt: skip
    return rows


def merge_rows(path: Path, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """`rows`, then the rows of `path` (an earlier run) for renderers this run did not measure."""
    if not path.exists():
        return rows
    measured = {r["renderer"] for r in rows}
    with path.open(newline="") as handle:
        kept = [r for r in csv.DictReader(handle) if r["renderer"] not in measured]
    return rows + kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--renderers", nargs="*", help="names in SCENE_RENDERERS (default: all of them)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[64, 224])
    parser.add_argument("--level", default="lv7", help="scene complexity level (lv0..lv7)")
    parser.add_argument("--class-sets", nargs="*", help="override the level's class sets (shapes.CLASS_SETS)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch / renderer CPU threads (per-core = rate / threads)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after the warm-up; the best counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")

    rows = run(args)
    out = results_path(args.device)
    if args.renderers:
        rows = merge_rows(out, rows)
    print(
        f"# {hardware_name(args.device)} | python {platform.python_version()} | torch {torch.__version__} | "
        f"{args.threads} thread(s) | level {args.level}"
    )
    print(f"{'renderer':<10}{'size':>6}{'images':>8}{'img/s':>12}{'img/s/core':>12}{'img/cpu-s':>11}  detail")
    for r in rows:
        rate, core, cpu = (
            f"{float(r[k]):.4g}" if r[k] != "" else "-"
            for k in ("images_per_second", "images_per_second_per_core", "images_per_cpu_second")
        )
        print(f"{r['renderer']:<10}{r['size']:>6}{r['images']:>8}{rate:>12}{core:>12}{cpu:>11}  {r['detail']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
