"""Measure what each perceptual-hash Hamming distance means on real notMNIST.

For the 8,000 real sample images, every pair of distinct glyph images within
distance 12 is found by brute force (NumPy XOR and popcount over all pairs).
For each distance the study records how many pairs there are, the fraction
whose two images carry the same letter, and the median mean absolute pixel
difference. Pairs of different letters can only be false matches, so the
same-letter fraction bounds the precision of a threshold from above. The
study does this for phash, the default, and for dhash and ahash, all with
64-bit hashes, and draws example pairs at each phash distance beside the
same-letter curves.

Images count once per exact-duplicate group, so the 111 identical all-white
images do not add 6,105 pairs at distance 0. Near-uniform images are left
out, because ``dedup.near`` never compares them by hash.

Writes benchmarks/results/threshold.md and benchmarks/results/threshold.png.

    python benchmarks/threshold_study.py [--max-distance 12] [--examples 6]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dedup.hashing import HASH_METHODS, HashSpec, compute_hashes
from dedup.exact import pixel_digests
from dedup.near import (
    COMPARISONS,
    NEAR_UNIFORM_MAX_RANGE,
    DedupSettings,
    ImageSet,
    find_duplicate_pairs,
)
from notmnist_ds.constants import CLASS_NAMES, IMAGE_SIDE
from notmnist_ds.sample_tarballs import read_idx

DEFAULT_SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "notmnist-real-sample"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DEFAULT_MANIFEST = REPO_ROOT / "benchmarks" / "out" / "scale" / "planted.parquet"
ROWS_PER_CHUNK = 512  # rows of the pair matrix compared at once: 512 x 8,000 uint64

# Line colours of the curves, one per hash method (RGB).
METHOD_COLOURS = {
    "phash": (31, 119, 180),
    "dhash": (214, 39, 40),
    "ahash": (44, 160, 44),
}


@dataclass
class DistanceTable:
    """Pairs of one hash method bucketed by Hamming distance 0..max_distance."""

    method: str
    pairs: np.ndarray  # (D + 1,) pairs at exactly each distance
    same_letter: np.ndarray  # (D + 1,) of those, pairs whose labels are equal
    median_pixel_difference: np.ndarray  # (D + 1,) median of mean |a - b|, NaN if none
    images_linked: np.ndarray  # (D + 1,) images with a partner at distance <= d
    first: np.ndarray  # every pair within max_distance: index of one image
    second: np.ndarray  # index of the other image
    distance: np.ndarray  # Hamming distance of the pair

    def fraction_same(self, cumulative: bool = False) -> np.ndarray:
        pairs = np.cumsum(self.pairs) if cumulative else self.pairs
        same = np.cumsum(self.same_letter) if cumulative else self.same_letter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, same / np.maximum(pairs, 1), np.nan)


def distinct_glyphs(pixels: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Return indices of the first image of each exact group that is not near-uniform.

    Also returns the number of distinct images and of distinct near-uniform ones.
    """
    flat = pixels.reshape(len(pixels), -1)
    _, first = np.unique(flat, axis=0, return_index=True)
    first = np.sort(first)
    spread = flat[first].max(axis=1).astype(np.int16) - flat[first].min(axis=1)
    glyphs = first[spread > NEAR_UNIFORM_MAX_RANGE]
    return glyphs, len(first), int(np.count_nonzero(spread <= NEAR_UNIFORM_MAX_RANGE))


def pairs_within(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, ...]:
    """Return (first, second, distance) of every pair i < j within ``max_distance``."""
    firsts, seconds, distances = [], [], []
    for start in range(0, len(hashes), ROWS_PER_CHUNK):
        block = hashes[start : start + ROWS_PER_CHUNK]
        distance = np.bitwise_count(block[:, None] ^ hashes[None, :])
        row, column = np.nonzero(distance <= max_distance)
        row = row + start
        upper = column > row
        firsts.append(row[upper])
        seconds.append(column[upper])
        distances.append(distance[row[upper] - start, column[upper]])
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)


