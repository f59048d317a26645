"""Measure the exact Hamming near-pair search of dedup/search.py against brute force.

The hashes are imagehash phash values of the 8,000 real notMNIST images, without
the uniform images' degenerate hash 0x8000000000000000, which the callers of the
search remove first (7,878 remain). Larger sets add seeded perturbed copies of
random real hashes, each with 0 to 6 distinct bits flipped, so about one copy
in seven is exact. The real sample has only 8,000 images, so even the
10,000-hash set is mostly real hashes plus copies. A uniform random set of the
largest size shows the cost when the data has no clusters, and ``--hashes``
adds any stored uint64 array, such as the hashes of the scale archives that
benchmarks/bench_dedup.py stores.

Every search and brute-force run is a fresh Python process, so its peak
resident set size (VmHWM in /proc/self/status) belongs to that run alone. The
result is compared with brute force by sha256 of its arrays. Brute force costs
the same at every k, so each set gets one run at the largest k, and the
references for the smaller k are its pairs filtered by distance. Sets above
``--brute-force-limit`` hashes are checked on a random subset instead, and
their brute-force time is an estimate scaled from that subset by (N / n)**2.

The script prints Markdown tables and appends them, with the command, machine,
load average and date, to benchmarks/results/search.md:

    python benchmarks/bench_search.py [--sizes 10000 530000] [--distances 4 6 8]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from dedup.search import (
    brute_force_pairs,
    choose_blocks,
    describe,
    find_near_pairs,
    make_blocks,
)

RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "search.md"
DEFAULT_SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "notmnist-real-sample"
UNIFORM_IMAGE_HASH = np.uint64(1 << 63)
MAX_FLIPPED_BITS = 6


def real_phashes(sample_dir: Path) -> np.ndarray:
    """Return the phash of every real sample image that is not uniform."""
    import imagehash
    from PIL import Image

    from notmnist_ds.sample_tarballs import read_idx

    pixels, _ = read_idx(
        sample_dir / "images-idx3-ubyte.gz", sample_dir / "labels-idx1-ubyte.gz"
    )
    values = [int(str(imagehash.phash(Image.fromarray(image))), 16) for image in pixels]
    hashes = np.array(values, dtype=np.uint64)
    return hashes[hashes != UNIFORM_IMAGE_HASH]


def add_perturbed_copies(
    hashes: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Return ``hashes`` plus copies up to ``size`` hashes, shuffled.

    Each copy flips 0 to MAX_FLIPPED_BITS distinct random bits of a random
    hash, with every count equally likely. When ``size`` is below the number of
    hashes, returns a random ``size`` of them and no copies.
    """
    count = size - len(hashes)
    if count <= 0:
        return rng.permutation(hashes)[:size]
    sources = hashes[rng.integers(0, len(hashes), count)]
    flips = rng.integers(0, MAX_FLIPPED_BITS + 1, count)
    positions = rng.permuted(np.tile(np.arange(64, dtype=np.uint8), (count, 1)), axis=1)
    masks = np.zeros(count, dtype=np.uint64)
    for column in range(MAX_FLIPPED_BITS):
        chosen = column < flips
        masks[chosen] |= np.uint64(1) << positions[chosen, column].astype(np.uint64)
    return rng.permutation(np.concatenate((hashes, sources ^ masks)))


def memory_mib() -> dict[str, float]:
    """Return VmRSS and VmHWM (peak) of this process in MiB, from /proc."""
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            status[key] = int(value.split()[0]) / 1024
    return status


def digest(first: np.ndarray, second: np.ndarray, distance: np.ndarray) -> str:
    value = hashlib.sha256()
    for array in (first, second, distance):
        value.update(np.ascontiguousarray(array).tobytes())
    return value.hexdigest()


