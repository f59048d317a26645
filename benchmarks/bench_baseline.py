"""Benchmark the NumPy baseline trainer against PyTorch, and record its accuracy.

Run from the repository root:

    python benchmarks/bench_baseline.py

It measures, and writes to benchmarks/results/baseline.md:

1. Epoch time of a 784-1024-10 ReLU network with SGD (momentum 0.9) on
   synthetic float32 data (200,000 x 784), at batch sizes 128 and 2000, for
   notmnist_ds.baseline's Trainer and for PyTorch. Each run is a fresh
   process; the two frameworks alternate, so both see the same machine load,
   and the 1-minute load average before each run is recorded.
2. The matrix-product bound: the time of the five products of a training step
   at the same shapes, measured inside each NumPy run, times the steps in an
   epoch.
3. Peak resident memory of each run.
4. Decoding PNG images: the baseline's bulk decoder, one Pillow call per
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
TORCH_TARGET = 1.10  # NumPy epoch / PyTorch epoch, same network and optimiser
BOUND_TARGET = 1.25  # NumPy epoch / the step's matrix products alone


def met(ratio: float, target: float) -> str:
    return "met" if ratio <= target else f"not met, target {target:.2f}"


def synthetic_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 inputs in about [-1, 1] and labels; speed ignores content."""
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((rows, INPUTS), dtype=np.float32)
    pixels *= 0.25
    labels = rng.integers(0, CLASSES, rows)
    return pixels, labels


def epoch_flops(rows: int) -> float:
    """Return the floating-point operations of one epoch's matrix products.

    The forward pass computes X @ W1 and H @ W2. The backward pass computes
    H^T @ D, D @ W2^T and X^T @ DH, but not the input gradient, which training
    does not need.
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
    """Time one step's five matrix products at ``batch`` rows; scale to an epoch.

    The products run in two memory layouts: every array in C order, and the
    trainer's, with the first layer's weights, the hidden activations and
    their gradients in Fortran order. The bound is the faster of the two.
    """
    rng = np.random.default_rng(1)

    def products(hidden_order: str):
        def matrix(*shape: int, order: str = "C") -> np.ndarray:
            values = rng.standard_normal(shape, dtype=np.float32)
            return np.asarray(values, order=order)

        inputs = matrix(batch, INPUTS)
        weight1 = matrix(INPUTS, HIDDEN, order=hidden_order)
        weight2 = matrix(HIDDEN, CLASSES)
        hidden = matrix(batch, HIDDEN, order=hidden_order)
        logits, delta = matrix(batch, CLASSES), matrix(batch, CLASSES)
        hidden_delta = matrix(batch, HIDDEN, order=hidden_order)
        gradient1 = matrix(INPUTS, HIDDEN, order=hidden_order)
        gradient2 = matrix(HIDDEN, CLASSES)

        def step() -> None:
            np.matmul(inputs, weight1, out=hidden)
            np.matmul(hidden, weight2, out=logits)
            np.matmul(hidden.T, delta, out=gradient2)
            np.matmul(delta, weight2.T, out=hidden_delta)
            np.matmul(inputs.T, hidden_delta, out=gradient1)

        return step

    steps = math.ceil(rows / batch)
    seconds = {}
    for layout, hidden_order in (("c_order", "C"), ("trainer", "F")):
        step = products(hidden_order)
        for _ in range(3):
            step()
        started = time.perf_counter()
        for _ in range(repeats):
            step()
        seconds[layout] = (time.perf_counter() - started) / repeats * steps
    bound = min(seconds.values())
    return {
        "bound_seconds": bound,
        "layout_bound_seconds": seconds,
        "gflops": epoch_flops(batch) / (bound / steps) / 1e9,
    }


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
    from notmnist_ds.baseline.network import Network
    from notmnist_ds.baseline.trainer import Hyperparameters, Trainer

    pixels, labels = synthetic_data(rows)
    bound = matmul_bound(batch, rows, repeats=max(20, min(200, 40_000 // batch)))
    settings = Hyperparameters(
        hidden=(HIDDEN,),
        batch_size=batch,
        learning_rate=0.01,
        momentum=0.9,
        l2=0.0,
        dropout=0.0,
    )
    rng = np.random.default_rng(0)
    network = Network([INPUTS, HIDDEN, CLASSES], rng)
    trainer = Trainer(network, settings, rng)
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
        "direct_blas": trainer.blas is not None,
        "peak_rss_mb": peak_rss_mb(),
    }


def torch_worker(batch: int, rows: int, epochs: int) -> dict:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
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


def run_worker(
    framework: str, batch: int, rows: int, epochs: int, threads: int
) -> dict:
    """Run one timing in a fresh process, without the OpenBLAS overrides."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
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
    rows: int, epochs: int, repeats: int, threads: int, with_torch: bool
) -> list[dict]:
    runs = []
    for repeat in range(repeats):
        for batch in (128, 2000):
            for framework in ("numpy", "torch") if with_torch else ("numpy",):
                print(
                    f"repeat {repeat + 1}/{repeats}: {framework}, batch {batch}",
                    file=sys.stderr,
                )
                load = os.getloadavg()[0]
                figures = run_worker(framework, batch, rows, epochs, threads)
                runs.append(
                    {
                        "framework": framework,
                        "batch": batch,
                        "repeat": repeat,
                        "load_before": load,
                        **figures,
                    }
                )
    return runs


