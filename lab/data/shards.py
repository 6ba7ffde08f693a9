"""A sharded array format with a manifest: resumable to write, verified on read.

Layout of a dataset folder:
    shard-00000.npz ...   fixed-size shards of named arrays (first axis = sample)
    shard-00000.json ...  sidecar written after its shard: sample count and sha256 (marks the shard finished)
    manifest.json         written last: count, seed, generator config + hash, shard list, content hash

The shard file itself is a `ShardFormat`: `NPZ_FORMAT` here (stacked arrays), or webdataset-style tar
(`lab.data.tar_shards.TAR_FORMAT`, one file per sample and field); the sidecars, manifest, resume and
verification are shared.

Shard k holds samples [k * shard_size, (k + 1) * shard_size), so the first n samples of a large render are a
nested subset of it. Samples are produced by `make_sample(index)` and must depend only on (seed, index): that is
what makes generation resumable and parallel without changing a single byte, and why two renders of the same
folder at once are safe: each writes through its own temporary file and renames it into place, so the last writer
wins with identical bytes. A shard found damaged on a later render is named on stderr and regenerated.

A manifest names its shard files relative to its folder: an entry that leaves the folder (absolute, `..`) is
refused (`ManifestError`), and so is a tar shard that repeats a sample key (`lab.data.tar_shards`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np
from tqdm.auto import tqdm

from lab.core.rundir import atomic_write_bytes, atomic_write_json, config_hash, sha256_file

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

SampleFn = Callable[[int], Mapping[str, np.ndarray | int | float]]


class CorruptShardError(RuntimeError):
    """A shard that is missing, truncated or whose bytes do not match its recorded hash."""


class ManifestError(ValueError):
    """A manifest that cannot describe this folder: e.g. a shard entry whose file lies outside it."""


class ShardFormat(Protocol):
    """How the samples of one shard become the bytes of one file."""

    name: str

    def file_name(self, shard: int) -> str: ...

    def encode(self, samples: Sequence[Mapping[str, Any]]) -> bytes: ...


class NpzFormat:
    """Every field stacked along a first sample axis into one `.npz` (small fixed-size samples)."""

    name = "npz"

    def file_name(self, shard: int) -> str:
        return shard_name(shard)

    def encode(self, samples: Sequence[Mapping[str, Any]]) -> bytes:
        arrays = {key: np.stack([np.asarray(s[key]) for s in samples]) for key in samples[0]}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()


NPZ_FORMAT = NpzFormat()


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _shard_range(shard: int, shard_size: int, count: int) -> range:
    return range(shard * shard_size, min((shard + 1) * shard_size, count))


def _write_shard(out_dir: Path, shard: int, indices: range, make_sample: SampleFn, generator_hash: str,
                 shard_format: ShardFormat = NPZ_FORMAT) -> dict[str, Any]:
    # a generator may make a whole shard in one call (`make_samples(indices)`), e.g. one renderer process per shard
    make_samples = getattr(make_sample, "make_samples", None)
    samples = make_samples(indices) if make_samples is not None else [make_sample(i) for i in indices]
    data = shard_format.encode(samples)
    path = out_dir / shard_format.file_name(shard)
    atomic_write_bytes(path, data)  # a temporary file of its own: concurrent renders of this shard never collide
    record = {"file": path.name, "start": indices.start, "count": len(indices),
              "sha256": hashlib.sha256(data).hexdigest(), "config_hash": generator_hash}
    atomic_write_json(sidecar_path(path), record)
    return record


def _finished_record(out_dir: Path, shard: int, indices: range, generator_hash: str,
                     shard_format: ShardFormat = NPZ_FORMAT) -> tuple[dict[str, Any] | None, str]:
    """(the sidecar of a finished shard, '') if it is complete, intact and made by the same generator config, else
    (None, why it will be regenerated; '' for a shard never finished). A folder re-used with another config never
    mixes samples."""
    path = out_dir / shard_format.file_name(shard)
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return None, ""
    if not path.exists():
        return None, f"{path.name} is missing (its sidecar {sidecar.name} is there)"
    try:
        record = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, f"its sidecar {sidecar.name} is not valid JSON"
    if not isinstance(record, dict):
        return None, f"its sidecar {sidecar.name} is not a record"
    if record.get("config_hash") != generator_hash:
        return None, f"{path.name} was made by another generator config"
    if (record.get("count"), record.get("start")) != (len(indices), indices.start):
        return None, (f"{path.name} holds samples {record.get('start')}+{record.get('count')}, not the expected "
                      f"{indices.start}+{len(indices)}")
    if sha256_file(path) != record.get("sha256"):
        return None, f"{path.name} is corrupt or truncated (its sha256 differs from {sidecar.name})"
    return record, ""


def write_sharded(
    out_dir: Path | str,
    make_sample: SampleFn,
    count: int,
    *,
    shard_size: int,
    generator: Mapping[str, Any],
    seed: int,
    workers: int = 1,
    progress: bool = True,
    only_shards: Sequence[int] | None = None,
    shard_format: ShardFormat = NPZ_FORMAT,
    manifest_extra: Mapping[str, Any] | None = None,
    start_method: str | None = None,
) -> dict[str, Any] | None:
    """Generate `count` samples into `out_dir`, keeping intact finished shards; return the manifest.

    `generator` is the generator's config (recorded and hashed); `make_sample` must be picklable when
    `workers > 1` (a module-level function or a dataclass instance with `__call__`). With `only_shards`,
    just those shards are made and no manifest is written (one task of an array job renders a slice; a
    later call without it verifies every shard and writes the manifest). `manifest_extra` adds (or
    overrides) manifest fields, e.g. how a sample's key and seed derive from its index. `start_method`
    picks how worker processes start ("spawn" for generators that run torch: a forked child of a process
    that already ran OpenMP kernels can deadlock; None = the platform default).
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(count / shard_size)
    generator_hash = config_hash(generator)
    records: dict[int, dict[str, Any]] = {}
    todo = []
    wanted = range(n_shards) if only_shards is None else sorted(set(only_shards))
    if any(not 0 <= shard < n_shards for shard in wanted):
        raise ValueError(f"only_shards must lie in [0, {n_shards}) for {count} samples of {shard_size} per shard")
    for shard in wanted:
        indices = _shard_range(shard, shard_size, count)
        record, why = _finished_record(out_dir, shard, indices, generator_hash, shard_format)
        if record is None:
            todo.append((shard, indices))
            if why:
                print(f"render {out_dir}: regenerating shard {shard}: {why}", file=sys.stderr)
        else:
            records[shard] = record
    bar = tqdm(total=len(wanted), initial=len(wanted) - len(todo), desc=f"render {out_dir.name}", unit="shard",
               disable=not progress)
    if workers > 1 and len(todo) > 1:
        context = multiprocessing.get_context(start_method) if start_method else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_write_shard, out_dir, s, idx, make_sample, generator_hash, shard_format): s
                       for s, idx in todo}
            for future in futures:
                records[futures[future]] = future.result()
                bar.update()
    else:
        for shard, indices in todo:
            records[shard] = _write_shard(out_dir, shard, indices, make_sample, generator_hash, shard_format)
            bar.update()
    bar.close()
    if only_shards is not None:
        return None
    shards = [records[s] for s in range(n_shards)]
    manifest = {
        "format_version": FORMAT_VERSION,
        "shard_format": shard_format.name,
        "count": count,
        "seed": seed,
        "shard_size": shard_size,
        "sample_seed": "numpy.random.default_rng([seed, index])",
        "generator": dict(generator),
        "config_hash": generator_hash,
        "shards": shards,
        "content_hash": hashlib.sha256("".join(r["sha256"] for r in shards).encode()).hexdigest(),
        **(manifest_extra or {}),
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest


def read_manifest(path: Path, name: str = MANIFEST) -> dict[str, Any]:
    """The manifest of a finished dataset folder (a clear error if the render never finished)."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise ManifestError(f"manifest name {name!r} must be a file name in the dataset folder {path}")
    manifest_path = Path(path) / name
    if not manifest_path.exists():
        raise FileNotFoundError(f"no {name} in {path}: the dataset was never finished (re-render it)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{manifest_path} is not valid JSON ({error}); re-render the dataset") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards", []), list):
        raise ManifestError(f"{manifest_path} is not a dataset manifest (no list of shards)")
    for record in manifest.get("shards", []):
        shard_path(Path(path), record, manifest_path)
    return manifest


def shard_path(folder: Path, record: Mapping[str, Any], manifest: Path | None = None) -> Path:
    """The file a manifest record names, which must be a file of `folder` itself: an absolute path, `..` or a
    link out of the folder is a `ManifestError` (a crafted manifest must not read files elsewhere)."""
    name = record.get("file") if isinstance(record, Mapping) else None
    where = f"{manifest or Path(folder) / MANIFEST}: shard entry {name!r}"
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where} names no file")
    if os.path.isabs(name) or ".." in Path(name).parts:
        raise ManifestError(f"{where} leaves the dataset folder {folder}; a shard must be a file inside it")
    path = Path(folder) / name
    root = Path(folder).resolve()
    if path.exists() and root not in path.resolve().parents:
        raise ManifestError(f"{where} resolves to {path.resolve()}, outside the dataset folder {folder}")
    return path


def verified_shard(folder: Path, record: Mapping[str, Any]) -> Path:
    """The path of a shard whose bytes match its manifest record, else a `CorruptShardError` naming it."""
    path = shard_path(Path(folder), record)
    if not path.exists():
        raise CorruptShardError(f"shard {path} is missing")
    if sha256_file(path) != record["sha256"]:
        raise CorruptShardError(
            f"shard {path} is corrupt or truncated (sha256 differs from the manifest); "
            "re-run the render to regenerate it"
        )
    return path


@dataclass(frozen=True)
class ShardedDataset:
    """Read access to a folder written by `write_sharded`; every shard read is verified."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: Path | str) -> "ShardedDataset":
        path = Path(path)
        return cls(path, read_manifest(path))

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    def iter_shards(self, n: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """The first `n` samples (all by default), one verified shard in memory at a time."""
        n = self.count if n is None else n
        if not 0 <= n <= self.count:
            raise ValueError(f"asked for {n} samples but {self.path} holds {self.count}")
        for record in self.manifest["shards"]:
            if record["start"] >= n:
                return
            arrays = self._read_shard(record)
            yield {key: value[: n - record["start"]] for key, value in arrays.items()}

    def load(self, n: int | None = None) -> dict[str, np.ndarray]:
        """The first `n` samples (all by default) as arrays, after checking each shard's hash."""
        parts: dict[str, list[np.ndarray]] = {}
        for arrays in self.iter_shards(n):
            for key, value in arrays.items():
                parts.setdefault(key, []).append(value)
        return {key: np.concatenate(values) for key, values in parts.items()}

    def _read_shard(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        path = verified_shard(self.path, record)
        try:
            with np.load(path) as data:
                arrays = {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            raise CorruptShardError(f"shard {path} cannot be read: {error}") from error
        lengths = {len(v) for v in arrays.values()}
        if lengths != {record["count"]}:
            raise CorruptShardError(f"shard {path} holds {lengths} samples, manifest says {record['count']}")
        return arrays
