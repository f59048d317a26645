"""Measure opening a notMNIST build and iterating a split as NumPy arrays.

Target on a 2-core machine: ``load_dataset`` of a build opens in under 5 s,
and the train split iterates at more than 50,000 images/s decoded to NumPy.

Measured, all in one run:

1. Open time of ``load_dataset(folder, config)`` with a fresh ``datasets``
   cache (cold: Parquet is converted to Arrow) and with that cache filled
   (warm), plus ``load_dataset("notmnist")`` from the cache the build
   registered, when the script made the build or ``--build-cache`` names it.
   Each open runs in a new process and the time excludes ``import datasets``.
   The Parquet files sit in the OS page cache after the first read, so "cold"
   means a cold ``datasets`` cache, not a cold disk.
2. Iteration of one split with ``iter(batch_size=...)``, the routes
   alternating round by round in one process so that machine load hits all
   alike: ``datasets``' ``with_format("numpy")`` (the reference),
   ``numpy_view``, Arrow-column access with ``decode_png_batch``,
   ``load_numpy``, ``numpy_view`` of the shuffled split, and the two access
   routes without decoding, which show their own per-row overhead.
3. The unfilter step alone on the split's inflated rows: Pillow decoding one
   tall PNG, as ``fastpng`` does, against a NumPy implementation vectorised
   across images. Both must give the same pixels.

Before timing, the script checks on the first rows that ``numpy_view`` gives
the same arrays as ``with_format("numpy")``. It prints a Markdown section and
appends it to benchmarks/results/load.md.

    python benchmarks/bench_load.py                  # builds the real sample
    python benchmarks/bench_load.py --folder DIR [--build-cache DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
import numpy as np
import PIL
import pyarrow as pa

from notmnist_ds.fastpng import (
    FILTERED_ROW_BYTES,
    IMAGES_PER_DECODE,
    decode_png_batch,
    inflate_fast_path,
    unfilter_with_pillow,
)
from notmnist_ds.numpy_view import arrow_png_bytes, load_numpy, numpy_view
from notmnist_ds.sample_tarballs import write_sample_tarballs

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "notmnist-real-sample"
RESULTS_PATH = REPO_ROOT / "benchmarks" / "results" / "load.md"
TARGET_OPEN_SECONDS = 5.0
TARGET_IMAGES_PER_SECOND = 50_000
VERIFY_ROWS = 20_000

OPEN_SCRIPT = """\
import sys, time
import datasets
datasets.disable_progress_bars()
started = time.perf_counter()
datasets.load_dataset(*sys.argv[1:])
print(time.perf_counter() - started)
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def isolated_env(cache: Path) -> dict[str, str]:
    """Environment for a child process: its own ``datasets`` cache, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_DATASETS_CACHE=str(cache),
        HF_HOME=str(cache.parent / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    return env


def build_sample(sample_dir: Path, work: Path) -> tuple[Path, Path]:
    """Build the real sample (5,000/1,000/1,000 raw rows); return folder and cache."""
    tarballs = work / "tarballs"
    tarballs.mkdir()
    write_sample_tarballs(sample_dir, tarballs)
    output = work / "build"
    cache = work / "build-cache"
    command = [
        sys.executable, "-m", "notmnist_ds.cli", "-q", "build",
        "--data-dir", str(tarballs), "--no-verify", "--output", str(output),
        "--train-size", "5000", "--valid-size", "1000", "--test-size", "1000",
    ]  # fmt: skip
    subprocess.run(command, env=isolated_env(cache), check=True)
    return output, cache


def time_open(args: list[str], cache: Path) -> float:
    """Seconds ``load_dataset(*args)`` takes in a new process using ``cache``."""
    result = subprocess.run(
        [sys.executable, "-c", OPEN_SCRIPT, *args],
        env=isolated_env(cache),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"load_dataset{tuple(args)} failed:\n{result.stderr}")
    return float(result.stdout.strip().splitlines()[-1])


def measure_open(
    folder: Path, config: str, build_cache: Path | None, rounds: int, work: Path
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    if build_cache is not None:
        times["bare name"] = []
    for round_index in range(rounds):
        cache = work / f"open-cache-{round_index}"
        times["cold"].append(time_open([str(folder), config], cache))
        times["warm"].append(time_open([str(folder), config], cache))
        if build_cache is not None:
            times["bare name"].append(time_open(["notmnist", config], build_cache))
    return times


def count_rows(batches: Iterable) -> int:
    """Consume an iterator of batches; return the rows seen."""
    rows = 0
    for batch in batches:
        rows += len(batch["label"])
    return rows


def arrow_decoded(split: datasets.Dataset, batch_size: int):
    for table in split.with_format("arrow").iter(batch_size=batch_size):
        yield {
            "image": decode_png_batch(arrow_png_bytes(table.column("image"))),
            "label": table.column("label").to_numpy(),
        }


def arrow_access(split: datasets.Dataset, batch_size: int):
    for table in split.with_format("arrow").iter(batch_size=batch_size):
        column: pa.ChunkedArray = table.column("image")
        yield {"image": arrow_png_bytes(column), "label": table.column("label")}


def iteration_routes(
    split: datasets.Dataset, batch_size: int
) -> dict[str, Callable[[], int]]:
    stored = split.cast_column("image", datasets.Image(decode=False))
    shuffled = split.shuffle(seed=0)
    return {
        "datasets with_format('numpy')": lambda: count_rows(
            split.with_format("numpy").iter(batch_size=batch_size)
        ),
        "numpy_view": lambda: count_rows(numpy_view(split).iter(batch_size=batch_size)),
        "Arrow columns + decode_png_batch": lambda: count_rows(
            arrow_decoded(split, batch_size)
        ),
        "load_numpy (whole split)": lambda: len(load_numpy(split, progress=False)[1]),
        "numpy_view, shuffled split": lambda: count_rows(
            numpy_view(shuffled).iter(batch_size=batch_size)
        ),
        "access only: transform, no decode": lambda: count_rows(
            stored.with_transform(lambda batch: batch).iter(batch_size=batch_size)
        ),
        "access only: Arrow columns, no decode": lambda: count_rows(
            arrow_access(split, batch_size)
        ),
    }


def paeth_offset_table() -> np.ndarray:
    """Paeth predictor minus the upper-left pixel, by ``a - c`` and ``b - c``.

    Flattened so that index ``(b - c + 255) * 511 + (a - c + 255)`` gives the
    predictor's offset from ``c`` (a left, b up, c upper-left pixel).
    """
    left = np.arange(-255, 256)[None, :]  # a - c
    up = np.arange(-255, 256)[:, None]  # b - c
    distance_left, distance_up, distance_corner = (
        np.abs(up),
        np.abs(left),
        np.abs(left + up),
    )
    use_left = (distance_left <= distance_up) & (distance_left <= distance_corner)
    use_up = ~use_left & (distance_up <= distance_corner)
    return np.where(use_left, left, np.where(use_up, up, 0)).astype(np.int64).ravel()


PAETH_OFFSETS = paeth_offset_table()


def numpy_unfilter(filtered: np.ndarray) -> np.ndarray:
    """Undo PNG filters of (N, 28, 29) rows in NumPy, vectorised across images.

    The alternative to ``fastpng.unfilter_with_pillow`` that this benchmark
    compares against. Per row, images are grouped by filter type. Sub is a
    wrapping cumulative sum, and Up one addition. Average and Paeth loop over
    the 28 columns, with Paeth's choice read from a lookup table, so each
    column costs four NumPy calls.
    """
    count, side = filtered.shape[0], filtered.shape[1]
    kinds, data = filtered[:, :, 0], filtered[:, :, 1:]
    pixels = np.empty((count, side, side), np.uint8)
    previous = np.zeros((count, side), np.uint8)
    for row in range(side):
        line = pixels[:, row]
        line[...] = data[:, row]
        for kind in (1, 2, 3, 4):
            chosen = np.flatnonzero(kinds[:, row] == kind)
            if not chosen.size:
                continue
            raw = data[chosen, row]
            if kind == 1:
                line[chosen] = np.cumsum(raw, axis=1, dtype=np.uint8)
                continue
            if kind == 2:
                line[chosen] = raw + previous[chosen]
                continue
            up = previous[chosen].astype(np.int64)
            upper_left = np.zeros_like(up)
            upper_left[:, 1:] = up[:, :-1]
            if kind == 3:
                addend, key = raw.astype(np.int64), up
            else:
                addend = raw + upper_left
                key = (up - upper_left + 255) * 511 + 255 - upper_left
            result = np.empty_like(up)
            left = np.zeros(chosen.size, np.int64)
            for column in range(side):
                if kind == 3:
                    predicted = (left + key[:, column]) >> 1
                else:
                    predicted = PAETH_OFFSETS.take(left + key[:, column])
                predicted += addend[:, column]
                left = np.bitwise_and(predicted, 255, out=result[:, column])
            line[chosen] = result
        previous = line
    return pixels


def measure_unfilter(split: datasets.Dataset, rounds: int) -> dict[str, list[float]]:
    """Seconds to unfilter the split's inflated rows: Pillow's tall PNG vs NumPy."""
    blobs = arrow_png_bytes(split.with_format("arrow")[:]["image"])
    _, filtered, _ = inflate_fast_path(blobs)
    stacked = np.frombuffer(b"".join(filtered), np.uint8)
    stacked = stacked.reshape(len(filtered), -1, FILTERED_ROW_BYTES)
    chunks = range(0, len(filtered), IMAGES_PER_DECODE)

    def with_pillow() -> np.ndarray:
        return np.concatenate(
            [unfilter_with_pillow(filtered[i : i + IMAGES_PER_DECODE]) for i in chunks]
        )

    def with_numpy() -> np.ndarray:
        return np.concatenate(
            [numpy_unfilter(stacked[i : i + IMAGES_PER_DECODE]) for i in chunks]
        )

    if not np.array_equal(with_pillow(), with_numpy()):
        raise AssertionError("NumPy and Pillow unfiltering differ")
    seconds: dict[str, list[float]] = {"Pillow, one tall PNG": [], "NumPy": []}
    for _ in range(rounds):
        for name, run in zip(seconds, (with_pillow, with_numpy), strict=True):
            started = time.perf_counter()
            run()
            seconds[name].append((time.perf_counter() - started) / len(filtered))
    return seconds


def verify(split: datasets.Dataset, batch_size: int) -> int:
    """Compare numpy_view with with_format('numpy') on the first rows; return rows."""
    head = split.select(range(min(VERIFY_ROWS, split.num_rows)))
    expected = head.with_format("numpy").iter(batch_size=batch_size)
    for position, (reference, batch) in enumerate(
        zip(expected, numpy_view(head).iter(batch_size=batch_size), strict=True)
    ):
        if not np.array_equal(reference["image"], batch["image"]):
            raise AssertionError(f"batch {position}: numpy_view images differ")
        if not np.array_equal(reference["label"], batch["label"]):
            raise AssertionError(f"batch {position}: numpy_view labels differ")
    return head.num_rows


def measure_iteration(
    split: datasets.Dataset, batch_size: int, rounds: int
) -> dict[str, list[float]]:
    """Seconds per full pass of each route, alternating routes every round."""
    routes = iteration_routes(split, batch_size)
    seconds: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(rounds):
        for name, run in routes.items():
            started = time.perf_counter()
            rows = run()
            seconds[name].append(time.perf_counter() - started)
            if rows != split.num_rows:
                raise AssertionError(f"{name} returned {rows} rows of {split.num_rows}")
    return seconds


def format_report(
    open_times: dict[str, list[float]],
    iteration: dict[str, list[float]],
    unfilter: dict[str, list[float]],
    rows: int,
    verified: int,
    context: dict[str, str],
) -> str:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [f"## {now}", ""]
    lines += [f"- {key}: {value}" for key, value in context.items()]
    lines.append(
        f"- machine: `{platform.machine()}`, {cpu_model()}, "
        f"{len(os.sched_getaffinity(0))} cores available, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    lines.append(
        f"- software: Python {platform.python_version()}, datasets {datasets.__version__}, "
        f"pyarrow {pa.__version__}, NumPy {np.__version__}, Pillow {PIL.__version__}"
    )
    lines.append(
        f"- check: numpy_view equals with_format('numpy') on the first {verified:,} rows"
    )
    lines += [
        "",
        (
            f"Open (target < {TARGET_OPEN_SECONDS:.0f} s), median of "
            f"{len(open_times['cold'])} rounds:"
        ),
        "",
        "| open | seconds | target met |",
        "| --- | ---: | --- |",
    ]
    for name, values in open_times.items():
        median = statistics.median(values)
        met = "yes" if median < TARGET_OPEN_SECONDS else "no"
        lines.append(f"| {name} | {median:.2f} | {met} |")

    reference_name = next(iter(iteration))
    reference = iteration[reference_name]
    lines += [
        "",
        (
            f"Iterate {rows:,} rows (target > {TARGET_IMAGES_PER_SECOND:,} images/s "
            f"decoded), median of {len(reference)} alternating rounds; ratio = "
            "median over rounds of the reference's time / the route's time:"
        ),
        "",
        "| route | images/s | ratio to datasets | target met |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, values in iteration.items():
        rate = rows / statistics.median(values)
        ratio = statistics.median(r / v for r, v in zip(reference, values, strict=True))
        if name.startswith("access only"):
            met = "(no decode)"
        else:
            met = "yes" if rate > TARGET_IMAGES_PER_SECOND else "no"
        lines.append(f"| {name} | {rate:,.0f} | {ratio:.2f}x | {met} |")

    lines += [
        "",
        "Unfilter step alone, on rows already inflated, alternating rounds:",
        "",
        "| unfilter | microseconds per image |",
        "| --- | ---: |",
    ]
    for name, values in unfilter.items():
        lines.append(f"| {name} | {statistics.median(values) * 1e6:.2f} |")
    return "\n".join(lines) + "\n"


def record(report: str) -> None:
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    is_new = not RESULTS_PATH.is_file()
    with RESULTS_PATH.open("a", encoding="utf-8") as results_file:
        if is_new:
            results_file.write(
                "# Loading a build: open time and NumPy iteration\n\n"
                "Written by `benchmarks/bench_load.py`; each run appends a section. "
                f"Target on 2 cores: `load_dataset` opens in under "
                f"{TARGET_OPEN_SECONDS:.0f} s, and the train split iterates at more "
                f"than {TARGET_IMAGES_PER_SECOND:,} images/s decoded to NumPy.\n\n"
            )
        results_file.write(report + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folder",
        type=Path,
        help="a folder written by `notmnist build` (default: build the real sample "
        "into a temporary folder)",
    )
    parser.add_argument(
        "--build-cache",
        type=Path,
        help="the datasets cache the --folder build registered in, to time "
        "load_dataset('notmnist') too",
    )
    parser.add_argument(
        "--sample-dir",
        type=Path,
        default=DEFAULT_SAMPLE_DIR,
        help="folder with the real sample's IDX files, for the default build",
    )
    parser.add_argument(
        "--config", default="sanitized", help="config to load (default sanitized)"
    )
    parser.add_argument(
        "--split", default="train", help="split to iterate (default train)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="rows per batch (default 1000)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="timing rounds of each measurement (default 3)",
    )
    parser.add_argument(
        "--no-record",
        action="store_true",
        help=f"print only; do not append to {RESULTS_PATH.relative_to(REPO_ROOT)}",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.folder is not None and not (args.folder / args.config).is_dir():
        parser.error(
            f"{args.folder} has no {args.config}/ folder; pass a folder that "
            "`notmnist build` wrote"
        )
    datasets.disable_progress_bars()

    with tempfile.TemporaryDirectory(prefix="bench-load-") as temporary:
        work = Path(temporary)
        if args.folder is None:
            if not (args.sample_dir / "images-idx3-ubyte.gz").is_file():
                parser.error(
                    f"real sample not found in {args.sample_dir}; pass --folder"
                )
            folder, build_cache = build_sample(args.sample_dir, work)
            data = "the real sample, built with --train-size 5000 --valid-size 1000 --test-size 1000"
        else:
            folder, build_cache = args.folder.absolute(), args.build_cache
            data = f"the build in `{folder}`"

        open_times = measure_open(folder, args.config, build_cache, args.rounds, work)
        loaded = datasets.load_dataset(
            str(folder), args.config, cache_dir=str(work / "open-cache-0")
        )
        split = loaded[args.split]
        verified = verify(split, args.batch_size)
        iteration = measure_iteration(split, args.batch_size, args.rounds)
        unfilter = measure_unfilter(split, args.rounds)

    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(REPO_ROOT):
        script = script.relative_to(REPO_ROOT)
    context = {
        "command": f"`python {shlex.join([str(script)] + sys.argv[1:])}`",
        "data": f"{data}; config {args.config}, split {args.split}, "
        f"batch size {args.batch_size}",
    }
    report = format_report(
        open_times, iteration, unfilter, split.num_rows, verified, context
    )
    print(report)
    if not args.no_record:
        record(report)
        print(f"appended to {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
