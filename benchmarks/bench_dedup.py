"""Measure time and peak memory of the whole deduplication pass at full scale.

The pass is what ``notmnist_ds.pipeline.prepare`` runs after reading the
archives: one ``ImageSet`` per archive joined into one, one ``build_index``
over every image, ``sanitize`` of the default-size splits and the raw and
sanitized ``overlap_report``. Its input is every readable image of the
full-size synthetic archives written by ``benchmarks/make_scale_tarballs.py``
(529,119 + 18,726 members made from real notMNIST glyphs, with planted exact
and near duplicates).

Reading 548,000 PNGs takes minutes, so the first run decodes the archives once
with ``read_archive`` and stores labels, hashes, digests, the near-uniform
mask and the near-uniform pixels as .npy files under
``benchmarks/out/dedup_inputs``. Each round then runs in a fresh Python
process, so the peak resident set size (``VmHWM`` of /proc/self/status)
belongs to one pass alone. The script also scores the index against the
planted-duplicates manifest, and appends a section with the command, the
machine and the figures to benchmarks/results/dedup.md.

    python benchmarks/make_scale_tarballs.py --output benchmarks/out/scale --seed 0
    python benchmarks/bench_dedup.py [--rounds 3] [--max-distance 4]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dedup.hashing import HashSpec, ImageHashes
from dedup.index import build_index
from dedup.near import DedupSettings, ImageSet
from dedup.overlap import overlap_report
from dedup.sanitize import sanitize
from dedup.variants import VariantHashes
from notmnist_ds.constants import (
    DEFAULT_SIZES,
    LARGE,
    NUM_CLASSES,
    SMALL,
    Tarball,
)
from notmnist_ds.splits import per_letter, seeded_order, select_splits, split_keys

DEFAULT_DATA_DIR = REPO_ROOT / "benchmarks" / "out" / "scale"
DEFAULT_INPUTS_DIR = REPO_ROOT / "benchmarks" / "out" / "dedup_inputs"
RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "dedup.md"
MANIFEST_NAME = "planted.parquet"
ARRAY_NAMES = ("labels", "hashes", "digests", "near_uniform", "uniform_pixels")
# Fields of dedup.variants.VariantHashes, stored as variant_<field>.npy.
VARIANT_FIELDS = ("filtered", "trimmed", "shifted", "filtered_usable", "trimmed_usable")


def store_inputs(data_dir: Path, inputs_dir: Path, workers: int) -> dict:
    """Decode both archives of ``data_dir`` and store what dedup needs in ``inputs_dir``.

    Hashes are phash with 8x8 bits, the default ``DedupSettings``. Returns the
    metadata written to ``inputs_dir/meta.json``: image counts, read seconds
    and the size and modification time of each archive, which later runs
    compare to notice a rewritten archive.
    """
    from notmnist_ds.download import file_sha256
    from notmnist_ds.reader import read_archive

    spec = DedupSettings().hash_spec
    inputs_dir.mkdir(parents=True, exist_ok=True)
    meta: dict = {"hash_spec": [spec.method, spec.hash_size], "archives": {}}
    for tarball in (LARGE, SMALL):
        path = data_dir / tarball.file_name
        started = time.perf_counter()
        archive = read_archive(path, tarball, spec, workers=workers, progress=True)
        seconds = time.perf_counter() - started
        folder = inputs_dir / tarball.name
        folder.mkdir(exist_ok=True)
        np.save(folder / "labels.npy", archive.labels)
        np.save(folder / "hashes.npy", archive.hashes.values)
        np.save(folder / "digests.npy", archive.digests)
        np.save(folder / "near_uniform.npy", archive.near_uniform)
        np.save(folder / "uniform_pixels.npy", archive.uniform_pixels)
        for field in VARIANT_FIELDS:
            np.save(folder / f"variant_{field}.npy", getattr(archive.variants, field))
        (folder / "sources.txt").write_text("\n".join(archive.sources) + "\n")
        stat = path.stat()
        meta["archives"][tarball.name] = {
            "path": str(path),
            "sha256": file_sha256(path),
            "bytes": stat.st_size,
            "mtime": stat.st_mtime,
            "images": len(archive),
            "read_seconds": round(seconds, 1),
        }
    (inputs_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def stored_inputs_match(data_dir: Path, inputs_dir: Path) -> bool:
    """Return True when ``inputs_dir`` contains arrays of the archives in ``data_dir``."""
    meta_path = inputs_dir / "meta.json"
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text())
    for tarball in (LARGE, SMALL):
        # Inputs stored before the variant hashes existed lack their files.
        if not (inputs_dir / tarball.name / "variant_filtered.npy").is_file():
            return False
        stat = (data_dir / tarball.file_name).stat()
        recorded = meta["archives"].get(tarball.name, {})
        if (
            recorded.get("bytes") != stat.st_size
            or recorded.get("mtime") != stat.st_mtime
        ):
            return False
    return True


def load_archive_arrays(inputs_dir: Path, tarball: Tarball) -> dict:
    folder = inputs_dir / tarball.name
    arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAY_NAMES}
    arrays["variants"] = VariantHashes(
        DedupSettings().hash_size,
        *(np.load(folder / f"variant_{field}.npy") for field in VARIANT_FIELDS),
    )
    arrays["sources"] = (folder / "sources.txt").read_text().splitlines()
    return arrays


def draw_raw_splits(
    large: dict, small: dict, sizes: dict[str, int], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Draw the raw splits and refill pools as ``prepare`` does.

    ``sizes`` are split totals. Returns global image indices (large first,
    then small) in seeded order.
    """
    offset = len(large["labels"])
    large_order = seeded_order(split_keys(large["sources"], seed), large["sources"])
    small_order = seeded_order(split_keys(small["sources"], seed), small["sources"])
    from_large = select_splits(
        large["labels"],
        large_order,
        {
            "validation": per_letter(sizes["validation"], "validation"),
            "train": per_letter(sizes["train"], "train"),
        },
        LARGE.file_name,
    )
    from_small = select_splits(
        small["labels"],
        small_order,
        {"test": per_letter(sizes["test"], "test")},
        SMALL.file_name,
    )
    raw = {
        "train": from_large.splits["train"],
        "validation": from_large.splits["validation"],
        "test": from_small.splits["test"] + offset,
    }
    pools = {"validation": from_large.pool, "test": from_small.pool + offset}
    return raw, pools


