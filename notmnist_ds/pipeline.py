"""From verified archives to split membership, for both configs.

``prepare`` reads each archive once, draws the raw splits, builds one
duplicate index over every image of both archives, and derives the sanitized
splits and both overlap reports from it. The dataset builder and the export
both read from the returned ``Prepared``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dedup.index import DuplicateIndex, build_index
from dedup.near import DedupSettings, ImageSet
from dedup.overlap import OverlapReport, overlap_report
from dedup.sanitize import SanitizedSplits, sanitize

from . import __version__
from .constants import CLASS_NAMES, DEFAULT_SIZES, LARGE, NUM_CLASSES, SMALL, SPLIT_NAMES
from .memory import release_free_memory
from .reader import ArchiveImages, read_archive, start_decoders
from .splits import SplitSizeError, per_letter, seeded_order, select_splits, split_keys

logger = logging.getLogger(__name__)

CONFIG_NAMES = ("sanitized", "raw")
DEFAULT_CONFIG = "sanitized"


@dataclass(frozen=True)
class BuildOptions:
    """Everything that decides a build's rows; sizes are totals, None is 'all'."""

    train_size: int | None = DEFAULT_SIZES["train"]
    validation_size: int | None = DEFAULT_SIZES["validation"]
    test_size: int | None = DEFAULT_SIZES["test"]
    seed: int = 0
    dedup: DedupSettings = field(default_factory=DedupSettings)

    def __post_init__(self) -> None:
        for split in SPLIT_NAMES:
            per_letter(self.size(split), split)  # raises on sizes not divisible by 10
        if self.train_size is None and self.validation_size is None:
            raise SplitSizeError(
                "train and validation are both drawn from notMNIST_large.tar.gz, so "
                "only one of --train-size and --valid-size can be 'all'"
            )

    def size(self, split: str) -> int | None:
        return {
            "train": self.train_size,
            "validation": self.validation_size,
            "test": self.test_size,
        }[split]

    def to_dict(self) -> dict:
        return {
            "train_size": self.train_size,
            "validation_size": self.validation_size,
            "test_size": self.test_size,
            "seed": self.seed,
            "dedup": self.dedup.to_dict(),
        }


def build_fingerprint(options: BuildOptions, tarball_sha256: dict[str, str]) -> str:
    """Return a short id of the inputs, options and code version of a build."""
    payload = {
        "options": options.to_dict(),
        "tarballs": dict(sorted(tarball_sha256.items())),
        "version": __version__,
    }
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class PhaseTimer:
    """Wall time of each phase, for the build report and the benchmarks."""

    seconds: dict[str, float] = field(default_factory=dict)

    def record(self, phase: str, started: float) -> None:
        self.seconds[phase] = round(time.perf_counter() - started, 3)


@dataclass
class Prepared:
    """Every image of both archives and the membership of every split."""

    options: BuildOptions
    archives: dict[str, ArchiveImages]  # keyed by Tarball.name: large first
    offsets: dict[str, int]  # global index of each archive's first image
    index: DuplicateIndex
    raw: dict[str, np.ndarray]  # split -> global image indices, seeded order
    sanitized: SanitizedSplits
    overlap: dict[str, OverlapReport]  # config -> report
    tarball_sha256: dict[str, str]
    timer: PhaseTimer

    @property
    def fingerprint(self) -> str:
        return build_fingerprint(self.options, self.tarball_sha256)

    def split_indices(self, config: str, split: str) -> np.ndarray:
        if config == "raw":
            return self.raw[split]
        if config == "sanitized":
            return self.sanitized.splits[split]
        raise ValueError(f"unknown config {config!r}; expected one of {CONFIG_NAMES}")

    def locate(self, image: int) -> tuple[ArchiveImages, int]:
        """Return the archive holding global image index ``image`` and its local index."""
        large = self.archives[LARGE.name]
        if image < len(large):
            return large, image
        return self.archives[SMALL.name], image - self.offsets[SMALL.name]

    def labels(self) -> np.ndarray:
        return np.concatenate([a.labels for a in self.archives.values()])

    def source(self, image: int) -> str:
        archive, local = self.locate(image)
        return archive.sources[local]

    def example(self, image: int) -> dict:
        """Return the dataset row of one image."""
        archive, local = self.locate(image)
        return {
            "image": {"bytes": archive.png[local], "path": None},
            "label": int(archive.labels[local]),
            "font": archive.fonts[local],
            "source": archive.sources[local],
        }

    def pixels(self, image: int) -> np.ndarray:
        archive, local = self.locate(image)
        return archive.pixels(local)


