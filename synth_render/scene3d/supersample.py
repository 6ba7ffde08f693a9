"""Supersampling: a view rendered at k times the output size, area-downsampled to it (`downsample_outputs`).

Why: at the study's 32-64 px, one ray per pixel aliases object edges (staircase silhouettes, thin parts that
drop in and out), so small objects' appearance depends on where pixel centres happen to fall. Averaging k x k
rays per pixel gives edges the intermediate colours a camera would record. Engine-independent: the writer
asks any engine for a (k * width, k * height) render and downsamples it here.

Rules, per output pixel and its k x k block of samples:
- RGB: the mean of the block's 8-bit sRGB values, rounded half up (integer arithmetic, so exact). It averages
  the encoded bytes, not linear radiance: the same for every engine whatever its encoding curve; an edge
  between a bright and a dark surface comes out a little darker than a linear box filter would make it.
- Annotations come from one choice, so instance, semantic, depth and normals always agree: each sample's
  label is its instance id, or "nothing hit" (instance 0 with infinite depth, counted apart from the room,
  which is instance 0 with a finite depth). The block's most frequent label wins; ties go to objects before
  the room before nothing hit, and among objects to the smallest id. The pixel takes the winner's instance
  and semantic ids, the mean depth and the renormalised mean normal of the block's samples that carry the
  winning label; where nothing was hit, depth +inf and normal 0 (the RenderOutput convention).
k = 1 returns the render itself, unchanged.
"""

from __future__ import annotations

import numpy as np

from synth_render.scene3d.renderers.base import RenderOutput

MAX_SUPERSAMPLE = 8
NOTHING_HIT = -1  # the label of a sample whose ray hit nothing


def blocks(array: np.ndarray, k: int) -> np.ndarray:
    """[k H, k W, ...] -> [H, W, k * k, ...]: each output pixel's samples, row-major within the block."""
    height, width = array.shape[0] // k, array.shape[1] // k
    rest = array.shape[2:]
    return array.reshape(height, k, width, k, *rest).swapaxes(1, 2).reshape(height, width, k * k, *rest)


def sample_labels(out: RenderOutput) -> np.ndarray:
    """int64 [H, W]: the instance id where a surface was hit, NOTHING_HIT where the ray hit nothing."""
    return np.where(np.isfinite(out.depth), out.instance.astype(np.int64), NOTHING_HIT)


def majority_sample(labels: np.ndarray) -> np.ndarray:
    """int64 [H, W]: for label blocks [H, W, n], the index of one sample carrying the winning label (most
    frequent; ties: objects, smallest id first, then the room, then nothing hit)."""
    votes = np.zeros(labels.shape, dtype=np.int64)
    for j in range(labels.shape[-1]):
        votes += labels == labels[..., j : j + 1]
    tie_break = np.where(labels > 0, 2**32 - labels, labels - NOTHING_HIT)  # objects > 1 = room > 0 = nothing
    return np.argmax(votes * 2**33 + tie_break, axis=-1)


def downsample_outputs(out: RenderOutput, k: int) -> RenderOutput:
    """A render of size (k W, k H) -> (W, H) by the rules of the module docstring."""
    if int(k) != k or not 1 <= k <= MAX_SUPERSAMPLE:
        raise ValueError(f"supersample factor must be an integer in [1, {MAX_SUPERSAMPLE}], got {k!r}")
    k = int(k)
    if k == 1:
        return out
    height, width = out.depth.shape
    if height % k or width % k:
        raise ValueError(f"a {width}x{height} render does not split into {k}x{k} blocks")
    n = k * k
    rgb = ((blocks(out.rgb, k).astype(np.int64).sum(axis=2) + n // 2) // n).astype(np.uint8)
    labels = blocks(sample_labels(out), k)
    winner = majority_sample(labels)[..., None]
    label = np.take_along_axis(labels, winner, axis=-1)[..., 0]
    chosen = labels == label[..., None]
    hit = label != NOTHING_HIT
    depth_sum = np.where(chosen, blocks(out.depth, k).astype(np.float64), 0.0).sum(axis=-1)
    depth = np.where(hit, depth_sum / chosen.sum(axis=-1), np.inf).astype(np.float32)
    normal = (blocks(out.normals, k).astype(np.float64) * chosen[..., None]).sum(axis=2)
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    normals = np.where(hit[..., None] & (length > 0), normal / np.maximum(length, 1e-12), 0.0).astype(np.float32)
    semantic = np.take_along_axis(blocks(out.semantic, k), winner, axis=-1)[..., 0]
    return RenderOutput(
        rgb=rgb,
        depth=depth,
        normals=normals,
        instance=np.maximum(label, 0).astype(np.int32),
        semantic=np.ascontiguousarray(semantic, dtype=np.int32),
    )
