"""End-to-end builds of tarballs made from the real notMNIST sample."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image

from conftest import SAMPLE_BUILD_SIZES
from notmnist_ds.cli import main
from notmnist_ds.constants import CLASS_NAMES, SPLIT_NAMES

SPLIT_ARGS = ["--train-size", "5000", "--valid-size", "1000", "--test-size", "1000"]


def run_cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``notmnist`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "notmnist_ds.cli", "-q", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def clean_env(cache: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_DATASETS_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"))
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    env.update(extra)
    return env


def run_script(script: str, args: list[str], cache: Path, cwd: Path):
    """Run Python code offline in a fresh process; return the JSON of its last line."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=clean_env(cache),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def split_sources(folder: Path, config: str) -> dict[str, list[str]]:
    return {
        split: [
            source
            for shard in sorted((folder / config).glob(f"{split}-*.parquet"))
            for source in pq.read_table(shard, columns=["source"]).column("source").to_pylist()
        ]
        for split in SPLIT_NAMES
    }


def parquet_bytes(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*.parquet"))
    }


# The shared build


def test_build_raw_sizes_and_balance(sample_build):
    dataset = datasets.load_dataset(str(sample_build.output), "raw")
    for split, size in SAMPLE_BUILD_SIZES.items():
        assert dataset[split].num_rows == size
        counts = Counter(dataset[split]["label"])
        assert sorted(counts) == list(range(10))
        assert set(counts.values()) == {size // 10}


def test_build_features_are_image_and_classlabel(sample_build):
    dataset = datasets.load_dataset(str(sample_build.output), "raw", split="test")
    features = dataset.features
    assert isinstance(features["image"], datasets.Image)
    assert isinstance(features["label"], datasets.ClassLabel)
    assert features["label"].names == list(CLASS_NAMES)
    assert features["label"].str2int("E") == 4
    assert features["font"] == datasets.Value("string")
    assert features["source"] == datasets.Value("string")


def test_build_every_image_decodes_to_28x28_l(sample_build):
    for config in ("raw", "sanitized"):
        dataset = datasets.load_dataset(str(sample_build.output), config)
        for split in SPLIT_NAMES:
            table = dataset[split].data.table
            for cell in table.column("image").to_pylist():
                assert cell["path"] is None
                with Image.open(io.BytesIO(cell["bytes"])) as image:
                    assert image.size == (28, 28)
                    assert image.mode == "L"


def test_build_rows_carry_font_and_source(sample_build):
    dataset = datasets.load_dataset(str(sample_build.output), "raw", split="train")
    row = dataset[0]
    letter = CLASS_NAMES[row["label"]]
    assert row["source"].startswith(f"notMNIST_large/{letter}/")
    assert row["font"].startswith("Sample Font ")
    assert row["font"].endswith(".ttf")


def test_build_splits_come_from_their_archives(sample_build):
    sources = split_sources(sample_build.output, "raw")
    assert all(s.startswith("notMNIST_large/") for s in sources["train"])
    assert all(s.startswith("notMNIST_large/") for s in sources["validation"])
    assert all(s.startswith("notMNIST_small/") for s in sources["test"])
    assert not set(sources["train"]) & set(sources["validation"])


def test_build_skip_report_names_empty_pngs(sample_build):
    report = json.loads((sample_build.output / "reports" / "build_report.json").read_text())
    skipped = {
        (name, omission["member"], omission["reason"])
        for name, read in report["read"].items()
        for omission in read["omissions"]
    }
    expected_members = {
        ("large", "notMNIST_large/A/RGFtYWdlZCBGb250IEEwLnR0Zg==.png"),
        ("large", "notMNIST_large/D/RGFtYWdlZCBGb250IEQwLnR0Zg==.png"),
        ("small", "notMNIST_small/F/RGFtYWdlZCBGb250IEYwLnR0Zg==.png"),
    }
    assert {(name, member) for name, member, _ in skipped} == expected_members
    assert {reason for _, _, reason in skipped} == {"empty"}
    csv_text = (sample_build.output / "reports" / "skipped.csv").read_text()
    for _, member in expected_members:
        assert member in csv_text


def test_build_parquet_schema_keeps_features(sample_build):
    shard = next((sample_build.output / "raw").glob("test-*.parquet"))
    metadata = pq.read_schema(shard).metadata
    features = datasets.Features.from_dict(
        json.loads(metadata[b"huggingface"])["info"]["features"]
    )
    assert features["label"].names == list(CLASS_NAMES)
    alone = datasets.load_dataset("parquet", data_files=str(shard), split="train")
    assert isinstance(alone.features["image"], datasets.Image)
    assert isinstance(alone.features["label"], datasets.ClassLabel)


def test_build_shards_are_bounded(sample_build):
    shards = sorted((sample_build.output / "raw").glob("train-*.parquet"))
    assert len(shards) > 1
    assert all(path.name.endswith(f"-of-{len(shards):05d}.parquet") for path in shards)


def test_build_sanitized_is_default(sample_build):
    default = datasets.load_dataset(str(sample_build.output))
    sanitized = datasets.load_dataset(str(sample_build.output), "sanitized")
    for split in SPLIT_NAMES:
        assert default[split]["source"] == sanitized[split]["source"]


def test_card_yaml_parses(sample_build):
    text = (sample_build.output / "README.md").read_text(encoding="utf-8")
    front = text.split("---\n")[1]
    data = yaml.safe_load(front)
    assert data["task_categories"] == ["image-classification"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert configs["sanitized"]["default"] is True
    assert "default" not in configs["raw"]
    card_data = DatasetCard(text).data
    assert isinstance(card_data, DatasetCardData)
    assert card_data.pretty_name == "notMNIST"
    info = {c["config_name"]: c for c in card_data.to_dict()["dataset_info"]}
    assert info["raw"]["splits"][0]["num_examples"] == SAMPLE_BUILD_SIZES["train"]


def test_card_tables_filled_from_build(sample_build):
    text = (sample_build.output / "README.md").read_text(encoding="utf-8")
    report = json.loads((sample_build.output / "reports" / "build_report.json").read_text())
    raw_overlap = report["overlap"]["raw"]["rows"][1]
    assert f"| train ∩ validation | {raw_overlap['exact_rows']:,} |" in text
    for letter in CLASS_NAMES:
        assert f"| {letter} | 500 | 100 | 100 |" in text
    for sha in (t["sha256"] for t in report["tarballs"].values()):
        assert sha in text
    assert "RGFtYWdlZCBGb250IEEwLnR0Zg==.png" in text
    assert "![near duplicates](reports/near_duplicates.png)" in text
    assert (sample_build.output / "reports" / "near_duplicates.png").is_file()
    assert (sample_build.output / "reports" / "samples.png").is_file()


def test_bare_name_loads_offline_elsewhere(sample_build, tmp_path):
    script = (
        "import datasets, json\n"
        "raw = datasets.load_dataset('notmnist', 'raw')\n"
        "default = datasets.load_dataset('notmnist')\n"
        "print(json.dumps({'raw': {k: v.num_rows for k, v in raw.items()},\n"
        "  'default': {k: v.num_rows for k, v in default.items()},\n"
        "  'label': raw['train'].features['label'].names,\n"
        "  'mode': raw['test'][0]['image'].mode}))\n"
    )
    loaded = run_script(script, [], sample_build.cache_dir, tmp_path)
    assert loaded["raw"] == SAMPLE_BUILD_SIZES
    assert loaded["default"] == sample_build.split_sizes["sanitized"]
    assert loaded["label"] == list(CLASS_NAMES)
    assert loaded["mode"] == "L"


# Fresh builds


def test_build_seed_decides_rows(sample_build, sample_tarballs, tmp_path):
    cache = tmp_path / "hf-cache"
    base = ["build", "--data-dir", str(sample_tarballs), "--no-verify", *SPLIT_ARGS,
            "--max-shard-size", "1MiB"]
    again = run_cli([*base, "--output", str(tmp_path / "again")], clean_env(cache), tmp_path)
    assert again.returncode == 0, again.stderr
    other = run_cli(
        [*base, "--output", str(tmp_path / "other"), "--seed", "1"], clean_env(cache), tmp_path
    )
    assert other.returncode == 0, other.stderr

    first = split_sources(sample_build.output, "raw")
    second = split_sources(tmp_path / "again", "raw")
    third = split_sources(tmp_path / "other", "raw")
    assert first == second
    assert parquet_bytes(sample_build.output) == parquet_bytes(tmp_path / "again")
    for split in SPLIT_NAMES:
        assert set(first[split]) != set(third[split])

    # The newest build is what the bare name loads, and nothing stale is reused.
    entries = sorted(p.name for p in (cache / "notmnist" / "raw" / "1.0.0").iterdir())
    assert len(entries) == 2


def test_build_letter_short_names_letter(sample_tarballs, tmp_path, capsys):
    code = main([
        "-q", "build", "--data-dir", str(sample_tarballs), "--no-verify",
        "--output", str(tmp_path / "out"), "--train-size", "6400", "--valid-size", "1000",
        "--test-size", "1000", "--cache-dir", str(tmp_path / "cache"),
    ])
    error = capsys.readouterr().err
    assert code == 2
    assert "letter A has 640 readable images" in error
    assert "need 740 per letter" in error
    assert not (tmp_path / "out").exists()


def test_build_size_not_multiple_of_ten(tmp_path, capsys):
    code = main(["-q", "build", "--output", str(tmp_path / "out"), "--train-size", "1005"])
    error = capsys.readouterr().err
    assert code == 2
    assert "1005" in error
    assert "multiple of 10" in error


def test_build_refuses_unrelated_output_folder(sample_tarballs, tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("keep me")
    code = main([
        "-q", "build", "--data-dir", str(sample_tarballs), "--no-verify",
        "--output", str(target), *SPLIT_ARGS, "--cache-dir", str(tmp_path / "cache"),
    ])
    assert code == 2
    assert "contains no earlier notmnist build" in capsys.readouterr().err
    assert (target / "thesis.tex").read_text() == "keep me"


def test_build_empty_sanitized_split_names_fix(sample_tarballs, tmp_path, capsys):
    code = main([
        "-q", "build", "--data-dir", str(sample_tarballs), "--no-verify",
        "--output", str(tmp_path / "out"), *SPLIT_ARGS,
        "--cache-dir", str(tmp_path / "cache"), "--max-distance", "16",
    ])
    error = capsys.readouterr().err
    assert code == 2
    assert "sanitized validation split would be empty" in error
    assert "phash Hamming distance <= 16" in error
    assert "smaller --max-distance" in error
    assert not (tmp_path / "out").exists()


def test_build_rejects_rule_linking_everything(sample_tarballs, tmp_path, capsys):
    code = main([
        "-q", "build", "--data-dir", str(sample_tarballs), "--no-verify",
        "--output", str(tmp_path / "out"), *SPLIT_ARGS,
        "--cache-dir", str(tmp_path / "cache"), "--hash-size", "2", "--max-distance", "3",
    ])
    error = capsys.readouterr().err
    assert code == 2
    assert "4-bit hashes" in error
    assert "per image (the limit is 100)" in error
    assert "larger --hash-size" in error
    assert not (tmp_path / "out").exists()


def test_build_through_symlinked_output(sample_tarballs, tmp_path, capsys):
    target = tmp_path / "target"
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    cache = tmp_path / "cache"
    code = main([
        "-q", "build", "--data-dir", str(sample_tarballs), "--no-verify",
        "--output", str(link), *SPLIT_ARGS, "--cache-dir", str(cache),
    ])
    output = capsys.readouterr().out

    assert code == 0
    assert link.is_symlink()
    assert (target / "README.md").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert f"load_dataset('notmnist', cache_dir={str(cache)!r})" in output


def test_interrupts_deferred_until_block_ends():
    from notmnist_ds.build import interrupts_deferred

    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            reached_end = True
    assert reached_end


# Looking at a build


def test_stats_prints_balance_and_skips(sample_build, capsys):
    assert main(["stats", str(sample_build.output)]) == 0
    output = capsys.readouterr().out
    assert "raw" in output
    assert "sanitized" in output
    totals = [line.split() for line in output.splitlines() if line.strip().startswith("total")]
    assert ["total", "5,000", "1,000", "1,000"] in totals
    assert "RGFtYWdlZCBGb250IEQwLnR0Zg==.png" in output
    assert "size on disk" in output


def test_overlap_command_prints_both_configs(sample_build, capsys):
    assert main(["overlap", str(sample_build.output)]) == 0
    output = capsys.readouterr().out
    assert "raw:" in output
    assert "sanitized:" in output
    assert "train ∩ test" in output


def test_overlap_command_states_near_rule(sample_build, capsys):
    assert main(["overlap", str(sample_build.output), "--config", "raw"]) == 0
    output = capsys.readouterr().out
    assert "phash Hamming distance <= 4" in output
    assert "after a 3x3 median filter" in output
    assert "after a one-pixel shift" in output


def test_overlap_report_reads_report_without_rule(sample_build):
    from dedup.overlap import OverlapReport

    report = json.loads((sample_build.output / "reports" / "build_report.json").read_text())
    stored = dict(report["overlap"]["raw"])
    stored.pop("rule")
    overlap = OverlapReport.from_dict(stored)

    assert overlap.rule == "phash Hamming distance <= 4"
    assert overlap.rows == OverlapReport.from_dict(report["overlap"]["raw"]).rows


def test_preview_writes_grid(sample_build, tmp_path):
    target = tmp_path / "grid.png"
    assert main(["preview", str(sample_build.output), "--output", str(target)]) == 0
    with Image.open(target) as grid:
        assert grid.width > 3 * 8 * 56
        assert grid.height >= 10 * 56
        pixels = np.asarray(grid)
    assert pixels.max() == 255


def test_card_command_adds_baseline(sample_build, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(sample_build.output, folder)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({
        "model": "mlp 1024", "config": "sanitized",
        "validation_accuracy": 0.9, "test_accuracy": 0.91,
    }))
    assert main(["card", str(folder), "--baseline", str(metrics)]) == 0
    text = (folder / "README.md").read_text()
    assert "| mlp 1024 | sanitized | 90.00% | 91.00% |" in text


def test_card_command_rejects_metrics_of_other_build(sample_build, tmp_path, capsys):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(sample_build.output, folder)
    card_before = (folder / "README.md").read_text()
    report = json.loads((folder / "reports" / "build_report.json").read_text())
    built = report["configs"]["sanitized"]["splits"]
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({
        "model": "mlp 1024", "config": "sanitized",
        "validation_accuracy": 0.9, "test_accuracy": 0.91,
        "split_sizes": {"train": 100, "validation": built["validation"], "test": built["test"] + 1},
    }))

    assert main(["card", str(folder), "--baseline", str(metrics)]) == 2
    error = capsys.readouterr().err
    assert f"sanitized test split of {built['test'] + 1:,} rows" in error
    assert (folder / "README.md").read_text() == card_before


def test_build_refuses_earlier_build_with_extra_files(sample_build, sample_tarballs, tmp_path, capsys):
    import shutil

    target = tmp_path / "earlier"
    shutil.copytree(sample_build.output, target)
    (target / "NOTES.txt").write_text("mine")
    code = main([
        "-q", "build", "--data-dir", str(sample_tarballs), "--no-verify",
        "--output", str(target), *SPLIT_ARGS, "--cache-dir", str(tmp_path / "cache"),
    ])
    error = capsys.readouterr().err
    assert code == 2
    assert "NOTES.txt" in error
    assert (target / "NOTES.txt").read_text() == "mine"


def test_make_tarballs_keeps_existing_archive(tmp_path, capsys):
    from conftest import require_real_sample

    sample = require_real_sample()
    (tmp_path / "notMNIST_large.tar.gz").write_bytes(b"the real download")
    code = main(["make-tarballs", str(sample), "--output", str(tmp_path)])
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "notMNIST_large.tar.gz").read_bytes() == b"the real download"


def test_streaming_iterates_folder_and_bare_name(sample_build, tmp_path):
    script = (
        "import datasets, json, sys\n"
        "out = {}\n"
        "for name, path in (('folder', sys.argv[1]), ('bare', 'notmnist')):\n"
        "    stream = datasets.load_dataset(path, 'sanitized', streaming=True)\n"
        "    assert isinstance(stream['train'], datasets.IterableDataset)\n"
        "    out[name] = [row['source'] for row in stream['test']]\n"
        "print(json.dumps(out))\n"
    )
    streamed = run_script(script, [str(sample_build.output)], sample_build.cache_dir, tmp_path)
    expected = split_sources(sample_build.output, "sanitized")["test"]
    assert streamed["folder"] == expected
    assert sorted(streamed["bare"]) == sorted(expected)


def test_card_table_cells_escape_member_names():
    from notmnist_ds.card import _table

    table = _table(["member", "reason"], [["A/x|y.png", "not a PNG\nfile"]])

    assert table.splitlines()[2] == "| A/x\\|y.png | not a PNG file |"


def write_idx(folder: Path, labels: list[int]) -> tuple[Path, Path]:
    """Write gzip IDX files of one blank 28x28 image per label."""
    count = len(labels)
    images = folder / "images-idx3-ubyte.gz"
    labels_path = folder / "labels-idx1-ubyte.gz"
    with gzip.open(images, "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, count, 28, 28) + bytes(784 * len(labels)))
    with gzip.open(labels_path, "wb") as f:
        f.write(struct.pack(">II", 0x00000801, len(labels)) + bytes(labels))
    return images, labels_path


def test_read_idx_rejects_label_outside_letters(tmp_path):
    from notmnist_ds.sample_tarballs import read_idx

    images, labels = write_idx(tmp_path, [0, 11, 3])
    with pytest.raises(ValueError) as raised:
        read_idx(images, labels)
    assert str(labels) in str(raised.value)
    assert "label 11 of image 1" in str(raised.value)


def test_read_idx_rejects_truncated_images(tmp_path):
    from notmnist_ds.sample_tarballs import read_idx

    images, labels = write_idx(tmp_path, [0, 1, 2])
    header = struct.pack(">IIII", 0x00000803, 3, 28, 28)
    images.write_bytes(gzip.compress(header + bytes(784 * 2)))
    with pytest.raises(ValueError) as raised:
        read_idx(images, labels)
    assert str(images) in str(raised.value)
    assert "truncated or padded" in str(raised.value)


def test_read_idx_rejects_file_not_gzip(tmp_path):
    from notmnist_ds.sample_tarballs import read_idx

    images, labels = write_idx(tmp_path, [0, 1])
    labels.write_bytes(b"plain bytes")
    with pytest.raises(ValueError) as raised:
        read_idx(images, labels)
    assert str(labels) in str(raised.value)
    assert "not a complete gzip file" in str(raised.value)



def test_build_repairs_damaged_cache_entry(sample_tarballs, tmp_path, caplog):
    cache = tmp_path / "cache"
    arguments = [
        "-q", "build", "--data-dir", str(sample_tarballs), "--no-verify",
        "--output", str(tmp_path / "out"), *SPLIT_ARGS, "--cache-dir", str(cache),
    ]  # fmt: skip
    assert main(arguments) == 0
    damaged = next((cache / "notmnist" / "raw").rglob("notmnist-train.arrow"))
    damaged.unlink()

    assert main(arguments) == 0
    assert damaged.is_file()
    assert "cannot be read" in caplog.text
    dataset = datasets.load_dataset("notmnist", "raw", cache_dir=str(cache))
    assert dataset["train"].num_rows == 5000
