"""Deduplication in real builds of the sample tarballs, checked by brute force.

Two builds share one ``datasets`` cache: the default ``--max-distance 4`` and
``--max-distance 6``. The reference here is computed from the published
output alone: PNGs decoded from the Parquet files, imagehash's phash of every
distinct image, and every pair compared one by one. Two glyphs are near
duplicates when their phash values differ in at most k bits, or their
median-filtered variant hashes do, or a shifted variant hash of one is within
k bits of the trimmed variant hash of the other (variant hashes from
dedup.variants, which tests/test_dedup.py checks against their definition).
Two near-uniform images are near duplicates when their mean absolute pixel
difference is at most the limit. A glyph and a near-uniform image never are.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import imagehash
import numpy as np
import pytest
from PIL import Image

from dedup.near import COMPARISONS, NEAR_UNIFORM_MAX_MEAN_DIFFERENCE, NEAR_UNIFORM_MAX_RANGE
from dedup.variants import compute_variant_hashes
from near_reference import comparison_distances
from notmnist_ds.constants import CLASS_NAMES, IMAGE_PIXELS, SPLIT_NAMES

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = {"train": 5000, "validation": 1000, "test": 1000}
DEFAULT_DISTANCE = 4
OTHER_DISTANCE = 6
PIXEL_DECIDED = -1
# Mean absolute difference <= limit, as an exact integer bound on the sum.
MAX_UNIFORM_DIFFERENCE_SUM = int(NEAR_UNIFORM_MAX_MEAN_DIFFERENCE * IMAGE_PIXELS)
CROSS_SPLIT_PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))


@dataclass(frozen=True)
class Row:
    """One dataset row, reduced to what duplicate checks need."""

    source: str
    label: int
    image: int  # id of its distinct pixels in the Reference


@dataclass
class Build:
    output: Path
    max_distance: int
    report: dict
    cache_entries: dict[str, set[str]]  # config -> cache folder names after the build


class Reference:
    """Distinct images seen in the builds and their near-duplicate neighbours.

    Ids are given in first-seen order. ``neighbours[i]`` maps each image
    within OTHER_DISTANCE of image ``i`` in any comparison to its smallest
    distance, or to PIXEL_DECIDED for two near-uniform images within the
    pixel limit. ``comparisons[(i, j)]`` (i < j) maps each comparison that
    found the pair to its distance.
    """

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.pixels: list[bytes] = []
        self.phash: list[int] = []
        self.uniform: list[bool] = []
        self.neighbours: list[dict[int, int]] = []
        self.comparisons: dict[tuple[int, int], dict[str, int]] = {}

    def add(self, pixels: bytes) -> int:
        image = self.ids.get(pixels)
        if image is None:
            image = self.ids[pixels] = len(self.pixels)
            self.pixels.append(pixels)
            picture = Image.frombytes("L", (28, 28), pixels)
            self.phash.append(int(str(imagehash.phash(picture)), 16))
            self.uniform.append(max(pixels) - min(pixels) <= NEAR_UNIFORM_MAX_RANGE)
        return image

    def link_all(self, k: int) -> None:
        """Compare every pair of distinct images once, in every comparison."""
        self.neighbours = [{} for _ in self.pixels]
        self.comparisons = {}
        images = np.frombuffer(b"".join(self.pixels), np.uint8).reshape(-1, 28, 28)
        variants = compute_variant_hashes(images)
        phash = np.array(self.phash, dtype=np.uint64)
        glyphs = np.flatnonzero(~np.array(self.uniform))
        for position, i in enumerate(glyphs):
            later = glyphs[position + 1 :]
            found = comparison_distances(phash, variants, i, later)
            smallest = np.minimum.reduce(list(found.values()))
            for offset in np.flatnonzero(smallest <= k).tolist():
                j = int(later[offset])
                self.connect(int(i), j, int(smallest[offset]))
                self.comparisons[(int(i), j)] = {
                    name: int(values[offset])
                    for name, values in found.items()
                    if values[offset] <= k
                }
        blanks = [i for i, flat in enumerate(self.uniform) if flat]
        for position, i in enumerate(blanks):
            for j in blanks[position + 1 :]:
                total = sum(abs(x - y) for x, y in zip(self.pixels[i], self.pixels[j]))
                if total <= MAX_UNIFORM_DIFFERENCE_SUM:
                    self.connect(i, j, PIXEL_DECIDED)
                    self.comparisons[(i, j)] = {"pixels": PIXEL_DECIDED}

    def connect(self, i: int, j: int, distance: int) -> None:
        self.neighbours[i][j] = distance
        self.neighbours[j][i] = distance

    def near(self, i: int, j: int, k: int) -> bool:
        distance = self.neighbours[i].get(j)
        return distance is not None and distance <= k

    def first_comparison(self, i: int, j: int, k: int) -> tuple[str, int] | None:
        """Return the comparison a build at distance ``k`` records for (i, j), and its distance."""
        found = self.comparisons.get((min(i, j), max(i, j)), {})
        for name in COMPARISONS:
            if name in found and found[name] <= k:
                return name, found[name]
        return None


def run_build(tarballs: Path, output: Path, cache: Path, max_distance: int) -> Build:
    """Run ``notmnist build`` in a fresh process and collect its report."""
    command = [
        sys.executable, "-m", "notmnist_ds.cli", "-q", "build",
        "--data-dir", str(tarballs), "--no-verify", "--output", str(output),
        "--train-size", str(SIZES["train"]),
        "--valid-size", str(SIZES["validation"]),
        "--test-size", str(SIZES["test"]),
        "--max-distance", str(max_distance),
    ]  # fmt: skip
    completed = subprocess.run(
        command,
        check=False,
        env=build_environment(cache),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((output / "reports" / "build_report.json").read_text())
    return Build(output, max_distance, report, cache_entries(cache))


def build_environment(cache: Path) -> dict[str, str]:
    return dict(
        os.environ,
        HF_DATASETS_CACHE=str(cache / "datasets"),
        HF_HOME=str(cache / "home"),
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
    )


def cache_entries(cache: Path) -> dict[str, set[str]]:
    entries = {}
    for config in ("sanitized", "raw"):
        folder = cache / "datasets" / "notmnist" / config / "1.0.0"
        entries[config] = (
            {path.name for path in folder.iterdir()} if folder.is_dir() else set()
        )
    return entries


def load_rows(
    folder: Path, config: str | None, cache: Path, reference: Reference
) -> dict[str, list[Row]]:
    """Load a built folder with ``load_dataset`` and decode every PNG."""
    arguments = [str(folder)] if config is None else [str(folder), config]
    dataset = datasets.load_dataset(*arguments, cache_dir=str(cache))
    rows = {}
    for split in SPLIT_NAMES:
        # The Arrow columns give the stored PNG bytes without decoding twice.
        table = dataset[split].data.table
        images = table.column("image").combine_chunks().field("bytes").to_pylist()
        sources = table.column("source").to_pylist()
        labels = table.column("label").to_pylist()
        rows[split] = []
        for data, source, label in zip(images, sources, labels):
            with Image.open(io.BytesIO(data)) as picture:
                assert picture.mode == "L", source
                assert picture.size == (28, 28), source
                pixels = picture.tobytes()
            rows[split].append(Row(source, label, reference.add(pixels)))
    return rows


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("build_dedup")


@pytest.fixture(scope="module")
def default_build(sample_tarballs, workspace) -> Build:
    return run_build(
        sample_tarballs, workspace / "k4", workspace / "cache", DEFAULT_DISTANCE
    )


@pytest.fixture(scope="module")
def other_build(default_build, sample_tarballs, workspace) -> Build:
    return run_build(
        sample_tarballs, workspace / "k6", workspace / "cache", OTHER_DISTANCE
    )


@pytest.fixture(scope="module")
def loaded(default_build, other_build, workspace):
    """Rows of every config of both builds, and the reference over all of them."""
    reference = Reference()
    rows = {}
    for build in (default_build, other_build):
        for config in ("raw", "sanitized"):
            rows[build.max_distance, config] = load_rows(
                build.output, config, workspace / "load", reference
            )
    reference.link_all(OTHER_DISTANCE)
    return rows, reference


def brute_force_overlap(
    rows: dict[str, list[Row]], reference: Reference, k: int
) -> dict:
    """Count overlap from the definitions in dedup/overlap.py's docstring."""
    result = {"rows": []}
    ids = {split: [row.image for row in rows[split]] for split in SPLIT_NAMES}
    present = {split: set(ids[split]) for split in SPLIT_NAMES}

    def has_near_in(image: int, others: set[int]) -> bool:
        return any(
            other in others and distance <= k
            for other, distance in reference.neighbours[image].items()
        )

    for first, second in (("train", "train"), *CROSS_SPLIT_PAIRS):
        if first == second:
            counts = Counter(ids[first])
            exact = [i for i in ids[first] if counts[i] > 1]
            near = [i for i in ids[first] if has_near_in(i, present[first])]
        else:
            exact = [i for i in ids[first] if i in present[second]]
            exact += [i for i in ids[second] if i in present[first]]
            near = [i for i in ids[first] if has_near_in(i, present[second])]
            near += [i for i in ids[second] if has_near_in(i, present[first])]
        result["rows"].append(
            {
                "first": first,
                "second": second,
                "exact_rows": len(exact),
                "exact_images": len(set(exact)),
                "near_rows": len(near),
                "near_images": len(set(near)),
            }
        )

    labels: dict[int, set[int]] = {}
    for split in SPLIT_NAMES:
        for row in rows[split]:
            labels.setdefault(row.image, set()).add(row.label)
    conflicting = {image for image, seen in labels.items() if len(seen) > 1}
    result["conflicting_groups"] = len(conflicting)
    result["conflicting_rows"] = sum(
        row.image in conflicting for split in SPLIT_NAMES for row in rows[split]
    )
    cross_label = 0
    for image, seen in labels.items():
        for other, distance in reference.neighbours[image].items():
            if other > image and other in labels and distance <= k:
                cross_label += labels[other] != seen
    result["cross_label_links"] = cross_label
    return result


