"""Whole-build benchmark: wall time and peak memory per phase, and the floor.

Runs ``notmnist build`` in a fresh process on a pair of tarballs (by default
the full-size synthetic set written by ``make_scale_tarballs.py``) with one and
with two decoding workers, sampling the resident memory of the whole process
tree every 50 ms. Then measures, on the same tarball, the floor that gzip
decompression and Pillow decoding alone set, and scores the duplicate
detection against the planted duplicates when a ``planted.parquet`` manifest
is present.

    python benchmarks/make_scale_tarballs.py --output benchmarks/out/scale --seed 0
    python benchmarks/bench_build.py --data-dir benchmarks/out/scale \\
        --record benchmarks/results/build.md
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for current in pids:
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class MemorySampler(threading.Thread):
    """Track the peak RSS of a process, and of it with all its descendants."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_main = self.peak_tree = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            main = rss_bytes(self.pid)
            tree = sum(rss_bytes(p) for p in process_tree(self.pid))
            self.peak_main = max(self.peak_main, main)
            self.peak_tree = max(self.peak_tree, tree)
            time.sleep(self.interval)


def timed_build(data_dir: Path, workers: int, root: Path, sizes: list[str]) -> dict:
    output, cache = root / f"out-{workers}", root / f"cache-{workers}"
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    command = [
        sys.executable, "-m", "notmnist_ds.cli", "-q", "build",
        "--data-dir", str(data_dir), "--no-verify", "--output", str(output),
        "--cache-dir", str(cache), "--workers", str(workers), *sizes,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPOSITORY)
    sampler = MemorySampler(process.pid)
    sampler.start()
    code = process.wait()
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"build with {workers} workers failed with exit code {code}")
    report = json.loads((output / "reports" / "build_report.json").read_text())
    images = sum(read["rows"] for read in report["read"].values())
    return {
        "workers": workers,
        "wall": wall,
        "images": images,
        "images_per_second": images / wall,
        "peak_main": sampler.peak_main,
        "peak_tree": sampler.peak_tree,
        "phases": report["seconds"],
        "command": " ".join(command[1:]),
    }


def _decode_chunk(blobs: list[bytes]) -> int:
    from PIL import Image

    for data in blobs:
        if data:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.load()
            except Exception:  # noqa: BLE001 - unreadable members count too
                pass
    return len(blobs)


def measure_floor(path: Path, workers: int) -> dict:
    """Time gzip decompression alone, then Pillow decoding alone of every member."""
    started = time.perf_counter()
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 20):
            pass
    gunzip = time.perf_counter() - started

    blobs = []
    with tarfile.open(path, "r|gz") as archive:
        for info in archive:
            if info.isfile():
                blobs.append(archive.extractfile(info).read())
    chunks = [blobs[i : i + 4096] for i in range(0, len(blobs), 4096)]
    started = time.perf_counter()
    if workers == 1:
        for chunk in chunks:
            _decode_chunk(chunk)
    else:
        with ProcessPoolExecutor(workers) as executor:
            list(executor.map(_decode_chunk, chunks))
    decode = time.perf_counter() - started
    return {"gunzip": gunzip, "decode": decode, "floor": gunzip + decode, "members": len(blobs)}


def score_planted(data_dir: Path) -> dict | None:
    """Check that the build's duplicate index links every planted pair."""
    manifest = data_dir / "planted.parquet"
    if not manifest.is_file():
        return None
    import pyarrow.parquet as pq

    from dedup.near import DedupSettings
    from notmnist_ds.constants import LARGE, SMALL
    from notmnist_ds.pipeline import BuildOptions, prepare

    planted = pq.read_table(manifest).to_pydict()
    paths = {t.name: data_dir / t.file_name for t in (LARGE, SMALL)}
    prepared = prepare(
        paths, {"large": "", "small": ""}, BuildOptions(), workers=2, progress=False
    )
    index = prepared.index
    position = {}
    for name, archive in prepared.archives.items():
        offset = prepared.offsets[name]
        for local, source in enumerate(archive.sources):
            position[source] = offset + local

    settings = DedupSettings()
    neighbours = {}
    found: dict[str, list[int]] = {}
    for member, original, kind, perturbation, distance, is_planted in zip(
        planted["member"],
        planted["original"],
        planted["kind"],
        planted["perturbation"],
        planted["phash_distance"],
        planted["planted"],
    ):
        if not is_planted or member not in position or original not in position:
            continue
        a, b = index.group[position[member]], index.group[position[original]]
        if a not in neighbours:
            neighbours[a] = set(index.neighbours_of(a)[0].tolist())
        linked = a == b if kind == "exact" else (a == b or b in neighbours[a])
        keys = [kind]
        if kind == "near":
            kinds = "+".join(part.split("(")[0] for part in perturbation.split("+"))
            keys.append(f"near: {kinds}")
            within = distance <= settings.max_distance
            keys.append(f"near, phash distance {'<=' if within else '>'} {settings.max_distance}")
        for key in keys:
            hit_total = found.setdefault(key, [0, 0])
            hit_total[0] += int(linked)
            hit_total[1] += 1
    return {
        "method": settings.method,
        "max_distance": settings.max_distance,
        "rule": settings.describe(),
        "recall": {
            key: {"found": hit, "planted": total, "recall": hit / total}
            for key, (hit, total) in sorted(found.items())
        },
    }


