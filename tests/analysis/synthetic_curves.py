"""Synthetic transfer curves shared by the analysis tests (a plain module, so imports are explicit)."""

from __future__ import annotations

import numpy as np

N_VALUES = 1000 * 2.0 ** np.arange(7)


def noisy_power_floor(
    rng: np.random.Generator, *, D: float = 0.48, alpha: float = 0.2, C: float = 0.8, noise: float = 0.003, seeds: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's setting: n = 1k..64k doubling, several seeds per n, Gaussian seed noise."""
    n = np.repeat(N_VALUES, seeds)
    return n, D * n ** (-alpha) + C + rng.normal(0.0, noise, n.size)
