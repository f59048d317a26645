"""Benchmark the NumPy baseline trainer against PyTorch, and record its accuracy.

Run from the repository root:

    python benchmarks/bench_baseline.py

It measures, and writes to benchmarks/results/baseline.md:

1. Epoch time of a 784-1024-10 ReLU network with SGD (momentum 0.9) on
   synthetic float32 data (200,000 x 784), at batch sizes 128 and 2000, for
   train_baseline.Trainer and for PyTorch. Each run is a fresh process; the two
   frameworks alternate, so both see the same machine load.
2. The matrix-product bound: the time of the five products of a training step
   at the same shapes, measured inside each NumPy run, times the steps in an
   epoch.
3. Peak resident memory of each run.
4. Decoding PNG images: train_baseline's bulk decoder, one Pillow call per
   image, and ``datasets``' ``with_format("numpy")``.
5. Accuracy of the trainer's default settings on a build of the real sample.

PyTorch is only needed here: ``pip install torch==2.13.0``. The runs unset
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which would slow NumPy's OpenBLAS, and
record the OpenBLAS kernel that ran (with threadpoolctl, when installed).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "notmnist-real-sample"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "baseline.md"
INPUTS, HIDDEN, CLASSES = 784, 1024, 10
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def synthetic_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 inputs in about [-1, 1] and labels; speed ignores content."""
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((rows, INPUTS), dtype=np.float32)
    pixels *= 0.25
    labels = rng.integers(0, CLASSES, rows)
    return pixels, labels