PHASE_ORDER = (
    "fetch and verify",
    "read large",
    "read small",
    "split",
    "deduplicate",
    "sanitize",
    "write parquet",
    "everything else (start-up, reports, card, swap)",
)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()[0]
    return f"{platform.machine()}, {cpu}, {os.cpu_count()} cores, load average {load:.1f} at start"


def format_results(runs: list[dict], floor: dict, score: dict | None, data_dir: Path) -> str:
    lines = [
        f"### Whole build, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {machine()}. Tarballs: `{data_dir}`.",
        "",
        "Command: `python " + " ".join(sys.argv) + "`",
        "",
        "| workers | wall s | images | images/s | peak RSS main | peak RSS with workers |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run['workers']} | {run['wall']:.1f} | {run['images']:,} | "
            f"{run['images_per_second']:,.0f} | {run['peak_main'] / 2**20:,.0f} MiB | "
            f"{run['peak_tree'] / 2**20:,.0f} MiB |"
        )
    for run in runs:
        run["phases"]["everything else (start-up, reports, card, swap)"] = run["wall"] - sum(run["phases"].values())
    phases = [p for p in PHASE_ORDER if p in runs[0]["phases"]]
    lines += ["", "Seconds per phase:", "", "| phase | " + " | ".join(f"{r['workers']} worker(s)" for r in runs) + " |",
              "|---|" + "---:|" * len(runs)]
    for phase in phases:
        lines.append(f"| {phase} | " + " | ".join(f"{r['phases'].get(phase, 0):.1f}" for r in runs) + " |")
    lines += [
        "",
        f"Floor on the large tarball ({floor['members']:,} members): gzip decompression "
        f"{floor['gunzip']:.1f} s + Pillow decoding with {floor['workers']} process(es) "
        f"{floor['decode']:.1f} s = {floor['floor']:.1f} s. The large archive's read phase with "
        f"{floor['workers']} workers took {next(r for r in runs if r['workers'] == floor['workers'])['phases'].get('read large', 0):.1f} s.",
    ]
    if score:
        lines += [
            "",
            f"Planted duplicates found by the default rule ({score['rule']}):",
            "",
            "| planted | found | recall |",
            "|---|---:|---:|",
        ]
        for key, value in score["recall"].items():
            lines.append(f"| {key} | {value['found']:,} / {value['planted']:,} | {value['recall']:.2%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPOSITORY / "benchmarks/out/scale")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--scratch", type=Path, default=REPOSITORY / "benchmarks/out/bench-build")
    parser.add_argument("--no-score", action="store_true", help="skip scoring planted duplicates")
    parser.add_argument("--record", type=Path, help="append the results to this Markdown file")
    parser.add_argument("--sizes", help="train,validation,test totals (default: the build's)")
    args = parser.parse_args()

    sizes = []
    if args.sizes:
        train, valid, test = args.sizes.split(",")
        sizes = ["--train-size", train, "--valid-size", valid, "--test-size", test]
    runs = [
        timed_build(args.data_dir, int(w), args.scratch, sizes) for w in args.workers.split(",")
    ]
    floor_workers = max(r["workers"] for r in runs)
    floor = measure_floor(args.data_dir / "notMNIST_large.tar.gz", floor_workers) | {"workers": floor_workers}
    score = None if args.no_score else score_planted(args.data_dir)
    text = format_results(runs, floor, score, args.data_dir)
    print(text)
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        with open(args.record, "a", encoding="utf-8") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