def project_overlap(report: dict, config: str) -> dict:
    overlap = report["overlap"][config]
    keys = ("first", "second", "exact_rows", "exact_images", "near_rows", "near_images")
    return {
        "rows": [{key: row[key] for key in keys} for row in overlap["rows"]],
        "conflicting_groups": overlap["conflicting_groups"],
        "conflicting_rows": overlap["conflicting_rows"],
        "cross_label_links": overlap["cross_label_links"],
    }


def cross_split_pairs(
    rows: dict[str, list[Row]], reference: Reference, k: int
) -> list[tuple[str, str, str, str]]:
    """Return (split, source, split, source) of every exact or near pair across splits."""
    found = []
    for first, second in CROSS_SPLIT_PAIRS:
        by_image: dict[int, list[str]] = {}
        for row in rows[second]:
            by_image.setdefault(row.image, []).append(row.source)
        for a in rows[first]:
            partners = [a.image] + [
                other
                for other, distance in reference.neighbours[a.image].items()
                if distance <= k
            ]
            for partner in partners:
                for source in by_image.get(partner, []):
                    found.append((first, a.source, second, source))
    return found


def within_split_pairs(rows: list[Row], reference: Reference, k: int) -> int:
    count = 0
    for position, a in enumerate(rows):
        for b in rows[position + 1 :]:
            count += a.image == b.image or reference.near(a.image, b.image, k)
    return count


