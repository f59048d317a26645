"""Measure batch perceptual hashing against an imagehash loop on real notMNIST.

Both run side by side in one process on the same images, alternating round by
round, so a busy machine slows both alike and the ratio stays meaningful. The
script also checks that every batch hash equals imagehash's. It prints a
Markdown table and appends it, with the command and the machine, to
benchmarks/results/hashing.md.

    python benchmarks/bench_hashing.py [--rounds 5] [--methods phash dhash ahash]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import imagehash
import numpy as np
import PIL
import scipy
from PIL import Image

from dedup.hashing import HASH_METHODS, HashSpec, compute_hashes
from notmnist_ds.sample_tarballs import read_idx

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "notmnist-real-sample"
RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "hashing.md"

IMAGEHASH_FUNCTIONS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "ahash": imagehash.average_hash,
}


def imagehash_loop(pixels: np.ndarray, method: str) -> np.ndarray:
    """Hash image by image with imagehash, as a caller without this package would."""
    function = IMAGEHASH_FUNCTIONS[method]
    values = [int(str(function(Image.fromarray(image, "L"))), 16) for image in pixels]
    return np.array(values, dtype=np.uint64)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(pixels: np.ndarray, method: str, rounds: int) -> dict[str, float | int]:
    """Time both implementations for ``rounds`` alternating rounds.

    Returns median seconds of each, the median per-round ratio and the number
    of images whose hashes differ.
    """
    spec = HashSpec(method, 8)
    # Warm-up: imports, cached weight matrices and scipy's first call.
    compute_hashes(pixels[:256], spec)
    imagehash_loop(pixels[:64], method)

    batch_seconds, loop_seconds, ratios = [], [], []
    mismatches = 0
    for _ in range(rounds):
        start = time.perf_counter()
        batch = compute_hashes(pixels, spec).values
        batch_time = time.perf_counter() - start

        start = time.perf_counter()
        reference = imagehash_loop(pixels, method)
        loop_time = time.perf_counter() - start

        mismatches = max(mismatches, int((batch != reference).sum()))
        batch_seconds.append(batch_time)
        loop_seconds.append(loop_time)
        ratios.append(loop_time / batch_time)
    return {
        "batch_seconds": statistics.median(batch_seconds),
        "loop_seconds": statistics.median(loop_seconds),
        "ratio": statistics.median(ratios),
        "mismatches": mismatches,
    }


def format_report(
    results: dict[str, dict[str, float | int]], count: int, rounds: int, command: str
) -> str:
    """Return the Markdown section for one run: context lines and the table."""
    machine = (
        f"- machine: `{platform.machine()}`, {cpu_model()}, "
        f"{len(os.sched_getaffinity(0))} cores available, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    software = (
        f"- software: Python {platform.python_version()}, NumPy {np.__version__}, "
        f"Pillow {PIL.__version__}, imagehash {imagehash.__version__}, "
        f"SciPy {scipy.__version__}"
    )
    data = (
        f"- data: {count} real notMNIST images (28x28), hash_size 8, "
        f"median of {rounds} alternating rounds"
    )
    lines = [
        f"## {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        "",
        f"- command: `{command}`",
        machine,
        software,
        data,
        "",
        "| method | batch images/s | imagehash images/s | speed-up | differing |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for method, result in results.items():
        lines.append(
            f"| {method} | {count / result['batch_seconds']:,.0f} "
            f"| {count / result['loop_seconds']:,.0f} "
            f"| {result['ratio']:.1f}x | {result['mismatches']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sample-dir",
        type=Path,
        default=DEFAULT_SAMPLE_DIR,
        help="folder with images-idx3-ubyte.gz and labels-idx1-ubyte.gz",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating timing rounds (default 5)"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=HASH_METHODS,
        default=list(HASH_METHODS),
        help="hash methods to measure (default: all)",
    )
    parser.add_argument(
        "--no-record",
        action="store_true",
        help=f"print only; do not append to {RESULTS_PATH.relative_to(REPO_ROOT)}",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")

    images_path = args.sample_dir / "images-idx3-ubyte.gz"
    if not images_path.is_file():
        parser.error(f"real sample not found: {images_path} is missing")
    pixels, _ = read_idx(images_path, args.sample_dir / "labels-idx1-ubyte.gz")

    results = {method: measure(pixels, method, args.rounds) for method in args.methods}
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(REPO_ROOT):
        script = script.relative_to(REPO_ROOT)
    command = "python " + shlex.join([str(script)] + sys.argv[1:])
    report = format_report(results, len(pixels), args.rounds, command)
    print(report)

    if not args.no_record:
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        is_new = not RESULTS_PATH.is_file()
        with RESULTS_PATH.open("a", encoding="utf-8") as results_file:
            if is_new:
                results_file.write(
                    "# Perceptual hashing: batch NumPy vs imagehash loop\n\n"
                    "Written by `benchmarks/bench_hashing.py`; each run appends a "
                    "section. Speed-up is the median over rounds of imagehash "
                    "time / batch time, measured in the same process.\n\n"
                )
            results_file.write(report + "\n")
        print(f"appended to {RESULTS_PATH}")

    differing = sum(int(result["mismatches"]) for result in results.values())
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
