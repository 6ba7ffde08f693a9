"""Webdataset-style tar shards: the second shard format of `lab.data.shards`, for samples of several large fields.

A shard `shard-000000.tar` holds, in sample order, one member per sample and field named `<key>.<field>`
(`000000012.rgb.png`, `000000012.depth.npy`, `000000012.json`): the layout the `webdataset` package reads,
written here with `tarfile` alone. Fields are encoded by their extension (`.png` uint8/uint16 images,
`.npy` arrays, `.json` objects, anything else raw bytes). Headers are fixed (mtime 0, uid/gid 0, no user
names, mode 0644, ustar) and fields are sorted within a sample, so a shard's bytes depend only on its samples.

`TarShardDataset` streams a finished folder as a PyTorch `IterableDataset`: every shard is checked against
the manifest's sha256 before it is read, the first `n` samples form a nested subset, and DataLoader workers
split the shards between them. A shard that repeats a sample key or a field of a sample, or holds more samples than
its manifest record says (an extra member would take the next shard's indices), is a `CorruptShardError`.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from lab.data.shards import MANIFEST, CorruptShardError, read_manifest, shard_path, verified_shard
from lab.core.rundir import atomic_write_json

KEY = "__key__"
INDEX = "__index__"


def encode_field(field: str, value: Any) -> bytes:
    """The bytes of one field, by its extension (the webdataset convention)."""
    if isinstance(value, bytes):
        return value
    if field.endswith("json"):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    if field.endswith(".npy"):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        return buffer.getvalue()
    if field.endswith(".png"):
        array = np.asarray(value)
        if array.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"field {field!r}: PNG needs uint8 or uint16 pixels, got {array.dtype}")
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", compress_level=6)
        return buffer.getvalue()
    raise TypeError(f"field {field!r}: no encoder for its extension; pass bytes, or use .png, .npy or .json")


def decode_field(field: str, data: bytes) -> Any:
    """The inverse of `encode_field`."""
    if field.endswith("json"):
        return json.loads(data)
    if field.endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    if field.endswith(".png"):
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image)
    return data


class TarFormat:
    """One tar per shard; each sample a mapping with `__key__` and field -> value (encoded by extension)."""

    name = "tar"

    def file_name(self, shard: int) -> str:
        return f"shard-{shard:06d}.tar"

    def encode(self, samples: Sequence[Mapping[str, Any]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for sample in samples:
                key = str(sample[KEY])
                if "." in key or "/" in key:
                    raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
                for field in sorted(f for f in sample if f != KEY):
                    data = encode_field(field, sample[field])
                    info = tarfile.TarInfo(f"{key}.{field}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


TAR_FORMAT = TarFormat()


def iter_tar_samples(path: Path, decode: bool = True,
                     fields: Collection[str] | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one tar shard in order: consecutive members with the same key form one sample
    (only `fields`, when given: a task that needs the RGB and a mask skips decoding the rest). A key that comes
    back after another one, or a field twice in one sample, is a `CorruptShardError` naming both."""
    current: dict[str, Any] = {}
    keys: set[str] = set()
    fields_seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, field = Path(member.name).name.partition(".")
                if current and current[KEY] != key:
                    yield current
                    current = {}
                if not current:
                    if key in keys:
                        raise CorruptShardError(f"shard {path} holds sample key {key!r} twice (member {member.name})")
                    keys.add(key)
                    fields_seen = set()
                if field in fields_seen:
                    raise CorruptShardError(f"shard {path} holds field {field!r} of sample {key!r} twice")
                fields_seen.add(field)
                current[KEY] = key
                if fields is not None and field not in fields:
                    continue
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                current[field] = decode_field(field, data) if decode else data
    except (tarfile.TarError, OSError, ValueError) as error:
        raise CorruptShardError(f"shard {path} cannot be read: {error}") from error
    if current:
        yield current


def subset_manifest(manifest: Mapping[str, Any], n: int) -> dict[str, Any]:
    """The manifest of the first `n` samples: the same shard files, `count` = n (the paper subsamples one render)."""
    count = int(manifest["count"])
    if not 0 < n <= count:
        raise ValueError(f"a subset needs 0 < n <= {count} (the samples in the render), got {n}")
    subset = dict(manifest)
    subset["count"] = n
    subset["shards"] = [r for r in manifest["shards"] if r["start"] < n]
    subset["subset_of"] = {"count": count, "content_hash": manifest["content_hash"]}
    subset["content_hash"] = f"{manifest['content_hash']}:first{n}"
    return subset


def write_subset_manifest(folder: Path | str, n: int) -> Path:
    """Write `manifest-first<n>.json` next to the full manifest; open it with `manifest=` to read just those."""
    folder = Path(folder)
    path = folder / f"manifest-first{n}.json"
    atomic_write_json(path, subset_manifest(read_manifest(folder), n))
    return path


class TarShardDataset(IterableDataset):
    """Stream the first `n` samples (all by default) of a tar-sharded folder, each shard verified first.

    Each sample is a dict of decoded fields (all, or just `fields`) plus `__key__` and `__index__`; `transform`
    maps it to whatever a task needs. With DataLoader workers, worker w reads shards w, w + W, ... (the order
    then interleaves by shard).
    """

    def __init__(self, path: Path | str, n: int | None = None, *, manifest: str = MANIFEST, decode: bool = True,
                 fields: Collection[str] | None = None, transform: Callable[[dict[str, Any]], Any] | None = None,
                 verify: bool = True) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path, manifest)
        if self.manifest.get("shard_format") != TAR_FORMAT.name:
            raise ValueError(f"{self.path / manifest} describes {self.manifest.get('shard_format', 'npz')} shards, "
                             "not tar (read npz folders with lab.data.shards.ShardedDataset)")
        available = int(self.manifest["count"])
        self.n = available if n is None else int(n)
        if not 0 <= self.n <= available:
            raise ValueError(f"asked for {self.n} samples but {self.path} holds {available}")
        missing = sorted(set(fields or ()) - set(self.manifest.get("fields", fields or ())))
        if missing:
            raise ValueError(f"{self.path} has no field(s) {', '.join(missing)}; "
                             f"it holds {', '.join(self.manifest['fields'])}")
        self.decode, self.fields, self.transform, self.verify = decode, fields, transform, verify

    def __len__(self) -> int:
        return self.n

    def shard_records(self) -> list[dict[str, Any]]:
        records = [r for r in self.manifest["shards"] if r["start"] < self.n]
        worker = get_worker_info()
        if worker is None:
            return records
        return records[worker.id :: worker.num_workers]

    def __iter__(self) -> Iterator[Any]:
        for record in self.shard_records():
            path = verified_shard(self.path, record) if self.verify else shard_path(self.path, record)
            seen = 0
            for offset, sample in enumerate(iter_tar_samples(path, self.decode, self.fields)):
                index = record["start"] + offset
                if offset >= record["count"]:
                    raise CorruptShardError(f"shard {path} holds more than the {record['count']} samples its manifest "
                                            f"record says (sample {sample[KEY]!r} would repeat index {index})")
                if index >= self.n:
                    break
                seen += 1
                sample[INDEX] = index
                yield self.transform(sample) if self.transform else sample
            if seen < min(record["count"], self.n - record["start"]):
                raise CorruptShardError(f"shard {path} holds {seen} samples, the manifest says {record['count']}")