def read_removals(build: Build) -> list[dict[str, str]]:
    with open(
        build.output / "reports" / "removals.csv", newline="", encoding="utf-8"
    ) as f:
        return list(csv.DictReader(f))


# The overlap report


@pytest.mark.parametrize("k", [DEFAULT_DISTANCE, OTHER_DISTANCE])
@pytest.mark.parametrize("config", ["raw", "sanitized"])
def test_overlap_report_equals_brute_force(
    default_build, other_build, loaded, config, k
):
    rows, reference = loaded
    build = default_build if k == DEFAULT_DISTANCE else other_build
    expected = brute_force_overlap(rows[k, config], reference, k)
    actual = project_overlap(build.report, config)

    assert build.report["overlap"][config]["max_distance"] == k
    assert actual["rows"] == expected["rows"]
    assert actual["conflicting_groups"] == expected["conflicting_groups"]
    assert actual["conflicting_rows"] == expected["conflicting_rows"]
    assert actual["cross_label_links"] == expected["cross_label_links"]


def test_raw_overlap_is_not_trivial(loaded):
    rows, reference = loaded
    expected = brute_force_overlap(
        rows[DEFAULT_DISTANCE, "raw"], reference, DEFAULT_DISTANCE
    )
    cross = [row for row in expected["rows"] if row["first"] != row["second"]]

    assert all(row["exact_rows"] > 0 for row in cross)
    assert all(row["near_rows"] > row["exact_rows"] for row in cross)
    assert expected["cross_label_links"] > 0


