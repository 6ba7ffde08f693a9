"""Post-training test fixtures: every test runs its tiny models on one thread."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    yield
