"""PLaMo test fixtures: one thread per test (tiny models run fastest that way) and a float64 tiny model."""

from __future__ import annotations

import pytest
import torch
from plamo_helpers import tiny_float64

from lab.models.plamo import PlamoForCausalLM


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny64() -> PlamoForCausalLM:
    return tiny_float64()