def decode_rates(images: int) -> dict:
    """Images per second for three ways of decoding a PNG image column."""
    import datasets
    from PIL import Image

    sys.path.insert(0, str(REPO_ROOT))
    from notmnist_ds.baseline.png import decode_png_batch
    from notmnist_ds.sample_tarballs import encode_png, read_idx

    pixels, _ = read_idx(
        SAMPLE_DIR / "images-idx3-ubyte.gz", SAMPLE_DIR / "labels-idx1-ubyte.gz"
    )
    blobs = [encode_png(image) for image in pixels]
    blobs = (blobs * math.ceil(images / len(blobs)))[:images]
    rates = {}

    started = time.perf_counter()
    decode_png_batch(blobs)
    rates["notmnist_ds.baseline.png.decode_png_batch"] = images / (
        time.perf_counter() - started
    )

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


def write_tiled_build(folder: Path, train_rows: int) -> None:
    """Write a sanitized-only build whose splits repeat the real sample's images.

    Train gets ``train_rows`` images, validation and test 10,000 each. Content
    repeats, which changes neither decoding nor training speed.
    """
    import datasets

    sys.path.insert(0, str(REPO_ROOT))
    from notmnist_ds.constants import CLASS_NAMES, SPLIT_NAMES
    from notmnist_ds.sample_tarballs import encode_png, read_idx

    datasets.disable_progress_bars()
    pixels, labels = read_idx(
        SAMPLE_DIR / "images-idx3-ubyte.gz", SAMPLE_DIR / "labels-idx1-ubyte.gz"
    )
    blobs = [encode_png(image) for image in pixels]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
            "font": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    )
    lines = ["---", "configs:", "- config_name: sanitized", "  default: true"]
    lines.append("  data_files:")
    (folder / "sanitized").mkdir(parents=True)
    for split, rows in zip(SPLIT_NAMES, (train_rows, 10_000, 10_000)):
        index = np.arange(rows) % len(blobs)
        columns = {
            "image": [{"bytes": blobs[i], "path": None} for i in index],
            "label": labels[index].tolist(),
            "font": ["repeated sample"] * rows,
            "source": [f"{split}/{row}.png" for row in range(rows)],
        }
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(folder / "sanitized" / f"{split}-00000-of-00001.parquet")
        )
        lines += [f"  - split: {split}", f"    path: sanitized/{split}-*.parquet"]
    (folder / "README.md").write_text("\n".join([*lines, "---", "", "# tiled", ""]))


