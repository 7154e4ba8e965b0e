"""Shared test setup: deterministic seeds, one torch thread per test process (CI has 2 cores)."""

import random

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)