# The sanitized build


@pytest.mark.parametrize("k", [DEFAULT_DISTANCE, OTHER_DISTANCE])
def test_sanitized_has_no_overlap_across_splits(loaded, k):
    rows, reference = loaded

    assert cross_split_pairs(rows[k, "sanitized"], reference, k) == []


@pytest.mark.parametrize("k", [DEFAULT_DISTANCE, OTHER_DISTANCE])
def test_sanitized_has_no_duplicates_within_splits(loaded, k):
    rows, reference = loaded
    sanitized = rows[k, "sanitized"]
    train_images = [row.image for row in sanitized["train"]]

    assert len(set(train_images)) == len(train_images)
    assert within_split_pairs(sanitized["validation"], reference, k) == 0
    assert within_split_pairs(sanitized["test"], reference, k) == 0


def test_sanitized_sizes_match_shortfall(default_build, loaded):
    rows, _ = loaded
    sanitized = rows[DEFAULT_DISTANCE, "sanitized"]
    shortfall = default_build.report["dedup"]["shortfall"]
    reported = default_build.report["configs"]["sanitized"]["splits"]

    for split in ("validation", "test"):
        missing = shortfall.get(split, {})
        counts = Counter(CLASS_NAMES[row.label] for row in sanitized[split])
        assert reported[split] == len(sanitized[split])
        assert len(sanitized[split]) == SIZES[split] - sum(missing.values())
        for letter in CLASS_NAMES:
            assert counts[letter] == SIZES[split] // 10 - missing.get(letter, 0), (
                split,
                letter,
            )


def test_sanitized_train_loses_only_removals(default_build, loaded):
    rows, _ = loaded
    removed = Counter(
        removal["source"].split("/")[1]
        for removal in read_removals(default_build)
        if removal["split"] == "train"
    )
    counts = Counter(
        CLASS_NAMES[row.label] for row in rows[DEFAULT_DISTANCE, "sanitized"]["train"]
    )

    assert sum(removed.values()) > 0
    for letter in CLASS_NAMES:
        assert counts[letter] == SIZES["train"] // 10 - removed[letter], letter


@pytest.mark.parametrize("k", [DEFAULT_DISTANCE, OTHER_DISTANCE])
def test_removals_are_justified(default_build, other_build, loaded, k):
    rows, reference = loaded
    build = default_build if k == DEFAULT_DISTANCE else other_build
    raw = {
        split: {row.source: row for row in rows[k, "raw"][split]}
        for split in SPLIT_NAMES
    }
    sanitized = {
        split: {row.source: row for row in rows[k, "sanitized"][split]}
        for split in SPLIT_NAMES
    }
    removals = read_removals(build)

    assert len(removals) > 0
    for removal in removals:
        split, reason = removal["split"], removal["reason"]
        removed = raw[split][removal["source"]]
        assert removal["source"] not in sanitized[split], removal
        assert reason != "label_conflict", removal  # the sample has no conflicts
        kind, _, owner = reason.partition("_duplicate_")
        owner_split = split if owner == "within_split" else owner.removeprefix("of_")
        matched = sanitized[owner_split][removal["matched_source"]]
        if kind == "exact":
            assert matched.image == removed.image, removal
            assert removal["distance"] == "0", removal
        elif removal["distance"] == "":
            pixel_rule = reference.neighbours[removed.image].get(matched.image)
            assert kind == "near", removal
            assert pixel_rule == PIXEL_DECIDED, removal
            assert removal["comparison"] == "pixels", removal
        else:
            expected = reference.first_comparison(removed.image, matched.image, k)
            assert kind == "near", removal
            assert matched.image != removed.image, removal
            assert not reference.uniform[removed.image], removal
            assert expected is not None, removal
            assert removal["comparison"] == expected[0], removal
            assert int(removal["distance"]) == expected[1], removal
            assert expected[1] <= k, removal