def memory_status() -> dict[str, int]:
    """Return VmRSS and VmHWM (peak) of this process in MiB, from /proc."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) // 1024  # reported in kB
    return values


def planted_recall(index, sources: list[str], manifest_path: Path) -> dict:
    """Score the index against the manifest of planted duplicates.

    An exact pair counts as found when both members share a group; a near pair
    when they share a group or their groups are linked. Returns, per kind, the
    number of pairs and how many were found, and for near pairs the same per
    phash distance to the original as the manifest records it.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(manifest_path).to_pydict()
    position = {source: i for i, source in enumerate(sources)}
    linked: set[tuple[int, int]] = set()
    owner = np.repeat(np.arange(index.num_groups), np.diff(index.neighbour_start))
    for a, b in zip(owner.tolist(), index.neighbours.tolist()):
        linked.add((a, b))

    result: dict = {"exact": {"pairs": 0, "found": 0, "missing_member": 0}}
    result["near"] = {"pairs": 0, "found": 0, "missing_member": 0, "by_distance": {}}
    for member, original, kind, distance in zip(
        table["member"], table["original"], table["kind"], table["phash_distance"]
    ):
        entry = result[kind]
        if member not in position or original not in position:
            entry["missing_member"] += 1
            continue
        group_a = int(index.group[position[member]])
        group_b = int(index.group[position[original]])
        found = group_a == group_b or (kind == "near" and (group_a, group_b) in linked)
        entry["pairs"] += 1
        entry["found"] += int(found)
        if kind == "near":
            bucket = entry["by_distance"].setdefault(int(distance), [0, 0])
            bucket[0] += 1
            bucket[1] += int(found)
    return result


