"""The files a build writes beside its splits: reports, pictures and the card.

``reports/build_report.json`` contains every number the dataset card shows, so
``notmnist card`` can render the card again from it alone.
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path

import numpy as np

from dedup.near import PIXEL_DECIDED
from dedup.search import find_near_pairs

from . import __version__
from .card import render_card
from .constants import CLASS_NAMES, LARGE, NUM_CLASSES, SMALL, SPLIT_NAMES, TARBALLS
from .pictures import near_duplicate_grid, sample_grid, save_png
from .pipeline import CONFIG_NAMES, Prepared

REPORTS = Path("reports")
BUILD_REPORT = REPORTS / "build_report.json"
OVERLAP_REPORT = REPORTS / "overlap.json"
REMOVALS = REPORTS / "removals.csv"
SKIPPED = REPORTS / "skipped.csv"
SAMPLE_GRID = REPORTS / "samples.png"
NEAR_DUPLICATES = REPORTS / "near_duplicates.png"
BASELINE = REPORTS / "baseline.json"

# Distances shown past the threshold in the near-duplicate picture.
EXTRA_DISTANCES = 4
EXAMPLE_PAIRS_PER_DISTANCE = 5
EXAMPLE_SEARCH_LIMIT = 30_000


def class_balance(labels: np.ndarray, indices: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels[indices], minlength=NUM_CLASSES)
    return {letter: int(counts[i]) for i, letter in enumerate(CLASS_NAMES)}


def near_duplicate_examples(prepared: Prepared) -> dict[int, list]:
    """Pick example pairs of distinct images at each distance up to past the threshold."""
    settings = prepared.options.dedup
    index = prepared.index
    labels = prepared.labels()
    glyphs = np.unique(index.group, return_index=True)[1]  # one image per group
    hashes = np.concatenate([a.hashes.values for a in prepared.archives.values()])
    near_uniform = np.concatenate([a.near_uniform for a in prepared.archives.values()])
    glyphs = glyphs[~near_uniform[glyphs]][:EXAMPLE_SEARCH_LIMIT]
    top = settings.max_distance + EXTRA_DISTANCES
    pairs = find_near_pairs(hashes[glyphs], min(top, settings.hash_size**2 - 1))
    examples: dict[int, list] = {d: [] for d in range(top + 1)}
    # A seeded shuffle spreads the examples over letters and fonts instead of
    # taking the first pairs of the archive, which are all one letter.
    order = np.random.default_rng(0).permutation(len(pairs))
    for first, second, distance in zip(
        pairs.first[order], pairs.second[order], pairs.distance[order]
    ):
        bucket = examples[int(distance)]
        if len(bucket) < EXAMPLE_PAIRS_PER_DISTANCE:
            a, b = glyphs[first], glyphs[second]
            caption = f"{CLASS_NAMES[labels[a]]}/{CLASS_NAMES[labels[b]]}"
            if distance > settings.max_distance:
                # Past the hash threshold, a variant comparison may still link them.
                neighbours, _ = index.neighbours_of(int(index.group[a]))
                if int(index.group[b]) in neighbours:
                    caption += " linked"
            bucket.append((prepared.pixels(a), prepared.pixels(b), caption))
    return examples


def build_report(
    folder: Path,
    prepared: Prepared,
    paths: dict[str, Path],
    split_sizes: dict[str, dict[str, int]],
    split_bytes: dict[str, dict[str, int]],
    shards: dict[str, list[str]],
) -> dict:
    """Collect every number of a build into one JSON-ready dict."""
    labels = prepared.labels()
    sanitized = prepared.sanitized
    return {
        "package": "notmnist-ds",
        "version": __version__,
        "fingerprint": prepared.fingerprint,
        "options": prepared.options.to_dict(),
        "python": platform.python_version(),
        "tarballs": {
            name: {
                "file_name": TARBALLS[name].file_name,
                "path": str(paths[name]),
                "bytes": Path(paths[name]).stat().st_size,
                "sha256": prepared.tarball_sha256[name],
                "published_sha256": TARBALLS[name].sha256,
                "matches_published": prepared.tarball_sha256[name] == TARBALLS[name].sha256,
            }
            for name in (LARGE.name, SMALL.name)
        },
        "read": {name: archive.report.to_dict() for name, archive in prepared.archives.items()},
        "configs": {
            config: {
                "splits": split_sizes[config],
                "class_balance": {
                    split: class_balance(labels, prepared.split_indices(config, split))
                    for split in SPLIT_NAMES
                },
                "shards": shards[config],
                "split_bytes": split_bytes[config],
                "download_size": sum((folder / shard).stat().st_size for shard in shards[config]),
            }
            for config in CONFIG_NAMES
        },
        "dedup": {
            "settings": prepared.options.dedup.to_dict(),
            "distinct_images": prepared.index.num_groups,
            "near_duplicate_links": prepared.index.num_links,
            "removals_by_reason": _count_reasons(sanitized.removals),
            "refilled": sanitized.refilled,
            "refill_candidates_rejected": sanitized.rejected_candidates,
            "shortfall": {
                split: {CLASS_NAMES[k]: v for k, v in missing.items()}
                for split, missing in sanitized.shortfall.items()
            },
        },
        "overlap": {config: report.to_dict() for config, report in prepared.overlap.items()},
        "seconds": prepared.timer.seconds,
    }


def _count_reasons(removals) -> dict[str, int]:
    counts: dict[str, int] = {}
    for removal in removals:
        counts[removal.reason] = counts.get(removal.reason, 0) + 1
    return dict(sorted(counts.items()))


def write_reports(
    folder: Path,
    prepared: Prepared,
    paths: dict[str, Path],
    split_sizes: dict[str, dict[str, int]],
    split_bytes: dict[str, dict[str, int]],
    shards: dict[str, list[str]],
) -> dict:
    """Write reports, pictures and the dataset card into a build folder."""
    (folder / REPORTS).mkdir(parents=True, exist_ok=True)
    report = build_report(folder, prepared, paths, split_sizes, split_bytes, shards)

    with open(folder / SKIPPED, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["archive", "member", "reason", "detail"])
        for archive in prepared.archives.values():
            for omission in archive.report.omissions:
                writer.writerow([omission.archive, omission.member, omission.reason, omission.detail])

    with open(folder / REMOVALS, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "split", "reason", "matched_source", "distance", "comparison"])
        for removal in prepared.sanitized.removals:
            matched = prepared.source(removal.matched) if removal.matched >= 0 else ""
            distance = "" if removal.distance == PIXEL_DECIDED else removal.distance
            writer.writerow(
                [
                    prepared.source(removal.image),
                    removal.split,
                    removal.reason,
                    matched,
                    distance,
                    removal.comparison,
                ]
            )

    (folder / OVERLAP_REPORT).write_text(
        json.dumps(report["overlap"], indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )

    labels = prepared.labels()
    grid_input = {}
    for split in SPLIT_NAMES:
        chosen = prepared.split_indices("sanitized", split)
        grid_input[split] = (
            np.stack([prepared.pixels(i) for i in chosen[:2000]]) if len(chosen) else np.zeros((0, 28, 28), np.uint8),
            labels[chosen[:2000]],
        )
    save_png(sample_grid(grid_input), folder / SAMPLE_GRID)
    settings = prepared.options.dedup
    save_png(
        near_duplicate_grid(near_duplicate_examples(prepared), settings.max_distance, settings.method),
        folder / NEAR_DUPLICATES,
    )

    (folder / BUILD_REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(render_card(report), encoding="utf-8")
    return report


def load_report(folder: Path) -> dict:
    """Read a build folder's report; FileNotFoundError names the folder and the fix."""
    path = Path(folder) / BUILD_REPORT
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a notmnist build folder ({BUILD_REPORT} is missing); "
            f"run 'notmnist build --output {folder}' first"
        )
    return json.loads(path.read_text(encoding="utf-8"))