def pipeline_worker(build: Path, output: Path) -> dict:
    """Train one epoch through train_baseline.main; report time and peak RSS."""
    sys.path.insert(0, str(REPO_ROOT))
    import train_baseline as tb

    argv = [
        "--dataset",
        str(build),
        "--output",
        str(output),
        "--hidden",
        "1024",
        "--dropout",
        "0",
        "--epochs",
        "1",
    ]
    started = time.perf_counter()
    status = tb.main(argv)
    if status != 0:
        raise RuntimeError(f"train_baseline.main({argv}) returned {status}")
    metrics = json.loads((output / "metrics.json").read_text())
    return {
        "seconds": time.perf_counter() - started,
        "epoch_seconds": metrics["history"][0]["seconds"],
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_pipeline(train_rows: int, work: Path) -> dict:
    """Run the whole trainer, loading included, on a build of ``train_rows`` images."""
    build = work / "tiled-build"
    print(f"writing a build of {train_rows:,} training images", file=sys.stderr)
    write_tiled_build(build, train_rows)

    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
    env.update(HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--worker", "pipeline", "--build", str(build)]
    command += ["--results", str(work / "pipeline")]

    # The first load converts the Parquet files into the datasets cache; the
    # second reads that cache, as every later run does.
    figures = []
    for _ in range(2):
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"pipeline worker failed:\n{result.stderr}")
        run = json.loads(result.stdout.strip().splitlines()[-1])
        loaded = [
            line for line in result.stderr.splitlines() if line.startswith("loaded")
        ]
        run["load_line"] = loaded[0].replace(str(build), "BUILD") if loaded else ""
        figures.append(run)
    return {"train_rows": train_rows, "runs": figures}


def build_sample(work: Path) -> tuple[Path, list[str]]:
    """Build the real sample with the project's CLI, as a user would.

    The sample tarballs put 640 images a letter in notMNIST_large and 160 in
    notMNIST_small. The build takes every image for train and test and 128 a
    letter for validation. Returns the build folder and the commands run.
    """
    tarballs, build = work / "tarballs", work / "build"
    commands = [
        ["make-tarballs", str(SAMPLE_DIR), "--output", str(tarballs)],
        [
            "build",
            "--output",
            str(build),
            "--data-dir",
            str(tarballs),
            "--no-verify",
            "--train-size",
            "all",
            "--valid-size",
            "1280",
            "--test-size",
            "all",
            "--cache-dir",
            str(work / "cache"),
        ],
    ]
    for command in commands:
        print(f"notmnist {command[0]}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "notmnist_ds.cli", *command],
            cwd=REPO_ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    printable_commands = [
        shlex.join(["notmnist", *command])
        .replace(str(SAMPLE_DIR), "../shared/data/notmnist-real-sample")
        .replace(str(work), "WORK")
        for command in commands
    ]
    return build, printable_commands


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
        printable = shlex.join(["python", "train_baseline.py", *args])
        figures["commands"][name] = printable.replace(str(work), "WORK")
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


def environment_lines(
    args: argparse.Namespace, runs: list[dict], loads: tuple
) -> list[str]:
    numpy_runs = [r for r in runs if r["framework"] == "numpy"]
    torch_runs = [r for r in runs if r["framework"] == "torch"]
    versions = f"Python {platform.python_version()}, NumPy {np.__version__}"
    if torch_runs:
        versions += (
            f", PyTorch {torch_runs[0]['torch']} "
            f"({torch_runs[0]['torch_threads']} threads)"
        )
    blas = numpy_runs[0]["blas"] if numpy_runs else "not measured"
    if numpy_runs:
        blas += (
            "; the trainer calls its gemm and axpy directly"
            if numpy_runs[0]["direct_blas"]
            else "; the trainer uses NumPy's products only"
        )
    inherited = [name for name in BLAS_VARIABLES if name in os.environ]
    return [
        "# NumPy baseline: speed, memory and accuracy",
        "",
        "Written by `benchmarks/bench_baseline.py`; rerun it to refresh every figure.",
        "",
        f"- Command: `{args.command}`",
        f"- Date: {args.started} (UTC)",
        f"- CPU: {cpu_name()}, {os.cpu_count()} cores; {versions}",
        (
            f"- NumPy BLAS: {blas}. The runs unset OPENBLAS_CORETYPE and "
            f"OPENBLAS_L2_SIZE (set in the calling shell: {', '.join(inherited) or 'neither'})."
        ),
        (
            f"- Load average (1 minute) before and after: {loads[0]:.2f}, {loads[1]:.2f}. "
            "The machine is shared, so compare figures within one run, not across runs."
        ),
        "",
    ]


def timing_lines(args: argparse.Namespace, runs: list[dict]) -> list[str]:
    """Render the timing runs as Markdown: one row per batch size and framework.

    Load from other processes only ever slows a run down, so every figure is
    the fastest seen: the best epoch, the shortest bound, the highest speed.
    """
    flops = epoch_flops(args.rows)
    numpy_runs = [r for r in runs if r["framework"] == "numpy"]
    square = max(r["square_gflops"] for r in numpy_runs)
    peak_bound = flops / (square * 1e9)
    lines = [
        f"## Epoch time: {args.rows:,} x 784 float32, 784-1024-10, SGD momentum 0.9",
        "",
        (
            f"Each run is a fresh process that trains {args.epochs} epochs; its "
            f"figure is the faster epoch. The {args.repeats} runs per row alternate "
            f"NumPy and PyTorch, each with {args.threads} threads. The matrix "
            f"products of an epoch cost {flops / 1e12:.3f} TFLOP. 'Step bound' is "
            "the time of exactly the five products of a step at the row's batch "
            "size, in the faster of two memory layouts (all C order, or the "
            "trainer's), measured in each NumPy process just before it trains, "
            "times the steps in an epoch. 'Peak bound' is the TFLOP at the speed of a "
            f"2048 x 2048 product, {square:.0f} GFLOP/s. Ratios use the fastest run."
        ),
        "",
        (
            "| batch | framework | epoch per run (s) | fastest (s) | step bound (s) "
            "| fastest / step bound | peak bound (s) | fastest / peak bound "
            "| peak RSS (MB) |"
        ),
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    repeat_lines = []
    target_lines = []
    for batch in (128, 2000):
        best = {}
        for framework in ("numpy", "torch"):
            chosen = [
                r for r in runs if r["batch"] == batch and r["framework"] == framework
            ]
            if not chosen:
                continue
            best[framework] = [min(r["epoch_seconds"]) for r in chosen]
            fastest = min(best[framework])
            step_bound = step_ratio = "-"
            if framework == "numpy":
                bound = min(r["bound_seconds"] for r in chosen)
                step_bound = f"{bound:.2f}"
                step_ratio = f"{fastest / bound:.2f}"
            rss = max(r["peak_rss_mb"] for r in chosen)
            per_run = ", ".join(f"{b:.2f}" for b in best[framework])
            lines.append(
                f"| {batch} | {framework} | {per_run} | {fastest:.2f} | {step_bound} "
                f"| {step_ratio} | {peak_bound:.2f} | {fastest / peak_bound:.2f} "
                f"| {rss:.0f} |"
            )
        if "numpy" not in best:
            continue
        bound_ratio = min(best["numpy"]) / min(
            r["bound_seconds"] for r in numpy_runs if r["batch"] == batch
        )
        target = f"{bound_ratio:.3f} ({met(bound_ratio, BOUND_TARGET)})"
        if "torch" in best:
            # The two processes of one repeat ran back to back, so pair them too.
            paired = [n / t for n, t in zip(best["numpy"], best["torch"])]
            loads = {
                framework: [
                    r["load_before"]
                    for r in runs
                    if r["batch"] == batch and r["framework"] == framework
                ]
                for framework in ("numpy", "torch")
            }
            for repeat, ratio in enumerate(paired):
                repeat_lines.append(
                    f"| {batch} | {repeat + 1} | {best['numpy'][repeat]:.2f} "
                    f"| {best['torch'][repeat]:.2f} | {ratio:.2f} "
                    f"| {loads['numpy'][repeat]:.1f}, {loads['torch'][repeat]:.1f} |"
                )
            fastest_ratio = min(best["numpy"]) / min(best["torch"])
            target = (
                f"{fastest_ratio:.3f} ({met(fastest_ratio, TORCH_TARGET)}), median "
                f"of the per-repeat ratios {statistics.median(paired):.2f}; "
                f"NumPy / step bound {target}"
            )
        else:
            target = f"NumPy / step bound {target}"
        target_lines.append(
            f"- batch {batch}: NumPy / PyTorch, fastest epochs {target}"
        )
    step_speed = ", ".join(
        f"batch {batch}: "
        f"{max(r['gflops'] for r in numpy_runs if r['batch'] == batch):.0f}"
        for batch in (128, 2000)
    )
    layout_bounds = []
    for batch in (128, 2000):
        chosen = [r["layout_bound_seconds"] for r in numpy_runs if r["batch"] == batch]
        c_order = min(bounds["c_order"] for bounds in chosen)
        trainer = min(bounds["trainer"] for bounds in chosen)
        layout_bounds.append(
            f"batch {batch}: all C order {c_order:.2f} s, trainer's {trainer:.2f} s"
        )
    lines += [
        "",
        f"Speed of the step's products (GFLOP/s, fastest run): {step_speed}.",
        f"Step bound in each memory layout (fastest run): {'; '.join(layout_bounds)}.",
        "",
        (
            f"Targets: NumPy / PyTorch at most {TORCH_TARGET:.2f} and NumPy / step "
            f"bound at most {BOUND_TARGET:.2f}, both on the fastest epochs (below 1: "
            "NumPy is faster):"
        ),
        "",
        *target_lines,
        "",
        (
            "Each repeat (fastest epoch of each process; 1-minute load average "
            "before each process started):"
        ),
        "",
        "| batch | repeat | NumPy (s) | PyTorch (s) | NumPy / PyTorch | load |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
        *repeat_lines,
        "",
        (
            f"The training matrix alone is {args.rows * INPUTS * 4 / 1e6:.0f} MB. Peak "
            "RSS adds the interpreter, the libraries and the step buffers."
        ),
        "",
    ]
    return lines


def decoding_lines(images: int, rates: dict) -> list[str]:
    return [
        f"## Decoding {images:,} PNG images (real notMNIST glyphs, repeated)",
        "",
        "| method | images/s |",
        "| --- | ---: |",
        *[f"| {name} | {rate:,.0f} |" for name, rate in rates.items()],
        "",
    ]


def pipeline_lines(pipeline: dict) -> list[str]:
    rows = pipeline["train_rows"]
    lines = [
        f"## The whole trainer on a build of {rows:,} training images",
        "",
        (
            "`train_baseline.main` with `--hidden 1024 --dropout 0 --epochs 1`, in a "
            "fresh process, on a build whose splits repeat the real sample's PNG "
            "images (validation and test 10,000 each). The first run also converts "
            "the Parquet files into the datasets cache."
        ),
        "",
        "| run | total (s) | epoch (s) | peak RSS (MB) | trainer's load line |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for number, run in enumerate(pipeline["runs"], start=1):
        lines.append(
            f"| {number} | {run['seconds']:.1f} | {run['epoch_seconds']:.1f} "
            f"| {run['peak_rss_mb']:.0f} | {run['load_line']} |"
        )
    matrix_mb = rows * INPUTS * 4 / 1e6
    peak = max(run["peak_rss_mb"] for run in pipeline["runs"])
    lines += [
        "",
        (
            f"Peak RSS is {peak / matrix_mb:.2f} times the {matrix_mb:.0f} MB float32 "
            "training matrix."
        ),
        "",
    ]
    return lines


def accuracy_lines(accuracy: dict) -> list[str]:
    mlp = accuracy["mlp"]
    sizes = mlp["split_sizes"]
    per_letter = ", ".join(
        f"{letter} {value:.3f}"
        for letter, value in mlp["per_class_accuracy"]["test"].items()
    )
    if accuracy["build_commands"]:
        build = "the real sample, built with\n\n" + "\n".join(
            f"    {command}" for command in accuracy["build_commands"]
        )
    else:
        build = "a build folder passed with --build"
    lines = [
        "## Accuracy of the default settings on the real sample",
        "",
        f"Build: {build}",
        "",
        (
            f"Sanitized splits: train {sizes['train']}, validation "
            f"{sizes['validation']}, test {sizes['test']} images. A few thousand "
            "images cannot show what 200,000 reach, but they show that the defaults "
            "train and generalise."
        ),
        "",
        (
            f"MLP {'-'.join(map(str, mlp['layer_sizes']))}: {mlp['epochs_run']} epochs "
            f"(best {mlp['best_epoch']}), {mlp['training_seconds']:.0f} s, with"
        ),
        "",
        f"    {accuracy['commands']['mlp']}",
        "",
        "| evaluated on | validation (rows) | test (rows) |",
        "| --- | ---: | ---: |",
    ]
    for config, values in accuracy["compare"]["results"].items():
        lines.append(
            f"| {config} | {values['validation_accuracy']:.4f} "
            f"({values['validation_size']}) | {values['test_accuracy']:.4f} "
            f"({values['test_size']}) |"
        )
    lines += [
        "",
        f"Per-letter test accuracy (sanitized): {per_letter}.",
        "",
        "Softmax regression on growing training sets, with",
        "",
        f"    {accuracy['commands']['logistic']}",
        "",
        "| train rows | validation | test | epochs |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for row in accuracy["logistic"]:
        lines.append(
            f"| {row['train_samples']} | {row['validation_accuracy']:.4f} | "
            f"{row['test_accuracy']:.4f} | {row['epochs_run']} |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="synthetic rows")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timing run")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timing runs per batch size and framework, alternating (default: 5)",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="worker only")
    parser.add_argument(
        "--worker", choices=("numpy", "torch", "pipeline"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="BLAS and PyTorch threads of the timing runs (default: all cores)",
    )
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
        help="build folder to measure accuracy on (default: build the real "
        "sample with 'notmnist build')",
    )
    parser.add_argument(
        "--pipeline-rows",
        type=int,
        default=200_000,
        help="training images for the whole-trainer run, loading included; 0 skips it",
    )
    parser.add_argument("--skip-accuracy", action="store_true", help="no accuracy runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown output")
    args = parser.parse_args()

    if args.worker == "pipeline":
        print(json.dumps(pipeline_worker(args.build, args.results)))
        return
    if args.worker:
        worker = numpy_worker if args.worker == "numpy" else torch_worker
        print(json.dumps(worker(args.batch_size, args.rows, args.epochs)))
        return

    args.command = shlex.join(["python", "benchmarks/bench_baseline.py", *sys.argv[1:]])
    args.started = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M"
    )
    load_before = os.getloadavg()[0]
    runs = []
    if not args.skip_timing:
        runs = time_frameworks(
            args.rows,
            args.epochs,
            args.repeats,
            args.threads,
            with_torch=not args.skip_torch,
        )
    rates = decode_rates(args.decode_images) if args.decode_images else None
    pipeline = None
    if args.pipeline_rows:
        with tempfile.TemporaryDirectory() as scratch:
            pipeline = measure_pipeline(args.pipeline_rows, Path(scratch))
    accuracy = None
    if not args.skip_accuracy:
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            if args.build:
                build, build_commands = args.build, []
            else:
                build, build_commands = build_sample(work)
            accuracy = train_defaults(build, work)
            accuracy["build_commands"] = build_commands

    lines = environment_lines(args, runs, (load_before, os.getloadavg()[0]))
    if runs:
        lines += timing_lines(args, runs)
    if rates:
        lines += decoding_lines(args.decode_images, rates)
    if pipeline:
        lines += pipeline_lines(pipeline)
    if accuracy:
        lines += accuracy_lines(accuracy)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))
    print(f"wrote {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
