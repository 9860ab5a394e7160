"""Shared test fixtures: the project root on sys.path, the optional ../shared/data, small threads."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import SHARED_DATA  # noqa: E402


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; the test is skipped when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    import torch
    torch.set_num_threads(2)
