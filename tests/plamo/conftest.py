"""PLaMo test fixtures: one thread per test (tiny models run fastest that way) and a float64 tiny model."""

from __future__ import annotations

import pytest
from plamo_helpers import tiny_float64

from lab.models.plamo import PlamoForCausalLM


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield


@pytest.fixture
def tiny64() -> PlamoForCausalLM:
    return tiny_float64()