def prepare(
    tarball_paths: dict[str, Path],
    tarball_sha256: dict[str, str],
    options: BuildOptions,
    workers: int = 2,
    progress: bool = True,
) -> Prepared:
    """Read both archives and decide the rows of every split of both configs."""
    timer = PhaseTimer()
    spec = options.dedup.hash_spec

    archives: dict[str, ArchiveImages] = {}
    executor = start_decoders(workers) if workers > 1 else None
    try:
        for tarball in (LARGE, SMALL):
            started = time.perf_counter()
            archives[tarball.name] = read_archive(
                tarball_paths[tarball.name],
                tarball,
                spec,
                workers=workers,
                progress=progress,
                shared_executor=executor,
            )
            release_free_memory()
            timer.record(f"read {tarball.name}", started)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # Raw splits: validation is drawn before train so that its membership does
    # not move when only the train size changes.
    started = time.perf_counter()
    large, small = archives[LARGE.name], archives[SMALL.name]
    offsets = {LARGE.name: 0, SMALL.name: len(large)}
    large_order = seeded_order(split_keys(large.sources, options.seed), large.sources)
    small_order = seeded_order(split_keys(small.sources, options.seed), small.sources)
    from_large = select_splits(
        large.labels,
        large_order,
        {
            "validation": per_letter(options.validation_size, "validation"),
            "train": per_letter(options.train_size, "train"),
        },
        LARGE.file_name,
    )
    from_small = select_splits(
        small.labels,
        small_order,
        {"test": per_letter(options.test_size, "test")},
        SMALL.file_name,
    )
    raw = {
        "train": from_large.splits["train"],
        "validation": from_large.splits["validation"],
        "test": from_small.splits["test"] + offsets[SMALL.name],
    }
    pools = {
        "validation": from_large.pool,
        "test": from_small.pool + offsets[SMALL.name],
    }
    timer.record("split", started)

    started = time.perf_counter()
    images = ImageSet.concatenate(
        [
            ImageSet(
                a.hashes, a.digests, a.labels, a.near_uniform, a.uniform_pixels, a.variants
            )
            for a in (large, small)
        ]
    )
    index = build_index(images, options.dedup)
    labels = images.labels
    # Free the concatenated copy of the archives' hashes and digests.
    del images
    release_free_memory()
    timer.record("deduplicate", started)

    started = time.perf_counter()
    sources = np.asarray(large.sources + small.sources, dtype=object)
    rank = np.empty(len(sources), dtype=np.int64)
    rank[np.argsort(sources, kind="stable")] = np.arange(len(sources))
    sanitized = sanitize(index, raw, pools, labels, NUM_CLASSES, rank)
    overlap = {
        "raw": overlap_report(index, raw, labels),
        "sanitized": overlap_report(index, sanitized.splits, labels),
    }
    release_free_memory()
    timer.record("sanitize", started)
    empty = [
        split
        for split, rows in sanitized.splits.items()
        if len(rows) == 0 and len(raw[split]) > 0
    ]
    if empty:
        raise SplitSizeError(
            f"the sanitized {' and '.join(empty)} split would be empty: every "
            f"candidate image duplicates an image of an earlier split under the rule "
            f"'{options.dedup.describe()}'. Use a smaller --max-distance, a larger "
            f"--hash-size, or a smaller --train-size"
        )
    for split, missing in sanitized.shortfall.items():
        if missing:
            letters = ", ".join(f"{CLASS_NAMES[k]}: {v}" for k, v in missing.items())
            logger.warning(
                "sanitized %s is short of images after refilling (%s); the pool of "
                "unused images ran out",
                split,
                letters,
            )

    return Prepared(
        options=options,
        archives=archives,
        offsets=offsets,
        index=index,
        raw=raw,
        sanitized=sanitized,
        overlap=overlap,
        tarball_sha256=tarball_sha256,
        timer=timer,
    )

