"""The same archives give the same dataset, whatever the process and member order.

Three builds run side by side, each in a fresh process with its own datasets
cache (a shared cache would hand the later builds the first one's Arrow files):

- ``reference``: PYTHONHASHSEED=0, one decoding process.
- ``two-workers``: PYTHONHASHSEED=12345, two decoding processes.
- ``shuffled``: PYTHONHASHSEED=777, one decoding process, both archives
  repacked with their members in another order.

Split membership (the sources of each split, in order) and the Parquet bytes
must be identical in all three.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from broken_inputs import repack_shuffled, write_small_tarballs

from notmnist_ds.constants import LARGE, SMALL, SPLIT_NAMES

SIZES = ["--train-size", "1500", "--valid-size", "300", "--test-size", "300"]
BUILDS = {
    "reference": {"hash_seed": "0", "workers": "1", "shuffled": False},
    "two-workers": {"hash_seed": "12345", "workers": "2", "shuffled": False},
    "shuffled": {"hash_seed": "777", "workers": "1", "shuffled": True},
}
OTHERS = ["two-workers", "shuffled"]
CONFIGS = ["raw", "sanitized"]


def member_names(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as archive:
        return archive.getnames()


@pytest.fixture(scope="module")
def tarballs(real_sample, tmp_path_factory) -> dict[str, Path]:
    """The archives as written, and a copy with each archive's members shuffled."""
    pixels, labels = real_sample
    plain = write_small_tarballs(
        pixels, labels, tmp_path_factory.mktemp("plain"), 200, 60
    )
    shuffled = tmp_path_factory.mktemp("shuffled")
    for seed, tarball in enumerate((LARGE, SMALL)):
        repack_shuffled(plain / tarball.file_name, shuffled / tarball.file_name, seed)
    return {"plain": plain, "shuffled": shuffled}


@pytest.fixture(scope="module")
def builds(tarballs, tmp_path_factory) -> dict[str, Path]:
    """The output folder of each build in BUILDS."""
    base = tmp_path_factory.mktemp("determinism")

    def run(item: tuple[str, dict]) -> tuple[str, Path]:
        name, setup = item
        root = base / name
        root.mkdir()
        data = tarballs["shuffled" if setup["shuffled"] else "plain"]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        environment.update(
            PYTHONHASHSEED=setup["hash_seed"],
            HF_DATASETS_CACHE=str(root / "cache"),
            HF_HOME=str(root / "hf-home"),
            HF_HUB_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "notmnist_ds.cli",
                "-q",
                "build",
                "--data-dir",
                str(data),
                "--no-verify",
                "--output",
                str(root / "out"),
                "--workers",
                setup["workers"],
                *SIZES,
            ],
            env=environment,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        return name, root / "out"

    with ThreadPoolExecutor(len(BUILDS)) as pool:
        return dict(pool.map(run, BUILDS.items()))


def split_sources(folder: Path, config: str) -> dict[str, list[str]]:
    return {
        split: [
            source
            for shard in sorted((folder / config).glob(f"{split}-*.parquet"))
            for source in pq.read_table(shard, columns=["source"])["source"].to_pylist()
        ]
        for split in SPLIT_NAMES
    }


def parquet_bytes(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*.parquet"))
    }


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("tarball", [LARGE, SMALL], ids=lambda t: t.name)
def test_shuffled_archive_has_same_members_in_other_order(tarballs, tarball):
    plain = member_names(tarballs["plain"] / tarball.file_name)
    shuffled = member_names(tarballs["shuffled"] / tarball.file_name)
    assert sorted(plain) == sorted(shuffled)
    assert plain != shuffled


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("other", OTHERS)
def test_split_membership_is_identical(builds, other, config):
    reference = split_sources(builds["reference"], config)
    assert split_sources(builds[other], config) == reference
    assert all(reference[split] for split in SPLIT_NAMES)


@pytest.mark.parametrize("other", OTHERS)
def test_parquet_bytes_are_identical(builds, other):
    reference = parquet_bytes(builds["reference"])
    assert len(reference) == 6
    assert parquet_bytes(builds[other]) == reference


REMOVALS = Path("reports") / "removals.csv"


@pytest.mark.parametrize("other", OTHERS)
def test_removed_images_are_identical(builds, other):
    def removed(folder: Path) -> list[list[str]]:
        return [row[:2] for row in csv_rows(folder / REMOVALS)]  # source, split

    assert removed(builds[other]) == removed(builds["reference"])


def test_removals_csv_is_identical_with_two_workers(builds):
    reference = csv_rows(builds["reference"] / REMOVALS)
    assert csv_rows(builds["two-workers"] / REMOVALS) == reference


def test_removals_csv_is_identical_when_shuffled(builds):
    reference = csv_rows(builds["reference"] / REMOVALS)
    assert csv_rows(builds["shuffled"] / REMOVALS) == reference


def test_skip_report_is_identical_with_two_workers(builds):
    path = Path("reports") / "skipped.csv"
    assert csv_rows(builds["two-workers"] / path) == csv_rows(
        builds["reference"] / path
    )


def test_skip_report_lists_same_members_when_shuffled(builds):
    path = Path("reports") / "skipped.csv"
    reference = csv_rows(builds["reference"] / path)
    assert len(reference) == 3  # header and the two empty PNGs
    assert sorted(csv_rows(builds["shuffled"] / path)) == sorted(reference)