def distance_table(
    method: str, pixels: np.ndarray, labels: np.ndarray, max_distance: int
) -> DistanceTable:
    """Hash ``pixels`` with ``method`` and bucket all pairs by distance."""
    hashes = compute_hashes(pixels, HashSpec(method, 8)).values
    first, second, distance = pairs_within(hashes, max_distance)
    flat = pixels.reshape(len(pixels), -1).astype(np.int16)
    pixel_difference = np.abs(flat[first] - flat[second]).mean(axis=1)
    same = labels[first] == labels[second]

    size = max_distance + 1
    pairs = np.bincount(distance, minlength=size)
    same_letter = np.bincount(distance, weights=same, minlength=size).astype(np.int64)
    median = np.full(size, np.nan)
    linked = np.zeros(size, dtype=np.int64)
    for d in range(size):
        at = distance == d
        if at.any():
            median[d] = float(np.median(pixel_difference[at]))
        within = distance <= d
        linked[d] = len(np.union1d(first[within], second[within]))
    return DistanceTable(
        method, pairs, same_letter, median, linked, first, second, distance
    )


def choose_examples(
    table: DistanceTable, count: int, seed: int
) -> dict[int, np.ndarray]:
    """Pick up to ``count`` random pairs at each distance, as indices into the table."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for d in range(len(table.pairs)):
        at = np.flatnonzero(table.distance == d)
        if len(at) > count:
            at = np.sort(rng.choice(at, size=count, replace=False))
        chosen[d] = at
    return chosen


def load_font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_examples(
    table: DistanceTable,
    pixels: np.ndarray,
    labels: np.ndarray,
    examples: dict[int, np.ndarray],
    per_row: int,
    threshold: int,
) -> Image.Image:
    """Draw one row of example pairs per distance, with cross-letter captions in red."""
    scale, tile_gap, pair_gap, label_width, row_height = 2, 2, 14, 250, 78
    tile = IMAGE_SIDE * scale
    pair_width = 2 * tile + tile_gap
    width = label_width + per_row * (pair_width + pair_gap)
    height = 30 + row_height * len(examples)
    canvas = Image.new("RGB", (width, height), (96, 96, 96))
    draw = ImageDraw.Draw(canvas)
    font, small = load_font(14), load_font(12)
    draw.text(
        (8, 6),
        f"{table.method} example pairs by Hamming distance (random, distinct images); "
        f"rows up to {threshold} are within the default threshold",
        fill=(255, 255, 255),
        font=font,
    )
    for row, (d, chosen) in enumerate(sorted(examples.items())):
        top = 30 + row * row_height
        fraction = table.same_letter[d] / table.pairs[d] if table.pairs[d] else 0.0
        colour = (255, 255, 160) if d <= threshold else (255, 255, 255)
        draw.text((8, top + 8), f"distance {d}", fill=colour, font=font)
        draw.text(
            (8, top + 28),
            f"{table.pairs[d]:,} pairs, {fraction:.1%} same letter",
            fill=colour,
            font=small,
        )
        for column, pair in enumerate(chosen[:per_row]):
            left = label_width + column * (pair_width + pair_gap)
            a, b = table.first[pair], table.second[pair]
            for offset, image in ((0, a), (tile + tile_gap, b)):
                picture = Image.fromarray(pixels[image], "L").resize(
                    (tile, tile), Image.Resampling.NEAREST
                )
                canvas.paste(picture.convert("RGB"), (left + offset, top))
            caption = f"{CLASS_NAMES[labels[a]]} / {CLASS_NAMES[labels[b]]}"
            same = labels[a] == labels[b]
            draw.text(
                (left + pair_width // 2 - 14, top + tile + 2),
                caption,
                fill=(255, 255, 255) if same else (255, 80, 80),
                font=small,
            )
    return canvas


def draw_curves(
    tables: dict[str, DistanceTable], width: int, threshold: int
) -> Image.Image:
    """Draw the same-letter fraction at each distance, one line per method."""
    height = 360
    left, right, top, bottom = 70, 150, 40, 50
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font, small = load_font(14), load_font(12)
    max_distance = len(next(iter(tables.values())).pairs) - 1
    plot_width = width - left - right
    plot_height = height - top - bottom
    y_low = 0.4  # no curve drops below this up to distance 12 on the sample

    def x_of(d: float) -> float:
        return left + plot_width * d / max_distance

    def y_of(fraction: float) -> float:
        return top + plot_height * (1.0 - (fraction - y_low) / (1.0 - y_low))

    draw.text(
        (left, 10),
        "Fraction of pairs at exactly this distance whose images are the same letter",
        fill=(0, 0, 0),
        font=font,
    )
    for step in range(7):
        fraction = y_low + step * (1.0 - y_low) / 6
        y = y_of(fraction)
        draw.line([(left, y), (left + plot_width, y)], fill=(225, 225, 225))
        draw.text((left - 40, y - 7), f"{fraction:.0%}", fill=(0, 0, 0), font=small)
    for d in range(max_distance + 1):
        x = x_of(d)
        draw.line([(x, top + plot_height), (x, top + plot_height + 4)], fill=(0, 0, 0))
        draw.text((x - 4, top + plot_height + 8), str(d), fill=(0, 0, 0), font=small)
    draw.text(
        (left + plot_width // 2 - 80, height - 22),
        "Hamming distance (of 64 bits)",
        fill=(0, 0, 0),
        font=small,
    )
    draw.rectangle([left, top, left + plot_width, top + plot_height], outline=(0, 0, 0))
    x = x_of(threshold)
    for y in range(top, top + plot_height, 8):
        draw.line([(x, y), (x, y + 4)], fill=(120, 120, 120), width=2)
    draw.text((x + 4, top + 4), f"default {threshold}", fill=(80, 80, 80), font=small)

    for row, (method, table) in enumerate(tables.items()):
        colour = METHOD_COLOURS.get(method, (0, 0, 0))
        fraction = table.fraction_same()
        points = [
            (x_of(d), y_of(float(f))) for d, f in enumerate(fraction) if not np.isnan(f)
        ]
        draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        legend_y = top + 10 + row * 20
        draw.line(
            [
                (left + plot_width + 15, legend_y + 7),
                (left + plot_width + 45, legend_y + 7),
            ],
            fill=colour,
            width=3,
        )
        draw.text((left + plot_width + 52, legend_y), method, fill=(0, 0, 0), font=font)
    return canvas


def stack(images: list[Image.Image]) -> Image.Image:
    width = max(image.width for image in images)
    height = sum(image.height for image in images)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    return canvas


def planted_recall(manifest: Path, max_distance: int) -> np.ndarray | None:
    """Return, for d = 0..max_distance, the share of planted near duplicates within d.

    The manifest of ``benchmarks/make_scale_tarballs.py`` records each planted
    near duplicate's phash distance to its original. Returns None when the
    manifest does not exist.
    """
    if not manifest.is_file():
        return None
    import pyarrow.parquet as pq

    table = pq.read_table(manifest, columns=["kind", "planted", "phash_distance"])
    columns = table.to_pydict()
    distances = np.array(
        [
            distance
            for kind, planted, distance in zip(
                columns["kind"], columns["planted"], columns["phash_distance"]
            )
            if kind == "near" and planted
        ]
    )
    return np.array([(distances <= d).mean() for d in range(max_distance + 1)])


def random_pair_difference(pixels: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Return the median mean |a - b| of 20,000 random same-letter pairs."""
    rng = np.random.default_rng(seed)
    flat = pixels.reshape(len(pixels), -1).astype(np.int16)
    first = rng.integers(0, len(pixels), 60_000)
    second = rng.integers(0, len(pixels), 60_000)
    keep = np.flatnonzero((labels[first] == labels[second]) & (first != second))[
        :20_000
    ]
    difference = np.abs(flat[first[keep]] - flat[second[keep]]).mean(axis=1)
    return float(np.median(difference))