def epoch_flops(rows: int) -> float:
    """Floating-point operations of the matrix products in one epoch.

    Forward X @ W1 and H @ W2, backward H^T @ D and D @ W2^T, and X^T @ DH
    for the first layer's weight gradient; the input gradient is not needed.
    """
    return rows * (2 * 2 * INPUTS * HIDDEN + 3 * 2 * HIDDEN * CLASSES)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    parts = [
        f"{info.get('internal_api')} {info.get('version')}, kernel "
        f"{info.get('architecture')}, {info.get('num_threads')} threads"
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return "; ".join(parts) or "none found"


def matmul_bound(batch: int, rows: int, repeats: int) -> dict:
    """Time one step's five matrix products at ``batch`` rows; scale to an epoch."""
    rng = np.random.default_rng(1)

    def matrix(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    inputs, weight1, weight2 = (
        matrix(batch, INPUTS),
        matrix(INPUTS, HIDDEN),
        matrix(HIDDEN, CLASSES),
    )
    hidden, logits, delta = (
        matrix(batch, HIDDEN),
        matrix(batch, CLASSES),
        matrix(batch, CLASSES),
    )
    hidden_delta, gradient1, gradient2 = (
        matrix(batch, HIDDEN),
        matrix(INPUTS, HIDDEN),
        matrix(HIDDEN, CLASSES),
    )

    def products() -> None:
        np.matmul(inputs, weight1, out=hidden)
        np.matmul(hidden, weight2, out=logits)
        np.matmul(hidden.T, delta, out=gradient2)
        np.matmul(delta, weight2.T, out=hidden_delta)
        np.matmul(inputs.T, hidden_delta, out=gradient1)

    for _ in range(3):
        products()
    started = time.perf_counter()
    for _ in range(repeats):
        products()
    per_step = (time.perf_counter() - started) / repeats
    steps = math.ceil(rows / batch)
    step_flops = epoch_flops(batch)
    return {"bound_seconds": per_step * steps, "gflops": step_flops / per_step / 1e9}


def square_gflops(size: int = 2048, repeats: int = 5) -> float:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    started = time.perf_counter()
    for _ in range(repeats):
        np.matmul(a, b, out=out)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def numpy_worker(batch: int, rows: int, epochs: int) -> dict:
    sys.path.insert(0, str(REPO_ROOT))
    import train_baseline as tb

    pixels, labels = synthetic_data(rows)
    bound = matmul_bound(batch, rows, repeats=max(20, min(200, 40_000 // batch)))
    settings = tb.Hyperparameters(
        hidden=(HIDDEN,),
        batch_size=batch,
        learning_rate=0.01,
        momentum=0.9,
        l2=0.0,
        dropout=0.0,
    )
    rng = np.random.default_rng(0)
    network = tb.Network([INPUTS, HIDDEN, CLASSES], rng)
    trainer = tb.Trainer(network, settings, rng)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        trainer.train_epoch(pixels, labels, settings.learning_rate)
        times.append(time.perf_counter() - started)
    return {
        "epoch_seconds": times,
        **bound,
        "square_gflops": square_gflops(),
        "blas": blas_description(),
        "peak_rss_mb": peak_rss_mb(),
    }


def torch_worker(batch: int, rows: int, epochs: int) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    pixels, labels = synthetic_data(rows)
    inputs = torch.from_numpy(pixels)
    targets = torch.from_numpy(labels)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(INPUTS, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, CLASSES),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_function = torch.nn.CrossEntropyLoss()
    batch_inputs = torch.empty(batch, INPUTS)
    batch_targets = torch.empty(batch, dtype=torch.int64)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(rows)
        for start in range(0, rows, batch):
            index = order[start : start + batch]
            x = torch.index_select(inputs, 0, index, out=batch_inputs[: len(index)])
            y = torch.index_select(targets, 0, index, out=batch_targets[: len(index)])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(x), y)
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return {
        "epoch_seconds": times,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
    }


def run_worker(framework: str, batch: int, rows: int, epochs: int) -> dict:
    """Run one timing in a fresh process, without the OpenBLAS overrides."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        framework,
        "--batch-size",
        str(batch),
        "--rows",
        str(rows),
        "--epochs",
        str(epochs),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{framework} worker failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def time_frameworks(
    rows: int, epochs: int, repeats: int, with_torch: bool
) -> list[dict]:
    runs = []
    for repeat in range(repeats):
        for batch in (128, 2000):
            for framework in ("numpy", "torch") if with_torch else ("numpy",):
                print(
                    f"repeat {repeat + 1}/{repeats}: {framework}, batch {batch}",
                    file=sys.stderr,
                )
                figures = run_worker(framework, batch, rows, epochs)
                runs.append(
                    {
                        "framework": framework,
                        "batch": batch,
                        "repeat": repeat,
                        **figures,
                    }
                )
    return runs


def decode_rates(images: int) -> dict:
    """Images per second for three ways of decoding a PNG image column."""
    import datasets
    from PIL import Image

    sys.path.insert(0, str(REPO_ROOT))
    import train_baseline as tb
    from notmnist_ds.sample_tarballs import encode_png, read_idx

    pixels, labels = read_idx(
        SAMPLE_DIR / "images-idx3-ubyte.gz", SAMPLE_DIR / "labels-idx1-ubyte.gz"
    )
    blobs = [encode_png(image) for image in pixels]
    blobs = (blobs * math.ceil(images / len(blobs)))[:images]
    rates = {}

    started = time.perf_counter()
    decoded, _ = tb.decode_png_batch(blobs)
    rates["train_baseline.decode_png_batch"] = images / (time.perf_counter() - started)

    started = time.perf_counter()
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as image:
            np.asarray(image)
    rates["one Pillow call per image"] = images / (time.perf_counter() - started)

    features = datasets.Features({"image": datasets.Image()})
    split = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in blobs]}, features=features
    )
    started = time.perf_counter()
    split.with_format("numpy")[:]["image"]
    rates['datasets with_format("numpy")'] = images / (time.perf_counter() - started)
    return rates


def write_stand_in_build(folder: Path) -> dict[str, dict[str, int]]:
    """Write a build folder from the real sample, in the layout of ``notmnist build``.

    Per letter, the first 80% of the sample (the part the sample tarballs put
    in notMNIST_large) gives validation (a fifth) and train; the rest
    (notMNIST_small) gives test. The sanitized configuration drops images whose
    pixels equal an earlier image's, in train, validation, test order; it does
    not remove near duplicates as the real build does.
    """
    import datasets

    sys.path.insert(0, str(REPO_ROOT))
    from notmnist_ds.constants import CLASS_NAMES, SPLIT_NAMES
    from notmnist_ds.sample_tarballs import encode_png, read_idx

    pixels, labels = read_idx(
        SAMPLE_DIR / "images-idx3-ubyte.gz", SAMPLE_DIR / "labels-idx1-ubyte.gz"
    )
    split_of = np.empty(len(labels), dtype=object)
    for letter in range(len(CLASS_NAMES)):
        rows = np.flatnonzero(labels == letter)
        large = int(round(len(rows) * 0.8))
        validation = large // 5
        split_of[rows[:validation]] = "validation"
        split_of[rows[validation:large]] = "train"
        split_of[rows[large:]] = "test"
    seen: set[bytes] = set()
    unique = np.zeros(len(labels), bool)
    for split in SPLIT_NAMES:
        for row in np.flatnonzero(split_of == split):
            unique[row] = pixels[row].tobytes() not in seen
            seen.add(pixels[row].tobytes())
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "font": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    )
    lines = ["---", "configs:"]
    counts: dict[str, dict[str, int]] = {}
    for config, keep in (("sanitized", unique), ("raw", np.ones(len(labels), bool))):
        lines += [f"- config_name: {config}"]
        lines += ["  default: true"] if config == "sanitized" else []
        lines += ["  data_files:"]
        counts[config] = {}
        (folder / config).mkdir(parents=True, exist_ok=True)
        for split in SPLIT_NAMES:
            rows = np.flatnonzero((split_of == split) & keep)
            datasets.Dataset.from_dict(
                {
                    "image": [
                        {"bytes": encode_png(pixels[r]), "path": None} for r in rows
                    ],
                    "label": labels[rows].tolist(),
                    "font": [f"sample-{r}" for r in rows],
                    "source": [
                        f"{CLASS_NAMES[labels[r]]}/sample-{r}.png" for r in rows
                    ],
                },
                features=features,
            ).to_parquet(str(folder / config / f"{split}-00000-of-00001.parquet"))
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*.parquet"]
            counts[config][split] = len(rows)
    (folder / "README.md").write_text(
        "\n".join(lines + ["---", "", "# stand-in build", ""])
    )
    return counts


def train_defaults(build: Path, work: Path) -> dict:
    """Run train_baseline.py with default settings on ``build``; return its figures."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    env.update(HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    runs = {
        "mlp": ["--dataset", str(build), "--output", str(work / "mlp"), "--compare"],
        "logistic": [
            "--dataset",
            str(build),
            "--output",
            str(work / "logistic"),
            "--model",
            "logistic",
            "--train-samples",
            "50,100,1000,all",
        ],
    }
    figures = {"commands": {}}
    for name, args in runs.items():
        command = [sys.executable, "train_baseline.py", *args]
        figures["commands"][name] = (
            shlex.join(["python", "train_baseline.py", *args])
            .replace(str(build), "BUILD")
            .replace(str(work), "RUNS")
        )
        print(f"training {name}", file=sys.stderr)
        subprocess.run(
            command, cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL
        )
    figures["mlp"] = json.loads((work / "mlp" / "metrics.json").read_text())
    figures["compare"] = json.loads((work / "mlp" / "compare.json").read_text())
    figures["logistic"] = json.loads((work / "logistic" / "sweep.json").read_text())
    return figures


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarise(runs: list[dict], rows: int) -> tuple[list[str], dict]:
    """Render the timing runs as Markdown; return the lines and the key ratios."""
    lines = [
        "| batch | framework | best epoch (s), per run | median (s) | matmul bound (s) "
        "| epoch / bound | peak RSS (MB) |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    ratios: dict = {}
    for batch in (128, 2000):
        numpy_best, torch_best = [], []
        for framework in ("numpy", "torch"):
            chosen = [
                r for r in runs if r["batch"] == batch and r["framework"] == framework
            ]
            if not chosen:
                continue
            best = [min(r["epoch_seconds"]) for r in chosen]
            (numpy_best if framework == "numpy" else torch_best).extend(best)
            if framework == "numpy":
                bounds = [r["bound_seconds"] for r in chosen]
                bound_text = f"{statistics.median(bounds):.2f}"
                ratio = statistics.median(
                    b / r["bound_seconds"] for b, r in zip(best, chosen)
                )
                ratio_text = f"{ratio:.2f}"
                ratios[f"numpy_over_bound_{batch}"] = ratio
            else:
                bound_text = ratio_text = "-"
            rss = max(r["peak_rss_mb"] for r in chosen)
            lines.append(
                f"| {batch} | {framework} | {', '.join(f'{b:.2f}' for b in best)} | "
                f"{statistics.median(best):.2f} | {bound_text} | {ratio_text} | {rss:.0f} |"
            )
        if numpy_best and torch_best:
            # Runs of one repeat ran back to back, so pair them for the ratio.
            paired = [n / t for n, t in zip(numpy_best, torch_best)]
            ratios[f"numpy_over_torch_{batch}"] = statistics.median(paired)
    return lines, ratios


def write_report(
    args: argparse.Namespace,
    runs: list[dict],
    decode: dict | None,
    accuracy: dict | None,
    started: str,
    loads: tuple,
) -> None:
    numpy_runs = [r for r in runs if r["framework"] == "numpy"]
    torch_runs = [r for r in runs if r["framework"] == "torch"]
    data_mb = args.rows * INPUTS * 4 / 1e6
    lines = [
        "# NumPy baseline: speed, memory and accuracy",
        "",
        "Written by `benchmarks/bench_baseline.py`; rerun it to refresh every figure.",
        "",
        f"- Command: `{args.command}`",
        f"- Date: {started} (UTC)",
        f"- CPU: {cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}"
        + (
            f", PyTorch {torch_runs[0]['torch']} ({torch_runs[0]['torch_threads']} threads)"
            if torch_runs
            else ""
        ),
        f"- NumPy BLAS: {numpy_runs[0]['blas'] if numpy_runs else 'not measured'}; "
        "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for the runs "
        f"(set in the calling shell: "
        f"{', '.join(v for v in BLAS_VARIABLES if v in os.environ) or 'neither'})",
        f"- Load average (1 min) before and after: {loads[0]:.2f}, {loads[1]:.2f}. The "
        "machine is shared, so compare figures of one run, not across runs.",
        "",
    ]
    if runs:
        table, ratios = summarise(runs, args.rows)
        lines += [
            f"## Epoch time, {args.rows:,} x 784 float32, network 784-1024-10, SGD momentum 0.9",
            "",
            f"Each cell comes from a fresh process that trains {args.epochs} epochs; "
            f"'best epoch' is its fastest. The {args.repeats} repeats alternate NumPy "
            "and PyTorch. The matrix products cost "
            f"{epoch_flops(args.rows) / 1e12:.3f} TFLOP an epoch; the bound is the time "
            "of exactly those products at the run's batch size, measured in the same "
            "NumPy process just before training. For scale, a 2048 x 2048 float32 "
            "product ran at "
            f"{statistics.median(r['square_gflops'] for r in numpy_runs):.0f} GFLOP/s.",
            "",
            *table,
            "",
            "Matrix-product speed at the step's shapes (GFLOP/s, median): "
            + ", ".join(
                f"batch {b}: "
                f"{statistics.median(r['gflops'] for r in numpy_runs if r['batch'] == b):.0f}"
                for b in (128, 2000)
            )
            + ".",
            "",
            "Ratios (median over repeats; below 1 means NumPy is faster):",
            "",
            *[f"- {name}: {value:.2f}" for name, value in ratios.items()],
            "",
            f"The training matrix alone is {data_mb:.0f} MB; peak RSS includes it, "
            "the interpreter, NumPy, `datasets` and the step buffers.",
            "",
        ]
    if decode:
        lines += [
            f"## Decoding {args.decode_images:,} PNG images (real notMNIST glyphs, repeated)",
            "",
            "| method | images/s |",
            "| --- | ---: |",
            *[f"| {name} | {rate:,.0f} |" for name, rate in decode.items()],
            "",
        ]
    if accuracy:
        mlp = accuracy["mlp"]
        compare = accuracy["compare"]["results"]
        sizes = mlp["split_sizes"]
        lines += [
            "## Accuracy of the default settings on the real sample",
            "",
            f"Build: {accuracy['build']}. Sanitized splits: train {sizes['train']}, "
            f"validation {sizes['validation']}, test {sizes['test']} images. A few "
            "thousand images cannot show what the full 200,000 reach; they show the "
            "defaults train and generalise.",
            "",
            f"MLP {'-'.join(map(str, mlp['layer_sizes']))}, "
            f"{mlp['epochs_run']} epochs (best {mlp['best_epoch']}), "
            f"{mlp['training_seconds']:.0f} s:",
            "`" + accuracy["commands"]["mlp"] + "`",
            "",
            "| evaluated on | validation | test |",
            "| --- | ---: | ---: |",
            *[
                f"| {config} | {values['validation_accuracy']:.4f} "
                f"({values['validation_size']}) | {values['test_accuracy']:.4f} "
                f"({values['test_size']}) |"
                for config, values in compare.items()
            ],
            "",
            "Per-letter test accuracy (sanitized): "
            + ", ".join(
                f"{letter} {value:.3f}"
                for letter, value in mlp["per_class_accuracy"]["test"].items()
            ),
            "",
            "Softmax regression on growing training sets:",
            "`" + accuracy["commands"]["logistic"] + "`",
            "",
            "| train rows | validation | test | epochs |",
            "| ---: | ---: | ---: | ---: |",
            *[
                f"| {row['train_samples']} | {row['validation_accuracy']:.4f} | "
                f"{row['test_accuracy']:.4f} | {row['epochs_run']} |"
                for row in accuracy["logistic"]
            ],
            "",
        ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))
    print(f"wrote {args.results}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic rows")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timing run")
    parser.add_argument("--repeats", type=int, default=2, help="timing runs per cell")
    parser.add_argument("--batch-size", type=int, default=128, help="worker only")
    parser.add_argument("--worker", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-torch", action="store_true", help="time NumPy only")
    parser.add_argument("--skip-timing", action="store_true", help="no epoch timings")
    parser.add_argument(
        "--decode-images",
        type=int,
        default=50_000,
        help="images for the decoding comparison; 0 skips it",
    )
    parser.add_argument(
        "--build",
        type=Path,
        help="build folder to measure accuracy on (default: a stand-in "
        "written from the real sample)",
    )
    parser.add_argument("--skip-accuracy", action="store_true", help="no accuracy runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown output")
    args = parser.parse_args()

    if args.worker:
        worker = numpy_worker if args.worker == "numpy" else torch_worker
        print(json.dumps(worker(args.batch_size, args.rows, args.epochs)))
        return

    args.command = shlex.join(["python", "benchmarks/bench_baseline.py", *sys.argv[1:]])
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    load_before = os.getloadavg()[0]
    runs = (
        []
        if args.skip_timing
        else time_frameworks(
            args.rows, args.epochs, args.repeats, with_torch=not args.skip_torch
        )
    )
    decode = decode_rates(args.decode_images) if args.decode_images else None
    accuracy = None
    if not args.skip_accuracy:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            if args.build:
                build, description = args.build, f"`{args.build}`"
            else:
                build = work / "build"
                write_stand_in_build(build)
                description = (
                    "a stand-in written by this script from the 8,000-image "
                    "real sample (exact duplicates removed for sanitized)"
                )
            accuracy = train_defaults(build, work)
            accuracy["build"] = description
    write_report(
        args, runs, decode, accuracy, started, (load_before, os.getloadavg()[0])
    )


if __name__ == "__main__":
    main()