def measure_pass(
    inputs_dir: Path, max_distance: int, data_dir: Path, sizes: dict[str, int]
) -> dict:
    """Run one dedup pass in this process and return its figures."""
    memory_before_load = memory_status()
    large = load_archive_arrays(inputs_dir, LARGE)
    small = load_archive_arrays(inputs_dir, SMALL)
    raw, pools = draw_raw_splits(large, small, sizes, seed=0)
    settings = DedupSettings(max_distance=max_distance)
    spec = HashSpec(settings.method, settings.hash_size)
    memory_inputs = memory_status()

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    images = ImageSet.concatenate(
        [
            ImageSet(
                ImageHashes(spec, arrays["hashes"]),
                arrays["digests"],
                arrays["labels"],
                arrays["near_uniform"],
                arrays["uniform_pixels"],
                arrays["variants"],
            )
            for arrays in (large, small)
        ]
    )
    seconds["ImageSet"] = time.perf_counter() - started

    started = time.perf_counter()
    index = build_index(images, settings)
    seconds["build_index"] = time.perf_counter() - started

    started = time.perf_counter()
    labels = images.labels
    sanitized = sanitize(index, raw, pools, labels, NUM_CLASSES)
    seconds["sanitize"] = time.perf_counter() - started

    started = time.perf_counter()
    overlap_report(index, raw, labels)
    overlap_report(index, sanitized.splits, labels)
    seconds["overlap_report (raw + sanitized)"] = time.perf_counter() - started
    seconds["total"] = sum(seconds.values())
    memory_after = memory_status()

    figures = {
        "images": len(images),
        "near_uniform": int(images.near_uniform.sum()),
        "distinct_images": index.num_groups,
        "links": index.num_links,
        "removals": len(sanitized.removals),
        "sanitized_sizes": {k: len(v) for k, v in sanitized.splits.items()},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "rss_mib_before_load": memory_before_load["VmRSS"],
        "rss_mib_inputs_loaded": memory_inputs["VmRSS"],
        "peak_rss_mib": memory_after["VmHWM"],
    }
    manifest = data_dir / MANIFEST_NAME
    if manifest.is_file():
        sources = large["sources"] + small["sources"]
        figures["planted"] = planted_recall(index, sources, manifest)
    return figures