def run_worker(request: dict) -> dict:
    """Run one search or brute-force pass in this process and return its figures."""
    hashes = np.load(request["hashes"])
    before = memory_mib()["VmRSS"]
    wall = time.perf_counter()
    cpu = time.process_time()
    if request["method"] == "search":
        pairs = find_near_pairs(hashes, request["k"], block_count=request["blocks"])
    else:
        pairs = brute_force_pairs(hashes, max(request["check_distances"]))
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    memory = memory_mib()

    digests = {}
    for k in request["check_distances"]:
        keep = pairs.distance <= k
        digests[k] = {
            "pairs": int(keep.sum()),
            "sha256": digest(
                pairs.first[keep], pairs.second[keep], pairs.distance[keep]
            ),
        }
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_before": before,
        "peak_rss": memory["VmHWM"],
        "digests": digests,
    }


def spawn(request: dict) -> dict:
    """Run ``run_worker`` in a fresh Python process."""
    command = [sys.executable, __file__, "--worker", json.dumps(request)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"worker failed with exit code {done.returncode}: {request}\n{done.stderr}"
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["digests"] = {int(k): v for k, v in result["digests"].items()}
    return result


def file_stem(name: str) -> str:
    """Return ``name`` with every character but letters and digits as "_"."""
    return "".join(char if char.isalnum() else "_" for char in name)


def layout_name(size: int, k: int, blocks: int | None) -> str:
    chosen = choose_blocks(k, size, None) if blocks is None else make_blocks(k, blocks)
    return describe(chosen)


def measure_set(
    name: str,
    hashes: np.ndarray,
    full_check: bool,
    args: argparse.Namespace,
    folder: Path,
) -> list[dict]:
    """Measure the search at every k of ``args.distances`` on one set of hashes.

    Brute force runs on all hashes when ``full_check`` is set and the set has
    at most ``args.brute_force_limit`` hashes, and on a random subset otherwise.
    """
    path = folder / f"{file_stem(name)}.npy"
    np.save(path, hashes)
    distances = sorted(args.distances)
    size = len(hashes)

    # The brute-force reference, on all hashes or on a random subset.
    if full_check and size <= args.brute_force_limit:
        checked_path, checked_size = path, size
    else:
        checked_size = min(args.brute_force_subset, size)
        rng = np.random.default_rng(args.seed)
        subset = rng.choice(hashes, size=checked_size, replace=False)
        checked_path = folder / f"{file_stem(name)}_subset.npy"
        np.save(checked_path, subset)
    print(f"{name}: brute force on {checked_size:,} hashes", flush=True)
    brute = spawn(
        {
            "hashes": str(checked_path),
            "method": "brute",
            "check_distances": distances,
        }
    )
    brute_seconds = brute["wall"] * (size / checked_size) ** 2

    rows = []
    for k in distances:
        runs = []
        for _ in range(args.rounds):
            print(f"{name}: search at k={k}", flush=True)
            runs.append(
                spawn(
                    {
                        "hashes": str(path),
                        "method": "search",
                        "k": k,
                        "blocks": None,
                        "check_distances": [k],
                    }
                )
            )
        if checked_size < size:
            # The search on the same subset, to compare with brute force there.
            subset_run = spawn(
                {
                    "hashes": str(checked_path),
                    "method": "search",
                    "k": k,
                    "blocks": None,
                    "check_distances": [k],
                }
            )
            identical = subset_run["digests"][k] == brute["digests"][k]
            check = f"{'yes' if identical else 'NO'} on {checked_size:,}"
        else:
            identical = runs[0]["digests"][k] == brute["digests"][k]
            check = "yes" if identical else "NO"
        wall = statistics.median(run["wall"] for run in runs)
        rows.append(
            {
                "set": name,
                "size": size,
                "k": k,
                "layout": layout_name(size, k, None),
                "pairs": runs[0]["digests"][k]["pairs"],
                "wall": wall,
                "cpu": statistics.median(run["cpu"] for run in runs),
                "peak_rss": max(run["peak_rss"] for run in runs),
                "rss_before": runs[0]["rss_before"],
                "brute": brute_seconds,
                "brute_estimated": checked_size < size,
                "speedup": brute_seconds / wall,
                "check": check,
            }
        )
    return rows


def measure_layouts(
    name: str, hashes: np.ndarray, args: argparse.Namespace, folder: Path
) -> list[dict]:
    """Time the search with each fixed block count, to compare with the choice."""
    path = folder / f"{file_stem(name)}.npy"
    np.save(path, hashes)
    rows = []
    for k in sorted(args.distances):
        for blocks in [None, *args.layout_blocks]:
            if blocks is not None and blocks > k + 1:
                continue
            print(f"{name}: layout {blocks} at k={k}", flush=True)
            run = spawn(
                {
                    "hashes": str(path),
                    "method": "search",
                    "k": k,
                    "blocks": blocks,
                    "check_distances": [k],
                }
            )
            rows.append(
                {
                    "k": k,
                    "chosen": blocks is None,
                    "layout": layout_name(len(hashes), k, blocks),
                    "wall": run["wall"],
                    "cpu": run["cpu"],
                    "peak_rss": run["peak_rss"],
                    "sha256": run["digests"][k]["sha256"],
                }
            )
    return rows


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def format_report(
    command: str,
    rows: list[dict],
    layout_rows: list[dict],
    layout_set: str,
    loads: tuple[float, float],
    args: argparse.Namespace,
) -> str:
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    lines = [
        f"## {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        "",
        f"- command: `{command}`",
        (
            f"- machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, "
            f"{total_mib:,} MiB RAM, load average {loads[0]:.1f} at the start and "
            f"{loads[1]:.1f} at the end"
        ),
        f"- software: Python {platform.python_version()}, NumPy {np.__version__}",
        (
            f"- search times: median of {args.rounds} run(s), each in a fresh "
            "process. Brute force: one run a set at the largest k, whose pairs "
            "within each smaller k are the references there. An estimate is "
            f"scaled from a {args.brute_force_subset:,}-hash subset by (N / n)**2, "
            "and that subset is what 'yes on n' checked"
        ),
        "",
        (
            "| hashes | N | k | layout | pairs | search s | search CPU s | "
            "peak RSS MiB | brute force s | brute / search | identical |"
        ),
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        brute = f"{row['brute']:,.1f}"
        if row["brute_estimated"]:
            brute = f"~{brute} (estimate)"
        lines.append(
            f"| {row['set']} | {row['size']:,} | {row['k']} | {row['layout']} | "
            f"{row['pairs']:,} | {row['wall']:.2f} | {row['cpu']:.2f} | "
            f"{row['peak_rss']:,.0f} | {brute} | {row['speedup']:,.0f}x | "
            f"{row['check']} |"
        )
    baseline = min(row["rss_before"] for row in rows)
    lines += [
        "",
        (
            "Peak RSS includes the interpreter, NumPy and the input: "
            f"{baseline:.0f} MiB before the search starts."
        ),
    ]
    if layout_rows:
        lines += [
            "",
            (
                f"Fixed block counts on {layout_set}, one run each. The row marked "
                "chosen is the layout that the cost estimate picks:"
            ),
            "",
            "| k | layout | search s | search CPU s | peak RSS MiB | same pairs |",
            "| ---: | --- | ---: | ---: | ---: | --- |",
        ]
        reference = {row["k"]: row["sha256"] for row in layout_rows if row["chosen"]}
        for row in layout_rows:
            layout = row["layout"] + (" (chosen)" if row["chosen"] else "")
            same = "yes" if row["sha256"] == reference[row["k"]] else "NO"
            lines.append(
                f"| {row['k']} | {layout} | {row['wall']:.2f} | {row['cpu']:.2f} | "
                f"{row['peak_rss']:,.0f} | {same} |"
            )
    return "\n".join(lines) + "\n"


RESULTS_HEADER = """# Hamming near-pair search: multi-index hashing vs brute force

Written by `benchmarks/bench_search.py`; each run appends a section. The search is
`dedup.search.find_near_pairs`, the reference `dedup.search.brute_force_pairs`.
"real + copies" sets are the phash values of the real sample's 7,878 non-uniform
images plus seeded copies of them with 0 to 6 bits flipped. Wall times come from
a shared machine, so compare figures within one section, and read the CPU
seconds when the load average is high.
"""


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 530_000],
        help="sizes of the real + copies sets (default: 10000 530000)",
    )
    parser.add_argument(
        "--distances",
        type=int,
        nargs="+",
        default=[4, 6, 8],
        help="Hamming distances k to search within (default: 4 6 8)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="search runs per row (default: 3)"
    )

    parser.add_argument(
        "--brute-force-limit",
        type=int,
        default=600_000,
        help="largest real + copies set checked by a full brute-force run; larger "
        "sets, the uniform set and --hashes sets are checked on a subset "
        "(default: 600000; a full run at 530,000 takes about ten minutes)",
    )
    parser.add_argument(
        "--brute-force-subset",
        type=int,
        default=50_000,
        help="hashes in the subset of larger sets (default: 50000)",
    )

    parser.add_argument(
        "--layout-blocks",
        type=int,
        nargs="*",
        default=[3, 4, 5],
        help="fixed block counts to time on the largest real + copies set "
        "(default: 3 4 5; none to skip)",
    )
    parser.add_argument(
        "--hashes",
        type=Path,
        nargs="*",
        default=[],
        help=".npy files of uint64 hashes to measure as well",
    )

    parser.add_argument("--seed", type=int, default=0, help="seed of the copies")
    parser.add_argument(
        "--sample-dir",
        type=Path,
        default=DEFAULT_SAMPLE_DIR,
        help="folder of the real sample in IDX format",
    )

    parser.add_argument(
        "--output", type=Path, default=RESULTS_PATH, help="Markdown file to append to"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return

    command = shlex.join(["python", "benchmarks/bench_search.py", *sys.argv[1:]])
    load_before = os.getloadavg()[0]
    real = real_phashes(args.sample_dir)
    print(f"{len(real):,} non-uniform real phash values", flush=True)

    # (name, hashes, whether brute force may run on all of them)
    sets = []
    for size in sorted(args.sizes):
        rng = np.random.default_rng([args.seed, size])
        copies = add_perturbed_copies(real, size, rng)
        sets.append((f"real + copies {size:,}", copies, True))
    largest = max(args.sizes)
    rng = np.random.default_rng([args.seed, largest, 1])
    uniform = rng.integers(0, 2**64 - 1, largest, dtype=np.uint64, endpoint=True)
    sets.append((f"uniform random {largest:,}", uniform, False))
    for path in args.hashes:
        hashes = np.load(path)
        if hashes.dtype != np.uint64 or hashes.ndim != 1:
            raise SystemExit(
                f"{path}: expected a one-dimensional uint64 array, got "
                f"{hashes.dtype} with shape {hashes.shape}"
            )
        name = f"{path.parent.name}/{path.name}"
        sets.append((name, hashes[hashes != UNIFORM_IMAGE_HASH], False))

    rows: list[dict] = []
    layout_rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_search_") as folder:
        for name, hashes, full_check in sets:
            rows += measure_set(name, hashes, full_check, args, Path(folder))
        layout_set = sets[len(args.sizes) - 1][0]
        if args.layout_blocks:
            layout_rows = measure_layouts(
                layout_set, sets[len(args.sizes) - 1][1], args, Path(folder)
            )

    report = format_report(
        command, rows, layout_rows, layout_set, (load_before, os.getloadavg()[0]), args
    )
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if not args.output.exists():
        args.output.write_text(RESULTS_HEADER)
    with args.output.open("a") as results:
        results.write("\n" + report)


if __name__ == "__main__":
    main()