def comparison_table(pixels: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Count the pairs of the default rule by the comparison that links them.

    A pair that several comparisons link counts once, under the first of
    COMPARISONS. Returns one row per comparison and one for all of them.
    """
    settings = DedupSettings()
    images = ImageSet.from_pixels(
        pixels, compute_hashes(pixels, settings.hash_spec), pixel_digests(pixels), labels
    )
    pairs = find_duplicate_pairs(images, settings)
    same = labels[pairs.first] == labels[pairs.second]
    rows = []
    for code, name in enumerate(COMPARISONS):
        chosen = pairs.comparison == code
        if chosen.any():
            rows.append({"comparison": name, "pairs": int(chosen.sum()), "same": float(same[chosen].mean())})
    rows.append({"comparison": "all", "pairs": len(pairs), "same": float(same.mean())})
    return rows


def format_report(
    tables: dict[str, DistanceTable],
    counts: dict[str, int],
    recall: np.ndarray | None,
    random_difference: float,
    threshold: int,
    command: str,
    comparisons: list[dict],
) -> str:
    """Render the tables, and the figures behind the default, as Markdown."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    phash = tables["phash"]
    same = phash.fraction_same()
    cumulative = phash.fraction_same(cumulative=True)
    total_pairs = np.cumsum(phash.pairs)
    linked = phash.images_linked / counts["glyphs"]
    recall_cells = (
        [f"{value:.1%}" for value in recall]
        if recall is not None
        else ["n/a"] * len(phash.pairs)
    )
    lines = [
        "# Choosing the near-duplicate threshold",
        "",
        f"Written by `benchmarks/threshold_study.py` on {now}.",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, NumPy {np.__version__}",
        f"- data: the {counts['images']:,} real notMNIST sample images: "
        f"{counts['distinct']:,} distinct, of which {counts['near_uniform']:,} are "
        f"near-uniform (pixel range <= {NEAR_UNIFORM_MAX_RANGE}, compared by pixels, "
        f"not hash) and {counts['glyphs']:,} are glyphs. Pairs below are pairs of "
        f"distinct glyphs, found by brute force over all "
        f"{counts['glyphs'] * (counts['glyphs'] - 1) // 2:,} pairs.",
        f"- {counts['degenerate']} of the glyphs have the degenerate phash "
        "8000000000000000 (only the DC bit set), the hash of any uniform image. "
        "They are near-white boxes with a thin gray edge line, so their "
        "pixel range is above the near-uniform limit. They match one another "
        "at distance 0.",
        "",
        "## phash",
        "",
        "Same letter is an upper bound on precision: a pair of different letters "
        "is always a false match, while a pair of the same letter may still be "
        "two different fonts. Pixel difference is the median over the pairs of "
        "mean |a - b| on 0-255 pixels; for random pairs of the same letter it is "
        f"{random_difference:.1f}. Planted recall is the share of the near "
        "duplicates planted by `benchmarks/make_scale_tarballs.py` (a one-pixel "
        "shift, noised, inverted or rescaled pixels, applied to real glyphs) "
        "whose phash is within d of the original.",
        "",
        "| distance | pairs | same letter | pairs <= d | same letter <= d "
        "| glyphs with a partner <= d | median pixel difference | planted recall <= d |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d in range(len(phash.pairs)):
        lines.append(
            f"| {d} | {phash.pairs[d]:,} | {same[d]:.1%} | {total_pairs[d]:,} | "
            f"{cumulative[d]:.1%} | {phash.images_linked[d]:,} ({linked[d]:.1%}) | "
            f"{phash.median_pixel_difference[d]:.1f} | {recall_cells[d]} |"
        )
    odd = phash.pairs[1::2].sum()
    lines += [
        "",
        f"Odd distances are rare ({odd:,} pairs in all): a 64-bit phash without a "
        "coefficient tied to the median has exactly 32 bits set, so two such "
        "hashes differ in an even number of bits. A pair at an odd distance "
        "involves an image with ties, which is mostly a glyph with little "
        "structure. So thresholds 4 and 5 link almost the same pairs.",
    ]
    if threshold + 2 < len(phash.pairs):
        wider = threshold + 2
        lines += [
            "",
            f"## The default, `max_distance={threshold}`",
            "",
            f"Up to distance {threshold}, {cumulative[threshold]:.1%} of the "
            f"{total_pairs[threshold]:,} pairs are the same letter, and the pairs at "
            f"exactly {threshold} differ by a median of "
            f"{phash.median_pixel_difference[threshold]:.1f} per pixel against "
            f"{random_difference:.1f} for random same-letter pairs. The example rows "
            f"up to {threshold} show the same design in near-identical fonts. "
            f"Raising the threshold to {wider} would link "
            f"{total_pairs[wider] / total_pairs[threshold]:.1f} times as many pairs and "
            f"{linked[wider]:.1%} of the glyphs instead of {linked[threshold]:.1%}, "
            f"mostly different fonts of one style in the examples, while the "
            f"planted recall rises only from {recall_cells[threshold]} to "
            f"{recall_cells[wider]}.",
        ]
    lines += [
        "",
        "## The default rule, comparison by comparison",
        "",
        f"By default two glyphs are also near duplicates when the phash of their "
        f"3x3 median-filtered images, or of one shifted by one pixel against the "
        f"other (outer ring trimmed), differs in at most {threshold} bits "
        "(dedup/variants.py). Pairs of the distinct glyphs by the first comparison "
        "that links them:",
        "",
        "| comparison | pairs | same letter |",
        "| --- | ---: | ---: |",
    ]
    lines += [
        f"| {row['comparison']} | {row['pairs']:,} | {row['same']:.1%} |"
        for row in comparisons
    ]
    lines += [
        "",
        "## phash, dhash and ahash",
        "",
        "For each distance: the same-letter fraction of the pairs at exactly that "
        "distance, the number of pairs, and their median pixel difference.",
        "",
        "| distance | " + " | ".join(tables) + " |",
        "| ---: |" + " ---: |" * len(tables),
    ]
    fractions = {method: table.fraction_same() for method, table in tables.items()}
    for d in range(len(phash.pairs)):
        cells = [
            f"{fractions[m][d]:.1%} ({tables[m].pairs[d]:,} pairs, "
            f"{tables[m].median_pixel_difference[d]:.1f})"
            for m in tables
        ]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "![example pairs and same-letter curves](threshold.png)",
        "",
        "`threshold.png`: random example pairs at each phash distance (a red "
        "caption marks a pair of different letters), then the same-letter "
        f"curves. The current default is `max_distance={threshold}`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-dir", type=Path, default=DEFAULT_SAMPLE_DIR)
    parser.add_argument(
        "--max-distance", type=int, default=12, help="largest distance studied"
    )
    parser.add_argument(
        "--examples", type=int, default=6, help="example pairs drawn per distance"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the examples and random pairs"
    )
    parser.add_argument(
        "--planted-manifest",
        type=Path,
        default=DEFAULT_MANIFEST,
        help="planted-duplicates manifest of benchmarks/make_scale_tarballs.py",
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    pixels, labels = read_idx(
        args.sample_dir / "images-idx3-ubyte.gz",
        args.sample_dir / "labels-idx1-ubyte.gz",
    )
    glyphs, distinct, near_uniform = distinct_glyphs(pixels)
    glyph_pixels, glyph_labels = pixels[glyphs], labels[glyphs].astype(np.int64)
    tables = {
        method: distance_table(method, glyph_pixels, glyph_labels, args.max_distance)
        for method in HASH_METHODS
    }
    phash_values = compute_hashes(glyph_pixels, HashSpec("phash", 8)).values
    counts = {
        "images": len(pixels),
        "distinct": distinct,
        "near_uniform": near_uniform,
        "glyphs": len(glyphs),
        "degenerate": int(np.count_nonzero(phash_values == np.uint64(1 << 63))),
    }

    threshold = DedupSettings().max_distance
    examples = choose_examples(tables["phash"], args.examples, args.seed)
    picture_examples = draw_examples(
        tables["phash"], glyph_pixels, glyph_labels, examples, args.examples, threshold
    )
    picture = stack(
        [picture_examples, draw_curves(tables, picture_examples.width, threshold)]
    )

    args.output_dir.mkdir(parents=True, exist_ok=True)
    picture.save(args.output_dir / "threshold.png", optimize=True)
    command = "python " + " ".join(
        shlex.quote(part)
        for part in [f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]
    )
    recall = planted_recall(args.planted_manifest, args.max_distance)
    random_difference = random_pair_difference(pixels, labels, args.seed)
    comparisons = comparison_table(glyph_pixels, glyph_labels)
    report = format_report(
        tables, counts, recall, random_difference, threshold, command, comparisons
    )
    (args.output_dir / "threshold.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
