"""Run baseline experiments: train, evaluate, write the outputs, compare configs.

One experiment writes ``metrics.json``, ``curves.png`` and ``weights.npz``
into its output folder. A sweep over training-set sizes writes one such
folder per size, ``train-N`` or ``train-all``, and ``sweep.json`` beside them.
``compare_configs`` writes ``compare.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..constants import IMAGE_PIXELS
from .data import CONFIGS, SplitArrays, balanced_subset, load_config, split_arrays
from .evaluation import evaluate
from .fit import fit
from .network import Network
from .reports import format_table, plot_curves
from .trainer import Hyperparameters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Experiment:
    """The data and settings of a training run, as recorded in its outputs."""

    dataset: str
    config: str
    model: str  # "mlp" or "logistic"; recorded in the outputs
    settings: Hyperparameters


def run_experiment(
    experiment: Experiment,
    splits: dict[str, SplitArrays],
    class_names: Sequence[str],
    train_samples: int | None,
    output: Path,
) -> tuple[Network, dict]:
    """Train one network, evaluate it and write its outputs into ``output``.

    ``train_samples`` rows of the training split, balanced over the classes,
    are used (None: all of them). Returns the network, with the weights of
    its best validation epoch, and the metrics written to ``metrics.json``.
    """
    settings = experiment.settings
    rng = np.random.default_rng(settings.seed)
    train = splits["train"]
    if train_samples is not None:
        rows = balanced_subset(train.labels, train_samples, len(class_names), rng)
        train = SplitArrays(
            train.pixels[rows], train.labels[rows], train.input_range, train.fingerprint
        )
    layer_sizes = [IMAGE_PIXELS, *settings.hidden, len(class_names)]
    network = Network(layer_sizes, rng)
    logger.info(
        "training %s %s on %d images",
        experiment.model,
        "-".join(map(str, layer_sizes)),
        len(train.labels),
    )
    result = fit(network, settings, train, splits["validation"], rng)
    scores = {name: evaluate(network, splits[name]) for name in ("validation", "test")}

    output.mkdir(parents=True, exist_ok=True)
    network.save(output / "weights.npz")
    plot_curves(result.history, output / "curves.png", result.best_epoch)
    metrics = {
        "validation_accuracy": scores["validation"].accuracy,
        "test_accuracy": scores["test"].accuracy,
        "validation_loss": scores["validation"].loss,
        "test_loss": scores["test"].loss,
        "dataset": experiment.dataset,
        "config": experiment.config,
        "split_fingerprints": {
            name: split.fingerprint for name, split in splits.items()
        },
        "split_sizes": {
            "train": len(train.labels),
            "validation": scores["validation"].count,
            "test": scores["test"].count,
        },
        "input_range": train.input_range,
        "model": experiment.model,
        "layer_sizes": layer_sizes,
        "hyperparameters": asdict(settings),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "training_seconds": result.seconds,
        "class_names": list(class_names),
        "per_class_accuracy": {
            name: score.per_class_accuracy(class_names)
            for name, score in scores.items()
        },
        "confusion_matrix": {
            name: score.confusion.tolist() for name, score in scores.items()
        },
        "history": result.history,
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    rows = [
        [name]
        + [
            f"{acc:.3f}" if acc is not None else "-"
            for acc in score.per_class_accuracy(class_names).values()
        ]
        + [f"{score.accuracy:.4f}"]
        for name, score in scores.items()
    ]
    print(format_table(["split", *class_names, "all"], rows))
    print(f"wrote {output}")
    return network, metrics


def run_sweep(
    experiment: Experiment,
    splits: dict[str, SplitArrays],
    class_names: Sequence[str],
    counts: Sequence[int | None],
    output: Path,
) -> Network:
    """Run one experiment per training-set size in ``counts`` (None: all rows).

    One size writes straight into ``output``. Several write into
    ``output/train-N`` each, then print a summary table and write it to
    ``output/sweep.json``. Returns the network of the last size.
    """
    summary = []
    network = None
    for count in counts:
        folder = output
        if len(counts) > 1:
            folder = output / f"train-{'all' if count is None else count}"
        network, metrics = run_experiment(
            experiment, splits, class_names, count, folder
        )
        summary.append(
            {
                "train_samples": metrics["split_sizes"]["train"],
                "validation_accuracy": metrics["validation_accuracy"],
                "test_accuracy": metrics["test_accuracy"],
                "epochs_run": metrics["epochs_run"],
            }
        )
    if network is None:
        raise ValueError("counts is empty; give at least one training-set size")
    if len(counts) > 1:
        rows = [list(entry.values()) for entry in summary]
        print(format_table(["train rows", "validation", "test", "epochs"], rows))
        (output / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    return network


def compare_configs(
    experiment: Experiment,
    network: Network,
    splits: dict[str, SplitArrays],
    num_classes: int,
    output: Path,
) -> dict:
    """Evaluate a trained network on the raw and sanitized validation and test sets.

    ``splits`` are the ones of ``experiment.config``; the other configuration
    is loaded from ``experiment.dataset`` and normalised with the training
    split's input range. Prints a table and writes ``output/compare.json``.
    """
    input_range = splits["train"].input_range
    results = {}
    for config in CONFIGS:
        if config == experiment.config:
            evaluation_splits = {name: splits[name] for name in ("validation", "test")}
        else:
            loaded = load_config(experiment.dataset, config)
            evaluation_splits = {
                name: split_arrays(loaded, name, input_range, num_classes)[0]
                for name in ("validation", "test")
            }
        results[config] = {}
        for name, split in evaluation_splits.items():
            score = evaluate(network, split)
            results[config][f"{name}_accuracy"] = score.accuracy
            results[config][f"{name}_size"] = score.count
    report = {
        "dataset": experiment.dataset,
        "trained_on": experiment.config,
        "model": experiment.model,
        "results": results,
    }
    rows = [
        [
            config,
            values["validation_accuracy"],
            values["validation_size"],
            values["test_accuracy"],
            values["test_size"],
        ]
        for config, values in results.items()
    ]
    print(f"trained on {experiment.config}; accuracy on each configuration's splits:")
    print(format_table(["evaluated on", "validation", "rows", "test", "rows"], rows))
    (output / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