@pytest.mark.parametrize("k", [DEFAULT_DISTANCE, OTHER_DISTANCE])
def test_every_dropped_raw_row_is_listed(default_build, other_build, loaded, k):
    rows, _ = loaded
    build = default_build if k == DEFAULT_DISTANCE else other_build
    removals = read_removals(build)

    for split in SPLIT_NAMES:
        raw = {row.source for row in rows[k, "raw"][split]}
        kept = {row.source for row in rows[k, "sanitized"][split]}
        listed = [r["source"] for r in removals if r["split"] == split]
        refilled = build.report["dedup"]["refilled"].get(split, 0)
        assert sorted(listed) == sorted(raw - kept), split
        assert len(kept - raw) == refilled, split


def test_load_dataset_defaults_to_sanitized(default_build, loaded, workspace):
    rows, reference = loaded
    default = load_rows(default_build.output, None, workspace / "load", reference)
    sanitized = rows[DEFAULT_DISTANCE, "sanitized"]

    for split in SPLIT_NAMES:
        assert [r.source for r in default[split]] == [
            r.source for r in sanitized[split]
        ]
    assert default != rows[DEFAULT_DISTANCE, "raw"]


# Settings are part of the build's identity


def test_fingerprint_changes_with_max_distance(default_build, other_build):
    first, second = default_build.report, other_build.report

    assert first["options"]["dedup"]["max_distance"] == DEFAULT_DISTANCE
    assert second["options"]["dedup"]["max_distance"] == OTHER_DISTANCE
    assert first["fingerprint"] != second["fingerprint"]


def test_cache_gets_new_entry_per_max_distance(default_build, other_build):
    for config in ("sanitized", "raw"):
        before = default_build.cache_entries[config]
        after = other_build.cache_entries[config]
        assert len(before) == 1, config
        assert before < after, config
        assert len(after) == 2, config


def test_max_distance_changes_sanitized_rows(loaded):
    rows, reference = loaded
    default_rows = rows[DEFAULT_DISTANCE, "sanitized"]
    other_rows = rows[OTHER_DISTANCE, "sanitized"]

    # The default build keeps pairs at distance 5 or 6 across splits, which
    # the other build must have removed.
    assert cross_split_pairs(default_rows, reference, OTHER_DISTANCE) != []
    assert [r.source for r in default_rows["test"]] != [
        r.source for r in other_rows["test"]
    ]


def test_cached_default_is_newest_build(default_build, other_build, workspace, loaded):
    rows, _ = loaded
    script = (
        "import json, datasets\n"
        "dataset = datasets.load_dataset('notmnist')\n"
        "print(json.dumps({s: list(dataset[s]['source']) for s in dataset}))\n"
    )
    folder = workspace / "elsewhere"
    folder.mkdir(exist_ok=True)
    completed = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=build_environment(workspace / "cache"),
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    cached = json.loads(completed.stdout.strip().splitlines()[-1])

    for split in SPLIT_NAMES:
        assert cached[split] == [
            r.source for r in rows[OTHER_DISTANCE, "sanitized"][split]
        ]
    assert cached["test"] != [
        r.source for r in rows[DEFAULT_DISTANCE, "sanitized"]["test"]
    ]
