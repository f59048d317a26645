"""Shared fixtures: the real notMNIST sample and tarballs made from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from notmnist_ds.sample_tarballs import read_idx, write_sample_tarballs

REAL_SAMPLE_DIR = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "notmnist-real-sample"
)


def require_real_sample() -> Path:
    """Return the real sample folder, or skip (fail under CI) when it is missing."""
    if (REAL_SAMPLE_DIR / "images-idx3-ubyte.gz").is_file():
        return REAL_SAMPLE_DIR
    message = f"real notMNIST sample not found at {REAL_SAMPLE_DIR}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI needs it beside the checkout")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_sample() -> tuple[np.ndarray, np.ndarray]:
    """The 8,000 real images as uint8 (N, 28, 28) pixels and their labels."""
    sample_dir = require_real_sample()
    return read_idx(
        sample_dir / "images-idx3-ubyte.gz", sample_dir / "labels-idx1-ubyte.gz"
    )


@pytest.fixture(scope="session")
def sample_tarballs(tmp_path_factory) -> Path:
    """A folder with notMNIST_large.tar.gz and notMNIST_small.tar.gz made from
    the real sample (640 and 160 images a letter, plus three empty PNGs)."""
    sample_dir = require_real_sample()
    folder = tmp_path_factory.mktemp("tarballs")
    write_sample_tarballs(sample_dir, folder)
    return folder
