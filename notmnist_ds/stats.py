"""``notmnist stats``, ``preview`` and ``card``: look at a built folder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .card import render_card
from .constants import CLASS_NAMES, SPLIT_NAMES
from .pictures import sample_grid, save_png
from .reports import BASELINE, BUILD_REPORT, load_report


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def format_stats(folder: Path) -> str:
    """Return class balance per split, totals, size on disk and the skip table."""
    report = load_report(folder)
    lines = [f"{folder}: notmnist-ds {report['version']}, fingerprint {report['fingerprint']}"]
    for config, data in report["configs"].items():
        balance = data["class_balance"]
        lines.append("")
        lines.append(f"{config}")
        lines.append(f"  {'letter':<8}" + "".join(f"{split:>12}" for split in SPLIT_NAMES))
        for letter in CLASS_NAMES:
            lines.append(f"  {letter:<8}" + "".join(f"{balance[s][letter]:>12,}" for s in SPLIT_NAMES))
        lines.append(f"  {'total':<8}" + "".join(f"{data['splits'][s]:>12,}" for s in SPLIT_NAMES))
        parquet_bytes = sum((Path(folder) / shard).stat().st_size for shard in data["shards"])
        lines.append(f"  {len(data['shards'])} Parquet shards, {parquet_bytes / 2**20:,.1f} MiB")

    lines.append("")
    lines.append(f"size on disk: {folder_size(folder) / 2**20:,.1f} MiB")
    lines.append("")
    lines.append("left out while reading:")
    lines.append(f"  {'archive':<24}{'member':<60}{'reason':<24}")
    count = 0
    for read in report["read"].values():
        for omission in read["omissions"]:
            lines.append(f"  {read['archive']:<24}{omission['member']:<60}{omission['reason']:<24}")
            count += 1
    if count == 0:
        lines.append("  nothing")
    for read in report["read"].values():
        reasons = ", ".join(f"{n:,} {r}" for r, n in read["reason_counts"].items()) or "nothing left out"
        lines.append(f"  {read['archive']}: {read['rows']:,} images read; {reasons}")
    return "\n".join(lines)


def _decode(cell: dict) -> np.ndarray:
    with Image.open(io.BytesIO(cell["bytes"])) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def write_preview(folder: Path, output: Path, config: str = "sanitized", per_letter: int = 8) -> Path:
    """Write a grid of ``per_letter`` images per letter and split, read from
    the Parquet shards as any user of the dataset reads them."""
    import pyarrow.parquet as pq

    report = load_report(folder)
    splits = {}
    for split in SPLIT_NAMES:
        shards = [s for s in report["configs"][config]["shards"] if Path(s).name.startswith(f"{split}-")]
        pixels, labels = [], []
        counts = np.zeros(len(CLASS_NAMES), dtype=np.int64)
        for shard in shards:
            table = pq.read_table(Path(folder) / shard, columns=["image", "label"])
            for cell, label in zip(table.column("image").to_pylist(), table.column("label").to_pylist()):
                if counts[label] < per_letter:
                    pixels.append(_decode(cell))
                    labels.append(label)
                    counts[label] += 1
            if counts.min() >= per_letter:
                break
        stacked = np.stack(pixels) if pixels else np.zeros((0, 28, 28), np.uint8)
        splits[split] = (stacked, np.asarray(labels, dtype=np.int64))
    save_png(sample_grid(splits, per_letter), Path(output))
    return Path(output)


def check_metrics_match_build(metrics: dict, report: dict, path: Path) -> None:
    """Raise ValueError when baseline metrics name a config or split sizes this build lacks.

    Metrics without "config" or "split_sizes" are accepted as they are. The
    check compares the validation and test sizes, since train may have been
    subsampled. Equal sizes do not prove the rows are the same.
    """
    config = metrics.get("config")
    sizes = metrics.get("split_sizes")
    if config is None:
        return
    if config not in report["configs"]:
        raise ValueError(
            f"{path}: config {config!r} is not one of this build's configs "
            f"({', '.join(sorted(report['configs']))})"
        )
    if not isinstance(sizes, dict):
        return
    built = report["configs"][config]["splits"]
    for split in ("validation", "test"):
        if split in sizes and sizes[split] != built.get(split):
            raise ValueError(
                f"{path}: the metrics were measured on a {config} {split} split of "
                f"{sizes[split]:,} rows, but this build's has {built.get(split):,}; "
                "train and evaluate on this build, then pass its metrics.json"
            )


def rewrite_card(folder: Path, baseline_metrics: list[Path] | None = None) -> None:
    """Render README.md again from the build report, adding baseline metrics."""
    report = load_report(folder)
    if baseline_metrics:
        entries = []
        for path in baseline_metrics:
            try:
                metrics = json.loads(Path(path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"baseline metrics {path} not found; pass the metrics.json that "
                    "train_baseline.py wrote into its --output folder"
                ) from None
            except ValueError as error:
                raise ValueError(
                    f"baseline metrics {path} is not valid JSON ({error}); pass the "
                    "metrics.json that train_baseline.py writes"
                ) from None
            if not isinstance(metrics, dict):
                raise ValueError(f"baseline metrics {path} must be a JSON object")
            for key in ("validation_accuracy", "test_accuracy"):
                if not isinstance(metrics.get(key), (int, float)) or not 0 <= metrics[key] <= 1:
                    raise ValueError(
                        f"{path}: '{key}' must be a fraction from 0 to 1, got {metrics.get(key)!r}; "
                        "pass the metrics.json that train_baseline.py writes"
                    )
            check_metrics_match_build(metrics, report, path)
            entries.append(metrics)
        (Path(folder) / BASELINE).write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    baseline_file = Path(folder) / BASELINE
    if baseline_file.is_file():
        report["baseline"] = json.loads(baseline_file.read_text(encoding="utf-8"))
    (Path(folder) / "README.md").write_text(render_card(report), encoding="utf-8")
    (Path(folder) / BUILD_REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
