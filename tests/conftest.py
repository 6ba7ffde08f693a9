"""Shared fixtures: a toy demo study run once per session, in-process, for the end-to-end tests."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "experiments" / "conf"

TOY_OVERRIDES = ["+experiment=toy", "launcher=debug", "n=[0,100,200,400]", "seeds=[0,1]", "render_workers=1"]


def load_demo_config(root: Path, *overrides: str):
    from experiments.digits_demo import DemoConfig
    from lab.core.config import load_config

    return load_config(CONF_DIR, "demo", DemoConfig, [*TOY_OVERRIDES, f"root={root}", *overrides])


@pytest.fixture(scope="session")
def toy_study(tmp_path_factory):
    """The toy study's outcome and its config (about 15 s on 2 cores)."""
    from experiments.digits_demo import run_demo

    root = tmp_path_factory.mktemp("runs")
    config = load_demo_config(root)
    return config, run_demo(config)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models run fastest that way, and two tests do not fight over cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
