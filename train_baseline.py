"""Train NumPy baselines on a notMNIST build: softmax regression and a ReLU MLP.

Run ``python train_baseline.py --dataset DIR --output RUN_DIR`` on a folder that
``notmnist build`` wrote, on a Hub id, or on the name ``notmnist``. The run
writes ``metrics.json``, ``curves.png`` and ``weights.npz`` to ``RUN_DIR``.
``--model logistic --train-samples 50,100,1000,5000,all`` trains softmax
regression on growing training sets. ``--compare`` also evaluates the trained
network on the raw and the sanitized validation and test splits.

This script parses the command line. The library code is the package
``notmnist_ds.baseline``. Everything runs in float32 with NumPy only. The
trainer never imports SciPy, imagehash or the ``dedup`` package: a second
OpenBLAS that alternates with NumPy's on two threads made training 3.3x
slower. ``datasets`` 5.2 imports ``scipy.io`` while it loads a dataset when
SciPy is installed, but that does not load SciPy's OpenBLAS.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from notmnist_ds.baseline.data import CONFIGS, INPUT_RANGES, load_training_splits
from notmnist_ds.baseline.errors import BaselineError
from notmnist_ds.baseline.experiments import Experiment, compare_configs, run_sweep
from notmnist_ds.baseline.trainer import ADAM_LEARNING_RATE, Hyperparameters

logger = logging.getLogger("train_baseline")


def parse_sizes(text: str, option: str) -> list[int]:
    """Parse a comma-separated list of positive integers, such as ``1024,300``."""
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise BaselineError(
            f"{option} {text!r} is invalid; it has an empty size, so give positive "
            "integers separated by commas, such as 1024,300"
        )
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise BaselineError(
            f"{option} {text!r} is invalid; give positive integers separated by commas"
        ) from None
    if any(size < 1 for size in sizes):
        raise BaselineError(
            f"{option} {text!r} is invalid; every size must be at least 1"
        )
    return sizes


def parse_train_samples(text: str) -> list[int | None]:
    """Parse ``--train-samples``: counts and ``all`` (None), comma-separated."""
    counts: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            counts.append(None)
        else:
            counts.extend(parse_sizes(part, "--train-samples"))
    if not counts:
        raise BaselineError("--train-samples is empty; give counts such as 50,100,all")
    return counts


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser; defaults come from ``Hyperparameters``."""
    defaults = Hyperparameters()
    parser = argparse.ArgumentParser(
        description="Train a NumPy softmax-regression or MLP baseline on notMNIST.",
    )

    data = parser.add_argument_group("data and outputs")
    data.add_argument(
        "--dataset",
        default="notmnist",
        help="build folder, Hub id, or the name the build registered (default: notmnist)",
    )
    data.add_argument(
        "--config",
        choices=CONFIGS,
        default="sanitized",
        help="configuration to train on (default: sanitized)",
    )
    data.add_argument(
        "--output", type=Path, required=True, help="folder for the run's outputs"
    )
    data.add_argument(
        "--input-range",
        choices=INPUT_RANGES,
        default="auto",
        help="range of the image values before normalising to [-0.5, 0.5] "
        "(default: auto)",
    )

    experiment = parser.add_argument_group("model and experiment")
    experiment.add_argument(
        "--model",
        choices=("mlp", "logistic"),
        default="mlp",
        help="mlp, or logistic for softmax regression (default: mlp)",
    )
    experiment.add_argument(
        "--hidden",
        help="hidden layer sizes, comma-separated (default: "
        f"{','.join(map(str, defaults.hidden))}; not allowed with --model logistic)",
    )
    experiment.add_argument(
        "--train-samples",
        default="all",
        help="training rows to use, comma-separated counts or 'all'; several values "
        "train one network each into OUTPUT/train-N (default: all)",
    )
    experiment.add_argument(
        "--compare",
        action="store_true",
        help="also evaluate on the other configuration's validation and test splits "
        "and write compare.json",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help=f"maximum epochs (default: {defaults.epochs})",
    )
    training.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"minibatch rows (default: {defaults.batch_size})",
    )
    training.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default=defaults.optimizer,
        help="sgd with momentum, or adam (default: sgd)",
    )
    training.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"initial learning rate (default: {defaults.learning_rate} for sgd, "
        f"{ADAM_LEARNING_RATE} for adam)",
    )
    training.add_argument(
        "--momentum",
        type=float,
        default=defaults.momentum,
        help=f"SGD momentum (default: {defaults.momentum})",
    )
    training.add_argument(
        "--l2",
        type=float,
        default=defaults.l2,
        help="L2 coefficient on the weights, added to the gradient as l2 * w "
        f"(default: {defaults.l2})",
    )
    training.add_argument(
        "--dropout",
        type=float,
        default=None,
        help=f"drop probability of hidden units (default: {defaults.dropout}; "
        "logistic has no hidden units)",
    )
    training.add_argument(
        "--lr-decay",
        type=float,
        default=defaults.lr_decay,
        help=f"learning-rate factor per epoch (default: {defaults.lr_decay})",
    )
    training.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without a better validation accuracy; "
        f"0 disables early stopping (default: {defaults.patience})",
    )
    training.add_argument(
        "--seed", type=int, default=defaults.seed, help="random seed (default: 0)"
    )
    training.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (needs threadpoolctl; default: BLAS's own choice)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Hyperparameters:
    defaults = Hyperparameters()
    if args.model == "logistic":
        if args.hidden:
            raise BaselineError(
                f"--hidden {args.hidden} conflicts with --model logistic, which has "
                "no hidden layers; drop --hidden or use --model mlp"
            )
        hidden: tuple[int, ...] = ()
    else:
        hidden = (
            tuple(parse_sizes(args.hidden, "--hidden"))
            if args.hidden is not None
            else defaults.hidden
        )
    if args.lr is not None:
        learning_rate = args.lr
    else:
        sgd = args.optimizer == "sgd"
        learning_rate = defaults.learning_rate if sgd else ADAM_LEARNING_RATE
    dropout = args.dropout if args.dropout is not None else defaults.dropout
    settings = Hyperparameters(
        hidden=hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=learning_rate,
        momentum=args.momentum,
        optimizer=args.optimizer,
        l2=args.l2,
        dropout=dropout if hidden else 0.0,
        lr_decay=args.lr_decay,
        patience=args.patience,
        seed=args.seed,
    )
    settings.validate()
    return settings


def limit_threads(threads: int | None) -> contextlib.AbstractContextManager:
    """Return a context that limits BLAS to ``threads`` threads (None: no limit)."""
    if threads is None:
        return contextlib.nullcontext()
    if threads < 1:
        raise BaselineError(f"--threads {threads} is invalid; give at least 1")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise BaselineError(
            f"--threads {threads} needs threadpoolctl (pip install threadpoolctl); "
            f"or drop it and start with OPENBLAS_NUM_THREADS={threads}"
        ) from None
    return threadpool_limits(limits=threads, user_api="blas")


def run(args: argparse.Namespace) -> None:
    """Run the experiments that ``args`` requests."""
    if args.output.exists() and not args.output.is_dir():
        raise BaselineError(f"--output {args.output} is a file; give a folder for the outputs")
    settings = settings_from_args(args)
    counts = parse_train_samples(args.train_samples)
    if args.compare and len(counts) > 1:
        raise BaselineError(
            f"--compare needs one --train-samples value, not {args.train_samples!r}"
        )
    experiment = Experiment(args.dataset, args.config, args.model, settings)
    with limit_threads(args.threads):
        splits, class_names = load_training_splits(
            args.dataset, args.config, args.input_range
        )
        network = run_sweep(experiment, splits, class_names, counts, args.output)
        if args.compare:
            compare_configs(experiment, network, splits, len(class_names), args.output)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except BaselineError as error:
        logger.error("error: %s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
