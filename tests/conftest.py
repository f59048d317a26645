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


SAMPLE_BUILD_SIZES = {"train": 5000, "validation": 1000, "test": 1000}
# Small shards, so the sample build writes more than one train shard.
SAMPLE_BUILD_SHARD_BYTES = 1 << 20


@pytest.fixture(scope="session")
def sample_build(sample_tarballs, tmp_path_factory):
    """One real build of the sample tarballs, shared by the tests that only read it.

    Returns the BuildResult; its datasets cache is ``result.cache_dir``.
    """
    from dedup.near import DedupSettings
    from notmnist_ds.build import build
    from notmnist_ds.pipeline import BuildOptions

    root = tmp_path_factory.mktemp("sample-build")
    options = BuildOptions(
        train_size=SAMPLE_BUILD_SIZES["train"],
        validation_size=SAMPLE_BUILD_SIZES["validation"],
        test_size=SAMPLE_BUILD_SIZES["test"],
        seed=0,
        dedup=DedupSettings(),
    )
    result = build(
        root / "notmnist",
        options,
        data_dir=sample_tarballs,
        verify=False,
        workers=2,
        max_shard_bytes=SAMPLE_BUILD_SHARD_BYTES,
        cache_dir=root / "hf-cache",
        progress=False,
    )
    result.cache_dir = root / "hf-cache"
    return result
