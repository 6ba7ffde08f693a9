"""A fit problem: data, objective, and how free parameters map onto law parameters per point.

Fixed, shared and per-group parameters are all the same mechanism: every law parameter has,
for every point, either a column of the free-parameter vector theta or a fixed value. One
evaluator then serves single fits, global fits over many curves, lmfit and the batched solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from analysis.batched_lsq import robust_cost
from analysis.laws import Law

SPACES = ("linear", "log")
LOSSES = ("l2", "huber")
_TINY = 1e-300


def group_label(name: str, group: str | None) -> str:
    return name if group is None else f"{name}[{group}]"


@dataclass
class FitProblem:
    law: Law
    xs: dict[str, np.ndarray]
    y: np.ndarray
    weights: np.ndarray
    space: str
    loss: str
    huber_delta: float
    group_codes: np.ndarray
    group_names: tuple[str, ...] | None
    shared: tuple[str, ...]
    fixed: dict[str, float]
    bounds: dict[str, tuple[float, float]]
    free_names: tuple[str, ...]
    free_law_params: tuple[str, ...]
    free_groups: tuple[str | None, ...]
    columns: dict[str, np.ndarray]
    cluster_codes: np.ndarray | None = None  # per point, the resampling unit (the seed) of a cluster bootstrap
    cluster_names: tuple[str, ...] | None = None

    @classmethod
    def build(
        cls,
        law: Law,
        xs: dict[str, np.ndarray],
        y: np.ndarray,
        *,
        weights: np.ndarray | None,
        space: str,
        loss: str,
        huber_delta: float,
        groups: Sequence[object] | None,
        shared: Sequence[str],
        fixed: Mapping[str, float],
        bounds: Mapping[str, tuple[float, float]],
        clusters: Sequence[object] | None = None,
    ) -> "FitProblem":
        size = y.shape[0]
        cluster_codes, cluster_names = None, None
        if clusters is not None:
            cluster_labels = [str(c) for c in clusters]
            if len(cluster_labels) != size:
                raise ValueError(f"clusters has {len(cluster_labels)} rows but y has {size}")
            cluster_names = tuple(dict.fromkeys(cluster_labels))
            cluster_of = {c: i for i, c in enumerate(cluster_names)}
            cluster_codes = np.array([cluster_of[c] for c in cluster_labels], dtype=np.int64)
        if groups is None:
            group_codes = np.zeros(size, dtype=np.int64)
            group_names: tuple[str, ...] | None = None
        else:
            labels = np.asarray([str(g) for g in groups], dtype=object)
            if labels.shape[0] != size:
                raise ValueError(f"groups has {labels.shape[0]} rows but y has {size}")
            group_names = tuple(dict.fromkeys(labels.tolist()))
            code_of = {g: i for i, g in enumerate(group_names)}
            group_codes = np.array([code_of[g] for g in labels], dtype=np.int64)
        free_names: list[str] = []
        free_law_params: list[str] = []
        free_groups: list[str | None] = []
        columns: dict[str, np.ndarray] = {}
        for name in law.param_names:
            if name in fixed:
                columns[name] = np.full(size, -1, dtype=np.int64)
                continue
            if group_names is None or name in shared:
                columns[name] = np.full(size, len(free_names), dtype=np.int64)
                free_names.append(name)
                free_law_params.append(name)
                free_groups.append(None)
                continue
            first = len(free_names)
            columns[name] = first + group_codes
            for group in group_names:
                free_names.append(group_label(name, group))
                free_law_params.append(name)
                free_groups.append(group)
        return cls(
            law=law,
            xs=xs,
            y=y,
            weights=np.ones(size) if weights is None else np.asarray(weights, dtype=float),
            space=space,
            loss=loss,
            huber_delta=huber_delta,
            group_codes=group_codes,
            group_names=group_names,
            shared=tuple(shared),
            fixed={k: float(v) for k, v in fixed.items()},
            bounds={k: (float(v[0]), float(v[1])) for k, v in bounds.items()},
            free_names=tuple(free_names),
            free_law_params=tuple(free_law_params),
            free_groups=tuple(free_groups),
            columns=columns,
            cluster_codes=cluster_codes,
            cluster_names=cluster_names,
        )

    @property
    def n_free(self) -> int:
        return len(self.free_names)

    @property
    def n_points(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_free_per_group(self) -> int:
        """Free parameters that belong to one curve alone (shared ones are pinned down by all curves)."""
        return len({p for p, g in zip(self.free_law_params, self.free_groups) if g is not None})

    @property
    def lower(self) -> np.ndarray:
        return np.array([self.bounds[p][0] for p in self.free_law_params])

    @property
    def upper(self) -> np.ndarray:
        return np.array([self.bounds[p][1] for p in self.free_law_params])

    def expand_starts(self, law_level_starts: np.ndarray, free_law_order: Sequence[str]) -> np.ndarray:
        """Starts given per law parameter become theta rows (every group starts from the same value)."""
        position = {name: j for j, name in enumerate(free_law_order)}
        return np.stack([law_level_starts[:, position[p]] for p in self.free_law_params], axis=1)

    def param_values(self, theta: np.ndarray, point_index: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        """Law parameter values per point: theta (..., k) -> {name: (..., m)} (fixed ones as floats)."""
        values: dict[str, np.ndarray] = {}
        for name in self.law.param_names:
            if name in self.fixed:
                values[name] = np.asarray(self.fixed[name])
            else:
                values[name] = np.take(theta, self.columns[name][point_index], axis=-1)
        return values

    def model(self, theta: np.ndarray, point_index: np.ndarray | slice = slice(None)) -> np.ndarray:
        xs = {v: column[point_index] for v, column in self.xs.items()}
        return self.law.evaluate(xs, self.param_values(theta, point_index))

    def transform(self, values: np.ndarray) -> np.ndarray:
        if self.space == "log":
            return np.log(np.maximum(values, _TINY))
        return values

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        return np.exp(values) if self.space == "log" else values

    def residuals(
        self,
        theta: np.ndarray,
        point_index: np.ndarray | slice = slice(None),
        y: np.ndarray | None = None,
    ) -> np.ndarray:
        """Weighted residuals in the fit space (what the loss is applied to)."""
        target = self.y[point_index] if y is None else y
        prediction = self.model(theta, point_index)
        return (self.transform(prediction) - self.transform(target)) * np.sqrt(self.weights[point_index])

    def cost(self, theta: np.ndarray) -> float:
        return float(robust_cost(self.residuals(theta), self.loss, self.huber_delta))

    def batched_residual_fn(
        self, sample_index: np.ndarray, sample_y: np.ndarray | None = None, sample_weight: np.ndarray | None = None
    ):
        """Closure for ``solve_batched``: row r of theta is scored on resample ``sample_index[r]``.

        ``sample_weight`` (resamples, points) multiplies each point's weight: a cluster drawn twice counts twice.
        """
        shared_sample = sample_index.shape[0] == 1
        uniform = {
            name: int(column[0])
            for name, column in self.columns.items()
            if name not in self.fixed and np.all(column == column[0])
        }

        def residual_fn(theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
            index = sample_index if shared_sample else sample_index[rows]
            target = self.y[index] if sample_y is None else (sample_y if shared_sample else sample_y[rows])
            values = {}
            for name in self.law.param_names:
                if name in self.fixed:
                    values[name] = np.asarray(self.fixed[name])
                elif name in uniform:
                    values[name] = theta[:, uniform[name] : uniform[name] + 1]
                else:
                    columns = np.broadcast_to(self.columns[name][index], (theta.shape[0], index.shape[-1]))
                    values[name] = np.take_along_axis(theta, columns, axis=1)
            weight = self.weights[index]
            if sample_weight is not None:
                weight = weight * sample_weight[rows]
            with np.errstate(all="ignore"):
                prediction = self.law.evaluate({v: column[index] for v, column in self.xs.items()}, values)
                return (self.transform(prediction) - self.transform(target)) * np.sqrt(weight)

        return residual_fn