def run_round_in_fresh_process(args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--measure-one",
        "--inputs-dir",
        str(args.inputs_dir),
        "--data-dir",
        str(args.data_dir),
        "--max-distance",
        str(args.max_distance),
        "--train-size",
        str(args.train_size),
        "--validation-size",
        str(args.validation_size),
        "--test-size",
        str(args.test_size),
    ]
    completed = subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=REPO_ROOT
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"measuring round failed with exit code {completed.returncode}:\n"
            f"{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def format_section(rounds: list[dict], meta: dict, command: str) -> str:
    """Render the figures of all rounds as one Markdown section."""
    first = rounds[0]
    phases = list(first["seconds"])
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    read_seconds = sum(a["read_seconds"] for a in meta["archives"].values())
    lines = [
        f"## {now}",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, "
        f"{total_mib:,} MiB RAM, load average {os.getloadavg()[0]:.1f} at the end",
        f"- software: Python {platform.python_version()}, NumPy {np.__version__}",
        f"- data: {first['images']:,} images ({first['near_uniform']:,} near-uniform) "
        f"from the archives in `{Path(meta['archives']['large']['path']).parent}`; "
        f"{first['distinct_images']:,} distinct, {first['links']:,} near-duplicate "
        f"links ({DedupSettings(max_distance=first['max_distance']).describe()})",
        "- archives (sha256): "
        + ", ".join(
            f"`{Path(a['path']).name}` {a['sha256'][:16]}…"
            for a in meta["archives"].values()
        ),
        f"- reading and hashing the archives beforehand (not part of the pass): "
        f"{read_seconds:.0f} s with 2 worker processes",
        f"- sanitized sizes: {first['sanitized_sizes']}, {first['removals']:,} removals",
        "",
        "Seconds per phase, one fresh process per round "
        f"({len(rounds)} {'round' if len(rounds) == 1 else 'rounds'}, "
        "median and range):",
        "",
        "| phase | median s | min s | max s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for phase in phases:
        values = [r["seconds"][phase] for r in rounds]
        lines.append(
            f"| {phase} | {statistics.median(values):.2f} | "
            f"{min(values):.2f} | {max(values):.2f} |"
        )
    peaks = [r["peak_rss_mib"] for r in rounds]
    inputs = [r["rss_mib_inputs_loaded"] for r in rounds]
    lines += [
        "",
        f"Resident memory (MiB): {statistics.median(inputs):,.0f} with the inputs "
        f"loaded (hashes, digests, labels, sources, near-uniform pixels), peak "
        f"{statistics.median(peaks):,.0f} during the pass, so the pass itself "
        f"added at most {statistics.median(peaks) - statistics.median(inputs):,.0f}.",
    ]
    planted = first.get("planted")
    if planted:
        exact, near = planted["exact"], planted["near"]
        lines += [
            "",
            "Planted duplicates found by the index (`planted.parquet`; a near pair "
            "is found when its images share a group or their groups are linked):",
            "",
            f"- exact: {exact['found']:,} of {exact['pairs']:,}",
            f"- near: {near['found']:,} of {near['pairs']:,}",
            "",
            "| phash distance to original | near pairs | found |",
            "| ---: | ---: | ---: |",
        ]
        for distance, (count, found) in sorted(
            (int(d), v) for d, v in near["by_distance"].items()
        ):
            lines.append(f"| {distance} | {count:,} | {found:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder with notMNIST_large.tar.gz, notMNIST_small.tar.gz and "
        f"{MANIFEST_NAME} (default benchmarks/out/scale)",
    )
    parser.add_argument(
        "--inputs-dir",
        type=Path,
        default=DEFAULT_INPUTS_DIR,
        help="where the decoded arrays are stored (default benchmarks/out/dedup_inputs)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes to time")
    parser.add_argument(
        "--max-distance", type=int, default=DedupSettings().max_distance
    )
    for split, size in DEFAULT_SIZES.items():
        parser.add_argument(
            f"--{split}-size",
            type=int,
            default=size,
            help=f"images in the raw {split} split (default {size:,})",
        )
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    parser.add_argument(
        "--no-record", action="store_true", help=f"do not append to {RESULTS_PATH.name}"
    )
    parser.add_argument("--measure-one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure_one:
        sizes = {
            "train": args.train_size,
            "validation": args.validation_size,
            "test": args.test_size,
        }
        figures = measure_pass(args.inputs_dir, args.max_distance, args.data_dir, sizes)
        figures["max_distance"] = args.max_distance
        print(json.dumps(figures))
        return 0

    for tarball in (LARGE, SMALL):
        if not (args.data_dir / tarball.file_name).is_file():
            parser.error(
                f"{args.data_dir / tarball.file_name} not found; write the archives "
                "with: python benchmarks/make_scale_tarballs.py --output "
                f"{args.data_dir}"
            )
    if not stored_inputs_match(args.data_dir, args.inputs_dir):
        print(f"Decoding the archives into {args.inputs_dir} (takes minutes)")
        store_inputs(args.data_dir, args.inputs_dir, args.workers)
    meta = json.loads((args.inputs_dir / "meta.json").read_text())

    rounds = []
    for number in range(args.rounds):
        figures = run_round_in_fresh_process(args)
        print(
            f"round {number + 1}: {figures['seconds']['total']:.1f} s, "
            f"peak {figures['peak_rss_mib']:,} MiB"
        )
        rounds.append(figures)

    command = "python " + " ".join(
        shlex.quote(part)
        for part in [f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]
    )
    section = format_section(rounds, meta, command)
    print(section)
    if not args.no_record:
        if not RESULTS_PATH.exists():
            RESULTS_PATH.write_text(
                "# Deduplication pass at full scale\n\nWritten by "
                "`benchmarks/bench_dedup.py`; each run appends a section.\n\n"
            )
        with open(RESULTS_PATH, "a", encoding="utf-8") as handle:
            handle.write("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
